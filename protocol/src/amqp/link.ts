import type { Logger } from 'pino';
import { backoffMs } from '../retry.js';
import { AmqpConnection } from './connection.js';
import { AmqpTransportError } from './errors.js';
import type { ResolvedAmqpLinkOptions } from './options.js';

/**
 * Where an {@link AmqpLink} is. `idle` → `connecting` → `open`; a failed first connection goes
 * back to `idle` (the caller may try again); `open` → `reconnecting` on a loss, and back to
 * `open` once a new connection is set up, or `failed` when `reconnect.attempts` ran out; any
 * state → `closing` (no more reconnects; the connection still serves work in progress) →
 * `closed`.
 */
export type AmqpLinkState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'failed' | 'closing' | 'closed';

/** What a transport does at the link's turning points. A hook that throws is logged, not fatal. */
export interface AmqpLinkHooks {
  /**
   * Runs on every new connection before the link counts it open: declare the side's topology,
   * start consuming. A rejection fails that connection attempt (and closes the connection).
   */
  setUp(c: AmqpConnection): Promise<void>;
  /** The open connection is gone (once per loss, also while closing); reconnecting follows. */
  lost?(c: AmqpConnection, err: Error): void;
  /** Open again after a loss: `setUp` ran on the new connection, and the state is `open`. */
  reconnected?(c: AmqpConnection): void;
  /** Reconnecting gave up after `reconnect.attempts`; the link stays `failed`. */
  gaveUp?(err: AmqpTransportError): void;
}

const noop = () => {};

/**
 * One reconnecting AMQP connection, the part both transports share: it connects, runs the
 * transport's set-up on every new connection, notices a lost connection or confirm channel,
 * reconnects with the shared retry policy (backoff with jitter) and says so through its hooks.
 * What travels over it (queues, consumers, acks) is the transport's.
 *
 * @example
 * ```ts
 * const link = new AmqpLink(resolveAmqpLinkOptions({ url }, 'lockq tool'), {
 *   setUp: async (c) => void (await c.channel.assertQueue('q')),
 *   reconnected: () => resendWhatIsInFlight(),
 * });
 * const c = await link.ready();
 * if ((await c.publish('', 'q', body, { persistent: true })) !== 'confirmed') retryLater();
 * await link.close();
 * ```
 */
export class AmqpLink {
  readonly options: ResolvedAmqpLinkOptions;
  readonly #hooks: AmqpLinkHooks;
  readonly #log: Logger | undefined;
  #state: AmqpLinkState = 'idle';
  #current: AmqpConnection | null = null;
  /** The connection attempt in flight (first connection or a reconnect). */
  #attempt: Promise<AmqpConnection> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #closed: Promise<void> | null = null;

  constructor(options: ResolvedAmqpLinkOptions, hooks: AmqpLinkHooks, log?: Logger) {
    this.options = options;
    this.#hooks = hooks;
    this.#log = log;
  }

  get state(): AmqpLinkState {
    return this.#state;
  }

  /** The connection while `open` (or `closing` with one left); otherwise null. */
  get current(): AmqpConnection | null {
    return this.#current;
  }

  /**
   * The open connection. When `idle` this connects; a caller during a connection attempt (first
   * or reconnect) waits for it. Rejects with an {@link AmqpTransportError} when the attempt
   * fails, while reconnecting between attempts, after giving up, and once closed.
   */
  ready(): Promise<AmqpConnection> {
    if (this.#current !== null) return Promise.resolve(this.#current);
    if (this.#state === 'idle') this.#connectFirst();
    if (this.#attempt !== null && this.#state !== 'closed') {
      return this.#attempt.catch((err: unknown) => {
        throw err instanceof AmqpTransportError ? err : new AmqpTransportError(`cannot connect to ${this.options.logUrl}`, { cause: err });
      });
    }
    return Promise.reject(this.notConnected());
  }

  /** The error for work that needs a connection while there is none. */
  notConnected(): AmqpTransportError {
    if (this.#state === 'closing' || this.#state === 'closed') return new AmqpTransportError('transport is closed');
    return new AmqpTransportError(`not connected to ${this.options.logUrl} (${this.#state})`);
  }

  /**
   * Stops reconnecting, waits for `drain` (work that may still use the connection), then closes
   * the connection. Idempotent: later calls return the first call's promise.
   */
  close(drain?: () => Promise<void>): Promise<void> {
    this.#closed ??= this.#close(drain);
    return this.#closed;
  }

  async #close(drain: (() => Promise<void>) | undefined): Promise<void> {
    this.#state = 'closing';
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    try {
      await drain?.();
    } finally {
      this.#state = 'closed';
      await this.#attempt?.catch(noop);
      const c = this.#current;
      this.#current = null;
      await c?.close();
    }
  }

  #connectFirst(): void {
    this.#state = 'connecting';
    this.#connect().then(
      () => this.#log?.info({ url: this.options.logUrl }, 'connected'),
      () => {
        if (this.#state === 'connecting') this.#state = 'idle';
      },
    );
  }

  /** One connection attempt; the connection becomes current unless the link was closed meanwhile. */
  #connect(): Promise<AmqpConnection> {
    const attempt = (async () => {
      const c = await AmqpConnection.open(this.options, this.#log, (lost, err) => this.#lost(lost, err));
      try {
        await this.#hooks.setUp(c);
      } catch (err) {
        await c.close();
        throw err;
      }
      if (this.#state === 'closing' || this.#state === 'closed' || c.lost) {
        const closing = !c.lost;
        await c.close();
        throw new AmqpTransportError(closing ? 'transport closed while connecting' : 'connection lost while connecting');
      }
      this.#current = c;
      this.#state = 'open';
      return c;
    })();
    this.#attempt = attempt;
    const clear = () => {
      if (this.#attempt === attempt) this.#attempt = null;
    };
    attempt.then(clear, clear);
    return attempt;
  }

  #lost(c: AmqpConnection, err: Error): void {
    if (this.#current !== c) return; // not current yet (the attempt fails) or already replaced
    this.#current = null;
    this.#call('lost', () => this.#hooks.lost?.(c, err));
    // After a channel-only loss the connection is still up: drop it, one path rebuilds all.
    c.close().catch(noop);
    if (this.#state !== 'open') return;
    this.#state = 'reconnecting';
    this.#log?.warn({ err }, 'lost the broker connection; reconnecting');
    this.#schedule(1);
  }

  #schedule(attempt: number): void {
    if (this.#state !== 'reconnecting') return;
    const policy = this.options.reconnect;
    if (attempt > policy.attempts) {
      this.#state = 'failed';
      const err = new AmqpTransportError(`gave up reconnecting to ${this.options.logUrl} after ${attempt - 1} attempts`);
      this.#log?.error({ err }, 'gave up reconnecting');
      this.#call('gaveUp', () => this.#hooks.gaveUp?.(err));
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#reconnect(attempt);
    }, backoffMs(policy, attempt - 1));
  }

  async #reconnect(attempt: number): Promise<void> {
    if (this.#state !== 'reconnecting') return;
    let c: AmqpConnection;
    try {
      c = await this.#connect();
    } catch (err) {
      if (this.#state !== 'reconnecting') return;
      this.#log?.warn({ err, attempt }, 'reconnect attempt failed');
      this.#schedule(attempt + 1);
      return;
    }
    if (c.lost) return; // lost again at once: the next attempt is already scheduled
    this.#log?.info({ attempt }, 'reconnected');
    this.#call('reconnected', () => this.#hooks.reconnected?.(c));
  }

  #call(hook: keyof AmqpLinkHooks, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#log?.error({ err, hook }, 'a transport hook threw');
    }
  }
}
