import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { backoffMs, checkInteger, deadLetterDestination, requestDestination, resolveRetryPolicy, type RetryPolicy, TOPOLOGY_PREFIX } from '@lockq/protocol';
import {
  AmqpTransportError,
  amqpUrlForLogs,
  amqpUrlWithHeartbeat,
  openAmqpConnection,
} from '@lockq/protocol/amqp';
import type { Outbound, ServerTransport } from './types.js';

// amqplib is imported lazily (types only up here), like on the worker side.

/** Options of {@link AmqpServerTransport}. Every coordinator of a deployment must use the same queue settings. */
export interface AmqpServerTransportOptions {
  /** The broker, e.g. `amqp://user:pass@rabbit:5672/vhost`. */
  readonly url: string;
  /** Prefix of every queue and exchange name. @defaultValue `'lockq'` */
  readonly prefix?: string;
  /** Heartbeat negotiated with the broker (whole seconds on the wire; 0 turns it off). @defaultValue 10000 */
  readonly heartbeatMs?: number;
  /** Bound on establishing the TCP connection. @defaultValue 10000 */
  readonly connectTimeoutMs?: number;
  /** Unacknowledged requests the broker may push per partition; also the largest batch. @defaultValue 256 */
  readonly prefetch?: number;
  /**
   * Failed deliveries of one request before the broker dead-letters it (`x-delivery-limit`): a
   * rejected batch or a lost channel counts one for every request delivered on that channel
   * and not yet acked, so a handler that rejects batches on a transient failure (a store
   * outage) should back off rather than burn through this. @defaultValue 20
   */
  readonly deliveryLimit?: number;
  /**
   * Bound on a request queue (`x-max-length`). Once a queue is over it, publishes are refused
   * and the worker's `send` rejects (a quorum queue may take one or a few more than the bound
   * before it starts refusing). @defaultValue unbounded
   */
  readonly maxLength?: number;
  /**
   * Backoff between reconnect attempts after a lost connection, and before consuming again
   * after a lost channel or a rejected batch; `attempts` bounds reconnecting.
   * @defaultValue `DEFAULT_RETRY_POLICY` (forever)
   */
  readonly reconnect?: Partial<RetryPolicy>;
  /** The connection's name in the broker's management tools. @defaultValue `'lockq coordinator'` */
  readonly connectionName?: string;
  /** @defaultValue no logging */
  readonly logger?: Logger;
  /** Called after a lost connection was re-established and consuming resumed (for metrics). */
  readonly onReconnect?: () => void;
  /** Called when reconnecting gave up (`reconnect.attempts`); publishing fails from then on. */
  readonly onError?: (error: Error) => void;
}

interface ResolvedServerOptions {
  readonly connectUrl: string;
  readonly logUrl: string;
  readonly prefix: string;
  readonly connectTimeoutMs: number;
  readonly prefetch: number;
  readonly reconnect: RetryPolicy;
  readonly connectionName: string;
  /** Arguments of every request queue; a redeclaration with other arguments is refused by the broker. */
  readonly queueArguments: Readonly<Record<string, string | number | boolean>>;
}

function resolveServerOptions(o: AmqpServerTransportOptions): ResolvedServerOptions {
  const prefix = o.prefix ?? TOPOLOGY_PREFIX;
  const queueArguments: Record<string, string | number | boolean> = {
    'x-queue-type': 'quorum',
    'x-single-active-consumer': true,
    'x-overflow': 'reject-publish',
    'x-delivery-limit': checkInteger('deliveryLimit', o.deliveryLimit ?? 20, 0),
    'x-dead-letter-exchange': deadLetterDestination(prefix),
  };
  if (o.maxLength !== undefined) queueArguments['x-max-length'] = checkInteger('maxLength', o.maxLength, 1);
  return Object.freeze({
    connectUrl: amqpUrlWithHeartbeat(o.url, checkInteger('heartbeatMs', o.heartbeatMs ?? 10_000, 0)),
    logUrl: amqpUrlForLogs(o.url),
    prefix,
    connectTimeoutMs: checkInteger('connectTimeoutMs', o.connectTimeoutMs ?? 10_000, 1),
    prefetch: checkInteger('prefetch', o.prefetch ?? 256, 1),
    reconnect: resolveRetryPolicy(o.reconnect, 'reconnect'),
    connectionName: o.connectionName ?? 'lockq coordinator',
    queueArguments: Object.freeze(queueArguments),
  });
}

type BatchHandler = (batch: readonly Uint8Array[]) => Promise<void>;

/** The connection and its publishing channel; replaced wholesale when either is lost. */
interface ServerLink {
  readonly conn: ChannelModel;
  readonly pub: ConfirmChannel;
  lost: boolean;
}

/** One partition's channel and consumer; replaced when the channel is lost or a batch rejected. */
interface Consumer {
  readonly link: ServerLink;
  readonly ch: Channel;
  /** Delivered, not yet handed to the handler. */
  buffer: ConsumeMessage[];
  scheduled: boolean;
  /** Its channel is gone or going: nothing more is handed over or acknowledged through it. */
  dead: boolean;
}

/** A consumed partition; outlives its consumers. */
interface Partition {
  readonly partition: number;
  readonly queue: string;
  readonly onBatch: BatchHandler;
  readonly onLost: (() => void) | undefined;
  consumer: Consumer | null;
  starting: Promise<void> | null;
  running: Promise<void> | null;
  retryTimer: NodeJS.Timeout | null;
  /** Consecutive rejected batches or lost channels, for the backoff before consuming again. */
  failures: number;
  stopping: boolean;
}

const noop = () => {};

/** Tells the partition's owner its consumer is gone (unless it is stopping it on purpose). */
function lost(state: Partition): void {
  if (state.stopping) return;
  try {
    state.onLost?.();
  } catch {
    // the owner's problem; the transport carries on
  }
}

/**
 * The coordinator side of RabbitMQ.
 *
 * Topology: per partition a durable quorum queue with single-active-consumer (a second
 * coordinator consuming it is a standby; the broker switches to it when the active one's
 * channel dies), `reject-publish` overflow, a delivery limit and a dead-letter exchange (a
 * durable fanout, with a durable queue of the same name bound to it, so poison is kept).
 *
 * Consuming: one channel per partition, manual acks, bounded prefetch. Deliveries that arrive in
 * one macrotask, or while the handler is busy, form one batch; batches of a partition run one at
 * a time. A resolved batch is acked with one cumulative ack on its last delivery tag (only this
 * partition's deliveries travel on the channel, in order). A rejected batch is not nacked:
 * the partition's channel is closed instead, which makes the broker return the batch and every
 * delivery behind it (prefetched or still on the wire) to the head of the queue in delivery
 * order, counting one delivery attempt each; consuming resumes after a backoff, or a standby
 * takes over in the meantime. A nack would break the order: measured on RabbitMQ 3.10, a
 * nacked message goes to the back of a quorum queue without a delivery limit, and with one it
 * is redelivered at once to the same consumer, behind the deliveries already prefetched; and
 * since RabbitMQ 4.3 `basic.nack` no longer counts towards the delivery limit at all.
 *
 * Publishing: replies and dead letters go through one confirm channel; `publish` resolves when
 * the broker confirmed every reply. A reply to a queue that does not exist (a worker gone longer
 * than its reply queue's expiry) is confirmed and dropped by the broker, silently.
 *
 * Failures: a lost connection is re-established with backoff and jitter; every partition is then
 * declared and consumed again. A lost partition channel is reopened on its own. A batch that is
 * running when its channel dies finishes, but is not acked: the broker has already requeued it,
 * and the redelivery is absorbed by the coordinator's idempotency. `publish` and `deadLetter`
 * reject while disconnected.
 *
 * @example
 * ```ts
 * const transport = new AmqpServerTransport({ url: 'amqp://localhost', logger });
 * const coordinator = await Coordinator.start({ transport, partitions: 4 });
 * ```
 */
export class AmqpServerTransport implements ServerTransport {
  readonly #o: ResolvedServerOptions;
  readonly #log: Logger | undefined;
  readonly #onReconnect: (() => void) | undefined;
  readonly #onError: ((error: Error) => void) | undefined;
  readonly #partitions = new Map<number, Partition>();
  #link: ServerLink | null = null;
  #everConnected = false;
  /** The connection attempt in flight (first connection or a reconnect). */
  #connecting: Promise<ServerLink> | null = null;
  #reconnectTimer: NodeJS.Timeout | null = null;
  /** 'closing': no new consumers or reconnects, but batches in progress may still publish. */
  #state: 'open' | 'closing' | 'closed' = 'open';
  #closed: Promise<void> | null = null;

  constructor(options: AmqpServerTransportOptions) {
    this.#o = resolveServerOptions(options);
    this.#log = options.logger?.child({ component: 'amqp-server-transport' });
    this.#onReconnect = options.onReconnect;
    this.#onError = options.onError;
  }

  async consume(partition: number, onBatch: BatchHandler, onLost?: () => void): Promise<void> {
    checkInteger('partition', partition, 0);
    if (this.#state !== 'open') throw new AmqpTransportError('transport is closed');
    if (this.#partitions.has(partition)) throw new Error(`partition ${partition} is already being consumed`);
    const state: Partition = {
      partition,
      queue: requestDestination(partition, this.#o.prefix),
      onBatch,
      onLost,
      consumer: null,
      starting: null,
      running: null,
      retryTimer: null,
      failures: 0,
      stopping: false,
    };
    this.#partitions.set(partition, state);
    try {
      let link = this.#link;
      if (link === null) {
        // Reconnecting: the reconnect consumes every registered partition.
        if (this.#everConnected && this.#connecting === null) return;
        link = await this.#ready();
      }
      // A reconnect that completed meanwhile may have started this partition already.
      if (state.starting === null && state.consumer === null) {
        const starting = this.#startConsumer(state, link);
        state.starting = starting;
        await starting.finally(() => {
          if (state.starting === starting) state.starting = null;
        });
      } else {
        await state.starting;
      }
    } catch (err) {
      if (this.#partitions.get(partition) === state) this.#partitions.delete(partition);
      throw err instanceof AmqpTransportError
        ? err
        : new AmqpTransportError(`cannot consume ${state.queue}`, { cause: err });
    }
    this.#log?.info({ partition, queue: state.queue }, 'consuming');
  }

  async publish(replies: readonly Outbound[]): Promise<void> {
    if (replies.length === 0) return;
    const link = await this.#ready();
    await new Promise<void>((resolve, reject) => {
      let pending = replies.length;
      let settled = false;
      const confirmed = (err: unknown) => {
        if (settled) return;
        if (err != null) {
          settled = true;
          reject(new AmqpTransportError('the broker did not confirm the replies', { cause: err }));
        } else if (--pending === 0) {
          settled = true;
          resolve();
        }
      };
      try {
        // Transient: a reply outliving a broker restart is of no use; the worker re-sends.
        for (const r of replies) link.pub.publish('', r.to, asBuffer(r.body), {}, confirmed);
      } catch (err) {
        confirmed(err ?? new Error('publish failed'));
      }
    });
  }

  async deadLetter(partition: number, body: Uint8Array, code: string): Promise<void> {
    const link = await this.#ready();
    const exchange = deadLetterDestination(this.#o.prefix);
    await new Promise<void>((resolve, reject) => {
      const confirmed = (err: unknown) => {
        if (err == null) resolve();
        else reject(new AmqpTransportError('the broker did not confirm a dead letter', { cause: err }));
      };
      try {
        link.pub.publish(
          exchange,
          requestDestination(partition, this.#o.prefix),
          asBuffer(body),
          { persistent: true, headers: { 'x-lockq-code': code, 'x-lockq-partition': partition } },
          confirmed,
        );
      } catch (err) {
        confirmed(err ?? new Error('publish failed'));
      }
    });
  }

  /**
   * Stops consuming `partition` and resolves once a batch in progress has finished (and been
   * acked). No new batch starts once this is called; deliveries already prefetched go back to
   * the queue, in order, when the partition's channel closes. The consumer is not cancelled
   * first: with single-active-consumer that would make a standby active while this one still
   * holds prefetched deliveries, and the standby would overtake them.
   */
  async stopConsuming(partition: number): Promise<void> {
    const state = this.#partitions.get(partition);
    if (state === undefined) return;
    state.stopping = true;
    if (state.retryTimer !== null) clearTimeout(state.retryTimer);
    state.retryTimer = null;
    await state.starting?.catch(noop);
    await state.running;
    const c = state.consumer;
    state.consumer = null;
    if (c !== null && !c.dead) {
      c.dead = true;
      c.buffer = [];
      await c.ch.close().catch(noop);
    }
    if (this.#partitions.get(partition) === state) this.#partitions.delete(partition);
    this.#log?.info({ partition }, 'stopped consuming');
  }

  /** Stops consuming every partition (letting batches in progress finish) and disconnects. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#state = 'closing';
    if (this.#reconnectTimer !== null) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    await Promise.all([...this.#partitions.keys()].map((p) => this.stopConsuming(p)));
    this.#state = 'closed';
    await this.#connecting?.catch(noop);
    const link = this.#link;
    this.#link = null;
    if (link !== null) {
      link.lost = true;
      await link.conn.close().catch(noop);
    }
  }

  get #isOpen(): boolean {
    return this.#state === 'open';
  }

  /** The current link; the first call connects. Rejects while reconnecting. */
  async #ready(): Promise<ServerLink> {
    if (this.#link !== null) return this.#link;
    if (this.#state === 'closed') throw new AmqpTransportError('transport is closed');
    if (this.#connecting !== null) {
      return this.#connecting.catch((err: unknown) => {
        throw new AmqpTransportError(`cannot connect to ${this.#o.logUrl}`, { cause: err });
      });
    }
    if (this.#everConnected) throw new AmqpTransportError(`not connected to ${this.#o.logUrl} (reconnecting)`);
    const connecting = this.#establish();
    this.#connecting = connecting;
    try {
      const link = await connecting;
      this.#log?.info({ url: this.#o.logUrl }, 'connected');
      return link;
    } catch (err) {
      throw new AmqpTransportError(`cannot connect to ${this.#o.logUrl}`, { cause: err });
    } finally {
      if (this.#connecting === connecting) this.#connecting = null;
    }
  }

  /** Connects and makes the link current, unless the transport was closed meanwhile. */
  async #establish(): Promise<ServerLink> {
    const link = await this.#connect();
    if (this.#state === 'closed' || link.lost) {
      link.lost = true;
      await link.conn.close().catch(noop);
      throw new AmqpTransportError('connection closed while connecting');
    }
    this.#link = link;
    this.#everConnected = true;
    return link;
  }

  async #connect(): Promise<ServerLink> {
    const o = this.#o;
    let link: ServerLink | undefined;
    let lostEarly = false;
    const conn = await openAmqpConnection(o, this.#log, (err) => {
      if (link === undefined) lostEarly = true;
      else this.#linkLost(link, err);
    });
    try {
      const pub = await conn.createConfirmChannel();
      const l: ServerLink = { conn, pub, lost: lostEarly };
      link = l;
      pub.on('error', (err: Error) => this.#log?.warn({ err }, 'publish channel error'));
      pub.on('close', () => this.#linkLost(l, new Error('publish channel closed')));
      const dl = deadLetterDestination(o.prefix);
      await pub.assertExchange(dl, 'fanout', { durable: true });
      await pub.assertQueue(dl, { durable: true });
      await pub.bindQueue(dl, dl, '');
      return l;
    } catch (err) {
      if (link !== undefined) link.lost = true;
      await conn.close().catch(noop);
      throw err;
    }
  }

  /** Opens the partition's channel, declares its queue and starts consuming. */
  async #startConsumer(state: Partition, link: ServerLink): Promise<void> {
    const ch = await link.conn.createChannel();
    const c: Consumer = { link, ch, buffer: [], scheduled: false, dead: false };
    ch.on('error', (err: Error) => this.#log?.warn({ err, partition: state.partition }, 'partition channel error'));
    ch.on('close', () => this.#consumerLost(state, c, 'channel closed'));
    try {
      await ch.prefetch(this.#o.prefetch);
      await ch.assertQueue(state.queue, { durable: true, arguments: this.#o.queueArguments });
      if (state.stopping || !this.#isOpen || link.lost || c.dead) throw new AmqpTransportError('consumer no longer wanted');
      state.consumer = c;
      await ch.consume(state.queue, (msg) => this.#onDelivery(state, c, msg), { noAck: false });
    } catch (err) {
      c.dead = true;
      if (state.consumer === c) state.consumer = null;
      await ch.close().catch(noop);
      if (!state.stopping && this.#isOpen) throw err;
    }
  }

  /** Starts consuming again after a lost channel or a rejected batch (fire and forget, with retries). */
  #restart(state: Partition): void {
    if (state.consumer !== null || state.starting !== null || state.stopping || !this.#isOpen) return;
    if (this.#partitions.get(state.partition) !== state) return;
    const link = this.#link;
    if (link === null) return; // the reconnect consumes every partition
    const starting = this.#startConsumer(state, link).then(
      () => {
        if (state.starting === starting) state.starting = null;
      },
      (err: unknown) => {
        if (state.starting === starting) state.starting = null;
        this.#log?.warn({ err, partition: state.partition }, 'consuming again failed; retrying');
        this.#scheduleRestart(state);
      },
    );
    state.starting = starting;
  }

  #scheduleRestart(state: Partition): void {
    if (state.retryTimer !== null || state.stopping || !this.#isOpen) return;
    state.failures++;
    state.retryTimer = setTimeout(() => {
      state.retryTimer = null;
      this.#restart(state);
    }, backoffMs(this.#o.reconnect, state.failures - 1));
  }

  #consumerLost(state: Partition, c: Consumer, reason: string): void {
    if (c.dead) return;
    c.dead = true;
    c.buffer = [];
    if (state.consumer !== c) return;
    state.consumer = null;
    lost(state);
    if (state.stopping || !this.#isOpen) return;
    // On a lost connection every channel closes first; the link's own handler then takes over.
    if (c.link.lost || this.#link !== c.link) return;
    this.#log?.warn({ partition: state.partition, reason }, 'partition channel lost; consuming again');
    c.ch.close().catch(noop);
    this.#scheduleRestart(state);
  }

  #onDelivery(state: Partition, c: Consumer, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled the consumer (the queue was deleted): declare and consume again.
      this.#consumerLost(state, c, 'consumer cancelled by the broker');
      return;
    }
    if (c.dead) return; // its channel is closing; the broker requeues it
    c.buffer.push(msg);
    this.#kick(state);
  }

  /** Schedules the next batch for the next macrotask, unless one is running or scheduled. */
  #kick(state: Partition): void {
    const c = state.consumer;
    if (c === null || c.scheduled || c.buffer.length === 0 || state.running !== null || state.stopping) return;
    c.scheduled = true;
    setImmediate(() => {
      c.scheduled = false;
      if (c.dead || state.consumer !== c || state.running !== null || state.stopping || c.buffer.length === 0) return;
      const batch = c.buffer;
      c.buffer = [];
      state.running = this.#runBatch(state, c, batch).finally(() => {
        state.running = null;
        this.#kick(state);
      });
    });
  }

  async #runBatch(state: Partition, c: Consumer, batch: readonly ConsumeMessage[]): Promise<void> {
    const last = batch[batch.length - 1];
    if (last === undefined) return;
    let failure: { err: unknown } | null = null;
    try {
      await state.onBatch(batch.map((m) => m.content));
    } catch (err) {
      failure = { err };
    }
    // The channel died meanwhile: the broker has requeued the batch; it comes again.
    if (c.dead) return;
    if (failure === null) {
      state.failures = 0;
      try {
        c.ch.ack(last, true);
      } catch (err) {
        this.#log?.warn({ err, partition: state.partition }, 'ack failed; the batch will be redelivered');
      }
      return;
    }
    this.#log?.warn({ err: failure.err, partition: state.partition, size: batch.length }, 'batch rejected; redelivering');
    c.dead = true;
    c.buffer = [];
    if (state.consumer === c) {
      state.consumer = null;
      lost(state);
    }
    // Closing the channel returns the batch and everything delivered behind it, in delivery
    // order, to the head of the queue, and counts towards the delivery limit. A nack does
    // neither reliably (see the class comment).
    await c.ch.close().catch(noop);
    this.#scheduleRestart(state);
  }

  #linkLost(link: ServerLink, err: Error): void {
    if (link.lost) return;
    link.lost = true;
    if (this.#link !== link) return;
    this.#link = null;
    for (const state of this.#partitions.values()) {
      const c = state.consumer;
      if (c !== null) {
        c.dead = true;
        c.buffer = [];
        state.consumer = null;
        lost(state);
      }
      if (state.retryTimer !== null) clearTimeout(state.retryTimer);
      state.retryTimer = null;
    }
    if (!this.#isOpen) return;
    this.#log?.warn({ err }, 'lost the broker connection; reconnecting');
    // After a publish-channel loss the connection is still up: drop it, one path rebuilds all.
    link.conn.close().catch(noop);
    this.#scheduleReconnect(1);
  }

  #scheduleReconnect(attempt: number): void {
    if (!this.#isOpen) return;
    const policy = this.#o.reconnect;
    if (attempt > policy.attempts) {
      const err = new AmqpTransportError(`gave up reconnecting to ${this.#o.logUrl} after ${attempt - 1} attempts`);
      this.#log?.error({ err }, 'gave up reconnecting; publish and deadLetter will fail');
      this.#onError?.(err);
      return;
    }
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      void this.#reconnect(attempt);
    }, backoffMs(policy, attempt - 1));
  }

  async #reconnect(attempt: number): Promise<void> {
    if (!this.#isOpen) return;
    const connecting = this.#establish();
    this.#connecting = connecting;
    try {
      await connecting;
    } catch (err) {
      this.#log?.warn({ err, attempt }, 'reconnect attempt failed');
      this.#scheduleReconnect(attempt + 1);
      return;
    } finally {
      if (this.#connecting === connecting) this.#connecting = null;
    }
    this.#log?.info({ attempt }, 'reconnected');
    for (const state of this.#partitions.values()) {
      state.failures = 0;
      this.#restart(state);
    }
    try {
      this.#onReconnect?.();
    } catch (err) {
      this.#log?.error({ err }, 'onReconnect threw');
    }
  }
}

function asBuffer(body: Uint8Array): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}
