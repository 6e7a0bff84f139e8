import { checkInteger, replyDestination, requestDestination, TOPOLOGY_PREFIX } from '@lockq/protocol';
import {
  type AmqpConnection,
  AmqpLink,
  type AmqpLinkOptions,
  AmqpTransportError,
  type PublishOutcome,
  resolveAmqpLinkOptions,
} from '@lockq/protocol/amqp';
import type { ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import type { ClientTransport, ClientTransportHandlers, ClientTransportOptions } from './types.js';

/** Options of {@link AmqpClientTransport}; the connection settings are {@link AmqpLinkOptions}. */
export interface AmqpClientTransportOptions extends ClientTransportOptions, AmqpLinkOptions {
  /**
   * How long the reply queue outlives its last consumer (`x-expires`): replies published while
   * the worker reconnects wait for it this long. @defaultValue 60000
   */
  readonly replyExpiresMs?: number;
}

const DEFAULT_REPLY_EXPIRES_MS = 60_000;
/** Requests survive a broker restart, and come back (`returned`) when no queue takes them. */
const REQUEST = Object.freeze({ persistent: true, mandatory: true });
/** Replies and forwards are transient: one outliving a broker restart is of no use. */
const TRANSIENT = Object.freeze({});

/** The replies of one connection handed to `onReply` and not yet acknowledged. */
interface ReplyAcks {
  readonly c: AmqpConnection;
  last: ConsumeMessage | null;
  scheduled: boolean;
}

/**
 * The worker side of RabbitMQ. One connection with one confirm channel (an {@link AmqpLink}):
 * requests go to the partition's request queue through the default exchange as persistent,
 * mandatory messages and `send` resolves on the broker's confirm; replies come from this
 * worker's own queue.
 *
 * The reply queue is neither exclusive nor auto-delete: it expires `replyExpiresMs` after its
 * last consumer left, so replies published while the worker reconnects wait for it. After a
 * reconnect (backoff with jitter, forever by default) the queue is declared again, consuming
 * resumes and `onReconnect` is called; requests in flight at the loss may be lost (their `send`
 * rejects) and replies may arrive twice, so the caller re-sends and ignores duplicates.
 *
 * @example
 * ```ts
 * const transport = new AmqpClientTransport({ url: 'amqp://localhost', workerId: 'billing-7', instance: randomUUID() });
 * await transport.open({ onReply: (body) => handle(body), onReconnect: () => resendPending() });
 * await transport.send(partitionOf('invoice:42', 4), encodedRequest);
 * ```
 */
export class AmqpClientTransport implements ClientTransport {
  readonly replyAddress: string;
  readonly #link: AmqpLink;
  readonly #prefix: string;
  readonly #replyExpiresMs: number;
  readonly #log: Logger | undefined;
  #handlers: ClientTransportHandlers | null = null;
  #acks: ReplyAcks | null = null;

  constructor(options: AmqpClientTransportOptions) {
    if (options.workerId === '' || options.instance === '') throw new RangeError('workerId and instance must not be empty');
    const link = resolveAmqpLinkOptions(options, `lockq worker ${options.workerId}/${options.instance}`);
    this.#replyExpiresMs = checkInteger('replyExpiresMs', options.replyExpiresMs ?? DEFAULT_REPLY_EXPIRES_MS, 1);
    this.#prefix = options.prefix ?? TOPOLOGY_PREFIX;
    this.replyAddress = replyDestination(options.principal ?? 'guest', options.workerId, options.instance, this.#prefix);
    this.#log = options.logger?.child({ component: 'amqp-client-transport', replyAddress: this.replyAddress });
    this.#link = new AmqpLink(
      link,
      {
        setUp: (c) => this.#consumeReplies(c),
        reconnected: () => this.#handlers?.onReconnect?.(),
        gaveUp: (err) => this.#handlers?.onError?.(err),
      },
      this.#log,
    );
  }

  /** Connects; rejects (and may be called again) when the first connection cannot be made. */
  async open(handlers: ClientTransportHandlers): Promise<void> {
    if (this.#handlers !== null || this.#link.state !== 'idle') {
      throw new Error(`AmqpClientTransport.open: transport is ${this.#link.state}`);
    }
    this.#handlers = handlers;
    try {
      await this.#link.ready();
    } catch (err) {
      if (this.#link.state === 'idle') this.#handlers = null;
      throw err;
    }
  }

  async send(partition: number, body: Uint8Array): Promise<void> {
    const c = this.#open();
    if (c === null) throw this.#link.notConnected();
    const queue = requestDestination(checkInteger('partition', partition, 0), this.#prefix);
    const outcome = await c.publish('', queue, body, REQUEST);
    if (outcome === 'confirmed') return;
    if (outcome === 'returned') {
      throw new AmqpTransportError(`no queue ${queue}: is a coordinator for partition ${partition} running?`, { refused: true });
    }
    // A lost connection is no refusal: the caller re-sends on reconnect.
    if (outcome === 'lost') throw new AmqpTransportError(`lost a request for ${queue} in flight`);
    throw new AmqpTransportError(`the broker refused a request for ${queue} (${refusal(outcome)})`, { refused: true });
  }

  /**
   * Publishes to another client's reply queue as the coordinator publishes replies: default
   * exchange, transient, not mandatory (a queue that has expired just drops it). On the same
   * channel as requests, so a forward leaves before a request sent after it.
   */
  async forward(address: string, body: Uint8Array): Promise<void> {
    const c = this.#open();
    if (c === null) throw this.#link.notConnected();
    const outcome = await c.publish('', address, body, TRANSIENT);
    if (outcome === 'confirmed') return;
    if (outcome === 'lost') throw new AmqpTransportError(`lost a forward to ${address} in flight`);
    throw new AmqpTransportError(`the broker refused a forward to ${address} (${refusal(outcome)})`, { refused: true });
  }

  /** Closes the connection and stops reconnecting. The reply queue stays until it expires. */
  close(): Promise<void> {
    // Acknowledge what was handed over, so a reopened transport does not get it again.
    return this.#link.close(async () => this.#flushAck(this.#acks));
  }

  /** The connection to publish on, or null unless open (closing refuses new work). */
  #open(): AmqpConnection | null {
    return this.#link.state === 'open' ? this.#link.current : null;
  }

  /** Declares the reply queue and consumes it: the set-up of every connection. */
  async #consumeReplies(c: AmqpConnection): Promise<void> {
    const acks: ReplyAcks = { c, last: null, scheduled: false };
    // Durable (the queue, not the replies: they are published transient) because RabbitMQ 4.3
    // refuses non-durable queues that are not exclusive; x-expires removes it once unused.
    await c.channel.assertQueue(this.replyAddress, {
      durable: true,
      exclusive: false,
      autoDelete: false,
      arguments: { 'x-expires': this.#replyExpiresMs },
    });
    await c.channel.prefetch(this.#link.options.prefetch);
    this.#acks = acks;
    // Manual acks, not noAck: with noAck the broker forgets a reply the moment it is written
    // to the socket, so the replies in flight when the connection drops would be lost; with
    // acks they go back to the (surviving) reply queue and are delivered after the reconnect.
    await c.channel.consume(this.replyAddress, (msg) => this.#onReply(acks, msg), { noAck: false });
  }

  #onReply(acks: ReplyAcks, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled the consumer (the queue was deleted): reconnecting declares it again.
      acks.c.fail(new Error('reply consumer cancelled by the broker'));
      return;
    }
    // Not handed over on a dead connection: the broker requeues it and it comes on the next one.
    if (acks.c.lost) return;
    try {
      this.#handlers?.onReply(msg.content);
    } catch (err) {
      this.#log?.error({ err }, 'onReply threw; the reply is dropped');
    }
    // One cumulative ack per macrotask instead of one frame per reply.
    acks.last = msg;
    if (!acks.scheduled) {
      acks.scheduled = true;
      setImmediate(() => this.#flushAck(acks));
    }
  }

  #flushAck(acks: ReplyAcks | null): void {
    if (acks === null) return;
    acks.scheduled = false;
    const msg = acks.last;
    acks.last = null;
    if (msg === null || acks.c.lost) return;
    try {
      acks.c.channel.ack(msg, true);
    } catch (err) {
      this.#log?.debug({ err }, 'ack failed; the replies will be redelivered');
    }
  }
}

function refusal(outcome: PublishOutcome): string {
  return outcome === 'nacked' ? 'queue full?' : 'a name longer than AMQP carries';
}
