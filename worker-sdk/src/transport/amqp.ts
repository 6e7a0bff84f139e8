import { AmqpTransportError, amqpUrlForLogs, amqpUrlWithHeartbeat, openAmqpConnection } from '@lockq/protocol/amqp';
import type { ChannelModel, ConfirmChannel, ConsumeMessage, Message } from 'amqplib';
import type { Logger } from 'pino';
import { backoffMs, replyDestination, requestDestination, resolveRetryPolicy, type RetryPolicy, TOPOLOGY_PREFIX } from '@lockq/protocol';
import type { ClientTransport, ClientTransportHandlers, ClientTransportOptions } from './types.js';

// amqplib is imported lazily (types only up here) so that importing this package's transports
// never loads a broker driver an application does not use.

/** A view of a message body as a Buffer without copying it. */
function asBuffer(body: Uint8Array): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

function nonNegativeInteger(field: string, value: number, min = 0): number {
  if (!Number.isSafeInteger(value) || value < min) throw new RangeError(`${field}: expected an integer >= ${min}, got ${value}`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// The worker side.
// ---------------------------------------------------------------------------------------------

/** Options of {@link AmqpClientTransport}. */
export interface AmqpClientTransportOptions extends ClientTransportOptions {
  /** The broker, e.g. `amqp://user:pass@rabbit:5672/vhost`. */
  readonly url: string;
  /** Heartbeat negotiated with the broker (whole seconds on the wire; 0 turns it off). @defaultValue 10000 */
  readonly heartbeatMs?: number;
  /** Bound on establishing the TCP connection. @defaultValue 10000 */
  readonly connectTimeoutMs?: number;
  /** Replies the broker may push before they are acknowledged. @defaultValue 256 */
  readonly prefetch?: number;
  /**
   * How long the reply queue outlives its last consumer (`x-expires`): replies published while
   * the worker reconnects wait for it this long. @defaultValue 60000
   */
  readonly replyExpiresMs?: number;
  /** Backoff between reconnect attempts; `attempts` bounds them. @defaultValue `DEFAULT_RETRY_POLICY` (forever) */
  readonly reconnect?: Partial<RetryPolicy>;
  /** The connection's name in the broker's management tools. @defaultValue `lockq worker <workerId>/<instance>` */
  readonly connectionName?: string;
  /** @defaultValue no logging */
  readonly logger?: Logger;
}

interface ResolvedClientOptions {
  readonly connectUrl: string;
  readonly logUrl: string;
  readonly prefix: string;
  readonly connectTimeoutMs: number;
  readonly prefetch: number;
  readonly replyExpiresMs: number;
  readonly reconnect: RetryPolicy;
  readonly connectionName: string;
}

function resolveClientOptions(o: AmqpClientTransportOptions): ResolvedClientOptions {
  if (o.workerId === '' || o.instance === '') throw new RangeError('workerId and instance must not be empty');
  return Object.freeze({
    connectUrl: amqpUrlWithHeartbeat(o.url, nonNegativeInteger('heartbeatMs', o.heartbeatMs ?? 10_000)),
    logUrl: amqpUrlForLogs(o.url),
    prefix: o.prefix ?? TOPOLOGY_PREFIX,
    connectTimeoutMs: nonNegativeInteger('connectTimeoutMs', o.connectTimeoutMs ?? 10_000, 1),
    prefetch: nonNegativeInteger('prefetch', o.prefetch ?? 256, 1),
    replyExpiresMs: nonNegativeInteger('replyExpiresMs', o.replyExpiresMs ?? 60_000, 1),
    reconnect: resolveRetryPolicy(o.reconnect, 'reconnect'),
    connectionName: o.connectionName ?? `lockq worker ${o.workerId}/${o.instance}`,
  });
}

/** One connection and its channel; replaced wholesale when either is lost. */
interface ClientLink {
  readonly conn: ChannelModel;
  readonly ch: ConfirmChannel;
  lost: boolean;
  /** Message ids the broker returned as unroutable; looked up when their confirm arrives. */
  readonly returned: Set<string>;
  /** The latest reply handed to `onReply` and not yet acknowledged. */
  unacked: ConsumeMessage | null;
  ackScheduled: boolean;
}

type ClientState = 'new' | 'opening' | 'open' | 'reconnecting' | 'failed' | 'closed';

/**
 * The worker side of RabbitMQ. One connection with one confirm channel: requests go to the
 * partition's request queue through the default exchange as persistent, mandatory messages and
 * `send` resolves on the broker's confirm; replies come from this worker's own queue.
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
  readonly #o: ResolvedClientOptions;
  readonly #log: Logger | undefined;
  #state: ClientState = 'new';
  #handlers: ClientTransportHandlers | null = null;
  #link: ClientLink | null = null;
  /** The connection attempt in flight, so `close` can wait for it and close what it opens. */
  #attempt: Promise<unknown> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #closing: Promise<void> | null = null;
  #seq = 0;

  constructor(options: AmqpClientTransportOptions) {
    this.#o = resolveClientOptions(options);
    this.replyAddress = replyDestination(options.workerId, options.instance, this.#o.prefix);
    this.#log = options.logger?.child({ component: 'amqp-client-transport', replyAddress: this.replyAddress });
  }

  /** Connects; rejects (and may be called again) when the first connection cannot be made. */
  async open(handlers: ClientTransportHandlers): Promise<void> {
    if (this.#state !== 'new') throw new Error(`AmqpClientTransport.open: transport is ${this.#state}`);
    this.#handlers = handlers;
    this.#state = 'opening';
    const attempt = this.#establish();
    this.#attempt = attempt;
    try {
      await attempt;
    } catch (err) {
      if (this.#state === 'opening') this.#state = 'new';
      throw err instanceof AmqpTransportError ? err : new AmqpTransportError(`cannot connect to ${this.#o.logUrl}`, { cause: err });
    } finally {
      if (this.#attempt === attempt) this.#attempt = null;
    }
    this.#log?.info({ url: this.#o.logUrl }, 'connected');
  }

  send(partition: number, body: Uint8Array): Promise<void> {
    const link = this.#link;
    if (link === null) {
      const why = this.#state === 'closed' ? 'transport is closed' : `not connected to the broker (${this.#state})`;
      return Promise.reject(new AmqpTransportError(why));
    }
    if (!Number.isSafeInteger(partition) || partition < 0) {
      return Promise.reject(new RangeError(`partition: expected an integer >= 0, got ${partition}`));
    }
    const queue = requestDestination(partition, this.#o.prefix);
    const messageId = String(++this.#seq);
    return new Promise<void>((resolve, reject) => {
      const confirmed = (err: unknown) => {
        if (err != null) {
          // amqplib reports a broker nack (with `x-overflow: reject-publish`: the request queue is
          // full) as 'message nacked'; anything else (a closing channel) is a lost connection,
          // after which the caller re-sends on reconnect, so it must not read as a refusal.
          const refused = err instanceof Error && err.message === 'message nacked';
          const why = refused ? `the broker refused a request for ${queue} (queue full?)` : `lost a request for ${queue} in flight`;
          reject(new AmqpTransportError(why, { cause: err, refused }));
        } else if (link.returned.delete(messageId)) {
          reject(new AmqpTransportError(`no queue ${queue}: is a coordinator for partition ${partition} running?`, { refused: true }));
        } else resolve();
      };
      try {
        // mandatory: a request nobody can ever consume comes back (basic.return, before the
        // confirm) instead of vanishing, so the caller learns at once rather than by timeout.
        link.ch.sendToQueue(queue, asBuffer(body), { persistent: true, mandatory: true, messageId }, confirmed);
      } catch (err) {
        reject(new AmqpTransportError('publishing the request failed', { cause: err }));
      }
    });
  }

  /**
   * Publishes to another client's reply queue as the coordinator publishes replies: default
   * exchange, transient, not mandatory (a queue that has expired just drops it). On the same
   * channel as requests, so a forward leaves before a request sent after it.
   */
  forward(address: string, body: Uint8Array): Promise<void> {
    const link = this.#link;
    if (link === null) {
      const why = this.#state === 'closed' ? 'transport is closed' : `not connected to the broker (${this.#state})`;
      return Promise.reject(new AmqpTransportError(why));
    }
    return new Promise<void>((resolve, reject) => {
      const confirmed = (err: unknown) => {
        if (err == null) resolve();
        else reject(new AmqpTransportError(`lost a forward to ${address} in flight`, { cause: err }));
      };
      try {
        link.ch.publish('', address, asBuffer(body), {}, confirmed);
      } catch (err) {
        reject(new AmqpTransportError('publishing the forward failed', { cause: err }));
      }
    });
  }

  /** Closes the connection and stops reconnecting. The reply queue stays until it expires. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#state = 'closed';
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#attempt?.catch(() => {});
    const link = this.#link;
    this.#link = null;
    if (link !== null) {
      // Acknowledge what was handed over, so a reopened transport does not get it again.
      this.#flushAck(link);
      link.lost = true;
      await link.conn.close().catch(() => {});
    }
  }

  /** Connects and makes the link current, unless the transport was closed meanwhile. */
  async #establish(): Promise<void> {
    const link = await this.#connect();
    if (this.#state === 'closed' || link.lost) {
      link.lost = true;
      await link.conn.close().catch(() => {});
      throw new AmqpTransportError(this.#state === 'closed' ? 'transport closed while connecting' : 'connection lost while connecting');
    }
    this.#link = link;
    this.#state = 'open';
  }

  async #connect(): Promise<ClientLink> {
    const o = this.#o;
    let link: ClientLink | undefined;
    let lostEarly = false;
    const conn = await openAmqpConnection(o, this.#log, (err) => {
      if (link === undefined) lostEarly = true;
      else this.#lost(link, err);
    });
    try {
      const ch = await conn.createConfirmChannel();
      const l: ClientLink = { conn, ch, lost: lostEarly, returned: new Set(), unacked: null, ackScheduled: false };
      link = l;
      ch.on('error', (err: Error) => this.#log?.warn({ err }, 'channel error'));
      ch.on('close', () => this.#lost(l, new Error('channel closed')));
      ch.on('return', (msg: Message) => {
        if (typeof msg.properties.messageId === 'string') l.returned.add(msg.properties.messageId);
      });
      // Durable (the queue, not the replies: they are published transient) because RabbitMQ 4.3
      // refuses non-durable queues that are not exclusive; x-expires removes it once unused.
      await ch.assertQueue(this.replyAddress, {
        durable: true,
        exclusive: false,
        autoDelete: false,
        arguments: { 'x-expires': o.replyExpiresMs },
      });
      await ch.prefetch(o.prefetch);
      // Manual acks, not noAck: with noAck the broker forgets a reply the moment it is written
      // to the socket, so the replies in flight when the connection drops would be lost; with
      // acks they go back to the (surviving) reply queue and are delivered after the reconnect.
      await ch.consume(this.replyAddress, (msg) => this.#onReply(l, msg), { noAck: false });
      return l;
    } catch (err) {
      if (link !== undefined) link.lost = true;
      await conn.close().catch(() => {});
      throw err;
    }
  }

  #onReply(link: ClientLink, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled the consumer (the queue was deleted): reconnecting declares it again.
      this.#lost(link, new Error('reply consumer cancelled by the broker'));
      return;
    }
    // Not handed over on a dead link: the broker requeues it and it comes on the next one.
    if (link.lost) return;
    try {
      this.#handlers?.onReply(msg.content);
    } catch (err) {
      this.#log?.error({ err }, 'onReply threw; the reply is dropped');
    }
    // One cumulative ack per macrotask instead of one frame per reply.
    link.unacked = msg;
    if (!link.ackScheduled) {
      link.ackScheduled = true;
      setImmediate(() => this.#flushAck(link));
    }
  }

  #flushAck(link: ClientLink): void {
    link.ackScheduled = false;
    const msg = link.unacked;
    link.unacked = null;
    if (msg === null || link.lost) return;
    try {
      link.ch.ack(msg, true);
    } catch (err) {
      this.#log?.debug({ err }, 'ack failed; the replies will be redelivered');
    }
  }

  /** A method, so the check is not narrowed away across awaits. */
  get #closed(): boolean {
    return this.#state === 'closed';
  }

  #lost(link: ClientLink, err: Error): void {
    if (link.lost) return;
    link.lost = true;
    if (this.#link !== link) return;
    this.#link = null;
    if (this.#state === 'closed') return;
    this.#state = 'reconnecting';
    this.#log?.warn({ err }, 'lost the broker connection; reconnecting');
    // After a channel-only loss the connection is still up: drop it, one path rebuilds all.
    link.conn.close().catch(() => {});
    this.#scheduleReconnect(1);
  }

  #scheduleReconnect(attempt: number): void {
    if (this.#state === 'closed') return;
    const policy = this.#o.reconnect;
    if (attempt > policy.attempts) {
      this.#state = 'failed';
      const err = new AmqpTransportError(`gave up reconnecting to ${this.#o.logUrl} after ${attempt - 1} attempts`);
      this.#log?.error({ err }, 'gave up reconnecting');
      this.#handlers?.onError?.(err);
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#reconnect(attempt);
    }, backoffMs(policy, attempt - 1));
  }

  async #reconnect(attempt: number): Promise<void> {
    if (this.#closed) return;
    const pending = this.#establish();
    this.#attempt = pending;
    try {
      await pending;
    } catch (err) {
      if (this.#closed) return;
      this.#log?.warn({ err, attempt }, 'reconnect attempt failed');
      this.#scheduleReconnect(attempt + 1);
      return;
    } finally {
      if (this.#attempt === pending) this.#attempt = null;
    }
    this.#log?.info({ attempt }, 'reconnected');
    try {
      this.#handlers?.onReconnect?.();
    } catch (err) {
      this.#log?.error({ err }, 'onReconnect threw');
    }
  }
}
