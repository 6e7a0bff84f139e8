/**
 * A reference model of the lock core's semantics, written to be obviously right rather than fast:
 * plain arrays scanned from scratch on every step, explicit deadlines compared with `now`, no heap,
 * no linked lists, no lazy deletion. Given the same `(request, now)` sequence it predicts every
 * decision the core makes, with the metrics it attaches (`waitedMs` on a grant after waiting,
 * `heldMs` on a release or a lost hold).
 *
 * Token reservations (`reserve-tokens`) are not modelled: when the core reserves is its own
 * business, as long as no token is issued above a reservation (the property test checks that).
 *
 * When several things end in one step the order is canonical, never the history of a data
 * structure: expired sessions by (deadline, id), then expired holds by (deadline, token), then
 * expired waiters by (deadline, session, request id); an ending session's waiters by request id,
 * then its holds by token; the locks this frees are then drained in name order.
 *
 * Answers are remembered for as long as the session that sent them lives (the core also ages
 * them out): runs using the model must stay well inside the core's `dedupeWindowMs` and
 * `maxDedupeEntries`.
 *
 * Sessions belong to principals (`request.principal`, `""` when absent): a session is the pair
 * (principal, id), and a request naming an id only another principal has is `FORBIDDEN`. Each
 * principal's quotas are counted from scratch over every live session, hold and waiter.
 */
import {
  type AcquireRequest,
  ERROR_CODES,
  type ErrorCode,
  type LockKind,
  type LockMode,
  type LockView,
  type PartitionCounts,
  partitionOf,
  type ReplyBody,
  type Request,
} from '@lockq/protocol';
import type { CoreLimits, Decision, LockDetail } from '../../src/core/index.js';

export interface ModelOptions {
  readonly partition: number;
  readonly partitions: number;
  readonly tokenFloor: number;
  readonly limits: Pick<
    CoreLimits,
    | 'maxWaitersPerLock'
    | 'maxHoldsPerSession'
    | 'maxWaitsPerSession'
    | 'maxSessions'
    | 'maxSessionsPerPrincipal'
    | 'maxHoldsPerPrincipal'
    | 'maxWaitsPerPrincipal'
    | 'maxLockWaitsPerPrincipal'
    | 'maxNamesPerPrincipal'
  >;
}

/** What one step decided. */
export interface ModelStep {
  /** Every decision but token reservations, in order. */
  readonly decisions: Decision[];
  /** True when the request was answered from memory (a duplicate) rather than decided. */
  readonly replayed: boolean;
}

interface ModelSession {
  readonly principal: string;
  readonly id: string;
  readonly worker: string;
  replyTo: string;
  ttlMs: number;
  deadline: number;
  lastRequest: string;
  /** Answers remembered for idempotency, by request id; they go with the session. */
  readonly memos: Map<string, Memo>;
}

interface ModelHold {
  readonly lock: string;
  readonly kind: LockKind;
  readonly limit: number;
  readonly principal: string;
  readonly session: string;
  readonly worker: string;
  readonly token: number;
  readonly mode: LockMode;
  readonly permits: number;
  /** Id of the acquire this hold answers. */
  readonly acquire: string;
  readonly grantedAt: number;
  deadline: number;
}

interface ModelWaiter {
  readonly request: AcquireRequest;
  readonly queuedAt: number;
  readonly deadline: number;
}

type Outcome =
  | { readonly kind: 'answer'; readonly body: ReplyBody }
  | { readonly kind: 'waiting' }
  | { readonly kind: 'held'; readonly token: number };

interface Memo {
  readonly request: Request;
  outcome: Outcome;
}

/** The waiter a contended mutex's holder was told is next, with the token reserved for it. */
interface ModelSuccessor {
  /** The holder's token. */
  readonly holder: number;
  readonly waiter: ModelWaiter;
  /** The waiter's session when it was named (a session re-opened after it ended is another). */
  readonly session: ModelSession;
  readonly token: number;
  timedOut: boolean;
}

export class ReferenceModel {
  readonly #o: ModelOptions;
  sessions: ModelSession[] = [];
  /** Every live hold, in grant order. */
  holds: ModelHold[] = [];
  /** Every waiting acquire, in the order it joined its queue (all locks in one list). */
  waiters: ModelWaiter[] = [];
  /** Holds whose lease ran out: a late release or extend from their session says LEASE_EXPIRED. */
  #expired: { readonly token: number; readonly principal: string; readonly session: string }[] = [];
  /** Holds ended by a release (for how long they were held). */
  #released: ModelHold[] = [];
  /** By lock: its named successor. */
  readonly #named = new Map<string, ModelSuccessor>();
  /** Locks whose named waiter left (cancelled, session ended): the holder is told anew. */
  readonly #retell = new Set<string>();
  #lastToken: number;
  #now = Number.NEGATIVE_INFINITY;

  constructor(options: ModelOptions) {
    this.#o = options;
    this.#lastToken = options.tokenFloor;
  }

  handle(request: Request, now: number): ModelStep {
    now = Math.max(now, this.#now);
    this.#now = now;
    const out: Decision[] = [];
    this.#expire(now, out);
    if (request.op === 'inspect') {
      // The wire shows no session or request ids and no token counter (docs/security.md).
      const { locks, holds, waiters, sessions } = this.counts();
      const counts = { locks, holds, waiters, sessions };
      const body: ReplyBody =
        request.lock === undefined
          ? { type: 'inspected', re: request.id, counts }
          : { type: 'inspected', re: request.id, lock: publicView(this.inspect(request.lock, now)), counts };
      out.push(reply(request.replyTo, body));
      return { decisions: out, replayed: false };
    }
    const memo = this.#sessionOf(request)?.memos.get(request.id);
    if (memo !== undefined) {
      out.push(answer(request, this.#replay(memo, request, now)));
      return { decisions: out, replayed: true };
    }
    const body = this.#decide(request, now, out);
    const released = body.type === 'released' ? this.#released.find((h) => h.token === body.token) : undefined;
    out.push(released === undefined ? answer(request, body) : reply(request.replyTo, body, { heldMs: now - released.grantedAt }));
    // Remembered by the session that sent it, if it (still) has one; it ends with the session.
    const owner = this.#sessionOf(request);
    if (owner !== undefined && request.op !== 'heartbeat' && !(body.type === 'error' && body.code === 'NO_SESSION')) {
      const outcome: Outcome =
        body.type === 'granted'
          ? { kind: 'held', token: body.token }
          : body.type === 'queued'
            ? { kind: 'waiting' }
            : { kind: 'answer', body };
      owner.memos.set(request.id, { request, outcome });
    }
    return { decisions: out, replayed: false };
  }

  tick(now: number): ModelStep {
    now = Math.max(now, this.#now);
    this.#now = now;
    const out: Decision[] = [];
    this.#expire(now, out);
    return { decisions: out, replayed: false };
  }

  counts(): PartitionCounts {
    const locks = new Set([...this.holds.map((h) => h.lock), ...this.waiters.map((w) => w.request.lock)]);
    return {
      locks: locks.size,
      holds: this.holds.length,
      waiters: this.waiters.length,
      sessions: this.sessions.length,
      lastToken: this.#lastToken,
    };
  }

  inspect(lock: string, now: number): LockDetail | null {
    const holds = this.holds.filter((h) => h.lock === lock);
    const waiters = this.waiters.filter((w) => w.request.lock === lock);
    const first = holds[0] ?? waiters[0]?.request;
    if (first === undefined) return null;
    return {
      lock,
      kind: first.kind,
      limit: first.limit,
      holderCount: holds.length,
      waiterCount: waiters.length,
      holders: holds.map((h) => ({
        worker: h.worker,
        principal: h.principal,
        session: h.session,
        token: h.token,
        mode: h.mode,
        permits: h.permits,
        ttlMs: Math.max(0, h.deadline - now),
      })),
      waiters: waiters.map((w, i) => ({
        worker: w.request.worker,
        principal: principalOf(w.request),
        session: w.request.session,
        request: w.request.id,
        mode: w.request.mode,
        permits: w.request.permits,
        position: i + 1,
        waitMs: Math.max(0, w.deadline - now),
      })),
    };
  }

  /** The earliest deadline of anything live, or undefined when nothing is. */
  earliestDeadline(): number | undefined {
    const all = [
      ...this.sessions.map((s) => s.deadline),
      ...this.holds.map((h) => h.deadline),
      ...this.waiters.map((w) => w.deadline),
    ];
    return all.length === 0 ? undefined : Math.min(...all);
  }

  hasSession(session: string, worker: string, principal = ''): boolean {
    return this.sessions.some((s) => s.principal === principal && s.id === session && s.worker === worker);
  }

  /** What principal `name` has, as `LockCore.usage` tells it; undefined without a session. */
  usage(name: string): { sessions: number; holds: number; waits: number; names: number } | undefined {
    const sessions = this.sessions.filter((s) => s.principal === name).length;
    if (sessions === 0) return undefined;
    const holds = this.holds.filter((h) => h.principal === name);
    const waits = this.waiters.filter((w) => principalOf(w.request) === name);
    const names = new Set([...holds.map((h) => h.lock), ...waits.map((w) => w.request.lock)]);
    return { sessions, holds: holds.length, waits: waits.length, names: names.size };
  }

  // ---- time ---------------------------------------------------------------------------------------

  /**
   * Everything with a deadline at or before `now` goes, all of it before any queue moves: sessions
   * first (their waiters answered NO_SESSION, their holds lost with NO_SESSION), then holds whose
   * lease ran out, then waiters whose wait ran out. Only then are the touched locks drained.
   */
  #expire(now: number, out: Decision[]): void {
    const touched: string[] = [];
    const sessions = this.sessions
      .filter((x) => x.deadline <= now)
      .sort((a, b) => a.deadline - b.deadline || cmp(a.id, b.id) || cmp(a.principal, b.principal));
    for (const s of sessions) touched.push(...this.#endSession(s, 'NO_SESSION', now, out));
    const holds = this.holds.filter((x) => x.deadline <= now).sort((a, b) => a.deadline - b.deadline || a.token - b.token);
    for (const h of holds) {
      this.holds = this.holds.filter((x) => x !== h);
      this.#expired.push({ token: h.token, principal: h.principal, session: h.session });
      out.push(lost(h, this.#session(h.principal, h.session).replyTo, 'LEASE_EXPIRED', now));
      touched.push(h.lock);
    }
    const waiters = this.waiters
      .filter((x) => x.deadline <= now)
      .sort(
        (a, b) =>
          a.deadline - b.deadline ||
          cmp(a.request.session, b.request.session) ||
          cmp(principalOf(a.request), principalOf(b.request)) ||
          cmp(a.request.id, b.request.id),
      );
    for (const w of waiters) {
      this.#answerWaiter(w, 'WAIT_TIMEOUT', this.#session(principalOf(w.request), w.request.session).replyTo, out);
      touched.push(w.request.lock);
    }
    this.#drainAll(touched, now, out);
  }

  /**
   * Ends a session: its waiters are answered `code`, in request id order; its holds go, in token
   * order, with a `lost` event only when it expired. Returns the locks touched, for the caller to
   * drain.
   */
  #endSession(s: ModelSession, code: 'NO_SESSION' | 'CANCELLED', now: number, out: Decision[]): string[] {
    const touched: string[] = [];
    const waiters = this.waiters.filter((x) => ofSession(x.request, s)).sort((a, b) => cmp(a.request.id, b.request.id));
    for (const w of waiters) {
      this.#answerWaiter(w, code, s.replyTo, out);
      touched.push(w.request.lock);
    }
    const holds = this.holds.filter((x) => x.principal === s.principal && x.session === s.id).sort((a, b) => a.token - b.token);
    for (const h of holds) {
      this.holds = this.holds.filter((x) => x !== h);
      if (code === 'NO_SESSION') out.push(lost(h, s.replyTo, 'NO_SESSION', now));
      touched.push(h.lock);
    }
    this.sessions = this.sessions.filter((x) => x !== s);
    return touched;
  }

  #drainAll(locks: readonly string[], now: number, out: Decision[]): void {
    for (const lock of [...new Set(locks)].sort(cmp)) this.#drain(lock, now, out);
  }

  // ---- requests -----------------------------------------------------------------------------------

  #decide(request: Exclude<Request, { op: 'inspect' }>, now: number, out: Decision[]): ReplyBody {
    if (request.op === 'open') return this.#open(request, now);
    const session = this.#sessionOf(request);
    if (session === undefined) {
      // Another principal's session is none of the sender's business: refused, not looked into.
      const principal = principalOf(request);
      const own = this.sessions.some((s) => s.principal === principal && s.id === request.session);
      const others = this.sessions.some((s) => s.principal !== principal && s.id === request.session);
      return !own && others ? error(request.id, 'FORBIDDEN', 'session') : error(request.id, 'NO_SESSION');
    }
    session.deadline = now + session.ttlMs;
    session.replyTo = request.replyTo;
    session.lastRequest = request.id;
    if (request.op === 'heartbeat') return { type: 'ok', re: request.id };
    if (request.op === 'close') return this.#close(session, request.id, now, out);
    if (!this.#owned(request.lock)) return this.#wrongPartition(request.id, 'lock');
    switch (request.op) {
      case 'acquire':
        return this.#acquire(session, request, now, out);
      case 'release': {
        if (request.handoff === true) this.#handedOff(session, request.lock, request.token, now, out);
        const hold = this.holds.find((h) => h.lock === request.lock && h.token === request.token && h.principal === session.principal && h.session === session.id);
        if (hold === undefined) return this.#notHeld(session, request.id, request.token);
        this.holds = this.holds.filter((h) => h !== hold);
        this.#released.push(hold);
        this.#drain(request.lock, now, out);
        return { type: 'released', re: request.id, lock: request.lock, token: request.token };
      }
      case 'extend': {
        if (request.handoff === true) this.#handedOff(session, request.lock, request.token, now, out);
        const hold = this.holds.find((h) => h.lock === request.lock && h.token === request.token && h.principal === session.principal && h.session === session.id);
        if (hold === undefined) return this.#notHeld(session, request.id, request.token);
        hold.deadline = now + request.ttlMs;
        const { id, lock, token, ttlMs } = request;
        return { type: 'extended', re: id, lock, token, ttlMs, basis: id };
      }
      case 'cancel': {
        const waiter = this.waiters.find((w) => ofSession(w.request, session) && w.request.id === request.target);
        if (waiter === undefined || waiter.request.lock !== request.lock) return error(request.id, 'NOT_WAITING');
        this.#answerWaiter(waiter, 'CANCELLED', session.replyTo, out);
        this.#drain(request.lock, now, out);
        return { type: 'cancelled', re: request.id, lock: request.lock };
      }
    }
  }

  /**
   * A named successor presenting its reserved token with the forwarded grant's proof (`handoff:
   * true`, checked before the core) had the holder's forwarded grant, which the holder sends as it
   * releases: the holder's hold ends (silently) and the successor is granted. The token alone
   * is not enough: it can be guessed.
   */
  #handedOff(session: ModelSession, lock: string, token: number, now: number, out: Decision[]): void {
    const named = this.#named.get(lock);
    if (named === undefined || named.token !== token || named.session !== session) return;
    const holder = this.holds.find((h) => h.token === named.holder);
    if (holder === undefined) return;
    this.holds = this.holds.filter((h) => h !== holder);
    this.#drain(lock, now, out);
  }

  #owned(lock: string): boolean {
    return this.#o.partitions <= 1 || partitionOf(lock, this.#o.partitions) === this.#o.partition;
  }

  /** WRONG_PARTITION names the offending field and says how many partitions there are. */
  #wrongPartition(re: string, field: 'lock' | 'partitions'): ReplyBody {
    const message = ERROR_CODES.WRONG_PARTITION.text;
    return { type: 'error', re, code: 'WRONG_PARTITION', message, field, partitions: this.#o.partitions };
  }

  #open(request: Request & { op: 'open' }, now: number): ReplyBody {
    if (request.partitions !== this.#o.partitions) return this.#wrongPartition(request.id, 'partitions');
    const principal = principalOf(request);
    let session = this.sessions.find((s) => s.principal === principal && s.id === request.session);
    const resumed = session !== undefined;
    if (session === undefined) {
      // The anonymous principal (identity off) is everyone: only the partition-wide caps apply.
      if (principal !== '' && this.sessions.filter((s) => s.principal === principal).length >= this.#o.limits.maxSessionsPerPrincipal) {
        return error(request.id, 'QUOTA_EXCEEDED', 'sessions');
      }
      if (this.sessions.length >= this.#o.limits.maxSessions) return error(request.id, 'TOO_MANY_SESSIONS');
      session = { principal, id: request.session, worker: request.worker, replyTo: '', ttlMs: 0, deadline: 0, lastRequest: '', memos: new Map() };
      this.sessions.push(session);
    } else if (session.worker !== request.worker) {
      return error(request.id, 'INVALID_FIELD', 'session');
    }
    session.ttlMs = request.sessionTtlMs;
    session.replyTo = request.replyTo;
    session.lastRequest = request.id;
    session.deadline = now + session.ttlMs;
    return { type: 'opened', re: request.id, session: session.id, resumed, sessionTtlMs: session.ttlMs };
  }

  /** Waiters answered CANCELLED, holds dropped without a `lost` (the worker asked), queues drained. */
  #close(session: ModelSession, id: string, now: number, out: Decision[]): ReplyBody {
    this.#drainAll(this.#endSession(session, 'CANCELLED', now, out), now, out);
    return { type: 'ok', re: id };
  }

  #acquire(session: ModelSession, req: AcquireRequest, now: number, out: Decision[]): ReplyBody {
    const holds = this.holds.filter((h) => h.lock === req.lock);
    const queue = this.waiters.filter((w) => w.request.lock === req.lock);
    const inUse = holds[0] ?? queue[0]?.request;
    if (inUse !== undefined && inUse.kind !== req.kind) return error(req.id, 'KIND_MISMATCH', 'kind');
    if (inUse !== undefined && inUse.limit !== req.limit) return error(req.id, 'LIMIT_MISMATCH', 'limit');
    const limits = this.#o.limits;
    const mine = this.holds.filter((h) => h.principal === session.principal && h.session === session.id).length;
    const myWaits = this.waiters.filter((w) => ofSession(w.request, session)).length;
    const busy = mine + myWaits >= limits.maxHoldsPerSession;
    // The principal's quotas, after the session's own limits (docs/security.md §7).
    const usage = this.usage(session.principal) ?? { sessions: 0, holds: 0, waits: 0, names: 0 };
    const newName = !this.holds.some((h) => h.principal === session.principal && h.lock === req.lock) && !queue.some((w) => principalOf(w.request) === session.principal);
    const anonymous = session.principal === '';
    const overQuota = (): ReplyBody | undefined => {
      if (anonymous) return undefined;
      if (usage.holds + usage.waits >= limits.maxHoldsPerPrincipal) return error(req.id, 'QUOTA_EXCEEDED', 'holds');
      if (newName && usage.names >= limits.maxNamesPerPrincipal) return error(req.id, 'QUOTA_EXCEEDED', 'names');
      return undefined;
    };
    if (queue.length === 0 && fits(req, holds)) {
      if (busy) return error(req.id, 'TOO_MANY_HOLDS');
      const refused = overQuota();
      if (refused !== undefined) return refused;
      const token = this.#grant(req, session, now);
      return { type: 'granted', re: req.id, lock: req.lock, token, ttlMs: req.ttlMs, basis: req.id };
    }
    if (req.waitMs === 0) return error(req.id, 'LOCK_BUSY');
    if (queue.length >= limits.maxWaitersPerLock) return error(req.id, 'QUEUE_FULL');
    if (myWaits >= limits.maxWaitsPerSession) return error(req.id, 'TOO_MANY_WAITS');
    if (busy) return error(req.id, 'TOO_MANY_HOLDS');
    if (!anonymous && queue.filter((w) => principalOf(w.request) === session.principal).length >= limits.maxLockWaitsPerPrincipal) {
      return error(req.id, 'QUOTA_EXCEEDED', 'lockWaits');
    }
    if (!anonymous && usage.waits >= limits.maxWaitsPerPrincipal) return error(req.id, 'QUOTA_EXCEEDED', 'waits');
    const refused = overQuota();
    if (refused !== undefined) return refused;
    this.waiters.push({ request: req, queuedAt: now, deadline: now + req.waitMs });
    this.#nameSuccessor(req.lock, out);
    return { type: 'queued', re: req.id, lock: req.lock, position: queue.length + 1 };
  }

  #notHeld(session: ModelSession, id: string, token: number): ReplyBody {
    const expired = this.#expired.some((e) => e.token === token && e.principal === session.principal && e.session === session.id);
    return error(id, expired ? 'LEASE_EXPIRED' : 'NOT_HOLDER');
  }

  // ---- idempotency --------------------------------------------------------------------------------

  #replay(memo: Memo, request: Request, now: number): ReplyBody {
    if (!samePayload(memo.request, request)) return error(request.id, 'IDEMPOTENCY_CONFLICT');
    const session = this.#sessionOf(request) as ModelSession;
    session.deadline = now + session.ttlMs;
    session.replyTo = request.replyTo;
    session.lastRequest = request.id;
    const outcome = memo.outcome;
    switch (outcome.kind) {
      case 'answer':
        return outcome.body;
      case 'waiting': {
        const req = memo.request as AcquireRequest;
        const queue = this.waiters.filter((w) => w.request.lock === req.lock);
        const position = queue.findIndex((w) => w.request.id === req.id && w.request.worker === req.worker && ofSession(w.request, session)) + 1;
        return { type: 'queued', re: request.id, lock: req.lock, position };
      }
      case 'held': {
        const hold = this.holds.find((h) => h.token === outcome.token);
        if (hold === undefined) return error(request.id, 'LEASE_EXPIRED');
        const ttlMs = Math.max(0, hold.deadline - now);
        return { type: 'granted', re: request.id, lock: hold.lock, token: hold.token, ttlMs, basis: request.id };
      }
    }
  }

  // ---- grants and queues --------------------------------------------------------------------------

  /**
   * Grants from the head of the lock's queue for as long as the head fits. Never skips a waiter.
   * When the holder a successor was named to is gone, that successor is granted first with its
   * reserved token: while it waits, or once its wait ran out if its session lives (it may hold
   * the lock by the grant the holder forwarded). Then the head is named to a sole mutex holder.
   */
  #drain(lock: string, now: number, out: Decision[]): void {
    const named = this.#named.get(lock);
    if (named !== undefined && !this.holds.some((h) => h.token === named.holder)) {
      this.#named.delete(lock);
      const { waiter: w, session } = named;
      if (this.waiters.includes(w) || (named.timedOut && this.sessions.includes(session))) this.#grantWaiter(w, named.token, now, out);
    }
    for (;;) {
      const head = this.waiters.find((w) => w.request.lock === lock);
      if (head === undefined || !fits(head.request, this.holds.filter((h) => h.lock === lock))) break;
      this.#grantWaiter(head, ++this.#lastToken, now, out);
    }
    if (!this.holds.some((h) => h.lock === lock) && !this.waiters.some((w) => w.request.lock === lock)) {
      this.#retell.delete(lock);
      return;
    }
    this.#nameSuccessor(lock, out);
  }

  /** Grants a waiter, taking it off its queue; or a named successor whose wait ran out (off it already, so no wait is reported). */
  #grantWaiter(w: ModelWaiter, token: number, now: number, out: Decision[]): void {
    const waiting = this.waiters.includes(w);
    this.waiters = this.waiters.filter((x) => x !== w);
    const session = this.#session(principalOf(w.request), w.request.session);
    this.#grant(w.request, session, now, token);
    this.#memo(w.request).outcome = { kind: 'held', token };
    const { id, ttlMs, lock } = w.request;
    const body: ReplyBody = { type: 'granted', re: id, lock, token, ttlMs, basis: session.lastRequest };
    out.push(reply(session.replyTo, body, waiting ? { waitedMs: now - w.queuedAt } : {}));
  }

  /**
   * A mutex with exactly one holder and a queue, and nobody named yet: the head is named to the
   * holder with the next token. If the waiter it was told of left, it is told nobody is next.
   */
  #nameSuccessor(lock: string, out: Decision[]): void {
    const retell = this.#retell.delete(lock);
    const holds = this.holds.filter((h) => h.lock === lock);
    const holder = holds[0];
    if (holder === undefined || holds.length !== 1 || holder.kind !== 'mutex' || this.#named.has(lock)) return;
    const to = this.#session(holder.principal, holder.session).replyTo;
    const head = this.waiters.find((w) => w.request.lock === lock);
    if (head === undefined) {
      if (retell) out.push(reply(to, { type: 'successor', re: holder.acquire, lock, token: holder.token }));
      return;
    }
    const token = ++this.#lastToken;
    const session = this.#session(principalOf(head.request), head.request.session);
    this.#named.set(lock, { holder: holder.token, waiter: head, session, token, timedOut: false });
    const grant = { type: 'granted', re: head.request.id, lock, token, ttlMs: head.request.ttlMs, basis: session.lastRequest } as const;
    const body: ReplyBody = { type: 'successor', re: holder.acquire, lock, token: holder.token, next: { to: session.replyTo, grant } };
    out.push({ type: 'reply', to, body, nextSession: session.id, nextPrincipal: head.request.principal ?? '' });
  }

  #grant(req: AcquireRequest, session: ModelSession, now: number, token = ++this.#lastToken): number {
    this.holds.push({
      lock: req.lock,
      kind: req.kind,
      limit: req.limit,
      principal: session.principal,
      session: session.id,
      worker: session.worker,
      token,
      mode: req.mode,
      permits: req.permits,
      acquire: req.id,
      grantedAt: now,
      deadline: now + req.ttlMs,
    });
    return token;
  }

  /** Takes a waiter off its queue and gives its acquire a final error answer. */
  #answerWaiter(w: ModelWaiter, code: ErrorCode, to: string, out: Decision[]): void {
    this.waiters = this.waiters.filter((x) => x !== w);
    // A named successor whose wait ran out stays named; one that cancelled or lost its session does not.
    const named = this.#named.get(w.request.lock);
    if (named?.waiter === w) {
      if (code === 'WAIT_TIMEOUT') named.timedOut = true;
      else {
        this.#named.delete(w.request.lock);
        this.#retell.add(w.request.lock);
      }
    }
    const body = error(w.request.id, code);
    this.#memo(w.request).outcome = { kind: 'answer', body };
    out.push(reply(to, body));
  }

  #memo(req: AcquireRequest): Memo {
    const memo = this.#sessionOf(req)?.memos.get(req.id);
    if (memo === undefined) throw new Error(`model: no memo for waiting acquire ${req.id}`);
    return memo;
  }

  /** The live session a request speaks for: its principal's session of that id, opened by the same worker. */
  #sessionOf(request: Request): ModelSession | undefined {
    return this.sessions.find((s) => ofSession(request, s) && s.worker === request.worker);
  }

  #session(principal: string, id: string): ModelSession {
    const s = this.sessions.find((x) => x.principal === principal && x.id === id);
    if (s === undefined) throw new Error(`model: no session ${id} of ${JSON.stringify(principal)}`);
    return s;
  }
}

/** Whether `req` can be granted next to `holds` (the live holds of its lock). */
function fits(req: Pick<AcquireRequest, 'kind' | 'limit' | 'mode' | 'permits'>, holds: readonly { readonly mode: LockMode; readonly permits: number }[]): boolean {
  if (req.kind === 'semaphore') return holds.reduce((sum, h) => sum + h.permits, 0) + req.permits <= req.limit;
  if (req.mode === 'exclusive') return holds.length === 0;
  return holds.every((h) => h.mode === 'shared');
}

/** The principal a request comes from: `""` when none was vouched for (identity off). */
function principalOf(request: Request): string {
  return request.principal ?? '';
}

/** Whether `request` names session `s`: its id, from its principal. */
function ofSession(request: Request, s: ModelSession): boolean {
  return request.session === s.id && principalOf(request) === s.principal;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function reply(to: string, body: ReplyBody, metrics: { readonly waitedMs?: number; readonly heldMs?: number } = {}): Decision {
  return { type: 'reply', to, body, ...metrics };
}

/** The answer to `request`: an `opened` one names its session's principal, for the runtime's session key. */
function answer(request: Request, body: ReplyBody): Decision {
  return body.type === 'opened' ? { type: 'reply', to: request.replyTo, body, principal: request.principal ?? '' } : reply(request.replyTo, body);
}

/** A `lost` event, with how long the hold lasted (for metrics, never on the wire). */
function lost(h: ModelHold, to: string, reason: 'LEASE_EXPIRED' | 'NO_SESSION', now: number): Decision {
  const body: ReplyBody = { type: 'lost', re: h.acquire, lock: h.lock, token: h.token, reason };
  return reply(to, body, { heldMs: now - h.grantedAt });
}

function error(re: string, code: ErrorCode, field?: string): ReplyBody {
  const message = ERROR_CODES[code].text;
  return field === undefined ? { type: 'error', re, code, message } : { type: 'error', re, code, message, field };
}

/** Same request apart from where the answer goes and its hand-off proof. */
function samePayload(a: Request, b: Request): boolean {
  const strip = (r: Request) => JSON.stringify(Object.entries(r).filter(([k]) => k !== 'replyTo' && k !== 'handoff').sort(([x], [y]) => (x < y ? -1 : 1)));
  return strip(a) === strip(b);
}

/** What any client may see of a lock: the detail without session and request ids. */
function publicView(d: LockDetail | null): LockView | null {
  if (d === null) return null;
  return {
    ...d,
    holders: d.holders.map((h) => ({ worker: h.worker, token: h.token, mode: h.mode, permits: h.permits, ttlMs: h.ttlMs })),
    waiters: d.waiters.map((w) => ({ worker: w.worker, mode: w.mode, permits: w.permits, position: w.position, waitMs: w.waitMs })),
  };
}
