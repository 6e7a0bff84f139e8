import {
  type AcquireRequest,
  type CancelRequest,
  ERROR_CODES,
  type ErrorCode,
  type ExtendRequest,
  type HolderView,
  INSPECT_MAX_LISTED,
  type InspectRequest,
  type LockKind,
  type LockMode,
  type LockView,
  type LostEvent,
  type OpenRequest,
  type PartitionCounts,
  partitionOf,
  type ReleaseRequest,
  type ReplyBody,
  type Request,
  type WaiterView,
} from '@lockq/protocol';
import { DeadlineHeap } from './deadline-heap.js';
import { FifoQueue } from './fifo-index.js';
import type { CoreLimits, CoreOptions } from './options.js';
import type { CoreSnapshot, LockSnapshot, MemoSnapshot } from './snapshot.js';

/**
 * What the core decided. The runtime persists reservations before it publishes any reply.
 * Replies that end a wait or a hold say how long it lasted, for metrics (never on the wire).
 */
export type Decision =
  | {
      readonly type: 'reply';
      readonly to: string;
      readonly body: ReplyBody;
      /** On a grant: how long the request waited in the queue. */
      readonly waitedMs?: number;
      /** On a release or a lost hold: how long it was held. */
      readonly heldMs?: number;
    }
  | { readonly type: 'reserve-tokens'; readonly ceiling: number };

interface Session {
  readonly kind: 'session';
  readonly id: string;
  readonly worker: string;
  replyTo: string;
  ttlMs: number;
  deadline: number;
  /** Id of the latest request processed from this session: the `basis` of its grants. */
  lastRequest: string;
  /** By token. A session may hold one lock several times (tasks of one process share a client). */
  readonly holds: Map<number, Hold>;
  /** By request id. */
  readonly waits: Map<string, Waiter>;
  /** Remembered answers by request id (idempotency). */
  readonly memos: Map<string, Memo>;
  /** Memos of numbered requests, in arrival order: forgotten as the worker's watermark passes them. */
  readonly numbered: FifoQueue<Memo>;
  /** The worker's watermark: it needs no answer to a request numbered at or below this. */
  settled: number;
  live: boolean;
}

/** A lock with a holder or a waiter. Recycled once idle (see `#freeLocks`), so not readonly. */
interface LockState {
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
  /** The named waiter left the queue: the holder is to be told who is next now, if anyone. */
  retell: boolean;
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
interface Successor {
  readonly holder: Hold;
  readonly waiter: Waiter;
  readonly token: number;
  timedOut: boolean;
}

interface Hold {
  readonly kind: 'hold';
  readonly lock: LockState;
  readonly session: Session;
  readonly token: number;
  readonly mode: LockMode;
  readonly permits: number;
  readonly request: string;
  readonly grantedAt: number;
  deadline: number;
  live: boolean;
}

interface Waiter {
  readonly kind: 'waiter';
  readonly lock: LockState;
  readonly session: Session;
  readonly request: AcquireRequest;
  readonly queuedAt: number;
  readonly deadline: number;
  readonly memo: Memo;
  prev: Waiter | null;
  next: Waiter | null;
  live: boolean;
}

/** A remembered answer: final, or the live wait/hold it turned into. */
interface Memo {
  readonly request: Request;
  readonly session: Session;
  outcome: ReplyBody | Waiter | Hold;
  at: number;
}

type Expiring = Session | Hold | Waiter;

/**
 * The pure lock state machine of one partition: `(state, request, now) -> decisions`.
 *
 * It never reads a clock, never does I/O and never throws on input: every request, however
 * wrong, ends in exactly one answer. Time only moves when the caller says so, and anything due
 * at or before `now` is expired before a request at `now` is looked at.
 */
export class LockCore {
  readonly partition: number;
  readonly partitions: number;
  readonly epoch: number;
  readonly #limits: CoreLimits;
  readonly #blockSize: number;
  readonly #sessions = new Map<string, Session>();
  readonly #locks = new Map<string, LockState>();
  /** Idle lock entries kept for reuse. */
  readonly #freeLocks: LockState[] = [];
  /** Every live memo, oldest first, for ageing them out. */
  readonly #memoQueue = new FifoQueue<Memo>();
  #memoCount = 0;
  /** token -> session id, for holds whose lease ran out, so late release/extend say LEASE_EXPIRED. */
  readonly #expiredTokens = new Map<number, string>();
  readonly #expiredQueue = new FifoQueue<{ readonly token: number; readonly at: number }>();
  readonly #heap = new DeadlineHeap<Expiring>();
  #lastToken: number;
  #tokenCeiling: number;
  #now = Number.NEGATIVE_INFINITY;
  /** How long the hold the latest release ended was held (read by handle() for its decision). */
  #releasedHeldMs = 0;
  #holdCount = 0;
  #waiterCount = 0;

  constructor(options: CoreOptions) {
    this.partition = options.partition;
    this.partitions = options.partitions;
    this.epoch = options.epoch;
    this.#limits = options.limits;
    this.#blockSize = options.tokenBlockSize;
    this.#lastToken = options.tokenFloor;
    this.#tokenCeiling = options.tokenFloor;
  }

  /** Applies one decoded request at time `now` (ms, non-decreasing), appending decisions to `out`. */
  handle(request: Request, now: number, out: Decision[]): void {
    now = this.#advance(now, out);
    if (request.op === 'inspect') {
      const body: ReplyBody =
        request.lock === undefined
          ? { type: 'inspected', re: request.id, counts: this.counts() }
          : { type: 'inspected', re: request.id, lock: this.inspect(request.lock, now, INSPECT_MAX_LISTED), counts: this.counts() };
      out.push({ type: 'reply', to: request.replyTo, body });
      return;
    }
    // Not for inspect: a read changes nothing but what its own time expired, so a runtime may
    // leave it out of the journal.
    this.#pruneMemos(now);
    const session = this.#sessions.get(request.session);
    const known = session !== undefined && session.worker === request.worker ? session : undefined;
    if (known !== undefined) {
      if (request.settled !== undefined && request.settled > known.settled) this.#settle(known, request.settled);
      if (request.seq !== undefined && request.seq <= known.settled) {
        this.#stale(known, request, now, out);
        return;
      }
    }
    const memo = known?.memos.get(request.id);
    if (memo !== undefined) {
      this.#replay(memo, request, now, out);
      return;
    }
    const body = request.op === 'open' ? this.#open(request, now) : this.#decide(known, request, now, out);
    out.push(
      body.type === 'released'
        ? { type: 'reply', to: request.replyTo, body, heldMs: this.#releasedHeldMs }
        : { type: 'reply', to: request.replyTo, body },
    );
    if (request.op !== 'heartbeat' && body.type !== 'queued' && !(body.type === 'error' && body.code === 'NO_SESSION')) {
      const owner = this.#sessions.get(request.session);
      if (owner !== undefined && owner.worker === request.worker) {
        this.#remember(owner, request, now, body.type === 'granted' ? this.#holdOf(body) : body);
      }
    }
  }

  /** Expires everything due at or before `now`. */
  tick(now: number, out: Decision[]): void {
    this.#advance(now, out);
  }

  /** The earliest time at which `tick` may have something to do, or undefined when nothing is pending. */
  nextDeadline(): number | undefined {
    for (;;) {
      const top = this.#heap.peek();
      if (top === undefined) return undefined;
      if (top.ref.live) return top.at;
      this.#heap.pop();
    }
  }

  counts(): PartitionCounts {
    return {
      locks: this.#locks.size,
      holds: this.#holdCount,
      waiters: this.#waiterCount,
      sessions: this.#sessions.size,
      lastToken: this.#lastToken,
    };
  }

  /**
   * Holders and waiters of one lock (the first `maxListed` of each, in order), or null when
   * nobody holds or waits for it.
   */
  inspect(name: string, now: number, maxListed = Number.POSITIVE_INFINITY): LockView | null {
    const lock = this.#locks.get(name);
    if (lock === undefined) return null;
    const holders: HolderView[] = [];
    for (const h of lock.holders.values()) {
      if (holders.length >= maxListed) break;
      holders.push({
        worker: h.session.worker,
        session: h.session.id,
        token: h.token,
        mode: h.mode,
        permits: h.permits,
        ttlMs: Math.max(0, Math.floor(h.deadline - now)),
      });
    }
    const waiters: WaiterView[] = [];
    let position = 0;
    for (let w = lock.head; w !== null && position < maxListed; w = w.next) {
      waiters.push({
        worker: w.session.worker,
        session: w.session.id,
        request: w.request.id,
        mode: w.request.mode,
        permits: w.request.permits,
        position: ++position,
        waitMs: Math.max(0, Math.floor(w.deadline - now)),
      });
    }
    return {
      lock: lock.name,
      kind: lock.kind,
      limit: lock.limit,
      holderCount: lock.holders.size,
      waiterCount: lock.waiting,
      holders,
      waiters,
    };
  }

  /** Names of every lock with a holder or a waiter. */
  lockNames(): IterableIterator<string> {
    return this.#locks.keys();
  }

  /**
   * Ends everything: each waiting acquire is answered SHUTTING_DOWN and each holder told its
   * hold is lost. For a coordinator whose state dies with it (no durable store): whoever runs the
   * partition next starts empty, so no lease from this one can be trusted past this point.
   */
  shutdown(now: number, out: Decision[]): void {
    now = this.#advance(now, out);
    const sessions = [...this.#sessions.values()].sort((a, b) => compare(a.id, b.id));
    for (const session of sessions) {
      session.live = false;
      const waits = [...session.waits.values()].sort((a, b) => compare(a.request.id, b.request.id));
      for (const w of waits) this.#dropWaiter(w, 'SHUTTING_DOWN', out);
      const holds = [...session.holds.values()].sort((a, b) => a.token - b.token);
      for (const h of holds) {
        this.#dropHold(h);
        out.push(lost(h, 'SHUTTING_DOWN', now));
      }
    }
    this.#sessions.clear();
    this.#locks.clear();
  }

  /** The core's clock: the latest `now` it was given. */
  get now(): number {
    return this.#now;
  }

  /**
   * After a take-over: skip every token up to `floor` (any of them may have been issued by the
   * previous term), so the next grant is above it.
   */
  raiseTokenFloor(floor: number): void {
    if (floor > this.#lastToken) this.#lastToken = floor;
    if (this.#tokenCeiling < this.#lastToken) this.#tokenCeiling = this.#lastToken;
  }

  /** The whole state as plain JSON (see {@link CoreSnapshot}). */
  snapshot(): CoreSnapshot {
    const locks: LockSnapshot[] = [];
    for (const lock of this.#locks.values()) {
      const waiters: LockSnapshot['waiters'][number][] = [];
      for (let w = lock.head; w !== null; w = w.next) {
        waiters.push({ session: w.session.id, request: w.request, queuedAt: w.queuedAt, deadline: w.deadline });
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
    const memos: MemoSnapshot[] = [];
    const numbered = [...this.#sessions.values()].flatMap((s) => [...s.numbered.items()]);
    for (const m of [...this.#memoQueue.items(), ...numbered]) {
      if (!m.session.live || m.session.memos.get(m.request.id) !== m) continue;
      const o = m.outcome;
      const outcome: MemoSnapshot['outcome'] =
        'type' in o
          ? { body: o }
          : o.kind === 'waiter'
            ? { waiter: o.request.id }
            : o.live
              ? { hold: o.token }
              : { body: error(m.request.id, 'LEASE_EXPIRED') }; // what #replay answers for it
      memos.push({ session: m.session.id, request: m.request, at: m.at, outcome });
    }
    const expiredAt = new Map<number, number>();
    for (const e of this.#expiredQueue.items()) expiredAt.set(e.token, e.at);
    return {
      version: 1,
      partition: this.partition,
      partitions: this.partitions,
      now: this.#now,
      lastToken: this.#lastToken,
      tokenCeiling: this.#tokenCeiling,
      sessions: [...this.#sessions.values()].map((s) => ({
        id: s.id,
        worker: s.worker,
        replyTo: s.replyTo,
        ttlMs: s.ttlMs,
        deadline: s.deadline,
        lastRequest: s.lastRequest,
        settled: s.settled,
      })),
      locks,
      memos,
      expiredTokens: [...this.#expiredTokens].map(([token, session]) => ({ token, session, at: expiredAt.get(token) ?? this.#now })),
    };
  }

  /** A core in exactly the state `snapshot` describes, in a new term (`options.epoch`). */
  static restore(snapshot: CoreSnapshot, options: CoreOptions): LockCore {
    if (snapshot.version !== 1 || snapshot.partition !== options.partition || snapshot.partitions !== options.partitions) {
      throw new RangeError(`snapshot of partition ${snapshot.partition}/${snapshot.partitions} does not fit ${options.partition}/${options.partitions}`);
    }
    const core = new LockCore(options);
    core.#load(snapshot);
    core.raiseTokenFloor(options.tokenFloor);
    return core;
  }

  #load(snap: CoreSnapshot): void {
    this.#now = snap.now;
    this.#lastToken = snap.lastToken;
    this.#tokenCeiling = snap.tokenCeiling;
    for (const s of snap.sessions) {
      const session: Session = {
        kind: 'session',
        ...s,
        holds: new Map(),
        waits: new Map(),
        memos: new Map(),
        numbered: new FifoQueue(),
        live: true,
      };
      this.#sessions.set(s.id, session);
      this.#heap.push(session.deadline, session);
    }
    const sessionOf = (id: string): Session => {
      const s = this.#sessions.get(id);
      if (s === undefined) throw new RangeError(`snapshot refers to unknown session ${id}`);
      return s;
    };
    const holds = new Map<number, Hold>();
    const memoOf = new Map<string, Memo>();
    for (const l of snap.locks) {
      const lock = this.#newLock({ lock: l.name, kind: l.kind, limit: l.limit });
      for (const h of l.holders) {
        const session = sessionOf(h.session);
        const hold: Hold = {
          kind: 'hold',
          lock,
          session,
          token: h.token,
          mode: h.mode,
          permits: h.permits,
          request: h.request,
          grantedAt: h.grantedAt,
          deadline: h.deadline,
          live: true,
        };
        lock.holders.set(hold.token, hold);
        lock.used += hold.permits;
        if (hold.mode === 'exclusive') lock.exclusiveHeld = true;
        session.holds.set(hold.token, hold);
        holds.set(hold.token, hold);
        this.#holdCount++;
        this.#heap.push(hold.deadline, hold);
      }
      for (const w of l.waiters) {
        const session = sessionOf(w.session);
        const memo: Memo = { request: w.request, session, outcome: null as unknown as Waiter, at: w.queuedAt };
        this.#enqueue(lock, session, w.request, w.queuedAt, w.deadline, memo);
        memoOf.set(`${w.session}\u0000${w.request.id}`, memo);
      }
    }
    for (const m of snap.memos) {
      const session = sessionOf(m.session);
      const key = `${m.session}\u0000${m.request.id}`;
      let memo: Memo;
      if ('waiter' in m.outcome) {
        const existing = memoOf.get(key);
        if (existing === undefined) throw new RangeError(`snapshot memo refers to unknown waiter ${m.outcome.waiter}`);
        memo = existing;
        memo.at = m.at;
      } else {
        const outcome = 'body' in m.outcome ? m.outcome.body : holds.get(m.outcome.hold);
        if (outcome === undefined) throw new RangeError(`snapshot memo refers to unknown hold ${String(m.outcome)}`);
        memo = { request: m.request, session, outcome, at: m.at };
      }
      this.#addMemo(memo);
    }
    // Named successors last: a waiter whose wait ran out is found through its memo, if kept.
    for (const l of snap.locks) {
      if (l.next === undefined) continue;
      const lock = this.#locks.get(l.name) as LockState;
      const n = l.next;
      const holder = holds.get(n.holder);
      if (holder === undefined) throw new RangeError(`snapshot names a successor of unknown hold ${n.holder}`);
      let waiter = lock.head;
      if (n.timedOut) {
        const session = sessionOf(n.session);
        const memo = session.memos.get(n.request.id) ?? { request: n.request, session, outcome: error(n.request.id, 'WAIT_TIMEOUT'), at: this.#now };
        waiter = { kind: 'waiter', lock, session, request: n.request, queuedAt: n.queuedAt, deadline: n.deadline, memo, prev: null, next: null, live: false };
      } else if (waiter === null || waiter.request.id !== n.request.id || waiter.session.id !== n.session) {
        throw new RangeError(`snapshot names ${n.request.id} successor on ${l.name} but it is not first in line`);
      }
      lock.next = { holder, waiter, token: n.token, timedOut: n.timedOut };
    }
    for (const e of snap.expiredTokens) {
      this.#expiredTokens.set(e.token, e.session);
      this.#expiredQueue.push({ token: e.token, at: e.at });
    }
  }

  // ---- requests -------------------------------------------------------------------------------

  #decide(
    session: Session | undefined,
    request: Exclude<Request, InspectRequest | OpenRequest>,
    now: number,
    out: Decision[],
  ): ReplyBody {
    if (session === undefined) return error(request.id, 'NO_SESSION');
    session.deadline = now + session.ttlMs;
    session.replyTo = request.replyTo;
    session.lastRequest = request.id;
    switch (request.op) {
      case 'heartbeat':
        return { type: 'ok', re: request.id };
      case 'close': {
        const touched = new Set<LockState>();
        this.#endSession(session, 'CANCELLED', now, out, touched);
        this.#drainAll(touched, now, out);
        return { type: 'ok', re: request.id };
      }
      case 'acquire':
        return this.#owned(request.lock) ? this.#acquire(session, request, now, out) : wrongPartition(request.id);
      case 'release':
        return this.#owned(request.lock) ? this.#release(session, request, now, out) : wrongPartition(request.id);
      case 'extend':
        return this.#owned(request.lock) ? this.#extend(session, request, now, out) : wrongPartition(request.id);
      case 'cancel':
        return this.#owned(request.lock) ? this.#cancel(session, request, now, out) : wrongPartition(request.id);
    }
  }

  #owned(lock: string): boolean {
    return this.partitions <= 1 || partitionOf(lock, this.partitions) === this.partition;
  }

  #open(request: OpenRequest, now: number): ReplyBody {
    if (request.partitions !== this.partitions) return error(request.id, 'WRONG_PARTITION', 'partitions');
    let session = this.#sessions.get(request.session);
    const resumed = session !== undefined;
    if (session !== undefined) {
      if (session.worker !== request.worker) return error(request.id, 'INVALID_FIELD', 'session');
      session.ttlMs = request.sessionTtlMs;
    } else {
      if (this.#sessions.size >= this.#limits.maxSessions) return error(request.id, 'TOO_MANY_SESSIONS');
      session = {
        kind: 'session',
        id: request.session,
        worker: request.worker,
        replyTo: request.replyTo,
        ttlMs: request.sessionTtlMs,
        deadline: 0,
        lastRequest: request.id,
        holds: new Map(),
        waits: new Map(),
        memos: new Map(),
        numbered: new FifoQueue(),
        settled: 0,
        live: true,
      };
      this.#sessions.set(session.id, session);
    }
    session.replyTo = request.replyTo;
    session.lastRequest = request.id;
    const previous = session.deadline;
    session.deadline = now + session.ttlMs;
    // A new session needs its heap entry; a resumed one needs another if its deadline moved earlier.
    if (!resumed || session.deadline < previous) this.#heap.push(session.deadline, session);
    return { type: 'opened', re: request.id, session: session.id, resumed, sessionTtlMs: session.ttlMs };
  }

  #acquire(session: Session, req: AcquireRequest, now: number, out: Decision[]): ReplyBody {
    const existing = this.#locks.get(req.lock);
    if (existing !== undefined) {
      if (existing.kind !== req.kind) return error(req.id, 'KIND_MISMATCH', 'kind');
      if (existing.limit !== req.limit) return error(req.id, 'LIMIT_MISMATCH', 'limit');
    }
    const busy = session.holds.size + session.waits.size >= this.#limits.maxHoldsPerSession;
    // A lock nobody holds or awaits always fits (the codec keeps permits within the limit).
    if (existing === undefined || (existing.head === null && fits(existing, req.mode, req.permits))) {
      if (busy) return error(req.id, 'TOO_MANY_HOLDS');
      const lock = existing ?? this.#newLock(req);
      const hold = this.#grant(lock, session, req, now, this.#nextToken(out));
      return granted(req.id, hold, now, session.lastRequest);
    }
    const lock = existing;
    if (req.waitMs === 0) return error(req.id, 'LOCK_BUSY');
    if (lock.waiting >= this.#limits.maxWaitersPerLock) return error(req.id, 'QUEUE_FULL');
    if (session.waits.size >= this.#limits.maxWaitsPerSession) return error(req.id, 'TOO_MANY_WAITS');
    if (busy) return error(req.id, 'TOO_MANY_HOLDS');
    // The memo is made here, not in handle(), so the waiter can point at it.
    const memo: Memo = { request: req, session, outcome: null as unknown as Waiter, at: now };
    this.#enqueue(lock, session, req, now, now + req.waitMs, memo);
    this.#addMemo(memo);
    this.#nameSuccessor(lock, out);
    return { type: 'queued', re: req.id, lock: lock.name, position: lock.waiting };
  }

  #release(session: Session, req: ReleaseRequest, now: number, out: Decision[]): ReplyBody {
    const hold = this.#holdFor(session, req, now, out);
    if (hold === undefined || hold.session !== session) return this.#notHeld(session, req);
    this.#dropHold(hold);
    this.#releasedHeldMs = now - hold.grantedAt;
    this.#drain(hold.lock, now, out);
    return { type: 'released', re: req.id, lock: req.lock, token: req.token };
  }

  #extend(session: Session, req: ExtendRequest, now: number, out: Decision[]): ReplyBody {
    const hold = this.#holdFor(session, req, now, out);
    if (hold === undefined || hold.session !== session) return this.#notHeld(session, req);
    const deadline = now + req.ttlMs;
    // The heap entry stays at the old deadline and is re-queued when it pops (lazy re-key); a
    // shorter lease needs an entry of its own.
    if (deadline < hold.deadline) this.#heap.push(deadline, hold);
    hold.deadline = deadline;
    return { type: 'extended', re: req.id, lock: req.lock, token: req.token, ttlMs: req.ttlMs, basis: req.id };
  }

  /**
   * The hold a release or extend names. A named successor presenting its reserved token got it
   * from the holder's forwarded grant, which the holder sends only as it releases: its request
   * may overtake the holder's release (they travel separately), so the hand-off completes here.
   */
  #holdFor(session: Session, req: ReleaseRequest | ExtendRequest, now: number, out: Decision[]): Hold | undefined {
    const lock = this.#locks.get(req.lock);
    if (lock === undefined) return undefined;
    const named = lock.next;
    if (named !== null && named.token === req.token && named.waiter.session === session && named.holder.live) {
      this.#dropHold(named.holder);
      this.#drain(lock, now, out); // grants the named waiter: the lock stays in use
    }
    return lock.holders.get(req.token);
  }

  #notHeld(session: Session, req: ReleaseRequest | ExtendRequest): ReplyBody {
    const expired = this.#expiredTokens.get(req.token);
    return error(req.id, expired === session.id ? 'LEASE_EXPIRED' : 'NOT_HOLDER');
  }

  #cancel(session: Session, req: CancelRequest, now: number, out: Decision[]): ReplyBody {
    const waiter = session.waits.get(req.target);
    if (waiter === undefined || waiter.lock.name !== req.lock) return error(req.id, 'NOT_WAITING');
    this.#dropWaiter(waiter, 'CANCELLED', out);
    this.#drain(waiter.lock, now, out);
    return { type: 'cancelled', re: req.id, lock: req.lock };
  }

  // ---- idempotency ------------------------------------------------------------------------------

  #remember(session: Session, request: Request, now: number, outcome: Memo['outcome']): void {
    this.#addMemo({ request, session, outcome, at: now });
  }

  #addMemo(memo: Memo): void {
    const session = memo.session;
    session.memos.set(memo.request.id, memo);
    if (memo.request.seq === undefined) {
      this.#memoQueue.push(memo);
      this.#memoCount++;
      return;
    }
    // A worker that numbers its requests but never settles them is held to a cap.
    session.numbered.push(memo);
    if (session.numbered.length > this.#limits.maxUnsettledPerSession) this.#forget(session.numbered.shift());
  }

  #forget(memo: Memo | undefined): void {
    if (memo !== undefined && memo.session.memos.get(memo.request.id) === memo) memo.session.memos.delete(memo.request.id);
  }

  /** The worker has the answers up to `settled`: forget them. */
  #settle(session: Session, settled: number): void {
    session.settled = settled;
    for (let m = session.numbered.peek(); m !== undefined && (m.request.seq as number) <= settled; m = session.numbered.peek()) {
      this.#forget(session.numbered.shift());
    }
  }

  /**
   * A request at or below the watermark is a duplicate whose answer the worker already has,
   * except a re-sent acquire that still waits or was granted meanwhile: it gets its current state.
   */
  #stale(session: Session, request: Request, now: number, out: Decision[]): void {
    if (request.op !== 'acquire') return;
    const waiter = session.waits.get(request.id);
    let body: ReplyBody | undefined;
    if (waiter !== undefined) {
      body = { type: 'queued', re: request.id, lock: waiter.lock.name, position: positionOf(waiter) };
    } else {
      for (const h of session.holds.values()) if (h.request === request.id) body = granted(request.id, h, now, request.id);
    }
    if (body !== undefined) out.push({ type: 'reply', to: request.replyTo, body });
  }

  #holdOf(body: ReplyBody & { type: 'granted' }): Hold | ReplyBody {
    return this.#locks.get(body.lock)?.holders.get(body.token) ?? body;
  }

  #replay(memo: Memo, request: Request, now: number, out: Decision[]): void {
    if (!samePayload(memo.request, request)) {
      out.push({ type: 'reply', to: request.replyTo, body: error(request.id, 'IDEMPOTENCY_CONFLICT') });
      return;
    }
    const session = memo.session;
    session.deadline = now + session.ttlMs;
    session.replyTo = request.replyTo;
    session.lastRequest = request.id;
    const outcome = memo.outcome;
    let body: ReplyBody;
    if ('type' in outcome) {
      body = outcome;
    } else if (outcome.kind === 'waiter') {
      body = { type: 'queued', re: request.id, lock: outcome.lock.name, position: positionOf(outcome) };
    } else {
      // The same grant, with what is left of its lease measured now and this duplicate as basis.
      body = outcome.live ? granted(request.id, outcome, now, request.id) : error(request.id, 'LEASE_EXPIRED');
    }
    out.push({ type: 'reply', to: request.replyTo, body });
  }

  // ---- grants, queues and expiry --------------------------------------------------------------

  /** The next fencing token of the partition. */
  #nextToken(out: Decision[]): number {
    // Reserve the next block while half of this one is left, so the ceiling is durable well
    // before the tokens under it are issued (a lost journal tail then cannot repeat a token).
    if (this.#lastToken + 1 > this.#tokenCeiling - this.#blockSize / 2) {
      this.#tokenCeiling = Math.max(this.#tokenCeiling, this.#lastToken) + this.#blockSize;
      out.push({ type: 'reserve-tokens', ceiling: this.#tokenCeiling });
    }
    return ++this.#lastToken;
  }

  #grant(lock: LockState, session: Session, req: AcquireRequest, now: number, token: number): Hold {
    const hold: Hold = {
      kind: 'hold',
      lock,
      session,
      token,
      mode: req.mode,
      permits: req.permits,
      request: req.id,
      grantedAt: now,
      deadline: now + req.ttlMs,
      live: true,
    };
    lock.holders.set(hold.token, hold);
    lock.used += req.permits;
    if (req.mode === 'exclusive') lock.exclusiveHeld = true;
    session.holds.set(hold.token, hold);
    this.#holdCount++;
    this.#push(hold.deadline, hold);
    return hold;
  }

  /**
   * A registered entry for a lock nobody holds or awaits. Idle entries are recycled: with many
   * short-lived locks, an entry and its holder map per grant were a large share of the garbage.
   */
  #newLock(req: Pick<AcquireRequest, 'lock' | 'kind' | 'limit'>): LockState {
    let lock = this.#freeLocks.pop();
    if (lock === undefined) {
      lock = {
        name: req.lock,
        kind: req.kind,
        limit: req.limit,
        used: 0,
        exclusiveHeld: false,
        holders: new Map(),
        head: null,
        tail: null,
        waiting: 0,
        next: null,
        retell: false,
      };
    } else {
      // An idle entry is empty already: no holders, no waiters, nothing in use.
      lock.name = req.lock;
      lock.kind = req.kind;
      lock.limit = req.limit;
    }
    this.#locks.set(lock.name, lock);
    return lock;
  }

  /** Puts a waiter at the tail of `lock`'s queue, as the outcome of `memo`. */
  #enqueue(lock: LockState, session: Session, request: AcquireRequest, queuedAt: number, deadline: number, memo: Memo): void {
    const waiter: Waiter = { kind: 'waiter', lock, session, request, queuedAt, deadline, memo, prev: lock.tail, next: null, live: true };
    memo.outcome = waiter;
    if (lock.tail === null) lock.head = waiter;
    else lock.tail.next = waiter;
    lock.tail = waiter;
    lock.waiting++;
    this.#waiterCount++;
    session.waits.set(request.id, waiter);
    this.#push(deadline, waiter);
  }

  /**
   * Entries of released holds and granted waiters stay in the heap until their deadline (lazy
   * deletion); once they outnumber live ones the heap is rebuilt, so memory follows live state.
   */
  #push(at: number, ref: Expiring): void {
    this.#heap.push(at, ref);
    const live = this.#sessions.size + this.#holdCount + this.#waiterCount;
    if (this.#heap.size > 2 * live + 1024) this.#heap.compact((r) => r.live);
  }

  /**
   * Grants waiters from the head of the queue for as long as they fit; never skips one. A named
   * successor whose holder is gone comes first, with its reserved token.
   */
  #drain(lock: LockState, now: number, out: Decision[]): void {
    const named = lock.next;
    if (named !== null && !named.holder.live) {
      lock.next = null;
      const w = named.waiter;
      // Still waiting, it is still at the head: nobody is queued ahead of a waiter once named.
      // Timed out, it may hold the lock by the forwarded grant: so it does here.
      if (w.live || (named.timedOut && w.session.live)) this.#grantWaiter(w, now, named.token, out);
    }
    for (let w = lock.head; w !== null && fits(lock, w.request.mode, w.request.permits); w = lock.head) {
      this.#grantWaiter(w, now, this.#nextToken(out), out);
    }
    if (lock.holders.size === 0 && lock.head === null) {
      lock.retell = false;
      this.#locks.delete(lock.name);
      if (this.#freeLocks.length < 1024) this.#freeLocks.push(lock);
      return;
    }
    this.#nameSuccessor(lock, out);
  }

  /** Grants a waiter, taking it off its queue; or a named successor whose wait ran out (off it already). */
  #grantWaiter(w: Waiter, now: number, token: number, out: Decision[]): void {
    const waiting = w.live;
    if (waiting) this.#unlinkWaiter(w);
    const hold = this.#grant(w.lock, w.session, w.request, now, token);
    w.memo.outcome = hold;
    const body = granted(w.request.id, hold, now, w.session.lastRequest);
    out.push(waiting ? { type: 'reply', to: w.session.replyTo, body, waitedMs: now - w.queuedAt } : { type: 'reply', to: w.session.replyTo, body });
  }

  /**
   * Names the head waiter of a held, contended mutex to its holder, with a token reserved for it
   * (see {@link Successor}), unless one is named already; or tells the holder nobody is named any
   * more when the waiter it was told of left.
   */
  #nameSuccessor(lock: LockState, out: Decision[]): void {
    const retell = lock.retell;
    lock.retell = false;
    if (lock.kind !== 'mutex' || lock.next !== null || lock.holders.size !== 1) return;
    const holder = lock.holders.values().next().value as Hold;
    const w = lock.head;
    let body: ReplyBody;
    if (w !== null) {
      const token = this.#nextToken(out);
      lock.next = { holder, waiter: w, token, timedOut: false };
      const grant = { type: 'granted', re: w.request.id, lock: lock.name, token, ttlMs: w.request.ttlMs, basis: w.session.lastRequest } as const;
      body = { type: 'successor', re: holder.request, lock: lock.name, token: holder.token, next: { to: w.session.replyTo, grant } };
    } else if (retell) {
      body = { type: 'successor', re: holder.request, lock: lock.name, token: holder.token };
    } else {
      return;
    }
    out.push({ type: 'reply', to: holder.session.replyTo, body });
  }

  #dropHold(hold: Hold): void {
    hold.live = false;
    const lock = hold.lock;
    lock.holders.delete(hold.token);
    lock.used -= hold.permits;
    if (hold.mode === 'exclusive') lock.exclusiveHeld = false;
    hold.session.holds.delete(hold.token);
    this.#holdCount--;
  }

  #unlinkWaiter(w: Waiter): void {
    w.live = false;
    const lock = w.lock;
    if (w.prev === null) lock.head = w.next;
    else w.prev.next = w.next;
    if (w.next === null) lock.tail = w.prev;
    else w.next.prev = w.prev;
    w.prev = null;
    w.next = null;
    lock.waiting--;
    w.session.waits.delete(w.request.id);
    this.#waiterCount--;
  }

  /** Removes a waiter without granting it and gives its acquire its final answer. */
  #dropWaiter(w: Waiter, code: ErrorCode, out: Decision[]): void {
    this.#unlinkWaiter(w);
    const named = w.lock.next;
    if (named !== null && named.waiter === w) {
      if (code === 'WAIT_TIMEOUT') {
        named.timedOut = true;
      } else {
        w.lock.next = null;
        w.lock.retell = true;
      }
    }
    const body = error(w.request.id, code);
    w.memo.outcome = body;
    out.push({ type: 'reply', to: w.session.replyTo, body });
  }

  /**
   * Ends a session: its waiting acquires get `code` as their answer; its holds go, with a `lost`
   * event when the session expired (a worker that closed its session knows). Queues are left for
   * the caller to drain once everything due has been taken off.
   */
  #endSession(session: Session, code: 'CANCELLED' | 'NO_SESSION', now: number, out: Decision[], touched: Set<LockState>): void {
    session.live = false;
    this.#sessions.delete(session.id);
    // Their entries in the memo queue are skipped when they come up.
    for (const m of session.memos.values()) if (m.request.seq === undefined) this.#memoCount--;
    const waits = [...session.waits.values()].sort((a, b) => compare(a.request.id, b.request.id));
    for (const w of waits) {
      this.#dropWaiter(w, code, out);
      touched.add(w.lock);
    }
    const holds = [...session.holds.values()].sort((a, b) => a.token - b.token);
    for (const h of holds) {
      this.#dropHold(h);
      touched.add(h.lock);
      if (code === 'NO_SESSION') out.push(lost(h, 'NO_SESSION', now));
    }
  }

  /**
   * Moves time to `now` (never backwards) and expires everything due. All that is due is taken
   * off first and only then are queues drained, so a waiter whose own deadline or session is also
   * due at `now` can never be granted on the way.
   */
  #advance(now: number, out: Decision[]): number {
    if (now < this.#now) now = this.#now;
    this.#now = now;
    const top = this.#heap.peek();
    if (top === undefined || top.at > now) return now;
    const sessions: Session[] = [];
    const holds: Hold[] = [];
    const waiters: Waiter[] = [];
    for (let e = this.#heap.peek(); e !== undefined && e.at <= now; e = this.#heap.peek()) {
      this.#heap.pop();
      const ref = e.ref;
      if (!ref.live) continue;
      if (ref.deadline > now) {
        this.#heap.push(ref.deadline, ref); // refreshed or extended since this entry was pushed
        continue;
      }
      if (ref.kind === 'session') sessions.push(ref);
      else if (ref.kind === 'hold') holds.push(ref);
      else waiters.push(ref);
    }
    // A canonical order, not the heap's (which depends on insertion history): a restored core
    // replaying the journal must expire, and so drain and issue tokens, exactly as the original.
    sessions.sort((a, b) => a.deadline - b.deadline || compare(a.id, b.id));
    holds.sort((a, b) => a.deadline - b.deadline || a.token - b.token);
    waiters.sort(
      (a, b) => a.deadline - b.deadline || compare(a.session.id, b.session.id) || compare(a.request.id, b.request.id),
    );
    const touched = new Set<LockState>();
    for (const s of sessions) if (s.live) this.#endSession(s, 'NO_SESSION', now, out, touched);
    for (const h of holds) {
      if (!h.live) continue;
      this.#dropHold(h);
      touched.add(h.lock);
      this.#expiredTokens.set(h.token, h.session.id);
      this.#expiredQueue.push({ token: h.token, at: now });
      out.push(lost(h, 'LEASE_EXPIRED', now));
    }
    for (const w of waiters) {
      if (!w.live) continue;
      this.#dropWaiter(w, 'WAIT_TIMEOUT', out);
      touched.add(w.lock);
    }
    this.#drainAll(touched, now, out);
    return now;
  }

  /** Drains each lock in name order: the same order whatever the history of the maps involved. */
  #drainAll(touched: Set<LockState>, now: number, out: Decision[]): void {
    const locks = [...touched].sort((a, b) => compare(a.name, b.name));
    for (const lock of locks) this.#drain(lock, now, out);
  }

  /**
   * Ages out remembered answers (and expired-token notes) older than the dedupe window, or the
   * oldest beyond the cap. A memo of a live wait or hold is kept while it lives, under the cap.
   * Runs on every request (it stops at the first entry still young, so it is O(1) when there is
   * nothing to do) and only on requests, so replaying the journal prunes exactly as the original.
   */
  #pruneMemos(now: number): void {
    const max = this.#limits.maxDedupeEntries;
    const horizon = now - this.#limits.dedupeWindowMs;
    // Bounded by the queue's length now, so memos kept and re-queued are not visited twice.
    for (let n = this.#memoQueue.length, m = this.#memoQueue.peek(); n > 0 && m !== undefined; n--, m = this.#memoQueue.peek()) {
      const current = m.session.live;
      if (current && m.at > horizon && this.#memoCount <= max) break;
      this.#memoQueue.shift();
      if (!current) continue; // its session ended and took its memos along
      const o = m.outcome;
      if (this.#memoCount <= max && !('type' in o) && o.live) {
        m.at = now;
        this.#memoQueue.push(m);
      } else {
        m.session.memos.delete(m.request.id);
        this.#memoCount--;
      }
    }
    for (let e = this.#expiredQueue.peek(); e !== undefined; e = this.#expiredQueue.peek()) {
      if (e.at > horizon && this.#expiredTokens.size <= max) break;
      this.#expiredQueue.shift();
      this.#expiredTokens.delete(e.token);
    }
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function fits(lock: LockState, mode: LockMode, permits: number): boolean {
  if (lock.kind === 'semaphore') return lock.used + permits <= lock.limit;
  return mode === 'exclusive' ? lock.used === 0 : !lock.exclusiveHeld;
}

function positionOf(w: Waiter): number {
  let position = 1;
  for (let p = w.prev; p !== null; p = p.prev) position++;
  return position;
}

function granted(re: string, hold: Hold, now: number, basis: string): ReplyBody {
  return {
    type: 'granted',
    re,
    lock: hold.lock.name,
    token: hold.token,
    ttlMs: Math.max(0, Math.floor(hold.deadline - now)),
    basis,
  };
}

function lost(h: Hold, reason: LostEvent['reason'], now: number): Decision {
  const body: ReplyBody = { type: 'lost', re: h.request, lock: h.lock.name, token: h.token, reason };
  return { type: 'reply', to: h.session.replyTo, body, heldMs: now - h.grantedAt };
}

function error(re: string, code: ErrorCode, field?: string): ReplyBody {
  const message = ERROR_CODES[code].text;
  return field === undefined ? { type: 'error', re, code, message } : { type: 'error', re, code, message, field };
}

function wrongPartition(re: string): ReplyBody {
  return error(re, 'WRONG_PARTITION', 'lock');
}

function samePayload(a: Request, b: Request): boolean {
  const ra = a as unknown as Record<string, unknown>;
  const rb = b as unknown as Record<string, unknown>;
  const keys = Object.keys(ra);
  if (keys.length !== Object.keys(rb).length) return false;
  for (const k of keys) if (k !== 'replyTo' && ra[k] !== rb[k]) return false;
  return true;
}
