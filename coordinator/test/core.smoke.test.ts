import { describe, expect, it } from 'vitest';
import type { AcquireRequest, Request } from '@lockq/protocol';
import { DEFAULT_CORE_LIMITS, type Decision, LockCore } from '../src/core/index.js';

const core = () =>
  new LockCore({ partition: 0, partitions: 1, epoch: 1, tokenFloor: 0, tokenBlockSize: 100, limits: DEFAULT_CORE_LIMITS });
let n = 0;
const base = (s: string) => ({ v: 1 as const, id: `r${++n}`, worker: s, session: s, replyTo: `reply.${s}` });
const open = (s: string): Request => ({ ...base(s), op: 'open', sessionTtlMs: 1000, partitions: 1 });
const acq = (s: string, lock: string, extra: Partial<AcquireRequest> = {}): Request => ({
  ...base(s), op: 'acquire', lock, kind: 'mutex', mode: 'exclusive', limit: 1, permits: 1, ttlMs: 500, waitMs: 1000, ...extra,
});
const replies = (out: Decision[]) => out.flatMap((d) => (d.type === 'reply' ? [d.body] : []));

describe('core smoke', () => {
  it('grants FIFO and hands over on release and on expiry', () => {
    const c = core();
    const out: Decision[] = [];
    c.handle(open('a'), 0, out);
    c.handle(open('b'), 0, out);
    c.handle(open('c'), 0, out);
    out.length = 0;
    c.handle(acq('a', 'x'), 1, out);
    c.handle(acq('b', 'x'), 2, out);
    c.handle(acq('c', 'x'), 3, out);
    const r = replies(out);
    // b queues first, so a is told it is next.
    expect(r.map((b) => b.type)).toEqual(['granted', 'successor', 'queued', 'queued']);
    expect(r[3]).toMatchObject({ position: 2 });
    out.length = 0;
    const tokenA = (r[0] as { token: number }).token;
    c.handle({ ...base('a'), op: 'release', lock: 'x', token: tokenA }, 10, out);
    expect(replies(out).map((b) => [b.type, b.re])).toEqual([['granted', r[2]?.re], ['successor', r[2]?.re], ['released', expect.any(String)]]);
    out.length = 0;
    c.tick(10 + 500, out); // b's lease ends
    expect(replies(out).map((b) => b.type)).toEqual(['lost', 'granted']);
    expect(c.nextDeadline()).toBeGreaterThan(510);
  });
});
