import type { AmqpConnection, AmqpLink } from '@lockq/protocol/amqp';
import { AmqpTransportError } from '@lockq/protocol/amqp';
import { backoffMs } from '@lockq/protocol';
import type { Channel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import type { BatchHandler } from './types.js';

/** What a partition needs from its transport. */
export interface PartitionHost {
  /** Its options give the prefetch, and the backoff before consuming again after a failure. */
  readonly link: AmqpLink;
  /** Arguments of every request queue; a redeclaration with other arguments is refused by the broker. */
  readonly queueArguments: Readonly<Record<string, string | number | boolean>>;
  /** The direct exchange workers publish requests through; each request queue is bound to it. */
  readonly requestExchange: string;
  readonly log: Logger | undefined;
  /** False once the transport is closing: nothing starts consuming again. */
  readonly isOpen: () => boolean;
}

/** One channel and its consumer; replaced when the channel is lost or a batch rejected. */
interface Consumer {
  readonly conn: AmqpConnection;
  readonly ch: Channel;
  /** Delivered, not yet handed to the handler. */
  buffer: ConsumeMessage[];
  scheduled: boolean;
  /** Its channel is gone or going: nothing more is handed over or acknowledged through it. */
  dead: boolean;
}

const noop = () => {};

/**
 * One consumed partition of {@link AmqpServerTransport}: its request queue, consumed on a
 * channel of its own with manual acks and bounded prefetch, in batches run one at a time. It
 * outlives its consumers (see the transport's class comment for why a rejected batch closes
 * the channel instead of nacking).
 */
export class AmqpPartition {
  readonly partition: number;
  readonly queue: string;
  readonly #host: PartitionHost;
  readonly #onBatch: BatchHandler;
  readonly #onLost: (() => void) | undefined;
  #consumer: Consumer | null = null;
  #starting: Promise<void> | null = null;
  #running: Promise<void> | null = null;
  #retryTimer: NodeJS.Timeout | null = null;
  /** Consecutive rejected batches or lost channels, for the backoff before consuming again. */
  #failures = 0;
  #stopping = false;

  constructor(host: PartitionHost, partition: number, queue: string, onBatch: BatchHandler, onLost: (() => void) | undefined) {
    this.#host = host;
    this.partition = partition;
    this.queue = queue;
    this.#onBatch = onBatch;
    this.#onLost = onLost;
  }

  /** The first start (from `consume`, on the link's open connection): rejects when it fails. */
  async start(c: AmqpConnection): Promise<void> {
    const starting = this.#open(c);
    this.#starting = starting;
    try {
      await starting;
    } finally {
      if (this.#starting === starting) this.#starting = null;
    }
  }

  /** After a reconnect: consume again at once, forgetting earlier failures. */
  reconnected(): void {
    this.#failures = 0;
    this.#restart();
  }

  /** The connection is gone, and this partition's consumer with it. */
  connectionLost(): void {
    if (this.#consumer !== null) this.#drop(this.#consumer);
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
  }

  /**
   * Stops and resolves once a batch in progress has finished (and been acked). Deliveries
   * already prefetched go back to the queue, in order, when the channel closes. The consumer is
   * not cancelled first: with single-active-consumer that would make a standby active while this
   * one still holds prefetched deliveries, and the standby would overtake them.
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    await this.#starting?.catch(noop);
    await this.#running;
    const c = this.#consumer;
    this.#consumer = null;
    if (c !== null && !c.dead) {
      c.dead = true;
      c.buffer = [];
      await c.ch.close().catch(noop);
    }
  }

  get #wanted(): boolean {
    return !this.#stopping && this.#host.isOpen();
  }

  /**
   * Nothing more is handed over or acknowledged through `c`; when it was the consumer, the
   * partition's owner is told (unless it is stopping it on purpose). Returns whether it was.
   */
  #drop(c: Consumer): boolean {
    c.dead = true;
    c.buffer = [];
    if (this.#consumer !== c) return false;
    this.#consumer = null;
    if (this.#stopping) return true;
    try {
      this.#onLost?.();
    } catch {
      // the owner's problem; the transport carries on
    }
    return true;
  }

  /** Opens the channel, declares the queue, binds it to the request exchange and starts consuming. */
  async #open(conn: AmqpConnection): Promise<void> {
    const ch = await conn.model.createChannel();
    const c: Consumer = { conn, ch, buffer: [], scheduled: false, dead: false };
    ch.on('error', (err: Error) => this.#host.log?.warn({ err, partition: this.partition }, 'partition channel error'));
    ch.on('close', () => this.#consumerLost(c, 'channel closed'));
    try {
      await ch.prefetch(this.#host.link.options.prefetch);
      await ch.assertQueue(this.queue, { durable: true, arguments: this.#host.queueArguments });
      // The exchange is declared in every connection's set-up, before any partition opens.
      await ch.bindQueue(this.queue, this.#host.requestExchange, String(this.partition));
      if (!this.#wanted || conn.lost || c.dead) throw new AmqpTransportError('consumer no longer wanted');
      this.#consumer = c;
      await ch.consume(this.queue, (msg) => this.#onDelivery(c, msg), { noAck: false });
    } catch (err) {
      c.dead = true;
      if (this.#consumer === c) this.#consumer = null;
      await ch.close().catch(noop);
      if (this.#wanted) throw err;
    }
  }

  /** Starts consuming again after a lost channel, a rejected batch or a reconnect (with retries). */
  #restart(): void {
    if (this.#consumer !== null || this.#starting !== null || !this.#wanted) return;
    const conn = this.#host.link.current;
    if (conn === null) return; // the reconnect starts every partition
    const starting = this.#open(conn).then(
      () => {
        if (this.#starting === starting) this.#starting = null;
      },
      (err: unknown) => {
        if (this.#starting === starting) this.#starting = null;
        this.#host.log?.warn({ err, partition: this.partition }, 'consuming again failed; retrying');
        this.#scheduleRestart();
      },
    );
    this.#starting = starting;
  }

  #scheduleRestart(): void {
    if (this.#retryTimer !== null || !this.#wanted) return;
    this.#failures++;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#restart();
    }, backoffMs(this.#host.link.options.reconnect, this.#failures - 1));
  }

  #consumerLost(c: Consumer, reason: string): void {
    if (c.dead || !this.#drop(c) || !this.#wanted) return;
    // On a lost connection every channel closes first; the link's own handling then takes over.
    if (c.conn.lost || this.#host.link.current !== c.conn) return;
    this.#host.log?.warn({ partition: this.partition, reason }, 'partition channel lost; consuming again');
    c.ch.close().catch(noop);
    this.#scheduleRestart();
  }

  #onDelivery(c: Consumer, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled the consumer (the queue was deleted): declare and consume again.
      this.#consumerLost(c, 'consumer cancelled by the broker');
      return;
    }
    if (c.dead) return; // its channel is closing; the broker requeues it
    c.buffer.push(msg);
    this.#kick();
  }

  /** Schedules the next batch for the next macrotask, unless one is running or scheduled. */
  #kick(): void {
    const c = this.#consumer;
    if (c === null || c.scheduled || c.buffer.length === 0 || this.#running !== null || this.#stopping) return;
    c.scheduled = true;
    setImmediate(() => {
      c.scheduled = false;
      if (c.dead || this.#consumer !== c || this.#running !== null || this.#stopping || c.buffer.length === 0) return;
      const batch = c.buffer;
      c.buffer = [];
      this.#running = this.#runBatch(c, batch).finally(() => {
        this.#running = null;
        this.#kick();
      });
    });
  }

  async #runBatch(c: Consumer, batch: readonly ConsumeMessage[]): Promise<void> {
    const last = batch[batch.length - 1];
    if (last === undefined) return;
    let failure: { err: unknown } | null = null;
    try {
      // user_id is checked by the broker against the publishing connection's user.
      await this.#onBatch(
        batch.map((m) => m.content),
        batch.map((m) => (typeof m.properties.userId === 'string' ? m.properties.userId : undefined)),
      );
    } catch (err) {
      failure = { err };
    }
    // The channel died meanwhile: the broker has requeued the batch; it comes again.
    if (c.dead) return;
    if (failure === null) {
      this.#failures = 0;
      try {
        c.ch.ack(last, true);
      } catch (err) {
        this.#host.log?.warn({ err, partition: this.partition }, 'ack failed; the batch will be redelivered');
      }
      return;
    }
    this.#host.log?.warn({ err: failure.err, partition: this.partition, size: batch.length }, 'batch rejected; redelivering');
    this.#drop(c);
    // Closing the channel returns the batch and everything delivered behind it, in delivery
    // order, to the head of the queue, and counts towards the delivery limit. A nack does
    // neither reliably (see the transport's class comment).
    await c.ch.close().catch(noop);
    this.#scheduleRestart();
  }
}
