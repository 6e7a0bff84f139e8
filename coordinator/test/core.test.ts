/**
 * Example-based tests of the lock core, one behaviour each. The core is driven with plain
 * requests and a manual clock: `h.at(ms)` sets the time of the next request.
 */
import { describe, expect, it } from 'vitest';
import {
  type AcquireRequest,
  decodeReply,
  encodeReply,
  type ErrorCode,
  partitionOf,
  type ReplyBody,
  type Request,
  type RequestBase,
} from '@lockq/protocol';
import { type CoreLimits, type CoreOptions, coreLimits, DEFAULT_CORE_LIMITS, type Decision, LockCore } from '../src/core/index.js';

// ---- harness --------------------------------------------------------------------------------------

type Extra<T> = Partial<Omit<T, keyof RequestBase | 'op'>>;

class Harness {
  readonly core: LockCore;
  /** Time of the next request or tick. */
  now = 0;
  /** Every decision of the last step, reservations included. */
  decisions: Decision[] = [];
  #seq = 0;

  constructor(options: Partial<Omit<CoreOptions, 'limits'>> & { readonly limits?: Partial<CoreLimits> } = {}) {
    this.core = new LockCore({
      partition: 0,
      partitions: 1,
      epoch: 1,
      tokenFloor: 0,
      tokenBlockSize: 1000,
      ...options,
      limits: { ...DEFAULT_CORE_LIMITS, ...options.limits },
    });
  }

  at(now: number): this {
    this.now = now;
    return this;
  }

  /** Applies a request; returns the bodies of every reply of the step, in order. */
  send(request: Request): ReplyBody[] {
    this.decisions = [];
    this.core.handle(request, this.now, this.decisions);
    return bodies(this.decisions);
  }

  /** Applies a request; returns its own answer (always the step's last decision). */
  ask(request: Request): ReplyBody {
    const all = this.send(request);
    const own = all.at(-1);
    expect(own?.re).toBe(request.id);
    return own as ReplyBody;
  }

  tick(now = this.now): ReplyBody[] {
    this.now = now;
    this.decisions = [];
    this.core.tick(now, this.decisions);
    return bodies(this.decisions);
  }

  // Request builders. Session `s` belongs to worker `w-<s>` and answers go to `reply.<s>`.
  base(s: string, id = `r${++this.#seq}`): RequestBase {
    return { v: 1, id, worker: `w-${s}`, session: s, replyTo: `reply.${s}` };
  }
  openReq(s: string, extra: Extra<Request & { op: 'open' }> = {}): Request {
    return { ...this.base(s), op: 'open', sessionTtlMs: 10_000, partitions: 1, ...extra };
  }
  acquireReq(s: string, lock: string, extra: Extra<AcquireRequest> = {}): AcquireRequest {
    return { ...this.base(s), op: 'acquire', lock, kind: 'mutex', mode: 'exclusive', limit: 1, permits: 1, ttlMs: 5000, waitMs: 5000, ...extra };
  }
  releaseReq(s: string, lock: string, token: number): Request {
    return { ...this.base(s), op: 'release', lock, token };
  }
  extendReq(s: string, lock: string, token: number, ttlMs = 5000): Request {
    return { ...this.base(s), op: 'extend', lock, token, ttlMs };
  }
  cancelReq(s: string, lock: string, target: string): Request {
    return { ...this.base(s), op: 'cancel', lock, target };
  }
  heartbeatReq(s: string): Request {
    return { ...this.base(s), op: 'heartbeat' };
  }
  closeReq(s: string): Request {
    return { ...this.base(s), op: 'close' };
  }

  // Shortcuts.
  open(...sessions: string[]): void {
    for (const s of sessions) expect(this.ask(this.openReq(s))).toMatchObject({ type: 'opened' });
  }
  /** Acquires and expects a grant; returns the token. */
  hold(s: string, lock: string, extra: Extra<AcquireRequest> = {}): number {
    const own = this.ask(this.acquireReq(s, lock, extra));
    expect(own).toMatchObject({ type: 'granted' });
    return (own as ReplyBody & { type: 'granted' }).token;
  }
  /** Acquires and expects to be queued; returns the acquire. */
  queue(s: string, lock: string, extra: Extra<AcquireRequest> = {}): AcquireRequest {
    const req = this.acquireReq(s, lock, extra);
    expect(this.ask(req)).toMatchObject({ type: 'queued' });
    return req;
  }

  /** Everything observable about state: counts and every named lock. */
  snapshot(...locks: string[]): string {
    return JSON.stringify({ counts: this.core.counts(), locks: locks.map((l) => this.core.detail(l, this.now)) });
  }
}

function bodies(decisions: readonly Decision[]): ReplyBody[] {
  return decisions.flatMap((d) => (d.type === 'reply' ? [d.body] : []));
}

/** A compact view of replies: `granted <re> #<token>`, `error <re> CODE`, ... */
function brief(replies: readonly ReplyBody[]): string[] {
  return replies.map((b) => {
    switch (b.type) {
      case 'granted':
        return `granted ${b.re} #${b.token}`;
      case 'queued':
        return `queued ${b.re} @${b.position}`;
      case 'released':
        return `released ${b.re} #${b.token}`;
      case 'lost':
        return `lost ${b.re} #${b.token} ${b.reason}`;
      case 'error':
        return `error ${b.re} ${b.code}`;
      default:
        return `${b.type} ${b.re}`;
    }
  });
}

function errorOf(body: ReplyBody): ErrorCode | undefined {
  return body.type === 'error' ? body.code : undefined;
}

// ---- queues and modes -------------------------------------------------------------------------------

describe('queues', () => {
  it('hands a mutex over in FIFO order, one release at a time', () => {
    const h = new Harness();
    h.open('a', 'b', 'c');
    const ta = h.hold('a', 'x');
    const b = h.acquireReq('b', 'x');
    const c = h.acquireReq('c', 'x');
    expect(h.ask(b)).toMatchObject({ type: 'queued', position: 1 });
    expect(h.ask(c)).toMatchObject({ type: 'queued', position: 2 });

    const r1 = h.releaseReq('a', 'x', ta);
    // b takes the token reserved when it was named next (see 'hand-off'), then c is named to b.
    expect(brief(h.send(r1))).toEqual([`granted ${b.id} #${ta + 1}`, `successor ${b.id}`, `released ${r1.id} #${ta}`]);
    expect(h.decisions[0]).toMatchObject({ to: 'reply.b' });
    expect(brief(h.send(h.releaseReq('b', 'x', ta + 1))).slice(0, 1)).toEqual([`granted ${c.id} #${ta + 2}`]);
    expect(h.core.detail('x', h.now)?.holders.map((x) => x.session)).toEqual(['c']);
  });

  it('grants consecutive shared requests at the head together, and stops at an exclusive one', () => {
    const h = new Harness();
    h.open('w', 'r1', 'r2', 'w2', 'r3');
    const rw = { kind: 'rwlock' } as const;
    const tw = h.hold('w', 'x', rw);
    const r1 = h.queue('r1', 'x', { ...rw, mode: 'shared' });
    const r2 = h.queue('r2', 'x', { ...rw, mode: 'shared' });
    const w2 = h.queue('w2', 'x', rw);
    const r3 = h.queue('r3', 'x', { ...rw, mode: 'shared' });

    const replies = brief(h.send(h.releaseReq('w', 'x', tw)));
    expect(replies.slice(0, 2)).toEqual([`granted ${r1.id} #${tw + 1}`, `granted ${r2.id} #${tw + 2}`]);
    expect(replies).toHaveLength(3);
    expect(h.core.detail('x', h.now)?.waiters.map((w) => w.request)).toEqual([w2.id, r3.id]);
  });

  it('queues a shared request behind a waiting exclusive one, though it would fit (no writer starvation)', () => {
    const h = new Harness();
    h.open('r1', 'w', 'r2');
    const rw = { kind: 'rwlock' } as const;
    h.hold('r1', 'x', { ...rw, mode: 'shared' });
    h.queue('w', 'x', rw);
    expect(h.ask(h.acquireReq('r2', 'x', { ...rw, mode: 'shared' }))).toMatchObject({ type: 'queued', position: 2 });
    expect(h.core.inspect('x', h.now)?.holders).toHaveLength(1);
  });

  it('lets a large semaphore request at the head block smaller ones behind it, and grants it when enough permits free up', () => {
    const h = new Harness();
    h.open('a', 'b', 'big', 'small');
    const sem = (permits: number) => ({ kind: 'semaphore', mode: 'shared', limit: 3, permits }) as const;
    const ta = h.hold('a', 's', sem(1));
    const tb = h.hold('b', 's', sem(1));
    const big = h.queue('big', 's', sem(3));
    const small = h.queue('small', 's', sem(1)); // one permit is free, but `big` is ahead

    expect(brief(h.send(h.releaseReq('a', 's', ta)))).toHaveLength(1); // 2 free: still not enough for big
    const replies = brief(h.send(h.releaseReq('b', 's', tb)));
    expect(replies[0]).toBe(`granted ${big.id} #${tb + 1}`);
    expect(replies).toHaveLength(2); // small still waits: big took all 3
    expect(h.core.detail('s', h.now)?.waiters.map((w) => w.request)).toEqual([small.id]);
  });

  it('answers a try-lock (waitMs 0) LOCK_BUSY when the lock is held', () => {
    const h = new Harness();
    h.open('a', 'b');
    h.hold('a', 'x');
    expect(errorOf(h.ask(h.acquireReq('b', 'x', { waitMs: 0 })))).toBe('LOCK_BUSY');
  });

  it('answers a try-lock LOCK_BUSY when it would fit but others are waiting', () => {
    const h = new Harness();
    h.open('a', 'b', 'c');
    const sem = (permits: number) => ({ kind: 'semaphore', mode: 'shared', limit: 3, permits }) as const;
    h.hold('a', 's', sem(1));
    h.queue('b', 's', sem(3));
    expect(errorOf(h.ask(h.acquireReq('c', 's', { ...sem(1), waitMs: 0 })))).toBe('LOCK_BUSY');
  });

  it('grants a try-lock on a free lock', () => {
    const h = new Harness();
    h.open('a');
    expect(h.ask(h.acquireReq('a', 'x', { waitMs: 0 }))).toMatchObject({ type: 'granted' });
  });

  it('lets one session hold a shared lock several times, each with its own token', () => {
    const h = new Harness();
    h.open('a');
    const t1 = h.hold('a', 'x', { kind: 'rwlock', mode: 'shared' });
    const t2 = h.hold('a', 'x', { kind: 'rwlock', mode: 'shared' });
    expect(t2).toBe(t1 + 1);
    expect(h.core.inspect('x', h.now)?.holders.map((x) => x.token)).toEqual([t1, t2]);
  });

  it('queues a session\'s exclusive acquire behind its own hold (no reentrancy, no error)', () => {
    const h = new Harness();
    h.open('a');
    const t = h.hold('a', 'x');
    const again = h.queue('a', 'x');
    expect(brief(h.send(h.releaseReq('a', 'x', t)))[0]).toBe(`granted ${again.id} #${t + 1}`);
  });
});

// ---- deadlines, cancellation, leases -------------------------------------------------------------------

describe('waiting', () => {
  // On an rwlock: a mutex's first waiter is named next and timed out differently (see 'hand-off').
  it('answers WAIT_TIMEOUT at the wait deadline, and the next waiter can still be granted', () => {
    const h = new Harness();
    h.open('a', 'b', 'c');
    const rw = { kind: 'rwlock' } as const;
    const ta = h.hold('a', 'x', rw);
    const b = h.at(100).queue('b', 'x', { ...rw, waitMs: 200 });
    const c = h.at(150).queue('c', 'x', { ...rw, waitMs: 1000 });
    expect(h.tick(299)).toEqual([]);
    expect(brief(h.tick(300))).toEqual([`error ${b.id} WAIT_TIMEOUT`]);
    expect(h.core.inspect('x', h.now)?.waiters.map((w) => w.position)).toEqual([1]);
    expect(brief(h.send(h.releaseReq('a', 'x', ta)))[0]).toBe(`granted ${c.id} #${ta + 1}`);
  });

  it('never grants a waiter whose wait ends at the moment the lock frees up', () => {
    const h = new Harness();
    h.open('a', 'b');
    const rw = { kind: 'rwlock' } as const;
    h.hold('a', 'x', { ...rw, ttlMs: 500 });
    const b = h.queue('b', 'x', { ...rw, waitMs: 500 });
    expect(brief(h.tick(500))).toEqual([expect.stringMatching(/^lost .* LEASE_EXPIRED$/), `error ${b.id} WAIT_TIMEOUT`]);
    expect(h.core.inspect('x', h.now)).toBeNull();
  });

  it('cancels a waiting acquire: the acquire is answered CANCELLED, then the cancel', () => {
    const h = new Harness();
    h.open('a', 'b');
    h.hold('a', 'x');
    const b = h.queue('b', 'x');
    const cancel = h.cancelReq('b', 'x', b.id);
    // The holder, told b was next, is told nobody is now.
    expect(brief(h.send(cancel))).toEqual([`error ${b.id} CANCELLED`, 'successor r3', `cancelled ${cancel.id}`]);
    expect(h.core.counts().waiters).toBe(0);
  });

  it('lets the next waiters in when the cancelled one was blocking the head', () => {
    const h = new Harness();
    h.open('a', 'big', 'small');
    const sem = (permits: number) => ({ kind: 'semaphore', mode: 'shared', limit: 2, permits }) as const;
    h.hold('a', 's', sem(1));
    const big = h.queue('big', 's', sem(2));
    const small = h.queue('small', 's', sem(1));
    const replies = brief(h.send(h.cancelReq('big', 's', big.id)));
    expect(replies.slice(0, 2)).toEqual([`error ${big.id} CANCELLED`, expect.stringMatching(new RegExp(`^granted ${small.id} `))]);
  });

  it('answers NOT_WAITING for an unknown request, another session\'s waiter, another lock, or an acquire already granted', () => {
    const h = new Harness();
    h.open('a', 'b', 'c');
    const ta = h.hold('a', 'x');
    const b = h.queue('b', 'x');
    expect(errorOf(h.ask(h.cancelReq('b', 'x', 'no-such-request')))).toBe('NOT_WAITING');
    expect(errorOf(h.ask(h.cancelReq('c', 'x', b.id)))).toBe('NOT_WAITING');
    expect(errorOf(h.ask(h.cancelReq('b', 'y', b.id)))).toBe('NOT_WAITING');
    h.send(h.releaseReq('a', 'x', ta));
    expect(errorOf(h.ask(h.cancelReq('b', 'x', b.id)))).toBe('NOT_WAITING');
    expect(h.core.detail('x', h.now)?.holders.map((x) => x.session)).toEqual(['b']);
  });
});

describe('leases', () => {
  it('sends lost when a lease runs out, then grants the next waiter', () => {
    const h = new Harness();
    h.open('a', 'b');
    const a = h.acquireReq('a', 'x', { ttlMs: 300 });
    h.ask(a);
    const b = h.at(10).queue('b', 'x');
    expect(h.tick(299)).toEqual([]);
    const replies = h.tick(300);
    expect(brief(replies)).toEqual([`lost ${a.id} #1 LEASE_EXPIRED`, `granted ${b.id} #2`]);
    expect(h.decisions.flatMap((d) => (d.type === 'reply' ? [d.to] : []))).toEqual(['reply.a', 'reply.b']);
  });

  it('answers extend and release after expiry LEASE_EXPIRED, and never re-acquires', () => {
    const h = new Harness();
    h.open('a');
    const t = h.hold('a', 'x', { ttlMs: 300 });
    h.tick(300);
    const before = h.snapshot('x');
    expect(errorOf(h.at(400).ask(h.extendReq('a', 'x', t)))).toBe('LEASE_EXPIRED');
    expect(errorOf(h.ask(h.releaseReq('a', 'x', t)))).toBe('LEASE_EXPIRED');
    expect(h.core.inspect('x', h.now)).toBeNull();
    expect(h.snapshot('x')).toBe(before);
  });

  it('extends a lease from the time of the extend', () => {
    const h = new Harness();
    h.open('a', 'b');
    const t = h.hold('a', 'x', { ttlMs: 300 });
    const ext = h.extendReq('a', 'x', t, 1000);
    expect(h.at(200).ask(ext)).toEqual({ type: 'extended', re: ext.id, lock: 'x', token: t, ttlMs: 1000, basis: ext.id });
    expect(h.tick(1199)).toEqual([]);
    expect(brief(h.tick(1200))).toEqual([expect.stringMatching(/LEASE_EXPIRED$/)]);
  });

  it('lets a shorter extend bring the expiry forward', () => {
    const h = new Harness();
    h.open('a');
    const t = h.hold('a', 'x', { ttlMs: 5000 });
    h.at(100).ask(h.extendReq('a', 'x', t, 50));
    expect(h.core.nextDeadline()).toBe(150);
    expect(brief(h.tick(150))).toEqual([expect.stringMatching(/LEASE_EXPIRED$/)]);
  });

  it('answers NOT_HOLDER to a release by another session or with a wrong token', () => {
    const h = new Harness();
    h.open('a', 'b');
    const t = h.hold('a', 'x');
    const before = h.snapshot('x');
    expect(errorOf(h.ask(h.releaseReq('b', 'x', t)))).toBe('NOT_HOLDER');
    expect(errorOf(h.ask(h.releaseReq('a', 'x', t + 1)))).toBe('NOT_HOLDER');
    expect(errorOf(h.ask(h.releaseReq('a', 'y', t)))).toBe('NOT_HOLDER');
    expect(errorOf(h.ask(h.extendReq('b', 'x', t)))).toBe('NOT_HOLDER');
    expect(h.snapshot('x')).toBe(before);
  });
});

// ---- sessions ----------------------------------------------------------------------------------------

describe('sessions', () => {
  it('on expiry releases the session\'s holds (lost, NO_SESSION) and drops its waiters (answered NO_SESSION)', () => {
    const h = new Harness();
    h.ask(h.openReq('a', { sessionTtlMs: 1000 }));
    h.open('b', 'c');
    const ax = h.acquireReq('a', 'x');
    h.ask(ax);
    const bx = h.queue('b', 'x');
    h.hold('c', 'y');
    const ay = h.queue('a', 'y');
    expect(h.tick(999)).toEqual([]);
    const replies = brief(h.tick(1000));
    expect(replies.slice(0, 2).sort()).toEqual([`error ${ay.id} NO_SESSION`, `lost ${ax.id} #1 NO_SESSION`].sort());
    expect(replies[2]).toMatch(new RegExp(`^granted ${bx.id} `));
    expect(h.core.counts()).toMatchObject({ sessions: 2, holds: 2, waiters: 0 });
    expect(errorOf(h.ask(h.heartbeatReq('a')))).toBe('NO_SESSION');
  });

  it('on close drops waiters (CANCELLED) and holds (silently), and hands the locks on', () => {
    const h = new Harness();
    h.open('a', 'b', 'c');
    h.hold('a', 'x');
    const bx = h.queue('b', 'x');
    h.hold('c', 'y');
    const ay = h.queue('a', 'y');
    const close = h.closeReq('a');
    // bx was named next with token 2 when it queued; c, told a was next on y, is told nobody is.
    expect(brief(h.send(close))).toEqual([`error ${ay.id} CANCELLED`, `granted ${bx.id} #2`, 'successor r6', `ok ${close.id}`]);
    expect(h.core.counts()).toMatchObject({ sessions: 2, holds: 2, waiters: 0 });
  });

  it('stays alive while it heartbeats', () => {
    const h = new Harness();
    h.ask(h.openReq('a', { sessionTtlMs: 1000 }));
    for (let t = 900; t <= 9000; t += 900) expect(h.at(t).ask(h.heartbeatReq('a'))).toMatchObject({ type: 'ok' });
    h.tick(9999);
    expect(h.core.counts().sessions).toBe(1);
    h.tick(10_000);
    expect(h.core.counts().sessions).toBe(0);
  });

  it('is refreshed by any request, not only heartbeats', () => {
    const h = new Harness();
    h.ask(h.openReq('a', { sessionTtlMs: 1000 }));
    h.at(900).ask(h.cancelReq('a', 'x', 'nothing')); // an error still counts as a sign of life
    h.tick(1800);
    expect(h.core.counts().sessions).toBe(1);
  });

  it('answers NO_SESSION to every request without a session, and to a worker using another\'s session', () => {
    const h = new Harness();
    const requests: Request[] = [
      h.acquireReq('ghost', 'x'),
      h.releaseReq('ghost', 'x', 1),
      h.extendReq('ghost', 'x', 1),
      h.cancelReq('ghost', 'x', 'r'),
      h.heartbeatReq('ghost'),
      h.closeReq('ghost'),
    ];
    for (const r of requests) expect(errorOf(h.ask(r))).toBe('NO_SESSION');
    h.open('a');
    expect(errorOf(h.ask({ ...h.acquireReq('a', 'x'), worker: 'intruder' }))).toBe('NO_SESSION');
    expect(h.core.counts()).toMatchObject({ holds: 0, locks: 0 });
  });

  it('expires a session re-opened with a shorter ttl by the new ttl', () => {
    const h = new Harness();
    h.ask(h.openReq('a', { sessionTtlMs: 10_000 }));
    h.hold('a', 'x');
    expect(h.at(100).ask(h.openReq('a', { sessionTtlMs: 200 }))).toMatchObject({ type: 'opened', resumed: true, sessionTtlMs: 200 });
    expect(h.core.nextDeadline()).toBe(300);
    expect(brief(h.tick(300))).toEqual([expect.stringMatching(/NO_SESSION$/)]);
    expect(h.core.counts()).toMatchObject({ sessions: 0, holds: 0 });
  });

  it('resumes an open session on a second open (holds kept)', () => {
    const h = new Harness();
    h.open('a');
    h.hold('a', 'x');
    expect(h.at(10).ask(h.openReq('a', { sessionTtlMs: 2000 }))).toMatchObject({ type: 'opened', resumed: true, sessionTtlMs: 2000 });
    expect(h.core.counts().holds).toBe(1);
  });
});

// ---- errors and limits ------------------------------------------------------------------------------------

describe('errors', () => {
  it('KIND_MISMATCH: a lock in use as one kind cannot be acquired as another', () => {
    const h = new Harness();
    h.open('a', 'b');
    h.hold('a', 'x', { kind: 'rwlock', mode: 'shared' });
    expect(h.ask(h.acquireReq('b', 'x'))).toMatchObject({ type: 'error', code: 'KIND_MISMATCH', field: 'kind' });
  });

  it('LIMIT_MISMATCH: a semaphore in use with one limit cannot be acquired with another', () => {
    const h = new Harness();
    h.open('a', 'b');
    h.hold('a', 's', { kind: 'semaphore', mode: 'shared', limit: 3 });
    expect(h.ask(h.acquireReq('b', 's', { kind: 'semaphore', mode: 'shared', limit: 4 }))).toMatchObject({
      type: 'error',
      code: 'LIMIT_MISMATCH',
      field: 'limit',
    });
  });

  it('forgets a lock\'s kind once nobody holds or waits for it', () => {
    const h = new Harness();
    h.open('a');
    const t = h.hold('a', 'x');
    h.send(h.releaseReq('a', 'x', t));
    expect(h.core.inspect('x', h.now)).toBeNull();
    h.hold('a', 'x', { kind: 'semaphore', mode: 'shared', limit: 5 });
  });

  it('QUEUE_FULL when the lock has maxWaitersPerLock waiters', () => {
    const h = new Harness({ limits: { maxWaitersPerLock: 2 } });
    h.open('a', 'b', 'c', 'd');
    h.hold('a', 'x');
    h.queue('b', 'x');
    h.queue('c', 'x');
    expect(errorOf(h.ask(h.acquireReq('d', 'x')))).toBe('QUEUE_FULL');
  });

  it('TOO_MANY_HOLDS when a session has maxHoldsPerSession holds and waits together', () => {
    const h = new Harness({ limits: { maxHoldsPerSession: 2 } });
    h.open('a', 'b');
    h.hold('b', 'z');
    h.hold('a', 'x');
    h.queue('a', 'z');
    expect(errorOf(h.ask(h.acquireReq('a', 'y')))).toBe('TOO_MANY_HOLDS'); // would be granted at once
    expect(errorOf(h.ask(h.acquireReq('a', 'z')))).toBe('TOO_MANY_HOLDS'); // would queue
  });

  it('TOO_MANY_WAITS when a session already has maxWaitsPerSession waiting acquires', () => {
    const h = new Harness({ limits: { maxWaitsPerSession: 1 } });
    h.open('a', 'b');
    h.hold('b', 'x');
    h.hold('b', 'y');
    h.queue('a', 'x');
    expect(errorOf(h.ask(h.acquireReq('a', 'y')))).toBe('TOO_MANY_WAITS');
    expect(h.ask(h.acquireReq('a', 'free'))).toMatchObject({ type: 'granted' }); // holds are not waits
  });

  it('TOO_MANY_SESSIONS when the partition has maxSessions sessions', () => {
    const h = new Harness({ limits: { maxSessions: 2 } });
    h.open('a', 'b');
    expect(errorOf(h.ask(h.openReq('c')))).toBe('TOO_MANY_SESSIONS');
    expect(h.ask(h.openReq('a'))).toMatchObject({ type: 'opened', resumed: true }); // resuming is not a new session
    expect(h.core.counts().sessions).toBe(2);
  });

  it('WRONG_PARTITION for a lock another partition owns, and for an open that counts partitions differently', () => {
    const h = new Harness({ partition: 0, partitions: 4 });
    const mine = ['a', 'b', 'c', 'd', 'e', 'f'].find((n) => partitionOf(n, 4) === 0) as string;
    const theirs = ['a', 'b', 'c', 'd', 'e', 'f'].find((n) => partitionOf(n, 4) !== 0) as string;
    // Each says how many partitions the coordinator has, so a worker can learn the count.
    expect(h.ask(h.openReq('a'))).toMatchObject({ type: 'error', code: 'WRONG_PARTITION', field: 'partitions', partitions: 4 });
    expect(h.ask(h.openReq('a', { partitions: 4 }))).toMatchObject({ type: 'opened' });
    expect(h.ask(h.acquireReq('a', theirs))).toMatchObject({ type: 'error', code: 'WRONG_PARTITION', field: 'lock', partitions: 4 });
    expect(h.ask(h.releaseReq('a', theirs, 1))).toMatchObject({ type: 'error', code: 'WRONG_PARTITION', partitions: 4 });
    expect(h.ask(h.extendReq('a', theirs, 1))).toMatchObject({ type: 'error', code: 'WRONG_PARTITION', partitions: 4 });
    expect(h.ask(h.cancelReq('a', theirs, 'r'))).toMatchObject({ type: 'error', code: 'WRONG_PARTITION', partitions: 4 });
    expect(h.ask(h.acquireReq('a', mine))).toMatchObject({ type: 'granted' });
    // A worker reads the count off the wire; no other error carries it.
    const wrong = h.ask(h.acquireReq('a', theirs));
    expect(decodeReply(encodeReply(wrong, 1, 0))).toMatchObject({ code: 'WRONG_PARTITION', partitions: 4 });
    const other = h.ask(h.acquireReq('nobody', mine));
    expect(other).toMatchObject({ type: 'error', code: 'NO_SESSION' });
    expect(other).not.toHaveProperty('partitions');
  });

  it('leaves state unchanged on every error', () => {
    const h = new Harness({ limits: { maxWaitersPerLock: 1, maxHoldsPerSession: 2, maxWaitsPerSession: 1, maxSessions: 4 } });
    h.open('a', 'b', 'c', 'd');
    const sem = { kind: 'semaphore', mode: 'shared', limit: 2 } as const;
    const tx = h.hold('a', 'x');
    h.queue('b', 'x');
    h.hold('a', 's', sem);
    h.hold('c', 'y');
    h.queue('d', 'y');
    h.hold('d', 'v');
    const t = h.at(100).hold('c', 'short', { ttlMs: 10 });
    h.tick(110); // `t` expired
    const failing: [ErrorCode, Request][] = [
      ['NO_SESSION', h.acquireReq('ghost', 'x')],
      ['KIND_MISMATCH', h.acquireReq('c', 'x', { kind: 'rwlock' })],
      ['LIMIT_MISMATCH', h.acquireReq('c', 's', { ...sem, limit: 3 })],
      ['LOCK_BUSY', h.acquireReq('c', 'x', { waitMs: 0 })],
      ['QUEUE_FULL', h.acquireReq('c', 'x')],
      ['TOO_MANY_WAITS', h.acquireReq('b', 'v')],
      ['TOO_MANY_HOLDS', h.acquireReq('a', 'z')],
      ['TOO_MANY_SESSIONS', h.openReq('e')],
      ['NOT_HOLDER', h.releaseReq('b', 'x', tx)],
      ['NOT_HOLDER', h.extendReq('b', 'x', tx)],
      ['LEASE_EXPIRED', h.releaseReq('c', 'short', t)],
      ['LEASE_EXPIRED', h.extendReq('c', 'short', t)],
      ['NOT_WAITING', h.cancelReq('b', 'x', 'nope')],
    ];
    for (const [code, request] of failing) {
      const before = h.snapshot('x', 'y', 's', 'v', 'z', 'short');
      expect(errorOf(h.ask(request)), `${request.op} ${JSON.stringify(request)}`).toBe(code);
      expect(h.decisions, code).toHaveLength(1);
      expect(h.snapshot('x', 'y', 's', 'v', 'z', 'short'), code).toBe(before);
    }
  });
});

// ---- idempotency ---------------------------------------------------------------------------------------

describe('idempotency', () => {
  it('gives a duplicate the same answer and changes nothing', () => {
    const h = new Harness();
    h.open('a', 'b');
    const t = h.hold('a', 'x');
    const release = h.releaseReq('a', 'x', t);
    const first = h.ask(release);
    const mismatch = h.acquireReq('b', 'x', { kind: 'rwlock' });
    h.hold('b', 'x');
    const refused = h.ask(mismatch);
    expect(errorOf(refused)).toBe('KIND_MISMATCH');
    const before = h.at(10).snapshot('x');
    expect(h.send(release)).toEqual([first]);
    expect(h.send(mismatch)).toEqual([refused]);
    expect(h.snapshot('x')).toBe(before);
  });

  it('gives a duplicate of a waiting acquire its current position, without queueing it twice', () => {
    const h = new Harness();
    h.open('a', 'b', 'c');
    const ta = h.hold('a', 'x');
    h.queue('b', 'x');
    const c = h.queue('c', 'x');
    expect(h.ask(c)).toMatchObject({ type: 'queued', position: 2 });
    h.send(h.releaseReq('a', 'x', ta));
    expect(h.ask(c)).toMatchObject({ type: 'queued', position: 1 });
    expect(h.core.counts().waiters).toBe(1);
  });

  it('gives a duplicate of a granted acquire the same token, with what is left of the lease, and grants nothing new', () => {
    const h = new Harness();
    h.open('a');
    const a = h.acquireReq('a', 'x', { ttlMs: 1000 });
    const first = h.ask(a);
    expect(first).toMatchObject({ type: 'granted', token: 1, ttlMs: 1000, basis: a.id });
    expect(h.at(300).send(a)).toEqual([{ type: 'granted', re: a.id, lock: 'x', token: 1, ttlMs: 700, basis: a.id }]);
    expect(h.core.counts()).toMatchObject({ holds: 1, lastToken: 1 });
  });

  it('gives a duplicate of an acquire granted after waiting the same token', () => {
    const h = new Harness();
    h.open('a', 'b');
    const ta = h.hold('a', 'x');
    const b = h.queue('b', 'x');
    h.send(h.releaseReq('a', 'x', ta));
    expect(h.ask(b)).toMatchObject({ type: 'granted', token: ta + 1 });
  });

  it('answers IDEMPOTENCY_CONFLICT to the same id with a different payload, and changes nothing', () => {
    const h = new Harness();
    h.open('a', 'b');
    h.hold('b', 'x');
    const a = h.queue('a', 'x', { ttlMs: 1000 });
    const before = h.snapshot('x');
    expect(errorOf(h.ask({ ...a, ttlMs: 2000 }))).toBe('IDEMPOTENCY_CONFLICT');
    expect(errorOf(h.ask({ ...h.releaseReq('a', 'x', 1), id: a.id }))).toBe('IDEMPOTENCY_CONFLICT');
    expect(h.snapshot('x')).toBe(before);
  });

  it('does not count a different reply address as a different payload', () => {
    const h = new Harness();
    h.open('a', 'b');
    const tb = h.hold('b', 'x');
    const a = h.queue('a', 'x');
    expect(h.ask({ ...a, replyTo: 'reply.a.2' })).toMatchObject({ type: 'queued', position: 1 });
    h.send(h.releaseReq('b', 'x', tb));
    expect(h.decisions[0]).toMatchObject({ type: 'reply', to: 'reply.a.2', body: { type: 'granted', re: a.id } });
  });
});

// ---- tokens, basis, time ------------------------------------------------------------------------------------

describe('fencing tokens', () => {
  it('starts above tokenFloor, and reserves a block before the first grant and again every tokenBlockSize tokens', () => {
    const h = new Harness({ tokenFloor: 100, tokenBlockSize: 4 });
    h.open('a');
    let ceiling = 100;
    const ceilings: number[] = [];
    const tokens: number[] = [];
    for (let i = 0; i < 13; i++) {
      h.hold('a', `l${i}`);
      for (const d of h.decisions) {
        if (d.type === 'reserve-tokens') {
          ceilings.push(d.ceiling);
          ceiling = d.ceiling;
        } else if (d.body.type === 'granted') {
          expect(d.body.token, 'a token is issued only once reserved').toBeLessThanOrEqual(ceiling);
          tokens.push(d.body.token);
        }
      }
    }
    expect(tokens).toEqual(Array.from({ length: 13 }, (_, i) => 101 + i));
    expect(ceilings[0]).toBe(104);
    // One block at a time; after 13 tokens, 4 blocks (the core may reserve the next one early).
    expect(ceilings).toEqual(Array.from({ length: ceilings.length }, (_, i) => 104 + 4 * i));
    expect(ceilings.length).toBeGreaterThanOrEqual(4);
    expect(ceilings.length).toBeLessThanOrEqual(5);
    expect(h.core.counts().lastToken).toBe(113);
  });

  it('increase per lock across holders, whatever ends each hold', () => {
    const h = new Harness();
    h.open('a', 'b', 'c');
    const t1 = h.hold('a', 'x', { ttlMs: 100 });
    h.queue('b', 'x');
    h.tick(100); // a's lease ends: b granted
    const t2 = h.core.inspect('x', h.now)?.holders[0]?.token ?? 0;
    h.queue('c', 'x');
    h.send(h.closeReq('b'));
    const t3 = h.core.inspect('x', h.now)?.holders[0]?.token ?? 0;
    expect([t1, t2, t3]).toEqual([1, 2, 3]);
  });
});

describe('basis and lease of a grant', () => {
  it('grants after waiting with the id of the latest request of the waiter\'s session as basis, and the full lease', () => {
    const h = new Harness();
    h.open('a', 'b');
    const ta = h.hold('a', 'x');
    const b = h.at(10).queue('b', 'x', { ttlMs: 700 });
    const hb = h.heartbeatReq('b');
    h.at(20).ask(hb);
    const replies = h.at(50).send(h.releaseReq('a', 'x', ta));
    expect(replies[0]).toEqual({ type: 'granted', re: b.id, lock: 'x', token: ta + 1, ttlMs: 700, basis: hb.id });
  });

  it('grants at once with the acquire itself as basis', () => {
    const h = new Harness();
    h.open('a');
    const a = h.acquireReq('a', 'x', { ttlMs: 700 });
    expect(h.ask(a)).toMatchObject({ ttlMs: 700, basis: a.id });
  });
});

describe('time', () => {
  it('nextDeadline() is the earliest pending deadline, and undefined when nothing is pending', () => {
    const h = new Harness();
    expect(h.core.nextDeadline()).toBeUndefined();
    h.ask(h.openReq('a', { sessionTtlMs: 1000 }));
    h.open('b');
    expect(h.core.nextDeadline()).toBe(1000);
    h.hold('b', 'x', { ttlMs: 600 });
    expect(h.core.nextDeadline()).toBe(600);
    h.at(100).queue('a', 'x', { waitMs: 200 });
    expect(h.core.nextDeadline()).toBe(300);
    h.tick(300);
    expect(h.core.nextDeadline()).toBe(600);
    h.tick(600);
    // a's acquire at 100 moved its session's deadline to 1100; nextDeadline() may name the old
    // one (the core re-keys lazily), never a later one, and a tick then finds nothing to do.
    expect(h.core.nextDeadline()).toBeLessThanOrEqual(1100);
    expect(h.tick(h.core.nextDeadline())).toEqual([]);
    expect(h.core.nextDeadline()).toBe(1100);
    h.tick(1100);
    expect(h.core.nextDeadline()).toBe(10_000);
    h.send(h.closeReq('b'));
    expect(h.core.nextDeadline()).toBeUndefined();
  });

  it('clamps time passed backwards: nothing expired comes back, and new deadlines count from the latest time', () => {
    const h = new Harness();
    h.open('a', 'b');
    const a = h.acquireReq('a', 'x', { ttlMs: 500 });
    const ta = (h.ask(a) as ReplyBody & { type: 'granted' }).token;
    expect(brief(h.tick(1000))).toEqual([`lost ${a.id} #${ta} LEASE_EXPIRED`]);
    expect(errorOf(h.at(200).ask(h.releaseReq('a', 'x', ta)))).toBe('LEASE_EXPIRED');
    const b = h.acquireReq('b', 'x', { ttlMs: 300 });
    expect(h.ask(b)).toMatchObject({ type: 'granted', ttlMs: 300 });
    expect(h.core.nextDeadline()).toBe(1300);
    expect(h.tick(1299)).toEqual([]);
    expect(brief(h.tick(1300))).toEqual([`lost ${b.id} #${ta + 1} LEASE_EXPIRED`]);
  });
});

describe('hand-off: the next waiter of a mutex is named to its holder', () => {
  type Successor = ReplyBody & { type: 'successor' };
  const successorIn = (replies: readonly ReplyBody[]) => replies.find((b): b is Successor => b.type === 'successor');

  it('names the first waiter with a reserved token and the grant to forward, and grants it that token on release', () => {
    const h = new Harness();
    h.open('a', 'b', 'c');
    const a = h.acquireReq('a', 'x');
    const ta = (h.ask(a) as ReplyBody & { type: 'granted' }).token;
    const b = h.acquireReq('b', 'x', { ttlMs: 7000 });
    const named = h.send(b);
    expect(h.decisions.find((d) => d.type === 'reply' && d.body.type === 'successor')).toMatchObject({ to: 'reply.a' });
    expect(successorIn(named)).toEqual({
      type: 'successor',
      re: a.id,
      lock: 'x',
      token: ta,
      next: { to: 'reply.b', grant: { type: 'granted', re: b.id, lock: 'x', token: ta + 1, ttlMs: 7000, basis: b.id } },
    });
    // Only the first waiter is named; a grant elsewhere meanwhile takes a later token.
    expect(successorIn(h.send(h.acquireReq('c', 'x')))).toBeUndefined();
    expect(h.hold('c', 'other')).toBe(ta + 2);
    expect(brief(h.send(h.releaseReq('a', 'x', ta))).slice(0, 1)).toEqual([`granted ${b.id} #${ta + 1}`]);
  });

  it("grants the named waiter its token when the holder's lease ends instead", () => {
    const h = new Harness();
    h.open('a', 'b');
    h.hold('a', 'x', { ttlMs: 500 });
    const b = h.acquireReq('b', 'x', { waitMs: 5000 });
    const token = successorIn(h.send(b))?.next?.grant.token;
    expect(brief(h.tick(500))).toEqual([expect.stringMatching(/^lost .* LEASE_EXPIRED$/), `granted ${b.id} #${token}`]);
  });

  it("completes the hand-off when the named waiter presents its token with the proof before the holder's release arrives", () => {
    const h = new Harness();
    h.open('a', 'b');
    const ta = h.hold('a', 'x');
    const b = h.acquireReq('b', 'x');
    const next = successorIn(h.send(b))?.next?.grant.token as number;
    // Without the forwarded grant's proof, the reserved token (guessable) is nobody's: a keeps it.
    expect(errorOf(h.ask(h.extendReq('b', 'x', next, 9000)))).toBe('NOT_HOLDER');
    expect(errorOf(h.ask(h.releaseReq('b', 'x', next)))).toBe('NOT_HOLDER');
    expect(h.core.detail('x', h.now)?.holders.map((x) => [x.session, x.token])).toEqual([['a', ta]]);
    // b took the forwarded grant and extends it (the runtime checked its proof): a's hold ends,
    // b holds, and a's release is late.
    const extend = { ...h.extendReq('b', 'x', next, 9000), handoff: true } as Request;
    expect(brief(h.send(extend))).toEqual([`granted ${b.id} #${next}`, `extended ${extend.id}`]);
    expect(h.core.detail('x', h.now)?.holders.map((x) => [x.session, x.token])).toEqual([['b', next]]);
    expect(errorOf(h.ask(h.releaseReq('a', 'x', ta)))).toBe('NOT_HOLDER');
    // The token only works for the named waiter's own session.
    const h2 = new Harness();
    h2.open('a', 'b', 'c');
    h2.hold('a', 'x');
    const t2 = successorIn(h2.send(h2.acquireReq('b', 'x')))?.next?.grant.token as number;
    expect(errorOf(h2.ask({ ...h2.releaseReq('c', 'x', t2), handoff: true } as Request))).toBe('NOT_HOLDER');
    expect(h2.core.detail('x', h2.now)?.holders.map((x) => x.session)).toEqual(['a']);
  });

  it('still grants a named waiter whose wait ran out (it may hold the forwarded grant), and nobody else meanwhile', () => {
    const h = new Harness();
    h.open('a', 'b', 'c');
    const ta = h.hold('a', 'x');
    const b = h.at(0).queue('b', 'x', { waitMs: 100 });
    const c = h.queue('c', 'x');
    expect(brief(h.tick(100))).toEqual([`error ${b.id} WAIT_TIMEOUT`]);
    const released = brief(h.at(200).send(h.releaseReq('a', 'x', ta)));
    expect(released[0]).toBe(`granted ${b.id} #${ta + 1}`);
    expect(h.core.detail('x', h.now)?.waiters.map((w) => w.request)).toEqual([c.id]);
    // b gives it back (its SDK no longer wants it): c is next, with the token it is named with now.
    const tc = successorIn(bodies(h.decisions))?.next?.grant.token;
    expect(brief(h.send(h.releaseReq('b', 'x', ta + 1)))[0]).toBe(`granted ${c.id} #${tc}`);
  });

  it('passes the name on when the named waiter cancels or its session ends, and tells the holder', () => {
    const h = new Harness();
    h.open('a', 'b', 'c');
    const ta = h.hold('a', 'x');
    const b = h.queue('b', 'x');
    const c = h.queue('c', 'x');
    const cancelled = h.send(h.cancelReq('b', 'x', b.id));
    const renamed = successorIn(cancelled);
    expect(renamed?.next?.grant.re).toBe(c.id);
    expect(h.ask(h.closeReq('c'))).toMatchObject({ type: 'ok' });
    expect(successorIn(bodies(h.decisions))).toEqual({ type: 'successor', re: expect.any(String), lock: 'x', token: ta });
    expect(brief(h.send(h.releaseReq('a', 'x', ta))).at(-1)).toMatch(/^released/);
    expect(h.core.inspect('x', h.now)).toBeNull();
  });

  it('names nobody on rwlocks and semaphores', () => {
    const h = new Harness();
    h.open('a', 'b', 'c', 'd');
    h.hold('a', 'rw', { kind: 'rwlock' });
    expect(successorIn(h.send(h.acquireReq('b', 'rw', { kind: 'rwlock' })))).toBeUndefined();
    const sem = { kind: 'semaphore', mode: 'shared', limit: 1, permits: 1 } as const;
    h.hold('c', 's', sem);
    expect(successorIn(h.send(h.acquireReq('d', 's', sem)))).toBeUndefined();
  });

  it('keeps the name across a snapshot and restore', () => {
    const h = new Harness();
    h.open('a', 'b');
    const ta = h.hold('a', 'x');
    const b = h.at(0).queue('b', 'x', { waitMs: 100 });
    h.tick(100); // b's wait runs out: it stays named
    const restored = LockCore.restore(h.core.snapshot(), { partition: 0, partitions: 1, epoch: 2, tokenFloor: 0, tokenBlockSize: 1000, limits: DEFAULT_CORE_LIMITS });
    const out: Decision[] = [];
    restored.handle(h.releaseReq('a', 'x', ta), 200, out);
    expect(brief(bodies(out))[0]).toBe(`granted ${b.id} #${ta + 1}`);
  });
});

describe('inspect', () => {
  it('shows any client who holds and waits, how and for how long, without session or request ids or the token counter', () => {
    const h = new Harness();
    h.open('a', 'b', 'c');
    const token = h.hold('a', 'x');
    h.queue('b', 'x');
    const lock = {
      lock: 'x',
      kind: 'mutex',
      limit: 1,
      holderCount: 1,
      waiterCount: 1,
      holders: [{ worker: 'w-a', token, mode: 'exclusive', permits: 1, ttlMs: 5000 }],
      waiters: [{ worker: 'w-b', mode: 'exclusive', permits: 1, position: 1, waitMs: 5000 }],
    };
    // Before: every holder's session, every waiter's session and request id, and `lastToken`
    // (here the token reserved for b as the named successor) went to whoever asked.
    const one = h.ask({ ...h.base('c'), op: 'inspect', lock: 'x' });
    expect(one).toEqual({ type: 'inspected', re: one.re, lock, counts: { locks: 1, holds: 1, waiters: 1, sessions: 3 } });
    const all = h.ask({ ...h.base('c'), op: 'inspect' });
    expect(all).toEqual({ type: 'inspected', re: all.re, counts: { locks: 1, holds: 1, waiters: 1, sessions: 3 } });
    // The coordinator's own view (the admin listener's) is the same lock view; its counts keep the counter.
    expect(h.core.inspect('x', h.now)).toEqual(lock);
    expect(h.core.counts()).toEqual({ locks: 1, holds: 1, waiters: 1, sessions: 3, lastToken: token + 1 });
  });
});

// ---- principals -----------------------------------------------------------------------------------------

/** `request` as sent by `principal` (the runtime puts the broker-vouched sender there). */
function as<T extends Request>(principal: string, request: T): T {
  return { ...request, principal };
}

describe('principals: sessions are keyed by (principal, session id)', () => {
  it("opens a session of the sender's own for an id another principal has, and each acts on its own", () => {
    const h = new Harness();
    expect(h.ask(as('P', h.openReq('a')))).toMatchObject({ type: 'opened', resumed: false });
    expect(h.ask(as('Q', h.openReq('a')))).toMatchObject({ type: 'opened', resumed: false }); // no squatting either way
    expect(h.ask(h.openReq('a'))).toMatchObject({ type: 'opened', resumed: false }); // no principal: the principal ""
    expect(h.core.counts().sessions).toBe(3);
    const tp = h.hold('a', 'x');
    const tq = (h.ask(as('Q', h.acquireReq('a', 'y'))) as ReplyBody & { type: 'granted' }).token;
    expect(h.core.detail('x', h.now)?.holders.map((x) => [x.principal, x.session])).toEqual([['', 'a']]);
    expect(h.core.detail('y', h.now)?.holders.map((x) => [x.principal, x.session])).toEqual([['Q', 'a']]);
    // Q's session "a" cannot release the hold of the "" principal's session "a": not its token.
    expect(errorOf(h.ask(as('Q', h.releaseReq('a', 'x', tp))))).toBe('NOT_HOLDER');
    expect(errorOf(h.ask(h.releaseReq('a', 'y', tq)))).toBe('NOT_HOLDER');
    // Closing Q's leaves the others' sessions and holds alone.
    expect(h.ask(as('Q', h.closeReq('a')))).toMatchObject({ type: 'ok' });
    expect(h.core.counts()).toMatchObject({ sessions: 2, holds: 1 });
    expect(h.ask(h.releaseReq('a', 'x', tp))).toMatchObject({ type: 'released' });
  });

  it("answers FORBIDDEN (field session) to every op naming another principal's session, changes nothing, remembers nothing", () => {
    const h = new Harness();
    h.ask(as('P', h.openReq('a')));
    h.ask(as('P', h.openReq('b')));
    const ta = (h.ask(as('P', h.acquireReq('a', 'x'))) as ReplyBody & { type: 'granted' }).token;
    const waiting = as('P', h.acquireReq('a', 'y'));
    h.ask(as('P', h.acquireReq('b', 'y')));
    expect(h.ask(waiting)).toMatchObject({ type: 'queued' });
    const attacks: Request[] = [
      h.releaseReq('a', 'x', ta),
      h.extendReq('a', 'x', ta, 10),
      h.cancelReq('a', 'y', waiting.id),
      h.heartbeatReq('a'),
      h.closeReq('a'),
      h.acquireReq('a', 'z'),
      { ...h.heartbeatReq('a'), settled: Number.MAX_SAFE_INTEGER, seq: 1 }, // a watermark far ahead
    ];
    // Everything but the clock, which the request moves like any other.
    const state = () => JSON.stringify({ ...h.core.snapshot(), now: 0 });
    for (const principal of ['Q', '']) {
      for (const attack of attacks) {
        const before = state();
        h.at(h.now + 10);
        expect(h.ask(as(principal, attack)), `${principal} ${attack.op}`).toMatchObject({ type: 'error', code: 'FORBIDDEN', field: 'session' });
        expect(h.decisions).toHaveLength(1);
        // Not even the session's deadline, reply address or watermark moved.
        expect(state(), `${principal} ${attack.op}`).toBe(before);
      }
    }
    // Nothing was remembered under those ids: P's own requests with the same ids are decided as new.
    expect(h.ask(as('P', { ...h.extendReq('a', 'x', ta, 10), id: attacks[1]?.id as string }))).toMatchObject({ type: 'extended' });
    expect(h.ask(as('P', { ...h.releaseReq('a', 'x', ta), id: attacks[0]?.id as string }))).toMatchObject({ type: 'released' });
  });

  it('answers NO_SESSION, not FORBIDDEN, for an id nobody has, or one its own principal has for another worker', () => {
    const h = new Harness();
    h.ask(as('P', h.openReq('a')));
    expect(errorOf(h.ask(as('Q', h.heartbeatReq('nobody'))))).toBe('NO_SESSION');
    // P's own session "a" belongs to worker w-a: another worker of P is not let in, and is not told whose it is.
    expect(errorOf(h.ask(as('P', { ...h.heartbeatReq('a'), worker: 'w-other' })))).toBe('NO_SESSION');
    // Q with a session "a" of its own and another worker id: its own session's rules apply.
    h.ask(as('Q', { ...h.openReq('a'), worker: 'w-q' }));
    expect(errorOf(h.ask(as('Q', h.heartbeatReq('a'))))).toBe('NO_SESSION');
    expect(h.ask(as('Q', { ...h.heartbeatReq('a'), worker: 'w-q' }))).toMatchObject({ type: 'ok' });
    // An open of P's id by P with another worker is still INVALID_FIELD, whatever Q has.
    expect(h.ask(as('P', { ...h.openReq('a'), worker: 'w-other' }))).toMatchObject({ code: 'INVALID_FIELD', field: 'session' });
  });

  it("keeps an expired token's LEASE_EXPIRED to the principal whose session held it", () => {
    const h = new Harness();
    h.ask(as('P', h.openReq('a')));
    h.ask(as('Q', h.openReq('a')));
    const t = (h.ask(as('P', h.acquireReq('a', 'x', { ttlMs: 100 }))) as ReplyBody & { type: 'granted' }).token;
    h.tick(100);
    expect(errorOf(h.ask(as('Q', h.releaseReq('a', 'x', t))))).toBe('NOT_HOLDER');
    expect(errorOf(h.ask(as('P', h.releaseReq('a', 'x', t))))).toBe('LEASE_EXPIRED');
  });

  it("never completes a hand-off early for another principal's session of the named waiter's id", () => {
    const h = new Harness();
    h.ask(as('P', h.openReq('a')));
    h.ask(as('P', h.openReq('b')));
    h.ask(as('Q', h.openReq('b')));
    const ta = (h.ask(as('P', h.acquireReq('a', 'x'))) as ReplyBody & { type: 'granted' }).token;
    const named = h.send(as('P', h.acquireReq('b', 'x')));
    const next = named.find((b): b is ReplyBody & { type: 'successor' } => b.type === 'successor')?.next?.grant.token as number;
    const forged = { ...as('Q', h.extendReq('b', 'x', next, 9000)), handoff: true } as Request;
    expect(errorOf(h.ask(forged))).toBe('NOT_HOLDER');
    expect(h.core.detail('x', h.now)?.holders.map((x) => [x.principal, x.session, x.token])).toEqual([['P', 'a', ta]]);
    const real = { ...as('P', h.extendReq('b', 'x', next, 9000)), handoff: true } as Request;
    expect(h.ask(real)).toMatchObject({ type: 'extended' });
    expect(h.decisions.find((d) => d.type === 'reply' && d.body.type === 'granted')).toBeDefined();
  });

  it('keeps principals across a snapshot and restore; a snapshot without them is all the principal ""', () => {
    const h = new Harness();
    h.ask(as('P', h.openReq('a')));
    h.ask(as('Q', h.openReq('a')));
    const tp = (h.ask(as('P', h.acquireReq('a', 'x'))) as ReplyBody & { type: 'granted' }).token;
    const wq = as('Q', h.acquireReq('a', 'x'));
    expect(h.ask(wq)).toMatchObject({ type: 'queued' });
    const options = { partition: 0, partitions: 1, epoch: 2, tokenFloor: 0, tokenBlockSize: 1000, limits: DEFAULT_CORE_LIMITS };
    const snap = JSON.parse(JSON.stringify(h.core.snapshot())) as ReturnType<LockCore['snapshot']>;
    expect(snap.sessions.map((x) => [x.principal, x.id])).toEqual([['P', 'a'], ['Q', 'a']]);
    const restored = LockCore.restore(snap, options);
    expect(restored.snapshot()).toEqual(h.core.snapshot());
    const out: Decision[] = [];
    restored.handle(as('Q', h.releaseReq('a', 'x', tp)), h.now, out);
    expect(brief(bodies(out))).toEqual([expect.stringMatching(/NOT_HOLDER$/)]);
    out.length = 0;
    restored.handle(as('P', h.releaseReq('a', 'x', tp)), h.now, out);
    expect(brief(bodies(out))[0]).toBe(`granted ${wq.id} #${tp + 1}`);
    // An older snapshot: no principal anywhere. Its sessions are the principal ""'s.
    const old = new Harness();
    old.open('a');
    const t = old.hold('a', 'x');
    const strip = (v: unknown): unknown =>
      Array.isArray(v) ? v.map(strip) : v !== null && typeof v === 'object' ? Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'principal').map(([k, x]) => [k, strip(x)])) : v;
    const legacy = strip(JSON.parse(JSON.stringify(old.core.snapshot()))) as ReturnType<LockCore['snapshot']>;
    expect(JSON.stringify(legacy)).not.toContain('principal');
    const back = LockCore.restore(legacy, options);
    expect(back.snapshot()).toEqual(old.core.snapshot());
    const o2: Decision[] = [];
    back.handle(old.releaseReq('a', 'x', t), old.now, o2);
    expect(brief(bodies(o2))).toEqual([`released ${(o2[0] as Decision & { type: 'reply' }).body.re} #${t}`]);
  });
});

describe('per-principal quotas', () => {
  const quota = (body: ReplyBody) => (body.type === 'error' ? `${body.code} ${body.field ?? ''}`.trim() : body.type);

  it('sessions: an open of a new session beyond maxSessionsPerPrincipal, before the partition-wide maxSessions', () => {
    const h = new Harness({ limits: { maxSessionsPerPrincipal: 2, maxSessions: 3 } });
    h.ask(as('P', h.openReq('a')));
    h.ask(as('P', h.openReq('b')));
    expect(quota(h.ask(as('P', h.openReq('c'))))).toBe('QUOTA_EXCEEDED sessions');
    expect(h.ask(as('P', h.openReq('a')))).toMatchObject({ type: 'opened', resumed: true }); // resuming is not a new session
    expect(quota(h.ask(as('Q', h.openReq('c'))))).toBe('opened');
    expect(quota(h.ask(as('Q', h.openReq('d'))))).toBe('TOO_MANY_SESSIONS');
    expect(quota(h.ask(as('P', h.openReq('d'))))).toBe('QUOTA_EXCEEDED sessions'); // its own quota first
    expect(h.ask(as('P', h.closeReq('b')))).toMatchObject({ type: 'ok' });
    expect(quota(h.ask(as('P', h.openReq('c'))))).toBe('opened');
    expect(h.core.usage('P')).toEqual({ sessions: 2, holds: 0, waits: 0, names: 0 });
  });

  it('the anonymous principal (identity off) is everyone: only the partition-wide caps apply to it', () => {
    const h = new Harness({ limits: { maxSessionsPerPrincipal: 1, maxHoldsPerPrincipal: 1, maxWaitsPerPrincipal: 1, maxLockWaitsPerPrincipal: 1, maxNamesPerPrincipal: 1, maxSessions: 3 } });
    for (const s of ['a', 'b', 'c']) expect(quota(h.ask(h.openReq(s)))).toBe('opened');
    expect(quota(h.ask(h.openReq('d')))).toBe('TOO_MANY_SESSIONS');
    expect(quota(h.ask(h.acquireReq('a', 'x')))).toBe('granted');
    expect(quota(h.ask(h.acquireReq('a', 'y')))).toBe('granted');
    expect(quota(h.ask(h.acquireReq('b', 'x')))).toBe('queued');
    expect(quota(h.ask(h.acquireReq('c', 'x')))).toBe('queued');
  });

  it('holds: holds plus waits of all its sessions beyond maxHoldsPerPrincipal, after the per-session check', () => {
    const h = new Harness({ limits: { maxHoldsPerPrincipal: 3, maxHoldsPerSession: 2 } });
    for (const s of ['a', 'b']) h.ask(as('P', h.openReq(s)));
    h.ask(as('Q', h.openReq('q')));
    h.ask(as('Q', h.acquireReq('q', 'busy')));
    h.ask(as('P', h.acquireReq('a', 'x')));
    h.ask(as('P', h.acquireReq('a', 'y')));
    expect(quota(h.ask(as('P', h.acquireReq('a', 'z'))))).toBe('TOO_MANY_HOLDS'); // the session's own limit first
    expect(quota(h.ask(as('P', h.acquireReq('b', 'busy'))))).toBe('queued'); // a wait counts as a hold
    expect(quota(h.ask(as('P', h.acquireReq('b', 'z'))))).toBe('QUOTA_EXCEEDED holds'); // would be granted
    expect(quota(h.ask(as('P', h.acquireReq('b', 'busy'))))).toBe('QUOTA_EXCEEDED holds'); // would queue
    expect(quota(h.ask(as('Q', h.acquireReq('q', 'z'))))).toBe('granted'); // another principal's count
    expect(h.core.usage('P')).toEqual({ sessions: 2, holds: 2, waits: 1, names: 3 });
  });

  it('waits: waiting acquires of all its sessions beyond maxWaitsPerPrincipal; holds are not waits', () => {
    const h = new Harness({ limits: { maxWaitsPerPrincipal: 2 } });
    for (const s of ['a', 'b', 'c']) h.ask(as('P', h.openReq(s)));
    h.ask(as('Q', h.openReq('q')));
    for (const l of ['x', 'y', 'z']) h.ask(as('Q', h.acquireReq('q', l)));
    h.ask(as('P', h.acquireReq('a', 'x')));
    h.ask(as('P', h.acquireReq('b', 'y')));
    expect(quota(h.ask(as('P', h.acquireReq('c', 'z'))))).toBe('QUOTA_EXCEEDED waits');
    expect(quota(h.ask(as('P', h.acquireReq('c', 'free'))))).toBe('granted');
    expect(quota(h.ask(as('Q', h.acquireReq('q', 'z'))))).toBe('queued');
  });

  it('lockWaits: one principal may not fill a lock\'s queue; others still queue, and it may queue elsewhere', () => {
    const h = new Harness({ limits: { maxLockWaitsPerPrincipal: 2, maxWaitersPerLock: 4 } });
    for (const s of ['a', 'b', 'c']) h.ask(as('P', h.openReq(s)));
    for (const s of ['q1', 'q2', 'q3']) h.ask(as('Q', h.openReq(s)));
    h.ask(as('Q', h.acquireReq('q1', 'x')));
    h.ask(as('Q', h.acquireReq('q1', 'y')));
    expect(quota(h.ask(as('P', h.acquireReq('a', 'x'))))).toBe('queued');
    expect(quota(h.ask(as('P', h.acquireReq('b', 'x'))))).toBe('queued');
    expect(quota(h.ask(as('P', h.acquireReq('c', 'x'))))).toBe('QUOTA_EXCEEDED lockWaits');
    expect(quota(h.ask(as('P', h.acquireReq('c', 'y'))))).toBe('queued');
    expect(quota(h.ask(as('Q', h.acquireReq('q2', 'x'))))).toBe('queued');
    expect(quota(h.ask(as('Q', h.acquireReq('q3', 'x'))))).toBe('queued');
    expect(quota(h.ask(as('Q', h.acquireReq('q3', 'x'))))).toBe('QUEUE_FULL'); // the lock's own limit first
    // Granted from the queue, a waiter no longer counts against the lock's share.
    h.ask(as('Q', h.releaseReq('q1', 'x', 1)));
    expect(quota(h.ask(as('P', h.acquireReq('c', 'x'))))).toBe('queued');
  });

  it('names: a lock new to the principal beyond maxNamesPerPrincipal; locks it already holds or awaits are not new', () => {
    const h = new Harness({ limits: { maxNamesPerPrincipal: 2 } });
    for (const s of ['a', 'b']) h.ask(as('P', h.openReq(s)));
    h.ask(as('Q', h.openReq('q')));
    const sem = { kind: 'semaphore', mode: 'shared', limit: 3 } as const;
    const tx = (h.ask(as('P', h.acquireReq('a', 'x'))) as ReplyBody & { type: 'granted' }).token;
    h.ask(as('P', h.acquireReq('a', 's', sem)));
    expect(quota(h.ask(as('P', h.acquireReq('b', 'z'))))).toBe('QUOTA_EXCEEDED names');
    expect(quota(h.ask(as('P', h.acquireReq('b', 's', sem))))).toBe('granted'); // held already: not a new name
    expect(quota(h.ask(as('P', h.acquireReq('b', 'x'))))).toBe('queued'); // likewise
    h.ask(as('Q', h.acquireReq('q', 'z')));
    expect(quota(h.ask(as('P', h.acquireReq('b', 'z', { waitMs: 0 }))))).toBe('LOCK_BUSY'); // the lock's answer first
    expect(quota(h.ask(as('P', h.acquireReq('b', 'z'))))).toBe('QUOTA_EXCEEDED names'); // would queue on a new name
    expect(h.core.usage('P')).toMatchObject({ names: 2 });
    // Released and granted on: x stays one of P's names (b holds it now) until b lets go too.
    h.ask(as('P', h.releaseReq('a', 'x', tx)));
    expect(h.core.usage('P')).toMatchObject({ holds: 3, waits: 0, names: 2 });
  });

  it('leave the state as it was (the sender refreshed and the answer remembered, like any refusal)', () => {
    const h = new Harness({ limits: { maxSessionsPerPrincipal: 2, maxHoldsPerPrincipal: 3, maxWaitsPerPrincipal: 1, maxLockWaitsPerPrincipal: 1, maxNamesPerPrincipal: 2 } });
    const sem = { kind: 'semaphore', mode: 'shared', limit: 3 } as const;
    for (const s of ['a', 'b']) h.ask(as('P', h.openReq(s)));
    h.ask(as('Q', h.openReq('q')));
    h.ask(as('Q', h.acquireReq('q', 'x')));
    h.ask(as('Q', h.acquireReq('q', 'y')));
    h.ask(as('P', h.acquireReq('a', 'x'))); // queued
    h.ask(as('P', h.acquireReq('a', 'v', sem)));
    const expectRefused = (code: string, request: Request) => {
      const before = h.snapshot('x', 'y', 'v', 'w');
      const usage = h.core.usage('P');
      expect(quota(h.ask(request)), code).toBe(code);
      expect(h.decisions, code).toHaveLength(1);
      expect(h.snapshot('x', 'y', 'v', 'w'), code).toBe(before);
      expect(h.core.usage('P'), code).toEqual(usage);
      // A duplicate gets the same answer (an open's refusal is not remembered: no session to keep it).
      if (request.op !== 'open') expect(quota(h.ask(request)), code).toBe(code);
    };
    expectRefused('QUOTA_EXCEEDED sessions', as('P', h.openReq('c')));
    expectRefused('QUOTA_EXCEEDED lockWaits', as('P', h.acquireReq('b', 'x')));
    expectRefused('QUOTA_EXCEEDED waits', as('P', h.acquireReq('b', 'y')));
    expectRefused('QUOTA_EXCEEDED names', as('P', h.acquireReq('b', 'w')));
    h.ask(as('P', h.acquireReq('b', 'v', sem))); // granted: 2 holds and a wait
    expectRefused('QUOTA_EXCEEDED holds', as('P', h.acquireReq('b', 'v', sem)));
  });

  it('derive maxLockWaitsPerPrincipal from maxWaitersPerLock when only that is given', () => {
    expect(DEFAULT_CORE_LIMITS.maxLockWaitsPerPrincipal).toBe(DEFAULT_CORE_LIMITS.maxWaitersPerLock / 4);
    expect(coreLimits({ maxWaitersPerLock: 400 }).maxLockWaitsPerPrincipal).toBe(100);
    expect(coreLimits({ maxWaitersPerLock: 2 }).maxLockWaitsPerPrincipal).toBe(1);
    expect(coreLimits({ maxWaitersPerLock: 400, maxLockWaitsPerPrincipal: 400 }).maxLockWaitsPerPrincipal).toBe(400);
    expect(coreLimits()).toEqual(DEFAULT_CORE_LIMITS);
  });

  it('fit the default deployment: 1,000 workers sharing one principal, a session each, holding 20 locks each', () => {
    const h = new Harness();
    for (let i = 0; i < 1000; i++) expect(h.ask(as('guest', h.openReq(`s${i}`))).type).toBe('opened');
    for (let i = 0; i < 1000; i++) {
      for (let l = 0; l < 20; l++) expect(h.ask(as('guest', h.acquireReq(`s${i}`, `lock-${i}-${l}`))).type).toBe('granted');
    }
    expect(h.core.usage('guest')).toEqual({ sessions: 1000, holds: 20_000, waits: 0, names: 20_000 });
    expect(quota(h.ask(as('guest', h.openReq('one-more'))))).toBe('QUOTA_EXCEEDED sessions');
    expect(quota(h.ask(as('guest', h.acquireReq('s0', 'one-more'))))).toBe('QUOTA_EXCEEDED holds');
  });

  it('forget a principal with its last session', () => {
    const h = new Harness();
    h.ask(as('P', h.openReq('a', { sessionTtlMs: 100 })));
    h.ask(as('P', h.acquireReq('a', 'x')));
    expect(h.core.usage('P')).toEqual({ sessions: 1, holds: 1, waits: 0, names: 1 });
    h.tick(100);
    expect(h.core.usage('P')).toBeUndefined();
  });
});
