import type { AcquireRequest, LockKind, LockMode, ReplyBody, Request } from '@lockq/protocol';
import { FifoQueue } from './fifo-index.js';

/*
 * What a partition's state is made of, and the one place each piece is built. Live decisions and
 * restoring a snapshot both build through these functions, so a restored piece is the same
 * object, of the same shape (one hidden class per kind, which keeps the hot paths monomorphic),
 * as one made live. A piece is built detached (`live` false); `PartitionState` attaches it.
 */

/**
 * One principal's share of a partition (docs/security.md §5.3, §7): its sessions, by id, and
 * the counts its quotas are checked against. Sessions are keyed by (principal, session id), so
 * another principal cannot name them. Kept while the principal has a session.
 */
export interface Principal {
  /** The broker-vouched sender; `""` when the coordinator runs with identity off. */
  readonly name: string;
  readonly sessions: Map<string, Session>;
  /** Holds of its sessions. */
  holds: number;
  /** Waiting acquires of its sessions. */
  waits: number;
  /** Locks it holds or awaits (each name once). */
  names: number;
}

export interface Session {
  readonly kind: 'session';
  readonly principal: Principal;
  readonly id: string;
  readonly worker: string;
  replyTo: string;
  ttlMs: number;
  deadline: number;
  /** Id of the latest request processed from this session: the `basis` of its grants. */
  lastRequest: string;
  /** The worker's watermark: it needs no answer to a request numbered at or below this. */
  settled: number;
  /** By token. A session may hold one lock several times (tasks of one process share a client). */
  readonly holds: Map<number, Hold>;
  /** By request id. */
  readonly waits: Map<string, Waiter>;
  /** Remembered answers by request id (idempotency); kept by the memo table. */
  readonly memos: Map<string, Memo>;
  /** Memos of numbered requests, in arrival order: forgotten as the worker's watermark passes them. */
  readonly numbered: FifoQueue<Memo>;
  /** Registered in its partition. */
  live: boolean;
  /** The next live session of the same id, of another principal (see `PartitionState`). */
  sameId: Session | undefined;
}

/** A lock with a holder or a waiter. Recycled once idle (see `PartitionState`), so not readonly. */
export interface LockState {
  name: string;
  kind: LockKind;
  limit: number;
  /** Permits in use (semaphore) or number of holders (mutex, rwlock). */
  used: number;
  exclusiveHeld: boolean;
  readonly holders: Map<number, Hold>;
  head: Waiter | null;
  tail: Waiter | null;
  waiting: number;
  /** Mutex only: the waiter named to the holder as next (see {@link Successor}). */
  next: Successor | null;
  /**
   * The first principal with a hold or waiter here, with how many (`userUses`) and how many of
   * them wait; any others in `otherUsers` (see lock-users.ts).
   */
  user: Principal | null;
  userUses: number;
  userWaits: number;
  otherUsers: Map<Principal, LockUse> | null;
  /** The named waiter left the queue: the holder is to be told who is next now, if anyone. */
  retell: boolean;
}

/** A principal's holds plus waiters on a lock (`uses`), and its waiters alone (see lock-users.ts). */
export interface LockUse {
  uses: number;
  waits: number;
}

/**
 * The waiter a contended mutex's holder was told is next, with the token reserved for it. The
 * holder forwards that grant to the waiter as it releases (one hop instead of a round trip
 * through the request queue), so whatever ends the hold, the named waiter gets this token here
 * too: it may already hold the lock by the forwarded copy. For the same reason a named waiter
 * whose wait runs out stays named and is still granted (its SDK gives a grant it no longer
 * wants back at once); only cancelling (its SDK then refuses a forwarded grant) or the end of
 * its session (which ends its holds anyway) lets the name pass to the next waiter.
 */
export interface Successor {
  readonly holder: Hold;
  readonly waiter: Waiter;
  readonly token: number;
  timedOut: boolean;
}

export interface Hold {
  readonly kind: 'hold';
  readonly lock: LockState;
  readonly session: Session;
  readonly token: number;
  readonly mode: LockMode;
  readonly permits: number;
  /** Id of the acquire it answers. */
  readonly request: string;
  readonly grantedAt: number;
  deadline: number;
  /** Held: in its lock's and its session's holders. */
  live: boolean;
}

export interface Waiter {
  readonly kind: 'waiter';
  readonly lock: LockState;
  readonly session: Session;
  readonly request: AcquireRequest;
  readonly queuedAt: number;
  readonly deadline: number;
  /** The acquire's remembered answer: this wait while it lasts, then how it ended. Set once, when built. */
  memo: Memo;
  prev: Waiter | null;
  next: Waiter | null;
  /** Waiting: in its lock's queue and its session's waits. */
  live: boolean;
}

/** A remembered answer: final, or the live wait or hold it turned into. */
export interface Memo {
  readonly request: Request;
  readonly session: Session;
  outcome: ReplyBody | Waiter | Hold;
  /** When it was made or last kept alive: it ages out of the dedupe window from here. */
  at: number;
}

/** What has a deadline in the partition's schedule. */
export type Expiring = Session | Hold | Waiter;

/** A session's own fields: what an `open` gives it, and what a snapshot keeps of it. */
export interface SessionInit {
  /** Its principal's name (see {@link Principal}). */
  readonly principal: string;
  readonly id: string;
  readonly worker: string;
  readonly replyTo: string;
  readonly ttlMs: number;
  readonly deadline: number;
  readonly lastRequest: string;
  readonly settled: number;
}

export function createPrincipal(name: string): Principal {
  return { name, sessions: new Map(), holds: 0, waits: 0, names: 0 };
}

/** `principal` is the record of `init.principal`. */
export function createSession(init: SessionInit, principal: Principal): Session {
  return {
    kind: 'session',
    principal,
    id: init.id,
    worker: init.worker,
    replyTo: init.replyTo,
    ttlMs: init.ttlMs,
    deadline: init.deadline,
    lastRequest: init.lastRequest,
    settled: init.settled,
    holds: new Map(),
    waits: new Map(),
    memos: new Map(),
    numbered: new FifoQueue(),
    live: false,
    sameId: undefined,
  };
}

/** An idle lock: no holders, no waiters, nothing in use. */
export function createLock(name: string, kind: LockKind, limit: number): LockState {
  return {
    name,
    kind,
    limit,
    used: 0,
    exclusiveHeld: false,
    holders: new Map(),
    head: null,
    tail: null,
    waiting: 0,
    next: null,
    retell: false,
    user: null,
    userUses: 0,
    userWaits: 0,
    otherUsers: null,
  };
}

/** Positional, not an options object: a grant builds one on every acquire. */
export function createHold(
  lock: LockState,
  session: Session,
  token: number,
  mode: LockMode,
  permits: number,
  request: string,
  grantedAt: number,
  deadline: number,
): Hold {
  return { kind: 'hold', lock, session, token, mode, permits, request, grantedAt, deadline, live: false };
}

/**
 * A waiter for `request`, with `memo` as its remembered answer; without one, a new memo whose
 * outcome is this wait, made at `queuedAt`.
 */
export function createWaiter(
  lock: LockState,
  session: Session,
  request: AcquireRequest,
  queuedAt: number,
  deadline: number,
  memo?: Memo,
): Waiter {
  const waiter: Waiter = {
    kind: 'waiter',
    lock,
    session,
    request,
    queuedAt,
    deadline,
    memo: memo as Memo,
    prev: null,
    next: null,
    live: false,
  };
  if (memo === undefined) waiter.memo = createMemo(request, session, waiter, queuedAt);
  return waiter;
}

export function createMemo(request: Request, session: Session, outcome: Memo['outcome'], at: number): Memo {
  return { request, session, outcome, at };
}

export function createSuccessor(holder: Hold, waiter: Waiter, token: number, timedOut: boolean): Successor {
  return { holder, waiter, token, timedOut };
}
