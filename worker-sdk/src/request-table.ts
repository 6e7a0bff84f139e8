import type { Logger } from 'pino';
import { type AcquireWire, type DistributiveOmit, encodeRequest, type GrantedReply, type Reply, type Request } from '@lockq/protocol';
import { errorFromWire, LockqError, LockqTimeoutError } from './errors.js';
import { SendTimes } from './send-times.js';
import { numberRequest, type PartitionSession, settle } from './session.js';
import { type ClientTransport, refusedByBroker } from './transport/types.js';

/** A request as the client fills it in; the envelope (version, id, session, reply address) is added here. */
export type RequestFields = DistributiveOmit<Request | AcquireWire, 'v' | 'id' | 'worker' | 'session' | 'replyTo'>;

/** What an acquire watches while it waits for its answer. */
export interface Watch {
  readonly signal?: AbortSignal | undefined;
  readonly onQueued?: ((position: number) => void) | undefined;
  /**
   * Runs as the grant is read, before any reply after it: the lease must exist by then, since the
   * coordinator's next reply may be about it (a `lost`, a `successor`, a second copy of the grant).
   */
  readonly onGranted?: ((reply: GrantedReply) => void) | undefined;
}

/** A request still waiting for its final answer. */
export interface PendingRequest {
  readonly id: string;
  readonly seq: number;
  /** The session it was sent in, at hand for every send and answer. */
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
  /** An acquire the coordinator has queued; its first answer has come, so its seq is settled. */
  queued: boolean;
  resolve: (reply: Reply) => void;
  reject: (err: LockqError) => void;
}

export interface RequestTableOptions {
  /** Unique per client: request ids are `<instance>-<seq in base 36>`. */
  readonly instance: string;
  readonly requestTimeoutMs: number;
  /** A queued acquire is asked again (same id) once per session ttl. */
  readonly sessionTtlMs: number;
  readonly heartbeatMs: number;
  /** The client's partition count, named when a coordinator answers WRONG_PARTITION with its own. */
  readonly partitions: number;
  readonly logger: Logger;
}

const NO_WATCH: Watch = Object.freeze({});

/**
 * The client's requests in flight: numbers them, sends them, matches each final answer to its
 * request, and times them out. It re-sends what may have been lost (after a reconnect, on a new
 * coordinator term) and re-asks queued acquires, all with the same ids, which idempotency absorbs.
 */
export class RequestTable {
  readonly #transport: Pick<ClientTransport, 'send'>;
  readonly #o: RequestTableOptions;
  readonly #pending = new Map<string, PendingRequest>();
  /**
   * Send times, and which requests had their final answer (a bounded memory): replies come at
   * least once, and a second copy of a grant must not be taken for an orphan.
   */
  readonly #sentAt = new SendTimes();
  #seq = 0;
  #closed = false;
  readonly #sweeper: NodeJS.Timeout;

  constructor(transport: Pick<ClientTransport, 'send'>, options: RequestTableOptions) {
    this.#transport = transport;
    this.#o = options;
    const timeoutsMs = Math.min(250, Math.max(10, Math.floor(options.requestTimeoutMs / 10)));
    const reasksMs = Math.max(5, Math.floor(options.heartbeatMs / 2));
    this.#sweeper = setInterval(() => this.#sweep(), Math.min(timeoutsMs, reasksMs)).unref();
  }

  /** The sequence number of the latest request sent. */
  get lastSeq(): number {
    return this.#seq;
  }

  get size(): number {
    return this.#pending.size;
  }

  /** One request in session `s`, one final answer (a waiting acquire: its grant or its error). */
  send(s: PartitionSession, fields: RequestFields, watch: Watch = NO_WATCH): Promise<Reply> {
    const { signal } = watch;
    if (this.#closed) return Promise.reject(new LockqError('CLIENT_CLOSED'));
    if (signal?.aborted === true) return Promise.reject(new LockqError('ABORTED', undefined, { cause: signal.reason }));
    const seq = ++this.#seq;
    const id = `${this.#o.instance}-${seq.toString(36)}`;
    const settled = numberRequest(s, seq);
    const body = encodeRequest(`${s.envelope}${id}","seq":${seq},"settled":${settled}`, fields);
    const waitMs = fields.op === 'acquire' ? fields.waitMs : 0;
    const now = performance.now();
    return new Promise<Reply>((resolve, reject) => {
      const pending: PendingRequest = {
        id,
        seq,
        session: s,
        body,
        dueAt: now + this.#o.requestTimeoutMs,
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
          if (!this.#drop(pending)) return;
          reject(new LockqError('ABORTED', undefined, { cause: signal.reason }));
          if (pending.lock !== undefined) this.#cancel(s, pending.lock, id);
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

  /** The request a reply answers, if it still waits for an answer. */
  waiting(re: string): PendingRequest | undefined {
    return this.#pending.get(re);
  }

  /** Settles `p` with `reply`; a `queued` answer leaves it waiting for its grant (or error). */
  answer(p: PendingRequest, reply: Reply): void {
    // From its first answer on, a request's answer is no longer needed from the coordinator's
    // memory: a queued acquire re-sent later is answered from the queue itself.
    if (!p.queued) settle(p.session, p.seq);
    if (reply.type === 'queued') {
      p.dueAt = (this.#sentAt.get(p.seq) ?? performance.now()) + p.waitMs + this.#o.requestTimeoutMs;
      p.queued = true;
      p.onQueued?.(reply.position);
      return;
    }
    this.#pending.delete(p.id);
    this.#sentAt.markAnswered(p.seq, reply.type === 'granted');
    if (reply.type === 'error') {
      const message =
        reply.partitions === undefined
          ? reply.message
          : `${reply.message ?? 'wrong partition'}: this client is set to ${this.#o.partitions} partitions, the coordinator has ${reply.partitions} (set the client's partitions option to match)`;
      p.reject(errorFromWire(reply.code, message, reply.field, reply.retryAfterMs));
    } else {
      if (reply.type === 'granted') p.onGranted?.(reply);
      p.resolve(reply);
    }
  }

  /** When request `seq` was first sent, while the table remembers it. */
  sentAt(seq: number): number | undefined {
    return this.#sentAt.get(seq);
  }

  /** When the request with id `id` was first sent, if this client sent it and still remembers. */
  sentAtOf(id: string): number | undefined {
    const seq = this.#seqOf(id);
    return seq === undefined ? undefined : this.#sentAt.get(seq);
  }

  /** True when request `id` was answered with a grant this client took (as far as the table remembers). */
  tookGrant(id: string): boolean {
    const seq = this.#seqOf(id);
    return seq !== undefined && this.#sentAt.tookGrant(seq);
  }

  /** Sends again everything in flight up to `seq` (a reconnect may have lost it). */
  resendUpTo(seq: number): void {
    for (const p of this.#pending.values()) if (p.seq <= seq) this.#transmit(p);
  }

  /**
   * A new coordinator term on `partition`: anything in flight there may have been decided by the
   * old one and never answered. Asks again with the same ids (but `answered`, which the new term
   * has just answered); the new coordinator answers from its restored state.
   */
  resendOnPartition(partition: number, answered: string): void {
    for (const p of this.#pending.values()) if (p.session.partition === partition && p.id !== answered) this.#transmit(p);
  }

  /** Rejects everything in flight with CLIENT_CLOSED, and every later request likewise. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#sweeper);
    for (const p of this.#pending.values()) p.reject(new LockqError('CLIENT_CLOSED'));
    this.#pending.clear();
  }

  #transmit(p: PendingRequest, now = performance.now()): void {
    this.#sentAt.record(p.seq, now);
    p.lastSentAt = now;
    p.session.lastSentAt = now;
    this.#transport.send(p.session.partition, p.body).catch((err: unknown) => {
      if (refusedByBroker(err) && this.#drop(p)) {
        // The broker refused it (a full request queue, no coordinator): say so now, not at the timeout.
        p.reject(err instanceof LockqError ? err : new LockqError('TRANSPORT_ERROR', String(err), { cause: err }));
        return;
      }
      // A lost connection: the request is re-sent on reconnect, or times out.
      this.#o.logger.debug({ err, id: p.id }, 'send failed; waiting for reconnect');
    });
  }

  /** Stops waiting for `p` (false if it no longer waited); its answer is not needed any more. */
  #drop(p: PendingRequest): boolean {
    if (!this.#pending.delete(p.id)) return false;
    if (!p.queued) settle(p.session, p.seq);
    return true;
  }

  #cancel(s: PartitionSession, lock: string, target: string): void {
    this.send(s, { op: 'cancel', lock, target }).catch(() => undefined);
  }

  #sweep(): void {
    const now = performance.now();
    for (const p of this.#pending.values()) {
      if (p.dueAt <= now) {
        this.#drop(p);
        p.reject(new LockqTimeoutError(`no answer to request ${p.id} within its deadline`));
        if (p.lock !== undefined && p.waitMs > 0) this.#cancel(p.session, p.lock, p.id);
      } else if (p.queued && now - p.lastSentAt >= this.#o.sessionTtlMs) {
        // A waiting acquire re-asks (same id) once per session ttl: if its grant's reply was ever
        // lost, the coordinator answers from its state and the grant is learnt now, not at timeout.
        this.#transmit(p);
      }
    }
  }

  /** Request ids are `<instance>-<seq in base 36>`; anything else was not sent by this client. */
  #seqOf(id: string): number | undefined {
    const prefix = this.#o.instance.length + 1;
    if (!id.startsWith(this.#o.instance) || id.charCodeAt(prefix - 1) !== 45 /* - */) return undefined;
    return Number.parseInt(id.slice(prefix), 36);
  }
}
