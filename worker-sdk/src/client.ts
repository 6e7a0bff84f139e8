import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { LockqError } from './errors.js';
import { HandOff } from './hand-off.js';
import { HeldLeases } from './held-leases.js';
import { ReadWriteLock, Semaphore } from './helpers.js';
import { Lease, type LeaseOwner } from './lease.js';
import type { AcquireOptions, LockContext, Locking, LockSpec } from './lock-api.js';
import { type LockClientOptions, type ResolvedClientOptions, resolveClientOptions } from './options.js';
import { backoffMs, type GrantedReply, type InspectedReply, isHandOffProof, partitionOf, type Reply, type RetryPolicy } from '@lockq/protocol';
import { type DroppedReason, ReplyRouter } from './reply-router.js';
import { type RequestFields, RequestTable } from './request-table.js';
import { Sessions } from './sessions.js';
import { LocalHandOffTransport } from './transport/local-hand-off.js';
import { openTransport } from './transport/open.js';
import { type ClientTransport, refusedByBroker } from './transport/types.js';

const MUTEX: LockSpec = Object.freeze({ kind: 'mutex', mode: 'exclusive' });
/** Between attempts at a release the broker refused. */
/** A release that failed this way may never have reached the coordinator's core. */
function releaseMayNotHaveLanded(err: unknown): boolean {
  return refusedByBroker(err) || (err instanceof LockqError && (err.code === 'RATE_LIMITED' || err.code === 'TIMEOUT'));
}

const RELEASE_RETRY: RetryPolicy = Object.freeze({ initialMs: 20, maxMs: 1000, factor: 2, attempts: Number.POSITIVE_INFINITY });

/**
 * A worker's connection to lockq. One client carries any number of concurrent requests; share
 * it between the tasks of a process.
 *
 * It is a façade over the parts that do the work, each in its own file: the session table
 * (`sessions.ts`), the request table (`request-table.ts`), the leases held (`held-leases.ts`),
 * the hand-off (`hand-off.ts`) and the reply router (`reply-router.ts`).
 *
 * @example
 * const client = await LockClient.connect('memory:', { workerId: 'billing-7' });
 * await client.withLock('invoice:42', { ttlMs: 10_000 }, async ({ token, signal }) => {
 *   await db.write(row, { fencingToken: token, signal });
 * });
 * await client.close();
 */
export class LockClient implements LeaseOwner, Locking {
  readonly options: ResolvedClientOptions;
  readonly logger: Logger;
  readonly #transport: ClientTransport;
  readonly #requests: RequestTable;
  readonly #sessions: Sessions;
  readonly #leases = new HeldLeases();
  readonly #handOff: HandOff;
  readonly #router: ReplyRouter;
  #closing: Promise<void> | undefined;

  private constructor(transport: ClientTransport, options: ResolvedClientOptions, instance: string) {
    this.options = options;
    this.logger = options.logger.child({ component: 'lockq-client', worker: options.workerId });
    this.#transport = new LocalHandOffTransport(transport, { shortcut: options.localHandOff });
    const logger = this.logger;
    this.#requests = new RequestTable(this.#transport, { ...options, instance, logger });
    this.#sessions = new Sessions(this.#requests, this.#leases, { ...options, instance, replyAddress: transport.replyAddress, logger });
    this.#handOff = new HandOff({ transport: this.#transport, leases: this.#leases, requests: this.#requests, sessions: this.#sessions, logger });
    this.#router = new ReplyRouter({ sessions: this.#sessions, requests: this.#requests, leases: this.#leases, handOff: this.#handOff, logger });
  }

  /**
   * Connects to lockq at `url`: `memory:` (the in-process broker of an embedded coordinator),
   * `amqp://user:pass@host:port` (RabbitMQ; `amqps://` with TLS) or `kafka://host:9092,…`
   * (Apache Kafka; `kafkas://` with TLS).
   */
  static async connect(url: string, options: LockClientOptions = {}): Promise<LockClient> {
    const resolved = resolveClientOptions(options);
    const instance = randomUUID().slice(0, 8);
    const transport =
      options.transport ??
      (await openTransport(url, {
        workerId: resolved.workerId,
        instance,
        prefix: resolved.prefix,
        logger: resolved.logger,
        ...(resolved.tls === undefined ? {} : { tls: resolved.tls }),
        ...(resolved.principal === undefined ? {} : { principal: resolved.principal }),
        partitions: resolved.partitions,
      }));
    const client = new LockClient(transport, resolved, instance);
    const router = client.#router;
    try {
      await client.#transport.open({
        onReply: (body, origin) => router.route(body, origin),
        onReconnect: () => client.#onReconnect(),
        onError: (err) => client.logger.error({ err }, 'transport failed'),
      });
    } catch (err) {
      // Nothing was sent: stop the parts' timers and give the transport back, then report.
      client.#sessions.close();
      client.#requests.close();
      await client.#transport.close().catch(() => undefined);
      throw err;
    }
    return client;
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

  /**
   * Replies dropped so far, by reason, and never acted on: unreadable ones, answers that do not
   * match their request, and forwards that are not a hand-off the coordinator signed for this
   * client's session (docs/security.md §6.2). Anything but zero outside `forward-mac` after a
   * coordinator take-over without a shared secret deserves a look: someone may be injecting
   * replies. Each reason is also logged at warn, at most once a minute.
   */
  get droppedReplies(): Readonly<Record<DroppedReason, number>> {
    return this.#router.dropped;
  }

  /** Holders, waiters and partition counts for `name`, as the coordinator sees them now. */
  async inspect(name: string): Promise<InspectedReply> {
    return (await this.#sessions.call(partitionOf(name, this.options.partitions), { op: 'inspect', lock: name })) as InspectedReply;
  }

  /**
   * Closes every session (releasing its holds), then the connection. Idempotent: every call,
   * concurrent or later, resolves once the one closing is done.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  // ---- what a lease asks of its client (LeaseOwner) ---------------------------------------------

  get renewAt(): number {
    return this.options.renewAt;
  }

  sessionDeadline(partition: number): number {
    return this.#sessions.deadline(partition);
  }

  async releaseLease(lease: Lease): Promise<void> {
    this.#leases.forget(lease);
    this.#handOff.releasing(lease);
    const proof = lease.handOffProof;
    const fields = { op: 'release', lock: lease.lock, token: lease.token } as const;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#sessions.call(lease.partition, proof === undefined ? fields : { ...fields, handoff: proof });
        return;
      } catch (err) {
        // Already gone on the coordinator's side: the release has nothing left to do. Unless it was
        // a hand-off the coordinator did not complete early: the hold comes with its own grant.
        if (err instanceof LockqError && (err.code === 'LEASE_EXPIRED' || err.code === 'NOT_HOLDER')) {
          if (proof !== undefined && err.code === 'NOT_HOLDER') this.#handOff.refusedEarly(lease);
          return;
        }
        // The release did not reach the core: the broker refused it (a full request queue), the
        // coordinator dropped it over this principal's rate (RATE_LIMITED, or no answer at all), or
        // the answer was lost. The hold may still be there and would stall the next waiter, this
        // worker included, until its lease ran out: send it again while the lease may be live
        // (a release that did land makes the next one NOT_HOLDER, which ends this loop).
        if (!releaseMayNotHaveLanded(err) || performance.now() >= lease.deadline) throw err;
        const wait = Math.max(backoffMs(RELEASE_RETRY, attempt), err instanceof LockqError ? (err.retryAfterMs ?? 0) : 0);
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
  }

  async extendLease(lease: Lease, ttlMs: number): Promise<number> {
    const proof = lease.handOffProof;
    const fields = { op: 'extend', lock: lease.lock, token: lease.token, ttlMs } as const;
    let reply: Reply;
    try {
      reply = await this.#sessions.call(lease.partition, proof === undefined ? fields : { ...fields, handoff: proof });
    } catch (err) {
      // The lease is lost (Lease.extend), but the coordinator may still grant it: give it back then.
      if (proof !== undefined && err instanceof LockqError && err.code === 'NOT_HOLDER') this.#handOff.refusedEarly(lease);
      throw err;
    }
    const r = reply as GrantedReply | (Reply & { type: 'extended'; basis: string; ttlMs: number });
    return this.#localDeadline(r.basis, r.re, r.ttlMs);
  }

  // ---- internals ------------------------------------------------------------------------------

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
      // A grant forwarded by the previous holder: its requests carry the proof until the
      // coordinator's own copy comes (a malformed one would only get them refused).
      if (isHandOffProof(g.proof)) lease.handOffProof = g.proof;
      this.#leases.add(lease);
      taken.lease = lease;
    };
    try {
      await this.#sessions.call(partition, fields, { signal: options.signal, onQueued: options.onQueued, onGranted });
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

  /**
   * The latest moment this worker may trust a lease: the coordinator decided it with `ttlMs` left,
   * after it had processed `basis`, which this worker sent at a known time; minus a drift margin.
   * Without a record of `basis`, the request itself (sent no later than basis) stands in.
   */
  #localDeadline(basis: string, request: string, ttlMs: number): number {
    const sentAt = this.#requests.sentAtOf(basis) ?? this.#requests.sentAtOf(request) ?? Number.NEGATIVE_INFINITY;
    return sentAt + ttlMs - (ttlMs * this.options.driftFactor + this.options.driftMarginMs);
  }

  #onReconnect(): void {
    this.logger.info({ pending: this.#requests.size }, 'reconnected; re-opening sessions and re-sending requests');
    // Re-open first (same session id: a session still within its ttl is resumed with its holds),
    // then re-send everything that was in flight with the same ids; idempotency absorbs duplicates.
    const inFlightUpTo = this.#requests.lastSeq;
    this.#sessions.reopenAll();
    this.#requests.resendUpTo(inFlightUpTo);
  }

  async #close(): Promise<void> {
    const closing = this.#sessions.openPartitions().map((p) => this.#sessions.call(p, { op: 'close' }).catch(() => undefined));
    await Promise.all(closing);
    this.#sessions.close();
    this.#requests.close();
    this.#leases.loseAll('client closed');
    await this.#transport.close();
  }
}
