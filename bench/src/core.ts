import type { AcquireRequest, ReleaseRequest, Request } from '@lockq/protocol';
import { DEFAULT_CORE_LIMITS, type Decision, LockCore } from '@lockq/coordinator/core';

const SESSIONS = 64;

function newCore(): { core: LockCore; out: Decision[] } {
  seqs.fill(0);
  const core = new LockCore({
    partition: 0,
    partitions: 1,
    epoch: 1,
    tokenFloor: 0,
    tokenBlockSize: 10_000,
    limits: DEFAULT_CORE_LIMITS,
  });
  const out: Decision[] = [];
  for (let s = 0; s < SESSIONS; s++) {
    core.handle({ v: 1, op: 'open', id: `o${s}`, worker: `w${s}`, session: `s${s}`, replyTo: `r${s}`, sessionTtlMs: 600_000, partitions: 1 }, 0, out);
  }
  return { core, out };
}

/**
 * Requests are numbered per session with the watermark the SDK sends: each session has its
 * earlier answers by the time it sends the next request, so `settled` is one behind `seq`.
 */
const seqs = new Array<number>(SESSIONS).fill(0);
function numbered(s: number): { seq: number; settled: number } {
  const seq = ++(seqs[s] as number);
  return { seq, settled: seq - 1 };
}

function acquire(id: number, s: number, lock: string): AcquireRequest {
  return { v: 1, op: 'acquire', id: `a${id}`, worker: `w${s}`, session: `s${s}`, replyTo: `r${s}`, ...numbered(s), lock, kind: 'mutex', mode: 'exclusive', limit: 1, permits: 1, ttlMs: 600_000, waitMs: 600_000 };
}
function release(id: number, s: number, lock: string, token: number): ReleaseRequest {
  return { v: 1, op: 'release', id: `r${id}`, worker: `w${s}`, session: `s${s}`, replyTo: `r${s}`, ...numbered(s), lock, token };
}

/**
 * Core decisions per second on one hot lock with 64 sessions queued: each step the holder
 * releases (the head waiter is granted) and re-queues at the tail. Two requests per step.
 */
export function hotLock(seconds: number): number {
  const { core, out } = newCore();
  const tokens: number[] = new Array(SESSIONS).fill(0);
  let id = 0;
  let now = 1;
  for (let s = 0; s < SESSIONS; s++) core.handle(acquire(id++, s, 'hot'), now, out);
  const grantOf = (o: Decision[]) => {
    for (const d of o) if (d.type === 'reply' && d.body.type === 'granted') tokens[Number(d.to.slice(1))] = d.body.token;
    o.length = 0;
  };
  grantOf(out);
  const holder = 0;
  let decisions = 0;
  let elapsed = 0;
  // Requests are built outside the timed section: this measures the core, not the harness.
  // Release tokens are only known once granted, so each batch covers one full turn of the queue.
  while (elapsed < seconds * 1000) {
    const batch: Request[] = [];
    for (let i = 0; i < SESSIONS; i++) {
      const s = (holder + i) % SESSIONS;
      batch.push(release(id++, s, 'hot', tokens[s] as number), acquire(id++, s, 'hot'));
    }
    const t0 = performance.now();
    for (const r of batch) {
      now += 0.001;
      core.handle(r, now, out);
    }
    elapsed += performance.now() - t0;
    grantOf(out);
    decisions += batch.length;
  }
  return decisions / (elapsed / 1000);
}

/** Core decisions per second acquiring and releasing 10,000 distinct locks, uncontended. */
export function distinctLocks(seconds: number): number {
  const { core, out } = newCore();
  const names = Array.from({ length: 10_000 }, (_, i) => `lock:${i}`);
  let id = 0;
  let now = 1;
  let decisions = 0;
  let k = 0;
  let elapsed = 0;
  // As above, requests are built outside the timed section: acquires of 1,000 locks (granted at
  // once, tokens predictable), then their releases.
  while (elapsed < seconds * 1000) {
    const acquires: Request[] = [];
    for (let i = 0; i < 1000; i++, k++) acquires.push(acquire(id++, k % SESSIONS, names[k % names.length] as string));
    const first = core.counts().lastToken + 1;
    const releases = acquires.map((a, i) => release(id++, Number(a.session.slice(1)), (a as AcquireRequest).lock, first + i));
    const t0 = performance.now();
    for (const r of acquires) {
      now += 0.001;
      core.handle(r, now, out);
    }
    out.length = 0;
    for (const r of releases) {
      now += 0.001;
      core.handle(r, now, out);
    }
    elapsed += performance.now() - t0;
    out.length = 0;
    decisions += 2000;
  }
  return decisions / (elapsed / 1000);
}
