import type { AcquireRequest, LockKind, LockMode, ReplyBody, Request } from '@lockq/protocol';
import { createMemo, createSuccessor, createWaiter, type Hold, type LockState, type Memo, type Session, type SessionInit } from './entities.js';
import type { ExpiredTokens } from './expired-tokens.js';
import type { MemoTable } from './memo-table.js';
import type { CoreOptions } from './options.js';
import type { PartitionState } from './partition-state.js';
import { error } from './replies.js';

/**
 * A core's whole state as plain JSON: what the durable store keeps, and what a new coordinator
 * restores before replaying the journal. Waiters are listed in queue order and memos oldest
 * first, so a restored core behaves exactly as the original would have.
 *
 * A session is named by its principal and id wherever it appears (sessions are keyed by both,
 * docs/security.md §5.3). Snapshots taken before principals existed have no `principal` fields:
 * restored, every session is the principal `""`'s (identity off).
 */
export interface CoreSnapshot {
  readonly version: 1;
  readonly partition: number;
  readonly partitions: number;
  /** The core's clock when the snapshot was taken. */
  readonly now: number;
  readonly lastToken: number;
  readonly tokenCeiling: number;
  readonly sessions: readonly SessionSnapshot[];
  readonly locks: readonly LockSnapshot[];
  readonly memos: readonly MemoSnapshot[];
  readonly expiredTokens: readonly { readonly token: number; readonly principal?: string; readonly session: string; readonly at: number }[];
}

/** A session's own fields, which are all a snapshot keeps of it (`principal` absent: `""`). */
export type SessionSnapshot = Omit<SessionInit, 'principal'> & { readonly principal?: string };

export interface LockSnapshot {
  readonly name: string;
  readonly kind: LockKind;
  readonly limit: number;
  readonly holders: readonly {
    readonly token: number;
    readonly principal?: string;
    readonly session: string;
    readonly mode: LockMode;
    readonly permits: number;
    readonly request: string;
    readonly grantedAt: number;
    readonly deadline: number;
  }[];
  readonly waiters: readonly {
    readonly principal?: string;
    readonly session: string;
    readonly request: AcquireRequest;
    readonly queuedAt: number;
    readonly deadline: number;
  }[];
  /**
   * Mutex only: the waiter named to the holder (by its token) as next, with the token reserved
   * for it. First in line while it waits; `timedOut` once its wait ran out (it is no longer in
   * `waiters` but still gets the lock when the holder is done).
   */
  readonly next?: {
    readonly holder: number;
    readonly principal?: string;
    readonly session: string;
    readonly request: AcquireRequest;
    readonly queuedAt: number;
    readonly deadline: number;
    readonly token: number;
    readonly timedOut: boolean;
  };
}

export interface MemoSnapshot {
  readonly principal?: string;
  readonly session: string;
  readonly request: Request;
  readonly at: number;
  /** A final answer, or the hold (by token) or wait (by request id) the request became. */
  readonly outcome: { readonly body: ReplyBody } | { readonly hold: number } | { readonly waiter: string };
}

/** How the parts of a snapshot name a session. */
interface SessionRef {
  readonly principal?: string;
  readonly session: string;
}

// ---- taking and restoring ---------------------------------------------------------------------

/** The core's own counters, kept beside its parts. */
export interface SnapshotHead {
  readonly partition: number;
  readonly partitions: number;
  readonly now: number;
  readonly lastToken: number;
  readonly tokenCeiling: number;
}

/** Throws unless `snapshot` is of the partition `options` describe. */
export function checkFits(snapshot: CoreSnapshot, options: Pick<CoreOptions, 'partition' | 'partitions'>): void {
  if (snapshot.version !== 1 || snapshot.partition !== options.partition || snapshot.partitions !== options.partitions) {
    throw new RangeError(`snapshot of partition ${snapshot.partition}/${snapshot.partitions} does not fit ${options.partition}/${options.partitions}`);
  }
}

/** `head` and the parts as plain JSON, in the orders that restore them to the same behaviour. */
export function snapshotOf(head: SnapshotHead, state: PartitionState, memos: MemoTable, expired: ExpiredTokens): CoreSnapshot {
  const locks: LockSnapshot[] = [];
  for (const lock of state.locks.values()) {
    const waiters: LockSnapshot['waiters'][number][] = [];
    for (let w = lock.head; w !== null; w = w.next) {
      waiters.push({ principal: w.session.principal.name, session: w.session.id, request: w.request, queuedAt: w.queuedAt, deadline: w.deadline });
    }
    const named = lock.next;
    locks.push({
      name: lock.name,
      kind: lock.kind,
      limit: lock.limit,
      ...(named === null
        ? {}
        : {
            next: {
              holder: named.holder.token,
              principal: named.waiter.session.principal.name,
              session: named.waiter.session.id,
              request: named.waiter.request,
              queuedAt: named.waiter.queuedAt,
              deadline: named.waiter.deadline,
              token: named.token,
              timedOut: named.timedOut,
            },
          }),
      holders: [...lock.holders.values()].map((h) => ({
        token: h.token,
        principal: h.session.principal.name,
        session: h.session.id,
        mode: h.mode,
        permits: h.permits,
        request: h.request,
        grantedAt: h.grantedAt,
        deadline: h.deadline,
      })),
      waiters,
    });
  }
  const remembered: MemoSnapshot[] = [];
  for (const m of memos.entries(state.sessions())) {
    const o = m.outcome;
    const outcome: MemoSnapshot['outcome'] =
      'type' in o
        ? { body: o }
        : o.kind === 'waiter'
          ? { waiter: o.request.id }
          : o.live
            ? { hold: o.token }
            : { body: error(m.request.id, 'LEASE_EXPIRED') }; // what a duplicate is answered (see recall)
    remembered.push({ principal: m.session.principal.name, session: m.session.id, request: m.request, at: m.at, outcome });
  }
  return {
    version: 1,
    partition: head.partition,
    partitions: head.partitions,
    now: head.now,
    lastToken: head.lastToken,
    tokenCeiling: head.tokenCeiling,
    sessions: [...state.sessions()].map((s) => ({
      principal: s.principal.name,
      id: s.id,
      worker: s.worker,
      replyTo: s.replyTo,
      ttlMs: s.ttlMs,
      deadline: s.deadline,
      lastRequest: s.lastRequest,
      settled: s.settled,
    })),
    locks,
    memos: remembered,
    expiredTokens: expired.entries(head.now),
  };
}

/**
 * Rebuilds in the empty `state`, `memos` and `expired` what `snap` describes, through the same
 * constructors live decisions use. The core's counters (`SnapshotHead`) are the caller's.
 */
export function restoreInto(snap: CoreSnapshot, state: PartitionState, memos: MemoTable, expired: ExpiredTokens): void {
  for (const s of snap.sessions) state.addSession({ ...s, principal: s.principal ?? '' });
  const sessionOf = (ref: SessionRef): Session => {
    const s = state.session(ref.principal ?? '', ref.session);
    if (s === undefined) throw new RangeError(`snapshot refers to unknown session ${ref.session} of principal ${JSON.stringify(ref.principal ?? '')}`);
    return s;
  };
  /** A waiter's key: its session's and its request id. */
  const keyOf = (ref: SessionRef, request: string) => `${ref.principal ?? ''}\u0000${ref.session}\u0000${request}`;
  const holds = new Map<number, Hold>();
  /** Memos of waiters, by session and request id: a memo listed as a wait is the waiter's own. */
  const waits = new Map<string, Memo>();
  for (const l of snap.locks) {
    const lock = state.addLock(l.name, l.kind, l.limit);
    for (const h of l.holders) {
      holds.set(h.token, state.addHold(lock, sessionOf(h), h.token, h.mode, h.permits, h.request, h.grantedAt, h.deadline));
    }
    for (const w of l.waiters) {
      const waiter = state.addWaiter(lock, sessionOf(w), w.request, w.queuedAt, w.deadline);
      waits.set(keyOf(w, w.request.id), waiter.memo);
    }
  }
  for (const m of snap.memos) {
    const session = sessionOf(m);
    if ('waiter' in m.outcome) {
      const memo = waits.get(keyOf(m, m.request.id));
      if (memo === undefined) throw new RangeError(`snapshot memo refers to unknown waiter ${m.outcome.waiter}`);
      memo.at = m.at;
      memos.add(memo);
    } else {
      const outcome = 'body' in m.outcome ? m.outcome.body : holds.get(m.outcome.hold);
      if (outcome === undefined) throw new RangeError(`snapshot memo refers to unknown hold ${String(m.outcome)}`);
      memos.remember(session, m.request, outcome, m.at);
    }
  }
  // Named successors last: a waiter whose wait ran out is found through its memo, if kept.
  for (const l of snap.locks) {
    const n = l.next;
    if (n === undefined) continue;
    const lock = state.locks.get(l.name) as LockState;
    const holder = holds.get(n.holder);
    if (holder === undefined) throw new RangeError(`snapshot names a successor of unknown hold ${n.holder}`);
    let waiter = lock.head;
    if (n.timedOut) {
      // Off the queue already: built, not queued.
      const session = sessionOf(n);
      const memo = memos.get(session, n.request.id) ?? createMemo(n.request, session, error(n.request.id, 'WAIT_TIMEOUT'), snap.now);
      waiter = createWaiter(lock, session, n.request, n.queuedAt, n.deadline, memo);
    } else if (waiter === null || waiter.request.id !== n.request.id || waiter.session !== sessionOf(n)) {
      throw new RangeError(`snapshot names ${n.request.id} successor on ${l.name} but it is not first in line`);
    }
    lock.next = createSuccessor(holder, waiter, n.token, n.timedOut);
  }
  for (const e of snap.expiredTokens) expired.add(e.token, { principal: e.principal ?? '', session: e.session }, e.at);
}
