import { checkInteger, forwardExchange, requestDestination, requestExchange } from '@lockq/protocol';
import {
  type AmqpConnection,
  AmqpLink,
  type AmqpLinkOptions,
  AmqpTransportError,
  type PublishOutcome,
  resolveAmqpLinkOptions,
} from '@lockq/protocol/amqp';
import type { Channel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { AmqpRoutes } from './amqp-routes.js';
import { resolveClientIdentity } from './identity.js';
import type { ClientTransport, ClientTransportHandlers, ClientTransportOptions, ReplyOrigin } from './types.js';

/**
 * Options of {@link AmqpClientTransport}; the connection settings are {@link AmqpLinkOptions}.
 * `principal` defaults to the URL's user (`guest` without one, as amqplib logs in).
 */
export interface AmqpClientTransportOptions extends ClientTransportOptions, AmqpLinkOptions {
  /**
   * How long the reply queue outlives its last consumer (`x-expires`): replies published while
   * the worker reconnects wait for it this long. @defaultValue 60000
   */
  readonly replyExpiresMs?: number;
}

const DEFAULT_REPLY_EXPIRES_MS = 60_000;
/** Forwards are transient, as replies: one outliving a broker restart is of no use. */
const TRANSIENT = Object.freeze({});

/** The replies of one connection handed to `onReply` and not yet acknowledged. */
interface ReplyAcks {
  readonly c: AmqpConnection;
  last: ConsumeMessage | null;
  scheduled: boolean;
}

/**
 * The worker side of RabbitMQ. One connection with one confirm channel (an {@link AmqpLink}):
 * requests go through the exchange `<prefix>.requests` with the partition number as routing key,
 * as persistent, mandatory messages with `user_id` = the principal (the broker checks it against
 * the connection's user), and `send` resolves on the broker's confirm; replies come from this
 * worker's own queue `<prefix>.replies.<principal>.<workerId>.<instance>`, which is also bound to
 * `<prefix>.forwards` under its own name, the exchange forwards go through. A delivery says by
 * its exchange who published it (`''`: a coordinator, the only writer of the default exchange
 * under `lockq setup-broker`; `<prefix>.forwards`: another worker); anything else is dropped.
 * The exchanges and the principal are checked before the first publish (see
 * {@link AmqpRoutes}): a principal the broker refuses fails `open`; missing exchanges this user
 * may not declare fail each `send` as refused until a coordinator has declared them.
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
  /** Who this client says it is: `user_id` of every request. */
  readonly principal: string;
  readonly #link: AmqpLink;
  readonly #routes: AmqpRoutes;
  readonly #prefix: string;
  readonly #requestExchange: string;
  readonly #forwardExchange: string;
  /** Persistent (they survive a broker restart), mandatory (returned when no queue takes them). */
  readonly #request: Readonly<{ persistent: true; mandatory: true; userId: string }>;
  readonly #replyExpiresMs: number;
  /** Deliveries on the reply queue from neither a coordinator nor a forward: dropped. */
  #stray = 0;
  readonly #log: Logger | undefined;
  #handlers: ClientTransportHandlers | null = null;
  #acks: ReplyAcks | null = null;

  constructor(options: AmqpClientTransportOptions) {
    const link = resolveAmqpLinkOptions(options, `lockq worker ${options.workerId}/${options.instance}`);
    this.#replyExpiresMs = checkInteger('replyExpiresMs', options.replyExpiresMs ?? DEFAULT_REPLY_EXPIRES_MS, 1);
    const urlUser = urlUserOf(options.url);
    const identity = resolveClientIdentity(options, { principal: urlUser, from: "the URL's user" });
    this.principal = identity.principal;
    this.replyAddress = identity.replyAddress;
    this.#prefix = identity.prefix;
    this.#requestExchange = requestExchange(this.#prefix);
    this.#forwardExchange = forwardExchange(this.#prefix);
    this.#request = Object.freeze({ persistent: true, mandatory: true, userId: this.principal });
    this.#log = options.logger?.child({ component: 'amqp-client-transport', replyAddress: this.replyAddress });
    this.#routes = new AmqpRoutes({
      requestExchange: this.#requestExchange,
      forwardExchange: this.#forwardExchange,
      replyQueue: this.replyAddress,
      declareReplyQueue: (ch) => this.#declareReplyQueue(ch),
      principal: this.principal,
      urlUser,
      log: this.#log,
    });
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

  /** Replies on the reply queue that came from neither a coordinator nor a forward, and were dropped. */
  get strayReplies(): number {
    return this.#stray;
  }

  async send(partition: number, body: Uint8Array): Promise<void> {
    const c = this.#open();
    if (c === null) throw this.#link.notConnected();
    const queue = requestDestination(checkInteger('partition', partition, 0), this.#prefix);
    // Synchronous once checked, so that sends not awaited keep their order.
    if (!this.#routes.isReady(c)) await this.#routes.ready(c);
    const outcome = await c.publish(this.#requestExchange, String(partition), body, this.#request);
    if (outcome === 'confirmed') return;
    if (outcome === 'returned') {
      throw new AmqpTransportError(`no queue ${queue}: is a coordinator for partition ${partition} running?`, { refused: true });
    }
    // A lost connection is no refusal: the caller re-sends on reconnect.
    if (outcome === 'lost') throw new AmqpTransportError(`lost a request for ${queue} in flight`);
    throw new AmqpTransportError(`the broker refused a request for ${queue} (${refusal(outcome)})`, { refused: true });
  }

  /**
   * Publishes to another client's reply queue through `<prefix>.forwards` (routing key: the
   * address, under which its queue is bound): transient, not mandatory (a queue that has expired
   * just drops it). On the same channel as requests, so a forward leaves before a request sent
   * after it.
   */
  async forward(address: string, body: Uint8Array): Promise<void> {
    const c = this.#open();
    if (c === null) throw this.#link.notConnected();
    if (!this.#routes.isReady(c)) await this.#routes.ready(c);
    const outcome = await c.publish(this.#forwardExchange, address, body, TRANSIENT);
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

  /**
   * Checks the exchanges and the principal, declares the reply queue and binds it to the
   * forwards (all in {@link AmqpRoutes}), then consumes it: the set-up of every connection.
   */
  async #consumeReplies(c: AmqpConnection): Promise<void> {
    const acks: ReplyAcks = { c, last: null, scheduled: false };
    await this.#routes.setUp(c);
    await c.channel.prefetch(this.#link.options.prefetch);
    this.#acks = acks;
    // Manual acks, not noAck: with noAck the broker forgets a reply the moment it is written
    // to the socket, so the replies in flight when the connection drops would be lost; with
    // acks they go back to the (surviving) reply queue and are delivered after the reconnect.
    await c.channel.consume(this.replyAddress, (msg) => this.#onReply(acks, msg), { noAck: false });
  }

  /**
   * Durable (the queue, not the replies: they are published transient) because RabbitMQ 4.3
   * refuses non-durable queues that are not exclusive; x-expires removes it once unused.
   */
  #declareReplyQueue(ch: Channel): Promise<unknown> {
    return ch.assertQueue(this.replyAddress, {
      durable: true,
      exclusive: false,
      autoDelete: false,
      arguments: { 'x-expires': this.#replyExpiresMs },
    });
  }

  #onReply(acks: ReplyAcks, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled the consumer (the queue was deleted): reconnecting declares it again.
      acks.c.fail(new Error('reply consumer cancelled by the broker'));
      return;
    }
    // Not handed over on a dead connection: the broker requeues it and it comes on the next one.
    if (acks.c.lost) return;
    const origin = this.#originOf(msg);
    if (origin === null) {
      // Only a coordinator (default exchange) or a forward should be able to route here.
      this.#stray++;
      this.#log?.debug({ exchange: msg.fields.exchange }, 'dropped a reply from an unexpected exchange');
    } else {
      try {
        this.#handlers?.onReply(msg.content, origin);
      } catch (err) {
        this.#log?.error({ err }, 'onReply threw; the reply is dropped');
      }
    }
    // One cumulative ack per macrotask instead of one frame per reply.
    acks.last = msg;
    if (!acks.scheduled) {
      acks.scheduled = true;
      setImmediate(() => this.#flushAck(acks));
    }
  }

  /** Who published `msg`, by the exchange the broker says it came through; null: neither. */
  #originOf(msg: ConsumeMessage): ReplyOrigin | null {
    if (msg.fields.exchange === '') return 'coordinator';
    return msg.fields.exchange === this.#forwardExchange ? 'forward' : null;
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

/** The user the URL logs in as (percent-decoded); `guest`, amqplib's default, without one. */
function urlUserOf(url: string): string {
  let user = '';
  try {
    user = decodeURIComponent(new URL(url).username);
  } catch {
    // an invalid URL is reported, naming the field, by resolveAmqpLinkOptions
  }
  return user === '' ? 'guest' : user;
}

function refusal(outcome: PublishOutcome): string {
  return outcome === 'nacked' ? 'queue full?' : 'a name longer than AMQP carries';
}
