import { createHash } from 'node:crypto';
import type { ReplyBody, Request } from '@lockq/protocol';
import type { CoreLimits, CoreSnapshot, LockCore, MemoSnapshot, SessionSnapshot } from '../../src/core/index.js';

/*
 * The state of a core, and what a refused request may change in it.
 *
 * The state is the core's snapshot: everything a restored core needs to behave exactly as the
 * original (sessions, holds, waiters and named successors, the token counter and its ceiling,
 * the memo table, the expired-token notes, the clock). What it leaves out cannot change on a
 * refused request either: the deadline schedule (entries are re-keyed lazily and never dropped
 * early) and a lock's "tell the holder nobody is next" flag (set only when a waiter leaves).
 */

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
/** A snapshot whose sessions and memo list can be edited (to build an expected state). */
export type State = Omit<Mutable<CoreSnapshot>, 'sessions' | 'memos'> & { sessions: Mutable<SessionSnapshot>[]; memos: MemoSnapshot[] };

/** A deep copy of the core's state as plain JSON. */
export function stateOf(core: LockCore): State {
  return JSON.parse(JSON.stringify(core.snapshot())) as State;
}

/** A short fingerprint of a state: equal states, equal digests (the snapshot's orders are canonical). */
export function digestOf(state: CoreSnapshot): string {
  return createHash('sha256').update(JSON.stringify(state)).digest('hex').slice(0, 16);
}

/**
 * The state `before` turns into when the core answers `request`, at `now`, with an error
 * (`answer`), or, for a stale duplicate, with nothing (`answer` undefined). `before` must already
 * be pruned at `now` (the memo table and expired-token notes forget what aged out on any request
 * but inspect; see core.fuzz.test.ts). What may change, from docs/protocol.md and the core:
 *
 * 0. Nothing at all when the request names no session of its own principal's: `NO_SESSION`, or
 *    `FORBIDDEN` when the id is another principal's session (docs/security.md §5.3).
 * 1. The sender's watermark (§8.1): when the request comes from a known session (its principal,
 *    id **and** worker id) with a higher `settled`, the session keeps it and forgets its numbered
 *    answers at or below it, oldest first, up to the first one above it. This happens before
 *    anything else is looked at, whatever the request is then answered (a stale duplicate, a
 *    conflict, an error).
 * 2. The sender's liveness (§7.2): a request that got past the session check and was decided,
 *    whatever its answer, and a replayed duplicate refresh the session: deadline = now + its
 *    ttl, and its reply address and latest request become this request's. `NO_SESSION`,
 *    `FORBIDDEN`, `IDEMPOTENCY_CONFLICT`, a stale duplicate and an `open` refused for its
 *    partition count (the first time; its replayed duplicate does) do not.
 * 3. The memo table (§8): a decided error is remembered under the request's id, in its session,
 *    so a duplicate gets the same answer (an `open` refused for its partition count too), unless
 *    it is `NO_SESSION` or `FORBIDDEN` (no session of the sender's keeps it); a replay, a
 *    conflict and a stale duplicate remember nothing new. A new numbered memo beyond the
 *    session's cap (`maxUnsettledPerSession`) pushes out its oldest. A refused `open` (quota,
 *    `TOO_MANY_SESSIONS`) has no session yet, so nothing is kept of it.
 *
 * Nothing else changes: no hold, waiter, successor, lock, token, ceiling, other session, other
 * memo or expired-token note.
 */
export function afterRefusal(before: CoreSnapshot, request: Request, answer: ReplyBody | undefined, now: number, limits: CoreLimits): State {
  const after = JSON.parse(JSON.stringify(before)) as State;
  if (request.op === 'inspect') return after;
  const principal = request.principal ?? '';
  const sender = after.sessions.find((s) => (s.principal ?? '') === principal && s.id === request.session && s.worker === request.worker);
  if (sender === undefined) return after;
  const ofSession = (m: MemoSnapshot, s: SessionSnapshot) => (m.principal ?? '') === (s.principal ?? '') && m.session === s.id;
  const numberedOf = (memos: readonly MemoSnapshot[]) => memos.filter((m) => ofSession(m, sender) && m.request.seq !== undefined);
  const forget = (memo: MemoSnapshot | undefined) => {
    after.memos = after.memos.filter((m) => m !== memo);
  };

  if (request.settled !== undefined && request.settled > sender.settled) {
    sender.settled = request.settled;
    for (const m of numberedOf(after.memos)) {
      if ((m.request.seq as number) > request.settled) break;
      forget(m);
    }
  }
  if (answer === undefined) return after; // a stale duplicate
  if (answer.type === 'error' && answer.code === 'IDEMPOTENCY_CONFLICT') return after;

  const replayed = after.memos.some((m) => ofSession(m, sender) && m.request.id === request.id);
  const refusedOpen = request.op === 'open' && answer.type === 'error' && answer.code === 'WRONG_PARTITION';
  if (replayed || !refusedOpen) {
    sender.deadline = now + sender.ttlMs;
    sender.replyTo = request.replyTo;
    sender.lastRequest = request.id;
  }
  if (replayed || request.op === 'heartbeat' || (answer.type === 'error' && answer.code === 'NO_SESSION')) return after;

  // Unnumbered memos first, oldest first; then each session's numbered ones, in session order.
  const memo: MemoSnapshot = { principal, session: sender.id, request, at: now, outcome: { body: answer } };
  const unnumbered = after.memos.filter((m) => m.request.seq === undefined);
  if (request.seq === undefined) unnumbered.push(memo);
  const numbered = after.sessions.flatMap((s) => {
    const own = after.memos.filter((m) => ofSession(m, s) && m.request.seq !== undefined);
    if (s !== sender || request.seq === undefined) return own;
    own.push(memo);
    return own.length > limits.maxUnsettledPerSession ? own.slice(1) : own;
  });
  after.memos = JSON.parse(JSON.stringify([...unnumbered, ...numbered])) as MemoSnapshot[];
  return after;
}
