import type { ChannelModel, ConfirmChannel, Message, Options } from 'amqplib';
import type { Logger } from 'pino';
import type { ResolvedAmqpLinkOptions } from './options.js';

// amqplib is imported lazily (types only up here) so that importing a package's transports
// never loads a broker driver an application does not use.

/** AMQP carries exchange names and routing keys as short strings: at most this many bytes. */
export const AMQP_MAX_NAME_BYTES = 255;

/**
 * How one publish ended: `confirmed` by the broker; `nacked` (refused by the broker, e.g. a full
 * queue with `reject-publish`); `returned` (mandatory, and no queue took it); `unpublishable`
 * (it could not be put on the wire at all, e.g. a routing key over {@link AMQP_MAX_NAME_BYTES}:
 * the channel was not touched); `lost` (the channel or connection went away first, so whether
 * the broker has it is unknown).
 */
export type PublishOutcome = 'confirmed' | 'nacked' | 'returned' | 'unpublishable' | 'lost';

const noop = () => {};

/** A view of a message body as a Buffer without copying it. */
function asBuffer(body: Uint8Array): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

/**
 * One AMQP connection and its confirm channel: one life of an {@link AmqpLink}. It is lost, once,
 * when the connection or the confirm channel closes (or {@link AmqpConnection.fail} is called),
 * and never comes back: the link replaces it wholesale.
 */
export class AmqpConnection {
  /** The connection, for the channels a transport opens of its own (a coordinator's partitions). */
  readonly model: ChannelModel;
  /** The confirm channel: every publish of this connection (and the worker's reply consumer). */
  readonly channel: ConfirmChannel;
  readonly #onLost: (c: AmqpConnection, err: Error) => void;
  /** Message ids of mandatory publishes the broker returned; looked up when their confirm comes. */
  readonly #returned = new Set<string>();
  #lost = false;
  #seq = 0;

  private constructor(model: ChannelModel, channel: ConfirmChannel, onLost: (c: AmqpConnection, err: Error) => void) {
    this.model = model;
    this.channel = channel;
    this.#onLost = onLost;
  }

  /**
   * Connects with the settings both sides use (TCP no-delay, a bounded connect, a name shown in
   * the broker's tools, TLS material for `amqps://`) and opens the confirm channel. `onLost`
   * runs once when either is gone.
   */
  static async open(
    o: ResolvedAmqpLinkOptions,
    log: Logger | undefined,
    onLost: (c: AmqpConnection, err: Error) => void,
  ): Promise<AmqpConnection> {
    const amqp = await import('amqplib');
    const model = await amqp.connect(o.connectUrl, {
      // amqplib hands its socket options to tls.connect for amqps:// (CA, client certificate).
      ...o.tls,
      noDelay: true,
      timeout: o.connectTimeoutMs,
      clientProperties: { connection_name: o.connectionName },
    });
    let c: AmqpConnection | undefined;
    let lostEarly = false;
    const lost = (err: Error) => {
      if (c === undefined) lostEarly = true;
      else c.fail(err);
    };
    // An 'error' event without a listener would crash the process; 'close' always follows it.
    model.on('error', (err: Error) => log?.warn({ err }, 'broker connection error'));
    // A broker short of memory or disk blocks publishers: confirms stall until it unblocks.
    model.on('blocked', (reason: string) => log?.warn({ reason }, 'the broker blocked this connection'));
    model.on('unblocked', () => log?.info('the broker unblocked this connection'));
    model.on('close', (err?: Error) => lost(err ?? new Error('connection closed')));
    try {
      const channel = await model.createConfirmChannel();
      const opened = new AmqpConnection(model, channel, onLost);
      c = opened;
      opened.#lost = lostEarly;
      channel.on('error', (err: Error) => log?.warn({ err }, 'confirm channel error'));
      channel.on('close', () => lost(new Error('confirm channel closed')));
      channel.on('return', (msg: Message) => {
        if (typeof msg.properties.messageId === 'string') opened.#returned.add(msg.properties.messageId);
      });
      return opened;
    } catch (err) {
      await model.close().catch(noop);
      throw err;
    }
  }

  /** True once the connection or its confirm channel is gone: nothing more goes through it. */
  get lost(): boolean {
    return this.#lost;
  }

  /** Marks the connection unusable (e.g. a consumer the broker cancelled); the link reconnects. */
  fail(err: Error): void {
    if (this.#lost) return;
    this.#lost = true;
    this.#onLost(this, err);
  }

  /** Marks it lost and closes it. */
  async close(): Promise<void> {
    this.fail(new Error('closed on purpose'));
    await this.model.close().catch(noop);
  }

  /**
   * Publishes on the confirm channel; resolves with how it ended (see {@link PublishOutcome}),
   * never rejects. A message that cannot be put on the wire ends `unpublishable` at once, before
   * the channel is touched, so it never disturbs the channel's other publishes. With `mandatory`,
   * a message no queue takes ends `returned`.
   */
  publish(exchange: string, routingKey: string, body: Uint8Array, properties: Options.Publish): Promise<PublishOutcome> {
    if (this.#lost) return Promise.resolve('lost');
    if (Buffer.byteLength(exchange) > AMQP_MAX_NAME_BYTES || Buffer.byteLength(routingKey) > AMQP_MAX_NAME_BYTES) {
      return Promise.resolve('unpublishable');
    }
    const messageId = properties.mandatory === true ? String(++this.#seq) : undefined;
    return new Promise((resolve) => {
      const confirmed = (err: unknown) => {
        // amqplib reports a broker nack as 'message nacked'; anything else is a closing channel.
        if (err != null) resolve(err instanceof Error && err.message === 'message nacked' ? 'nacked' : 'lost');
        else resolve(messageId !== undefined && this.#returned.delete(messageId) ? 'returned' : 'confirmed');
      };
      const options = messageId === undefined ? properties : { ...properties, messageId };
      try {
        this.channel.publish(exchange, routingKey, asBuffer(body), options, confirmed);
      } catch {
        // amqplib validates before writing (and before registering the confirm callback).
        resolve(this.#lost ? 'lost' : 'unpublishable');
      }
    });
  }
}
