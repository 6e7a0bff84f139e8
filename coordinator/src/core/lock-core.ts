import {
  type AcquireRequest,
  type CancelRequest,
  type ErrorCode,
  type ExtendRequest,
  INSPECT_MAX_LISTED,
  type InspectRequest,
  type LockMode,
  type LockView,
  type OpenRequest,
  type PartitionCounts,
  partitionOf,
  type ReleaseRequest,
  type ReplyBody,
  type Request,
} from '@lockq/protocol';
import { createSuccessor, type Hold, type LockState, type Memo, type Principal, type Session, type Waiter } from './entities.js';
import { ExpiredTokens } from './expired-tokens.js';
import { uses, waitsOf } from './lock-users.js';
import { detailOf, inspectedCounts, type LockDetail, viewOf } from './lock-view.js';
import { MemoTable, recall, samePayload } from './memo-table.js';
import type { CoreLimits, CoreOptions } from './options.js';
import { PartitionState } from './partition-state.js';
import { answer, type Decision, error, granted, lost, positionOf, queued, wrongPartition } from './replies.js';
import { type CoreSnapshot, checkFits, restoreInto, snapshotOf } from './snapshot.js';

/**
 * What a request came to: a final answer; the wait it joined; or a hold, granted by it (live) or
 * released by it (ended: answered `released`, with how long it was held, for metrics). A release
 * returns the hold it ended rather than a record of its own: one object less on the hottest path.
 */
type Outcome = ReplyBody | Hold | Waiter;

/** Which per-principal quota an acquire or open hit (the `field` of `QUOTA_EXCEEDED`). */
type Quota = 'sessions' | 'holds' | 'waits' | 'lockWaits' | 'names';

/** What one principal has in a partition: what its quotas are checked against. */
export interface PrincipalUsage {
  readonly sessions: number;
  readonly holds: number;
  readonly waits: number;
  readonly names: number;
}

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
  readonly #state = new PartitionState();
  readonly #memos: MemoTable;
  readonly #expired: ExpiredTokens;
  #lastToken: number;
  #tokenCeiling: number;
  #now = Number.NEGATIVE_INFINITY;

  constructor(options: CoreOptions) {
    this.partition = options.partition;
    this.partitions = options.partitions;
    this.epoch = options.epoch;
    this.#limits = options.limits;
    this.#blockSize = options.tokenBlockSize;
    this.#lastToken = options.tokenFloor;
    this.#tokenCeiling = options.tokenFloor;
    this.#memos = new MemoTable(options.limits);
    this.#expired = new ExpiredTokens(options.limits);
  }

  /** Applies one decoded request at time `now` (ms, non-decreasing), appending decisions to `out`. */
  handle(request: Request, now: number, out: Decision[]): void {
    now = this.#advance(now, out);
    if (request.op === 'inspect') {
      const counts = inspectedCounts(this.counts());
      const body: ReplyBody =
        request.lock === undefined
          ? { type: 'inspected', re: request.id, counts }
          : { type: 'inspected', re: request.id, lock: this.inspect(request.lock, now, INSPECT_MAX_LISTED), counts };
      out.push({ type: 'reply', to: request.replyTo, body });
      return;
    }
    // Not for inspect: a read changes nothing but what its own time expired, so a runtime may
    // leave it out of the journal. On every other request, and only then, so replaying the
    // journal forgets exactly as the original did.
    this.#memos.prune(now);
    this.#expired.prune(now);
    // Sessions are keyed by (principal, id): another principal's session of the same id is
    // out of reach (docs/security.md §5.3).
    const session = this.#state.session(request.principal ?? '', request.session);
    const known = session !== undefined && session.worker === request.worker ? session : undefined;
    if (known !== undefined) {
      if (request.settled !== undefined && request.settled > known.settled) this.#memos.settle(known, request.settled);
      if (request.seq !== undefined && request.seq <= known.settled) {
        this.#stale(known, request, now, out);
        return;
      }
      const memo = this.#memos.get(known, request.id);
      if (memo !== undefined) {
        this.#replay(memo, request, now, out);
        return;
      }
    }
    const outcome = request.op === 'open' ? this.#open(request, now) : this.#decide(known, request, now, out);
    this.#answer(request, outcome, now, out);
  }

  /** Expires everything due at or before `now`. */
  tick(now: number, out: Decision[]): void {
    this.#advance(now, out);
  }

  /** The earliest time at which `tick` may have something to do, or undefined when nothing is pending. */
  nextDeadline(): number | undefined {
    return this.#state.nextDeadline();
  }

  counts(): PartitionCounts {
    const state = this.#state;
    return {
      locks: state.locks.size,
      holds: state.holdCount,
      waiters: state.waiterCount,
      sessions: state.sessionCount,
      lastToken: this.#lastToken,
    };
  }

  /**
   * Holders and waiters of one lock (the first `maxListed` of each, in order), or null when
   * nobody holds or waits for it.
   */
  inspect(name: string, now: number, maxListed = Number.POSITIVE_INFINITY): LockView | null {
    const lock = this.#state.locks.get(name);
    return lock === undefined ? null : viewOf(lock, now, maxListed);
  }

  /** {@link inspect} with session and request ids, for tests and debugging; never published. */
  detail(name: string, now: number): LockDetail | null {
    const lock = this.#state.locks.get(name);
    return lock === undefined ? null : detailOf(lock, now);
  }

  /** What principal `name` has here (its quotas' counts), or undefined when it has no session. */
  usage(name: string): PrincipalUsage | undefined {
    const p = this.#state.principal(name);
    return p === undefined ? undefined : { sessions: p.sessions.size, holds: p.holds, waits: p.waits, names: p.names };
  }

  /** Names of every lock with a holder or a waiter. */
  lockNames(): IterableIterator<string> {
    return this.#state.locks.keys();
  }

  /**
   * Ends everything: each waiting acquire is answered SHUTTING_DOWN and each holder told its
   * hold is lost. For a coordinator whose state dies with it (no durable store): whoever runs the
   * partition next starts empty, so no lease from this one can be trusted past this point.
   */
  shutdown(now: number, out: Decision[]): void {
    now = this.#advance(now, out);
    const sessions = [...this.#state.sessions()].sort(compareSessions);
    for (const session of sessions) {
      this.#state.removeSession(session);
      this.#memos.endSession(session);
      const waits = [...session.waits.values()].sort((a, b) => compare(a.request.id, b.request.id));
      for (const w of waits) this.#dropWaiter(w, 'SHUTTING_DOWN', out);
      const holds = [...session.holds.values()].sort((a, b) => a.token - b.token);
      for (const h of holds) {
        this.#state.removeHold(h);
        out.push(lost(h, 'SHUTTING_DOWN', now));
      }
    }
    this.#state.clear();
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
    const { partition, partitions } = this;
    const head = { partition, partitions, now: this.#now, lastToken: this.#lastToken, tokenCeiling: this.#tokenCeiling };
    return snapshotOf(head, this.#state, this.#memos, this.#expired);
  }

  /** A core in exactly the state `snapshot` describes, in a new term (`options.epoch`). */
  static restore(snapshot: CoreSnapshot, options: CoreOptions): LockCore {
    checkFits(snapshot, options);
    const core = new LockCore(options);
    core.#now = snapshot.now;
    core.#lastToken = snapshot.lastToken;
    core.#tokenCeiling = snapshot.tokenCeiling;
    restoreInto(snapshot, core.#state, core.#memos, core.#expired);
    core.raiseTokenFloor(options.tokenFloor);
    return core;
  }

  // ---- answers --------------------------------------------------------------------------------

  /** Answers `request` with what it came to, and remembers that answer for its duplicates. */
  #answer(request: Exclude<Request, InspectRequest>, outcome: Outcome, now: number, out: Decision[]): void {
    const to = request.replyTo;
    if ('type' in outcome) {
      out.push(answer(request, outcome));
      if (request.op !== 'heartbeat' && !(outcome.type === 'error' && outcome.code === 'NO_SESSION')) this.#remember(request, outcome, now);
      return;
    }
    switch (outcome.kind) {
      case 'hold': {
        if (outcome.live) {
          out.push({ type: 'reply', to, body: granted(request.id, outcome, now, request.id) });
          this.#memos.remember(outcome.session, request, outcome, now);
          return;
        }
        // Its lock entry may be idle now, but keeps its name until it is reused.
        const body: ReplyBody = { type: 'released', re: request.id, lock: outcome.lock.name, token: outcome.token };
        out.push({ type: 'reply', to, body, heldMs: now - outcome.grantedAt });
        this.#remember(request, body, now);
        return;
      }
      case 'waiter':
        // Just queued, so last in line.
        out.push({ type: 'reply', to, body: queued(request.id, outcome, outcome.lock.waiting) });
        this.#memos.add(outcome.memo);
        return;
    }
  }

  /** Remembers a final answer, in the session that sent the request if it lives after it. */
  #remember(request: Request, body: ReplyBody, now: number): void {
    const owner = this.#state.session(request.principal ?? '', request.session);
    if (owner !== undefined && owner.worker === request.worker) this.#memos.remember(owner, request, body, now);
  }

  #replay(memo: Memo, request: Request, now: number, out: Decision[]): void {
    if (!samePayload(memo.request, request)) {
      out.push({ type: 'reply', to: request.replyTo, body: error(request.id, 'IDEMPOTENCY_CONFLICT') });
      return;
    }
    touch(memo.session, request, now);
    out.push(answer(request, recall(memo, request, now)));
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
      body = queued(request.id, waiter, positionOf(waiter));
    } else {
      for (const h of session.holds.values()) if (h.request === request.id) body = granted(request.id, h, now, request.id);
    }
    if (body !== undefined) out.push({ type: 'reply', to: request.replyTo, body });
  }

  // ---- requests -------------------------------------------------------------------------------

  #decide(
    session: Session | undefined,
    request: Exclude<Request, InspectRequest | OpenRequest>,
    now: number,
    out: Decision[],
  ): Outcome {
    if (session === undefined) return this.#noSession(request);
    touch(session, request, now);
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
        return this.#owns(request.lock) ? this.#acquire(session, request, now, out) : wrongPartition(request.id, 'lock', this.partitions);
      case 'release':
        return this.#owns(request.lock) ? this.#release(session, request, now, out) : wrongPartition(request.id, 'lock', this.partitions);
      case 'extend':
        return this.#owns(request.lock) ? this.#extend(session, request, now, out) : wrongPartition(request.id, 'lock', this.partitions);
      case 'cancel':
        return this.#owns(request.lock) ? this.#cancel(session, request, now, out) : wrongPartition(request.id, 'lock', this.partitions);
    }
  }

  /**
   * A request with no session of its sender's: `FORBIDDEN` (field `session`) when the id is
   * another principal's session, which it may not act on; else `NO_SESSION`. Neither is
   * remembered, so neither can take the id's answers from its owner.
   */
  #noSession(request: Request): ReplyBody {
    const id = request.session;
    const own = this.#state.principal(request.principal ?? '')?.sessions.has(id) === true;
    return !own && this.#state.hasSessionId(id) ? error(request.id, 'FORBIDDEN', 'session') : error(request.id, 'NO_SESSION');
  }

  #owns(lock: string): boolean {
    return this.partitions <= 1 || partitionOf(lock, this.partitions) === this.partition;
  }

  #open(request: OpenRequest, now: number): ReplyBody {
    if (request.partitions !== this.partitions) return wrongPartition(request.id, 'partitions', this.partitions);
    const ttlMs = request.sessionTtlMs;
    const deadline = now + ttlMs;
    const principal = request.principal ?? '';
    const owner = this.#state.principal(principal);
    const session = owner?.sessions.get(request.session);
    if (session === undefined) {
      // The principal's own quota first: the partition-wide cap is the last line. The anonymous
      // principal (identity off) is everyone, so only the partition-wide caps apply to it.
      if (principal !== '' && (owner?.sessions.size ?? 0) >= this.#limits.maxSessionsPerPrincipal) return quotaExceeded(request.id, 'sessions');
      if (this.#state.sessionCount >= this.#limits.maxSessions) return error(request.id, 'TOO_MANY_SESSIONS');
      const { session: id, worker, replyTo } = request;
      this.#state.addSession({ principal, id, worker, replyTo, ttlMs, deadline, lastRequest: request.id, settled: 0 });
      return { type: 'opened', re: request.id, session: id, resumed: false, sessionTtlMs: ttlMs };
    }
    if (session.worker !== request.worker) return error(request.id, 'INVALID_FIELD', 'session');
    session.ttlMs = ttlMs;
    const previous = session.deadline;
    touch(session, request, now);
    // Its entry in the schedule is at the old deadline: checked when it comes up, so one more is
    // needed only if the deadline moved earlier.
    if (deadline < previous) this.#state.schedule(deadline, session);
    return { type: 'opened', re: request.id, session: session.id, resumed: true, sessionTtlMs: ttlMs };
  }

  #acquire(session: Session, req: AcquireRequest, now: number, out: Decision[]): Hold | Waiter | ReplyBody {
    const existing = this.#state.locks.get(req.lock);
    if (existing !== undefined) {
      if (existing.kind !== req.kind) return error(req.id, 'KIND_MISMATCH', 'kind');
      if (existing.limit !== req.limit) return error(req.id, 'LIMIT_MISMATCH', 'limit');
    }
    const busy = session.holds.size + session.waits.size >= this.#limits.maxHoldsPerSession;
    // A lock nobody holds or awaits always fits (the codec keeps permits within the limit).
    if (existing === undefined || (existing.head === null && fits(existing, req.mode, req.permits))) {
      if (busy) return error(req.id, 'TOO_MANY_HOLDS');
      const quota = this.#quotaHit(session.principal, existing, false);
      if (quota !== undefined) return quotaExceeded(req.id, quota);
      const lock = existing ?? this.#state.addLock(req.lock, req.kind, req.limit);
      return this.#grant(lock, session, req, now, this.#nextToken(out));
    }
    const lock = existing;
    if (req.waitMs === 0) return error(req.id, 'LOCK_BUSY');
    if (lock.waiting >= this.#limits.maxWaitersPerLock) return error(req.id, 'QUEUE_FULL');
    if (session.waits.size >= this.#limits.maxWaitsPerSession) return error(req.id, 'TOO_MANY_WAITS');
    if (busy) return error(req.id, 'TOO_MANY_HOLDS');
    const quota = this.#quotaHit(session.principal, lock, true);
    if (quota !== undefined) return quotaExceeded(req.id, quota);
    const waiter = this.#state.addWaiter(lock, session, req, now, now + req.waitMs);
    this.#nameSuccessor(lock, out);
    return waiter;
  }

  /**
   * The per-principal quota (docs/security.md §7) one more hold, or with `waiting` one more
   * wait, of `principal` on `lock` (undefined: not in use yet) would break, if any. Per-session
   * limits are checked before; a queued waiter was counted when it queued, so its grant is not
   * checked again.
   */
  #quotaHit(principal: Principal, lock: LockState | undefined, waiting: boolean): Quota | undefined {
    if (principal.name === '') return undefined; // identity off: one principal is everyone
    const limits = this.#limits;
    if (waiting) {
      if (lock !== undefined && waitsOf(lock, principal) >= limits.maxLockWaitsPerPrincipal) return 'lockWaits';
      if (principal.waits >= limits.maxWaitsPerPrincipal) return 'waits';
    }
    if (principal.holds + principal.waits >= limits.maxHoldsPerPrincipal) return 'holds';
    if (principal.names >= limits.maxNamesPerPrincipal && (lock === undefined || !uses(lock, principal))) return 'names';
    return undefined;
  }

  /** The hold it ended (see {@link Outcome}), or why it could not. */
  #release(session: Session, req: ReleaseRequest, now: number, out: Decision[]): Hold | ReplyBody {
    const hold = this.#holdFor(session, req, now, out);
    if (hold === undefined || hold.session !== session) return this.#notHeld(session, req);
    this.#state.removeHold(hold);
    this.#drain(hold.lock, now, out);
    return hold;
  }

  #extend(session: Session, req: ExtendRequest, now: number, out: Decision[]): ReplyBody {
    const hold = this.#holdFor(session, req, now, out);
    if (hold === undefined || hold.session !== session) return this.#notHeld(session, req);
    const deadline = now + req.ttlMs;
    // The entry in the schedule stays at the old deadline and is re-queued when it comes up
    // (lazy re-key); a shorter lease needs an entry of its own.
    if (deadline < hold.deadline) this.#state.schedule(deadline, hold);
    hold.deadline = deadline;
    return { type: 'extended', re: req.id, lock: req.lock, token: req.token, ttlMs: req.ttlMs, basis: req.id };
  }

  /**
   * The hold a release or extend names. A named successor that got the holder's forwarded grant
   * (which the holder sends only as it releases) may speak before the holder's release arrives
   * (they travel separately), so the hand-off completes here; but only on the grant's proof
   * (`handoff: true`, checked by the runtime), never on the reserved token alone: that token is
   * no secret, and the named waiter could otherwise take the mutex from a live holder.
   */
  #holdFor(session: Session, req: ReleaseRequest | ExtendRequest, now: number, out: Decision[]): Hold | undefined {
    const lock = this.#state.locks.get(req.lock);
    if (lock === undefined) return undefined;
    const named = lock.next;
    if (req.handoff === true && named !== null && named.token === req.token && named.waiter.session === session && named.holder.live) {
      this.#state.removeHold(named.holder);
      this.#drain(lock, now, out); // grants the named waiter: the lock stays in use
    }
    return lock.holders.get(req.token);
  }

  #notHeld(session: Session, req: ReleaseRequest | ExtendRequest): ReplyBody {
    return error(req.id, this.#expired.heldBy(req.token, session) ? 'LEASE_EXPIRED' : 'NOT_HOLDER');
  }

  #cancel(session: Session, req: CancelRequest, now: number, out: Decision[]): ReplyBody {
    const waiter = session.waits.get(req.target);
    if (waiter === undefined || waiter.lock.name !== req.lock) return error(req.id, 'NOT_WAITING');
    this.#dropWaiter(waiter, 'CANCELLED', out);
    this.#drain(waiter.lock, now, out);
    return { type: 'cancelled', re: req.id, lock: req.lock };
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
    return this.#state.addHold(lock, session, token, req.mode, req.permits, req.id, now, now + req.ttlMs);
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
      this.#state.removeLock(lock);
      return;
    }
    this.#nameSuccessor(lock, out);
  }

  /** Grants a waiter, taking it off its queue; or a named successor whose wait ran out (off it already). */
  #grantWaiter(w: Waiter, now: number, token: number, out: Decision[]): void {
    const waiting = w.live;
    // The hold first: the principal's use of the lock then never drops to none in between.
    const hold = this.#grant(w.lock, w.session, w.request, now, token);
    if (waiting) this.#state.removeWaiter(w);
    w.memo.outcome = hold;
    const body = granted(w.request.id, hold, now, w.session.lastRequest);
    out.push(waiting ? { type: 'reply', to: w.session.replyTo, body, waitedMs: now - w.queuedAt } : { type: 'reply', to: w.session.replyTo, body });
  }

  /**
   * Names the head waiter of a held, contended mutex to its holder, with a token reserved for it
   * (see `Successor`), unless one is named already; or tells the holder nobody is named any more
   * when the waiter it was told of left.
   */
  #nameSuccessor(lock: LockState, out: Decision[]): void {
    const retell = lock.retell;
    lock.retell = false;
    if (lock.kind !== 'mutex' || lock.next !== null || lock.holders.size !== 1) return;
    const holder = lock.holders.values().next().value as Hold;
    const w = lock.head;
    if (w !== null) {
      const token = this.#nextToken(out);
      lock.next = createSuccessor(holder, w, token, false);
      const grant = { type: 'granted', re: w.request.id, lock: lock.name, token, ttlMs: w.request.ttlMs, basis: w.session.lastRequest } as const;
      const body: ReplyBody = { type: 'successor', re: holder.request, lock: lock.name, token: holder.token, next: { to: w.session.replyTo, grant } };
      out.push({ type: 'reply', to: holder.session.replyTo, body, nextSession: w.session.id, nextPrincipal: w.request.principal ?? '' });
    } else if (retell) {
      out.push({ type: 'reply', to: holder.session.replyTo, body: { type: 'successor', re: holder.request, lock: lock.name, token: holder.token } });
    }
  }

  /** Removes a waiter without granting it and gives its acquire its final answer. */
  #dropWaiter(w: Waiter, code: ErrorCode, out: Decision[]): void {
    this.#state.removeWaiter(w);
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
   * event when the session expired (a worker that closed its session knows). The locks this
   * touches are added to `touched`, for the caller to drain once everything due has been taken off.
   */
  #endSession(session: Session, code: 'CANCELLED' | 'NO_SESSION', now: number, out: Decision[], touched: Set<LockState>): void {
    this.#state.removeSession(session);
    this.#memos.endSession(session);
    const waits = [...session.waits.values()].sort((a, b) => compare(a.request.id, b.request.id));
    for (const w of waits) {
      this.#dropWaiter(w, code, out);
      touched.add(w.lock);
    }
    const holds = [...session.holds.values()].sort((a, b) => a.token - b.token);
    for (const h of holds) {
      this.#state.removeHold(h);
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
    const due = this.#state.takeDue(now);
    if (due === undefined) return now;
    const { sessions, holds, waiters } = due;
    // A canonical order, not the heap's (which depends on insertion history): a restored core
    // replaying the journal must expire, and so drain and issue tokens, exactly as the original.
    sessions.sort((a, b) => a.deadline - b.deadline || compareSessions(a, b));
    holds.sort((a, b) => a.deadline - b.deadline || a.token - b.token);
    waiters.sort((a, b) => a.deadline - b.deadline || compareSessions(a.session, b.session) || compare(a.request.id, b.request.id));
    const touched = new Set<LockState>();
    for (const s of sessions) if (s.live) this.#endSession(s, 'NO_SESSION', now, out, touched);
    for (const h of holds) {
      if (!h.live) continue;
      this.#state.removeHold(h);
      touched.add(h.lock);
      this.#expired.add(h.token, { principal: h.session.principal.name, session: h.session.id }, now);
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
}

/** Any message from a session keeps it alive and is where its answers go from now on. */
function touch(session: Session, request: Request, now: number): void {
  session.deadline = now + session.ttlMs;
  session.replyTo = request.replyTo;
  session.lastRequest = request.id;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** By session id, then principal: a canonical order for sessions whose ids may repeat across principals. */
function compareSessions(a: Session, b: Session): number {
  return compare(a.id, b.id) || compare(a.principal.name, b.principal.name);
}

function quotaExceeded(re: string, quota: Quota): ReplyBody {
  return error(re, 'QUOTA_EXCEEDED', quota);
}

function fits(lock: LockState, mode: LockMode, permits: number): boolean {
  if (lock.kind === 'semaphore') return lock.used + permits <= lock.limit;
  return mode === 'exclusive' ? lock.used === 0 : !lock.exclusiveHeld;
}
