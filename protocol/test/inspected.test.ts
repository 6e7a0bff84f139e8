import { describe, expect, it } from 'vitest';
import { decodeReply } from '../src/index.js';

const wire = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));

const env = { v: 1, re: 'i-1', epoch: 2, partition: 0, type: 'inspected' } as const;
const holder = { worker: 'w', token: 9, mode: 'exclusive', permits: 1, ttlMs: 100 } as const;
const waiter = { worker: 'w2', mode: 'exclusive', permits: 1, position: 1, waitMs: 50 } as const;
const lock = { lock: 'x', kind: 'mutex', limit: 1, holderCount: 1, waiterCount: 1, holders: [holder], waiters: [waiter] } as const;
const counts = { locks: 1, holds: 1, waiters: 1, sessions: 2 } as const;

describe('decodeReply: inspected', () => {
  it('hands on exactly the public view, dropping what an older coordinator still sends (session and request ids, lastToken)', () => {
    // Before: the reply went to the caller as it came, ids and counter included.
    const older = {
      ...env,
      lock: { ...lock, holders: [{ ...holder, session: 's' }], waiters: [{ ...waiter, session: 's2', request: 'r2' }] },
      counts: { ...counts, lastToken: 10 },
      extra: true,
    };
    expect(decodeReply(wire(older))).toEqual({ ...env, lock, counts });
    expect(decodeReply(wire({ ...env, lock: null, counts: { ...counts, lastToken: 10 } }))).toEqual({ ...env, lock: null, counts });
    expect(decodeReply(wire({ ...env, counts }))).toEqual({ ...env, counts });
  });

  it('refuses a view of the wrong shape (null) instead of handing it to user code', () => {
    const bad: readonly [string, unknown][] = [
      ['no counts', { ...env }],
      ['counts not an object', { ...env, counts: [1, 1, 1, 1] }],
      ['a negative count', { ...env, counts: { ...counts, holds: -1 } }],
      ['a count missing', { ...env, counts: { locks: 1, holds: 1, waiters: 1 } }],
      ['lock a string', { ...env, counts, lock: 'x' }],
      ['an unknown kind', { ...env, counts, lock: { ...lock, kind: 'barrier' } }],
      ['limit 0', { ...env, counts, lock: { ...lock, limit: 0 } }],
      ['holders not an array', { ...env, counts, lock: { ...lock, holders: {} } }],
      ['waiters missing', { ...env, counts, lock: { ...lock, waiters: undefined } }],
      ['a holder not an object', { ...env, counts, lock: { ...lock, holders: [null] } }],
      ['token 0', { ...env, counts, lock: { ...lock, holders: [{ ...holder, token: 0 }] } }],
      ['token unsafe', { ...env, counts, lock: { ...lock, holders: [{ ...holder, token: 2 ** 53 }] } }],
      ['an unknown mode', { ...env, counts, lock: { ...lock, holders: [{ ...holder, mode: 'upgrade' }] } }],
      ['a fractional ttl', { ...env, counts, lock: { ...lock, holders: [{ ...holder, ttlMs: 1.5 }] } }],
      ['a worker not a string', { ...env, counts, lock: { ...lock, waiters: [{ ...waiter, worker: 7 }] } }],
      ['position 0', { ...env, counts, lock: { ...lock, waiters: [{ ...waiter, position: 0 }] } }],
      ['a negative wait', { ...env, counts, lock: { ...lock, waiters: [{ ...waiter, waitMs: -1 }] } }],
    ];
    for (const [what, reply] of bad) expect(decodeReply(wire(reply)), what).toBeNull();
  });
});
