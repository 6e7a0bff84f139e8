import {
  checkInteger,
  deadLetterDestination,
  forwardExchange,
  requestDestination,
  requestExchange,
  TOPOLOGY_PREFIX,
} from '@lockq/protocol';
import {
  type AmqpConnection,
  AmqpLink,
  type AmqpLinkOptions,
  AmqpTransportError,
  type PublishOutcome,
  resolveAmqpLinkOptions,
} from '@lockq/protocol/amqp';
import type { Logger } from 'pino';
import { AmqpPartition, type PartitionHost } from './amqp-partition.js';
import { type DeadLetterBounds, deadLetterPrefix, resolveDeadLetterBounds } from './dead-letter.js';
import type { BatchHandler, Outbound, ServerTransport } from './types.js';

/**
 * Options of {@link AmqpServerTransport}; the connection settings are {@link AmqpLinkOptions}.
 * Every coordinator of a deployment must use the same queue settings.
 */
export interface AmqpServerTransportOptions extends AmqpLinkOptions, DeadLetterBounds {
  /** Prefix of every queue and exchange name. @defaultValue `'lockq'` */
  readonly prefix?: string;
  /**
   * Failed deliveries of one request before the broker dead-letters it (`x-delivery-limit`): a
   * rejected batch or a lost channel counts one for every request delivered on that channel
   * and not yet acked, so a handler that rejects batches on a transient failure (a store
   * outage) should back off rather than burn through this. @defaultValue 20
   */
  readonly deliveryLimit?: number;
  /**
   * Bound on a request queue (`x-max-length`): requests waiting there, not yet delivered to the
   * coordinator. Once a queue is over it, publishes are refused (`reject-publish`), so a flood
   * meets the broker instead of the coordinator's memory, and the worker's `send` rejects: the
   * SDK's call fails at once with a retriable `TRANSPORT_ERROR` whose `refused` is true. The
   * refusal falls on whoever publishes next, well-behaved or not. A quorum queue may take one
   * or a few more than the bound before it starts refusing. @defaultValue unbounded
   */
  readonly maxLength?: number;
  /** Called after a lost connection was re-established and consuming resumed (for metrics). */
  readonly onReconnect?: () => void;
  /** Called when reconnecting gave up (`reconnect.attempts`); publishing fails from then on. */
  readonly onError?: (error: Error) => void;
}

const DEFAULT_DELIVERY_LIMIT = 20;
/** The header of a dead letter that says how long the poison body was before it was cut. */
export const ORIGINAL_BYTES_HEADER = 'x-lockq-original-bytes';
/** Replies are transient: one outliving a broker restart is of no use; the worker re-sends. */
const TRANSIENT = Object.freeze({});

function requestQueueArguments(o: AmqpServerTransportOptions, prefix: string): Readonly<Record<string, string | number | boolean>> {
  const args: Record<string, string | number | boolean> = {
    'x-queue-type': 'quorum',
    'x-single-active-consumer': true,
    'x-overflow': 'reject-publish',
    'x-delivery-limit': checkInteger('deliveryLimit', o.deliveryLimit ?? DEFAULT_DELIVERY_LIMIT, 0),
    'x-dead-letter-exchange': deadLetterDestination(prefix),
  };
  if (o.maxLength !== undefined) args['x-max-length'] = checkInteger('maxLength', o.maxLength, 1);
  return Object.freeze(args);
}

/** Refused (nacked, unpublishable), as opposed to lost with the connection. */
const isRefusal = (outcome: PublishOutcome) => outcome !== 'confirmed' && outcome !== 'lost';

/**
 * The coordinator side of RabbitMQ.
 *
 * Topology: per partition a durable quorum queue with single-active-consumer (a second
 * coordinator consuming it is a standby; the broker switches to it when the active one's
 * channel dies), `reject-publish` overflow, a delivery limit and a dead-letter exchange (a
 * durable fanout, with a durable queue of the same name bound to it, so poison is kept; that
 * queue keeps the newest `deadLetterMaxLength`, and the coordinator parks only a prefix of
 * each poison body, so poison cannot fill the broker). Workers publish requests through the
 * durable direct exchange `<prefix>.requests`, to which each request queue is bound with its
 * partition number as key, and forwards through `<prefix>.forwards`: every connection declares
 * both, so workers never need the default exchange, which writes into any queue
 * (docs/security.md §5.4). Replies still go through the default exchange.
 *
 * Identity: each batch comes with each delivery's `user_id` (undefined without one), which
 * RabbitMQ has checked against the publishing connection's user.
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
 * Publishing: replies and dead letters go through the link's confirm channel; `publish`
 * resolves when the broker confirmed every reply. A reply to a queue that does not exist (a
 * worker gone longer than its reply queue's expiry) is confirmed and dropped by the broker,
 * silently. A reply the broker cannot take (an address over 255 bytes, a nack) is refused
 * alone: the others are published, and `publish` then rejects with an `AmqpTransportError`
 * whose `refusedIndexes` name it (see {@link ServerTransport.publish}).
 *
 * Failures: a lost connection is re-established by the {@link AmqpLink} with backoff and
 * jitter; every partition is then declared and consumed again. A lost partition channel is
 * reopened on its own. A batch that is running when its channel dies finishes, but is not
 * acked: the broker has already requeued it, and the redelivery is absorbed by the
 * coordinator's idempotency. `publish` and `deadLetter` reject while disconnected.
 *
 * @example
 * ```ts
 * const transport = new AmqpServerTransport({ url: 'amqp://localhost', logger });
 * const coordinator = await Coordinator.start({ transport, partitions: 4 });
 * ```
 */
export class AmqpServerTransport implements ServerTransport {
  readonly prefix: string;
  readonly #link: AmqpLink;
  readonly #prefix: string;
  readonly #host: PartitionHost;
  readonly #log: Logger | undefined;
  readonly #deadLetters: Required<DeadLetterBounds>;
  readonly #partitions = new Map<number, AmqpPartition>();
  /** No new consumers or restarts, but batches in progress may still publish. */
  #closing = false;

  constructor(options: AmqpServerTransportOptions) {
    const link = resolveAmqpLinkOptions(options, 'lockq coordinator');
    this.#prefix = options.prefix ?? TOPOLOGY_PREFIX;
    this.prefix = this.#prefix;
    this.#deadLetters = resolveDeadLetterBounds(options);
    this.#log = options.logger?.child({ component: 'amqp-server-transport' });
    const { onReconnect, onError } = options;
    this.#link = new AmqpLink(
      link,
      {
        setUp: (c) => this.#declareExchanges(c),
        lost: () => {
          for (const p of this.#partitions.values()) p.connectionLost();
        },
        reconnected: () => {
          for (const p of this.#partitions.values()) p.reconnected();
          onReconnect?.();
        },
        gaveUp: (err) => onError?.(err),
      },
      this.#log,
    );
    const queueArguments = requestQueueArguments(options, this.#prefix);
    this.#host = {
      link: this.#link,
      queueArguments,
      requestExchange: requestExchange(this.#prefix),
      log: this.#log,
      isOpen: () => !this.#closing,
    };
  }

  async consume(partition: number, onBatch: BatchHandler, onLost?: () => void): Promise<void> {
    checkInteger('partition', partition, 0);
    if (this.#closing) throw new AmqpTransportError('transport is closed');
    if (this.#partitions.has(partition)) throw new Error(`partition ${partition} is already being consumed`);
    const p = new AmqpPartition(this.#host, partition, requestDestination(partition, this.#prefix), onBatch, onLost);
    this.#partitions.set(partition, p);
    // Reconnecting: registered, and the reconnect consumes every registered partition.
    if (this.#link.state === 'reconnecting') return;
    try {
      await p.start(await this.#link.ready());
    } catch (err) {
      if (this.#partitions.get(partition) === p) this.#partitions.delete(partition);
      p.stop().catch(() => {});
      throw err instanceof AmqpTransportError ? err : new AmqpTransportError(`cannot consume ${p.queue}`, { cause: err });
    }
    this.#log?.info({ partition, queue: p.queue }, 'consuming');
  }

  /**
   * Publishes `replies` in order on the confirm channel and resolves once the broker confirmed
   * all of them. A reply the broker refuses does not stop the others (see
   * {@link ServerTransport.publish} for the rejection).
   */
  async publish(replies: readonly Outbound[]): Promise<void> {
    if (replies.length === 0) return;
    const c = await this.#link.ready();
    const outcomes = await Promise.all(replies.map((r) => c.publish('', r.to, r.body, TRANSIENT)));
    const refusedIndexes = outcomes.flatMap((outcome, i) => (isRefusal(outcome) ? [i] : []));
    const lost = outcomes.filter((outcome) => outcome === 'lost').length;
    const n = replies.length;
    if (lost > 0) throw new AmqpTransportError(`the broker did not confirm ${lost} of ${n} replies`, { refusedIndexes });
    if (refusedIndexes.length > 0) {
      const which = `${refusedIndexes.length} of ${n} replies (indexes ${refusedIndexes.join(', ')})`;
      throw new AmqpTransportError(`the broker refused ${which}`, { refused: true, refusedIndexes });
    }
  }

  /**
   * Parks at most the first `deadLetterBodyBytes` of `body`, with headers `x-lockq-code`,
   * `x-lockq-partition` and, when it was cut, `x-lockq-original-bytes`.
   */
  async deadLetter(partition: number, body: Uint8Array, code: string): Promise<void> {
    const c = await this.#link.ready();
    const kept = deadLetterPrefix(body, this.#deadLetters.deadLetterBodyBytes);
    const headers: Record<string, string | number> = { 'x-lockq-code': code, 'x-lockq-partition': partition };
    if (kept !== body) headers[ORIGINAL_BYTES_HEADER] = body.byteLength;
    const exchange = deadLetterDestination(this.#prefix);
    const outcome = await c.publish(exchange, requestDestination(partition, this.#prefix), kept, { persistent: true, headers });
    if (outcome === 'confirmed') return;
    throw new AmqpTransportError(`the broker did not take a dead letter (${outcome})`, { refused: isRefusal(outcome) });
  }

  /**
   * Stops consuming `partition` and resolves once a batch in progress has finished (and been
   * acked). No new batch starts once this is called; deliveries already prefetched go back to
   * the queue, in order, when the partition's channel closes.
   */
  async stopConsuming(partition: number): Promise<void> {
    const p = this.#partitions.get(partition);
    if (p === undefined) return;
    await p.stop();
    if (this.#partitions.get(partition) === p) this.#partitions.delete(partition);
    this.#log?.info({ partition }, 'stopped consuming');
  }

  /** Stops consuming every partition (letting batches in progress finish) and disconnects. Idempotent. */
  close(): Promise<void> {
    this.#closing = true;
    return this.#link.close(async () => {
      await Promise.all([...this.#partitions.keys()].map((p) => this.stopConsuming(p)));
    });
  }

  /**
   * The set-up of every connection: the exchanges workers publish requests and forwards through,
   * then the dead-letter exchange and the bounded queue that keeps its messages (the newest
   * `deadLetterMaxLength`).
   */
  async #declareExchanges(c: AmqpConnection): Promise<void> {
    await c.channel.assertExchange(requestExchange(this.#prefix), 'direct', { durable: true });
    await c.channel.assertExchange(forwardExchange(this.#prefix), 'direct', { durable: true });
    const dl = deadLetterDestination(this.#prefix);
    await c.channel.assertExchange(dl, 'fanout', { durable: true });
    const args = { 'x-max-length': this.#deadLetters.deadLetterMaxLength, 'x-overflow': 'drop-head' };
    try {
      await c.channel.assertQueue(dl, { durable: true, arguments: args });
    } catch (err) {
      if ((err as { code?: unknown }).code !== 406) throw err;
      // Most likely declared by an earlier lockq, which left it unbounded. The broker keeps a
      // queue's arguments for its life, so only the operator can replace it.
      throw new AmqpTransportError(
        `the dead-letter queue ${dl} exists with other arguments than x-max-length ${args['x-max-length']}, drop-head ` +
          '(an older lockq declared it unbounded, or another coordinator uses another deadLetterMaxLength): ' +
          'move its messages elsewhere if you need them, delete it, and start again (docs/protocol.md §16.2)',
        { cause: err },
      );
    }
    await c.channel.bindQueue(dl, dl, '');
  }
}
