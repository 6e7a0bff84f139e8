import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { errorFromWire, LockqError, LockqTimeoutError } from './errors.js';
import { Lease, type LeaseOwner } from './lease.js';
import { type LockClientOptions, type ResolvedClientOptions, resolveClientOptions } from './options.js';
import { type AcquireWire, decodeReply, type DistributiveOmit, encodeReply, encodeRequest, type GrantedReply, type InspectedReply, type LockKind, type LockMode, partitionOf, PROTOCOL_VERSION, type Reply, type Request } from '@lockq/protocol';
import { SendTimes } from './send-times.js';
import { ReadWriteLock, Semaphore } from './helpers.js';
import { openTransport } from './transport/open.js';
import type { ClientTransport } from './transport/types.js';

/** Options of one acquire. */
export interface AcquireOptions {
  /** Lease length. @defaultValue the client's `defaultTtlMs` (30000) */
  readonly ttlMs?: number;
  /** How long to wait in the queue; 0 = try once. @defaultValue the client's `defaultWaitMs` (30000) */
  readonly waitMs?: number;
  /** Aborting it cancels the waiting request (the acquire rejects with ABORTED). */
  readonly signal?: AbortSignal;
  /** Extend the lease automatically until it is released. @defaultValue false (true in withLock) */
  readonly autoRenew?: boolean;
  /** Told the request's place in the queue (1 = next) when it has to wait. */
  readonly onQueued?: (position: number) => void;
}

/** What kind of hold to ask for; the helpers (semaphore, rwlock) fill this in. */
export interface LockSpec {
  readonly kind: LockKind;
  readonly mode: LockMode;
  /** Semaphore only. */
  readonly limit?: number;
  /** Semaphore only. @defaultValue 1 */
  readonly permits?: number;
}

/** What a `withLock` routine receives. */
export interface LockContext {
  /** The fencing token: hand it to the resource, which must refuse lower ones. */
  readonly token: number;
  /** Aborts the moment the lease can no longer be trusted. */
  readonly signal: AbortSignal;
  readonly lease: Lease;
}

type RequestFields = DistributiveOmit<Request | AcquireWire, 'v' | 'id' | 'worker' | 'session' | 'replyTo'>;

/** What an acquire watches while it waits for its answer. */
interface Watch {
  readonly signal?: AbortSignal | undefined;
  readonly onQueued?: ((position: number) => void) | undefined;
  /**
   * Runs as the grant is read, before any reply after it: the lease must exist by then, since the
   * coordinator's next reply may be about it (a `lost`, a `successor`, a second copy of the grant).
   */
  readonly onGranted?: ((reply: GrantedReply) => void) | undefined;
}

interface Pending {
  readonly id: string;
  readonly seq: number;
  readonly partition: number;
  /** The session of `partition`, at hand for every send and answer. */
  readonly session: PartitionSession;
  readonly body: Uint8Array;
  /** Time by which an answer (for a waiting acquire: the final one) must have come. */
  dueAt: number;
  readonly waitMs: number;
  /** For an acquire: its lock, so a timed-out wait can be cancelled. */
  readonly lock: string | undefined;
  readonly onQueued: ((position: number) => void) | undefined;
  readonly onGranted: ((reply: GrantedReply) => void) | undefined;
  /** When this request last went out (first send, re-send, or re-ask of a queued acquire). */
  lastSentAt: number;
  queued: boolean;
  resolve: (reply: Reply) => void;
  reject: (err: LockqError) => void;
}

interface PartitionSession {
  readonly partition: number;
  readonly id: string;
  /** The JSON of every request's envelope up to its id, which is all that varies. */
  readonly envelope: string;
  opened: Promise<void> | undefined;
  /** `opened` once it has settled successfully: a request then goes out without awaiting it. */
  ready: Promise<void> | undefined;
  /**
   * Until when the coordinator provably keeps this session: the first send of the latest request
   * it answered (processing it refreshed the session), plus the session ttl, minus the drift
   * margin. Every lease of the session is trusted no longer than this.
   */
  aliveUntil: number;
  lastSentAt: number;
  /** Highest coordinator epoch seen; replies from lower epochs are ignored. */
  epoch: number;
  readonly leases: Set<Lease>;
  /** The watermark: sequence numbers sent on this session whose answer is still needed, in order. */
  readonly unsettled: number[];
  unsettledHead: number;
  readonly settledEarly: Set<number>;
  lastSeq: number;
}

const MUTEX: LockSpec = Object.freeze({ kind: 'mutex', mode: 'exclusive' });

/** The open clients of this process by reply address, so a hand-off between two of them stays in process. */
const clientsHere = new Map<string, LockClient>();

/** Everything sent on the session up to the first request whose answer is still needed. */
function watermark(s: PartitionSession): number {
  const first = s.unsettled[s.unsettledHead];
  return first === undefined ? s.lastSeq : first - 1;
}

function settle(s: PartitionSession, seq: number): void {
  // Answers mostly come in send order: then the oldest is settled without going through the Set.
  if (s.unsettled[s.unsettledHead] === seq) s.unsettledHead++;
  else s.settledEarly.add(seq);
  while (
    s.settledEarly.size > 0 &&
    s.unsettledHead < s.unsettled.length &&
    s.settledEarly.delete(s.unsettled[s.unsettledHead] as number)
  ) {
    s.unsettledHead++;
  }
  if (s.unsettledHead > 1024 && s.unsettledHead * 2 > s.unsettled.length) {
    s.unsettled.splice(0, s.unsettledHead);
    s.unsettledHead = 0;
  }
}

/**
 * A worker's connection to lockq. One client carries any number of concurrent requests; share
 * it between the tasks of a process.
 *
 * @example
 * const client = await LockClient.connect('memory:', { workerId: 'billing-7' });
 * await client.withLock('invoice:42', { ttlMs: 10_000 }, async ({ token, signal }) => {
 *   await db.write(row, { fencingToken: token, signal });
 * });
 * await client.close();
 */
export class LockClient implements LeaseOwner {
  readonly options: ResolvedClientOptions;
  readonly logger: Logger;
  readonly #transport: ClientTransport;
  readonly #instance: string;
  readonly #pending = new Map<string, Pending>();
  /**
   * Send times, and which requests had their final answer (a bounded memory): replies come at
   * least once, and a second copy of a grant must not be taken for an orphan.
   */
  readonly #sentAt = new SendTimes();
  readonly #sessions = new Map<number, PartitionSession>();
  /** Live leases by `${partition}:${token}`. */
  readonly #leases = new Map<string, Lease>();
  #seq = 0;
  #closed = false;
  readonly #sweeper: NodeJS.Timeout;
  readonly #heartbeat: NodeJS.Timeout;

  private constructor(transport: ClientTransport, options: ResolvedClientOptions, instance: string) {
    this.#transport = transport;
    this.options = options;
    this.#instance = instance;
    this.logger = options.logger.child({ component: 'lockq-client', worker: options.workerId });
    const sweepMs = Math.min(250, Math.max(10, Math.floor(options.requestTimeoutMs / 10)));
    this.#sweeper = setInterval(() => this.#sweep(), sweepMs).unref();
    this.#heartbeat = setInterval(() => this.#beat(), Math.max(5, Math.floor(options.heartbeatMs / 2))).unref();
  }

  /**
   * Connects to lockq at `url`: `memory:` (the in-process broker of an embedded coordinator) or
   * `amqp://user:pass@host:port` (RabbitMQ).
   */
  static async connect(url: string, options: LockClientOptions = {}): Promise<LockClient> {
    const resolved = resolveClientOptions(options);
    const instance = randomUUID().slice(0, 8);
    const transport =
      options.transport ??
      (await openTransport(url, { workerId: resolved.workerId, instance, prefix: resolved.prefix, logger: resolved.logger }));
    const client = new LockClient(transport, resolved, instance);
    await transport.open({
      onReply: (body) => client.#onReply(body),
      onReconnect: () => client.#onReconnect(),
      onError: (err) => client.logger.error({ err }, 'transport failed'),
    });
    clientsHere.set(transport.replyAddress, client);
    return client;
  }

  get renewAt(): number {
    return this.options.renewAt;
  }

  sessionDeadline(partition: number): number {
    return this.#sessions.get(partition)?.aliveUntil ?? Number.NEGATIVE_INFINITY;
  }

  // ---- public API -----------------------------------------------------------------------------

  /** Waits for the lock (a mutex unless `spec` says otherwise) and returns the lease. */
  async acquire(name: string, options: AcquireOptions = {}, spec: LockSpec = MUTEX): Promise<Lease> {
    const lease = await this.#acquire(name, options, spec, options.waitMs ?? this.options.defaultWaitMs);
    if (lease === null) throw new LockqError('LOCK_BUSY');
    return lease;
  }

  /** Takes the lock only if it is free and nobody waits for it; null otherwise. */
  tryAcquire(name: string, options: Omit<AcquireOptions, 'waitMs'> = {}, spec: LockSpec = MUTEX): Promise<Lease | null> {
    return this.#acquire(name, options, spec, 0);
  }

  /**
   * Runs `routine` while holding `name`, renewing the lease as it runs and releasing it after,
   * whatever happens. The routine gets the fencing token and a signal that aborts if the lease is
   * lost.
   */
  withLock<T>(name: string, routine: (ctx: LockContext) => Promise<T>): Promise<T>;
  withLock<T>(name: string, options: AcquireOptions, routine: (ctx: LockContext) => Promise<T>): Promise<T>;
  withLock<T>(
    name: string,
    a: AcquireOptions | ((ctx: LockContext) => Promise<T>),
    b?: (ctx: LockContext) => Promise<T>,
  ): Promise<T> {
    const [options, routine] = typeof a === 'function' ? [{}, a] : [a, b as (ctx: LockContext) => Promise<T>];
    return this.withLease(this.acquire(name, { ...options, autoRenew: true }), routine);
  }

  /** Runs `routine` with a lease obtained by `acquired`, then releases it. The helpers build on this. */
  async withLease<T>(acquired: Promise<Lease>, routine: (ctx: LockContext) => Promise<T>): Promise<T> {
    const lease = await acquired;
    lease.startRenewing();
    try {
      return await routine({ token: lease.token, signal: lease.signal, lease });
    } finally {
      await lease.release().catch((err: unknown) => this.logger.warn({ err, lock: lease.lock }, 'release failed'));
    }
  }

  /** A counting semaphore of `limit` permits on `name`. */
  semaphore(name: string, options: { readonly limit: number }): Semaphore {
    return new Semaphore(this, name, options.limit);
  }

  /** A read-write lock on `name`. */
  rwlock(name: string): ReadWriteLock {
    return new ReadWriteLock(this, name);
  }

  /** Holders, waiters and partition counts for `name`, as the coordinator sees them now. */
  async inspect(name: string): Promise<InspectedReply> {
    return (await this.#call(partitionOf(name, this.options.partitions), { op: 'inspect', lock: name })) as InspectedReply;
  }

  /** Closes every session (releasing its holds), then the connection. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    const closing = [...this.#sessions.values()]
      .filter((s) => s.opened !== undefined)
      .map((s) => this.#call(s.partition, { op: 'close' }).catch(() => undefined));
    await Promise.all(closing);
    this.#closed = true;
    if (clientsHere.get(this.#transport.replyAddress) === this) clientsHere.delete(this.#transport.replyAddress);
    clearInterval(this.#sweeper);
    clearInterval(this.#heartbeat);
    for (const p of this.#pending.values()) p.reject(new LockqError('CLIENT_CLOSED'));
    this.#pending.clear();
    for (const lease of this.#leases.values()) lease.lose('client closed');
    this.#leases.clear();
    await this.#transport.close();
  }

  // ---- leases ---------------------------------------------------------------------------------

  async #acquire(name: string, options: AcquireOptions, spec: LockSpec, waitMs: number): Promise<Lease | null> {
    const ttlMs = options.ttlMs ?? this.options.defaultTtlMs;
    const base = { op: 'acquire', lock: name, ttlMs, waitMs } as const;
    const fields: RequestFields =
      spec.kind === 'semaphore'
        ? { ...base, kind: 'semaphore', limit: spec.limit ?? 1, permits: spec.permits ?? 1 }
        : spec.kind === 'rwlock'
          ? { ...base, kind: 'rwlock', mode: spec.mode }
          : base;
    const partition = partitionOf(name, this.options.partitions);
    const taken: { lease?: Lease } = {};
    const onGranted = (g: GrantedReply): void => {
      const lease = new Lease(
        this,
        { lock: name, token: g.token, mode: spec.mode, permits: spec.permits ?? 1, partition, ttlMs },
        this.#localDeadline(g.basis, g.re, g.ttlMs),
      );
      this.#leases.set(`${partition}:${g.token}`, lease);
      this.#sessions.get(partition)?.leases.add(lease);
      taken.lease = lease;
    };
    try {
      await this.#call(partition, fields, { signal: options.signal, onQueued: options.onQueued, onGranted });
    } catch (err) {
      if (err instanceof LockqError && err.code === 'LOCK_BUSY' && waitMs === 0) return null;
      throw err;
    }
    const lease = taken.lease;
    if (lease === undefined) throw new LockqError('TRANSPORT_ERROR', 'an acquire was answered without a grant');
    // A grant after a long wait may come with little of its lease provably left (its basis is the
    // session's last request, maybe long ago): extend it now, so the caller gets a usable lease.
    if (lease.leaseDeadline - performance.now() < ttlMs / 2) {
      try {
        await lease.extend(ttlMs);
      } catch (err) {
        await lease.release().catch(() => undefined);
        throw err;
      }
    }
    if (options.autoRenew === true) lease.startRenewing();
    return lease;
  }

  async releaseLease(lease: Lease): Promise<void> {
    this.#forget(lease);
    this.#handOff(lease);
    try {
      await this.#call(lease.partition, { op: 'release', lock: lease.lock, token: lease.token });
    } catch (err) {
      // Already gone on the coordinator's side: the release has nothing left to do.
      if (err instanceof LockqError && (err.code === 'LEASE_EXPIRED' || err.code === 'NOT_HOLDER')) return;
      throw err;
    }
  }

  async extendLease(lease: Lease, ttlMs: number): Promise<number> {
    const reply = await this.#call(lease.partition, { op: 'extend', lock: lease.lock, token: lease.token, ttlMs });
    const r = reply as GrantedReply | (Reply & { type: 'extended'; basis: string; ttlMs: number });
    return this.#localDeadline(r.basis, r.re, r.ttlMs);
  }

  /**
   * Passes the lock straight to the waiter the coordinator named (a contended mutex), one hop
   * ahead of the release: the forwarded grant is the one the coordinator reserved and grants
   * itself on the release, so the successor gets the same token either way. Only while this
   * worker may still trust the lease: a lease that is lost, or past its local deadline, may have
   * gone to someone else already, and its successor event may be stale.
   */
  #handOff(lease: Lease): void {
    const event = lease.successor;
    if (event?.next === undefined || lease.lostReason !== undefined || performance.now() >= lease.deadline) return;
    const { to, grant } = event.next;
    const body = encodeReply(grant, event.epoch, event.partition);
    // A successor in this process (this client, or another one here) is handed the same bytes
    // directly, as its transport would deliver them, without the broker hop.
    const here = this.options.localHandOff ? clientsHere.get(to) : undefined;
    if (here !== undefined && !here.#closed) {
      queueMicrotask(() => here.#onReply(body));
      return;
    }
    // Best effort: if it is lost, the coordinator's own grant follows the release.
    this.#transport.forward(to, body).catch((err: unknown) => this.logger.debug({ err, to }, 'forwarding a grant failed'));
  }

  #forget(lease: Lease): void {
    this.#leases.delete(`${lease.partition}:${lease.token}`);
    this.#sessions.get(lease.partition)?.leases.delete(lease);
  }

  /**
   * The latest moment this worker may trust a lease: the coordinator decided it with `ttlMs` left,
   * after it had processed `basis`, which this worker sent at a known time; minus a drift margin.
   * Without a record of `basis`, the request itself (sent no later than basis) stands in.
   */
  #localDeadline(basis: string, request: string, ttlMs: number): number {
    const sentAt = this.#sendTime(basis) ?? this.#sendTime(request) ?? Number.NEGATIVE_INFINITY;
    return sentAt + ttlMs - (ttlMs * this.options.driftFactor + this.options.driftMarginMs);
  }

  #sendTime(id: string): number | undefined {
    const seq = this.#seqOf(id);
    return seq === undefined ? undefined : this.#sentAt.get(seq);
  }

  /** Request ids are `<instance>-<seq in base 36>`; anything else was not sent by this client. */
  #seqOf(id: string): number | undefined {
    const prefix = this.#instance.length + 1;
    if (!id.startsWith(this.#instance) || id.charCodeAt(prefix - 1) !== 45 /* - */) return undefined;
    return Number.parseInt(id.slice(prefix), 36);
  }

  // ---- sessions -------------------------------------------------------------------------------

  #session(partition: number): PartitionSession {
    let s = this.#sessions.get(partition);
    if (s === undefined) {
      const id = `${this.options.workerId}.${this.#instance}.${partition}`;
      const envelope =
        `{"v":${PROTOCOL_VERSION},"worker":${JSON.stringify(this.options.workerId)},"session":${JSON.stringify(id)},` +
        `"replyTo":${JSON.stringify(this.#transport.replyAddress)},"id":"`;
      s = {
        partition,
        id,
        envelope,
        opened: undefined,
        ready: undefined,
        aliveUntil: Number.NEGATIVE_INFINITY,
        lastSentAt: 0,
        epoch: 0,
        leases: new Set(),
        unsettled: [],
        unsettledHead: 0,
        settledEarly: new Set(),
        lastSeq: 0,
      };
      this.#sessions.set(partition, s);
    }
    return s;
  }

  #ensureSession(s: PartitionSession): Promise<void> {
    return (
      s.opened ??
      this.#startOpening(s, (err) => {
        s.opened = undefined;
        throw err;
      })
    );
  }

  /** Opens (or re-opens) the session as `s.opened`, which becomes `s.ready` once it succeeded. */
  #startOpening(s: PartitionSession, onFailure: (err: unknown) => void): Promise<void> {
    const opening: Promise<void> = this.#openSession(s).then(() => {
      if (s.opened === opening) s.ready = opening;
    }, onFailure);
    s.opened = opening;
    return opening;
  }

  async #openSession(s: PartitionSession): Promise<void> {
    const reply = await this.#send(s, {
      op: 'open',
      sessionTtlMs: this.options.sessionTtlMs,
      partitions: this.options.partitions,
    });
    if (reply.type === 'opened' && !reply.resumed) this.#loseAll(s, 'NO_SESSION');
  }

  /** The coordinator no longer knows the session: every lease in it is gone. */
  #sessionLost(s: PartitionSession): void {
    s.opened = undefined;
    this.#loseAll(s, 'NO_SESSION');
  }

  #loseAll(s: PartitionSession, reason: string): void {
    for (const lease of s.leases) {
      lease.lose(reason);
      this.#leases.delete(`${s.partition}:${lease.token}`);
    }
    s.leases.clear();
  }

  #beat(): void {
    const now = performance.now();
    // A waiting acquire re-asks (same id) once per session ttl: if its grant's reply was ever
    // lost, the coordinator answers from its state and the grant is learnt now, not at timeout.
    for (const p of this.#pending.values()) {
      if (p.queued && now - p.lastSentAt >= this.options.sessionTtlMs) this.#transmit(p);
    }
    for (const s of this.#sessions.values()) {
      if (s.opened === undefined || now - s.lastSentAt < this.options.heartbeatMs) continue;
      this.#call(s.partition, { op: 'heartbeat' }).catch((err: unknown) =>
        this.logger.warn({ err, partition: s.partition }, 'heartbeat failed'),
      );
    }
  }

  #onReconnect(): void {
    this.logger.info({ pending: this.#pending.size }, 'reconnected; re-opening sessions and re-sending requests');
    // Re-open first (same session id: a session still within its ttl is resumed with its holds),
    // then re-send everything in flight with the same ids; idempotency absorbs duplicates.
    const inFlight = [...this.#pending.values()];
    for (const s of this.#sessions.values()) {
      if (s.opened !== undefined) this.#startOpening(s, () => this.#sessionLost(s));
    }
    for (const p of inFlight) this.#transmit(p);
  }

  // ---- requests and replies -------------------------------------------------------------------

  /** Sends a request in an open session (opening one first), retrying once if the session was lost. */
  async #call(partition: number, fields: RequestFields, watch: Watch = {}): Promise<Reply> {
    const s = this.#session(partition);
    for (let attempt = 0; ; attempt++) {
      // Awaited only while the session is (re-)opening: most requests go out in this same turn.
      if (fields.op !== 'inspect' && (s.opened === undefined || s.ready !== s.opened)) await this.#ensureSession(s);
      try {
        return await this.#send(s, fields, watch);
      } catch (err) {
        if (!(err instanceof LockqError) || err.code !== 'NO_SESSION' || attempt >= 2) throw err;
        this.#sessionLost(s);
        // A release or extend of a hold in the lost session has nothing to act on any more.
        if (fields.op === 'release' || fields.op === 'extend') throw err;
      }
    }
  }

  /** One request, one final answer (a waiting acquire: its grant or its error). */
  #send(s: PartitionSession, fields: RequestFields, watch: Watch = {}): Promise<Reply> {
    const { signal } = watch;
    if (this.#closed) return Promise.reject(new LockqError('CLIENT_CLOSED'));
    if (signal?.aborted === true) return Promise.reject(new LockqError('ABORTED', undefined, { cause: signal.reason }));
    const seq = ++this.#seq;
    const id = `${this.#instance}-${seq.toString(36)}`;
    const settled = watermark(s);
    s.unsettled.push(seq);
    s.lastSeq = seq;
    const body = encodeRequest(`${s.envelope}${id}","seq":${seq},"settled":${settled}`, fields);
    const waitMs = fields.op === 'acquire' ? fields.waitMs : 0;
    const now = performance.now();
    return new Promise<Reply>((resolve, reject) => {
      const pending: Pending = {
        id,
        seq,
        partition: s.partition,
        session: s,
        body,
        dueAt: now + this.options.requestTimeoutMs,
        waitMs,
        lock: fields.op === 'acquire' ? fields.lock : undefined,
        onQueued: watch.onQueued,
        onGranted: watch.onGranted,
        lastSentAt: 0,
        queued: false,
        resolve,
        reject,
      };
      if (signal !== undefined) {
        const onAbort = (): void => {
          if (!this.#pending.delete(id)) return;
          settle(s, seq);
          reject(new LockqError('ABORTED', undefined, { cause: signal.reason }));
          if (fields.op === 'acquire') this.#cancel(s.partition, fields.lock, id);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        const done = (): void => signal.removeEventListener('abort', onAbort);
        pending.resolve = (reply) => {
          done();
          resolve(reply);
        };
        pending.reject = (err) => {
          done();
          reject(err);
        };
      }
      this.#pending.set(id, pending);
      this.#transmit(pending, now);
    });
  }

  #transmit(p: Pending, now = performance.now()): void {
    this.#sentAt.record(p.seq, now);
    p.lastSentAt = now;
    p.session.lastSentAt = now;
    this.#transport.send(p.partition, p.body).catch((err: unknown) => {
      if ((err as { refused?: unknown }).refused === true && this.#pending.delete(p.id)) {
        // The broker refused it (a full request queue, no coordinator): say so now, not at the timeout.
        settle(p.session, p.seq);
        p.reject(err instanceof LockqError ? err : new LockqError('TRANSPORT_ERROR', String(err), { cause: err }));
        return;
      }
      // A lost connection: the request is re-sent on reconnect, or times out.
      this.logger.debug({ err, id: p.id }, 'send failed; waiting for reconnect');
    });
  }

  #cancel(partition: number, lock: string, target: string): void {
    this.#send(this.#session(partition), { op: 'cancel', lock, target }).catch(() => undefined);
  }

  #onReply(body: Uint8Array): void {
    const reply = decodeReply(body);
    if (reply === null) {
      this.logger.warn('unreadable reply dropped');
      return;
    }
    const s = this.#session(reply.partition);
    if (reply.epoch < s.epoch) return; // from a coordinator that has been replaced
    if (reply.epoch > s.epoch && s.epoch !== 0) {
      // A new term: anything in flight may have been decided by the old one and never answered.
      // Ask again with the same ids; the new coordinator answers from its restored state.
      for (const p of this.#pending.values()) if (p.partition === reply.partition && p.id !== reply.re) this.#transmit(p);
    }
    s.epoch = reply.epoch;
    if (reply.type === 'lost') {
      const lease = this.#leases.get(`${reply.partition}:${reply.token}`);
      if (lease !== undefined) {
        this.#forget(lease);
        lease.lose(reply.reason);
      }
      return;
    }
    if (reply.type === 'successor') {
      this.#leases.get(`${reply.partition}:${reply.token}`)?.setSuccessor(reply);
      return;
    }
    const pending = this.#pending.get(reply.re);
    if (pending === undefined) {
      if (reply.type !== 'granted') return; // a second copy, or an answer nobody waits for any more
      if (this.#leases.has(`${reply.partition}:${reply.token}`)) return; // a second copy of a grant held
      const seq = this.#seqOf(reply.re);
      if (seq !== undefined && this.#sentAt.tookGrant(seq)) return; // taken and since let go
      // A grant for a request whose wait ended (answered with an error, timed out here, aborted):
      // nobody wants it, but the coordinator may hold it for this client, since a named successor
      // is granted even after its wait ran out (it may have taken the holder's forwarded copy).
      // Give it back at once.
      this.#call(reply.partition, { op: 'release', lock: reply.lock, token: reply.token }).catch(() => undefined);
      return;
    }
    // From its first answer on, a request's answer is no longer needed from the coordinator's
    // memory: a queued acquire re-sent later is answered from the queue itself.
    settle(pending.session, pending.seq);
    if (reply.type !== 'error' && reply.type !== 'inspected') this.#sessionProven(pending.session, pending.seq);
    if (reply.type === 'queued') {
      pending.dueAt = this.#sentAt.get(pending.seq) ?? performance.now();
      pending.dueAt += pending.waitMs + this.options.requestTimeoutMs;
      pending.queued = true;
      pending.onQueued?.(reply.position);
      return;
    }
    this.#pending.delete(reply.re);
    this.#sentAt.markAnswered(pending.seq, reply.type === 'granted');
    if (reply.type === 'error') {
      pending.reject(errorFromWire(reply.code, reply.message, reply.field));
    } else {
      if (reply.type === 'granted') pending.onGranted?.(reply);
      pending.resolve(reply);
    }
  }

  /** The coordinator processed request `seq` of session `s`, which refreshed the session then. */
  #sessionProven(s: PartitionSession, seq: number): void {
    const sentAt = this.#sentAt.get(seq);
    if (sentAt === undefined) return;
    const ttl = this.options.sessionTtlMs;
    const until = sentAt + ttl - (ttl * this.options.driftFactor + this.options.driftMarginMs);
    if (until > s.aliveUntil) s.aliveUntil = until;
  }

  #sweep(): void {
    const now = performance.now();
    for (const p of this.#pending.values()) {
      if (p.dueAt > now) continue;
      this.#pending.delete(p.id);
      settle(this.#session(p.partition), p.seq);
      p.reject(new LockqTimeoutError(`no answer to request ${p.id} within its deadline`));
      if (p.lock !== undefined && p.waitMs > 0) this.#cancel(p.partition, p.lock, p.id);
    }
  }
}
