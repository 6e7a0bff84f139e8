import { AmqpTransportError, type AmqpConnection } from '@lockq/protocol/amqp';
import type { Channel } from 'amqplib';
import type { Logger } from 'pino';

/** What {@link AmqpRoutes} needs to know about its worker. */
export interface AmqpRoutesOptions {
  /** `<prefix>.requests`: requests go through it. */
  readonly requestExchange: string;
  /** `<prefix>.forwards`: forwards go through it, and the reply queue is bound to it. */
  readonly forwardExchange: string;
  readonly replyQueue: string;
  /** Set as `user_id` on every request. */
  readonly principal: string;
  /** The user the URL names, for messages (the broker's own word is preferred when it gives it). */
  readonly urlUser: string;
  readonly log: Logger | undefined;
}

/** While the exchanges are missing, a send checks again at most this often. */
const RECHECK_MS = 500;
/**
 * The routing key of the `user_id` probe: no request queue is bound with it (they are bound with
 * partition numbers), so the broker checks the probe's `user_id` and then drops it.
 */
const PROBE_KEY = 'user-id-check';

/** How one connection's check came out. */
interface Check {
  readonly c: AmqpConnection;
  /** Why requests and forwards may not be published; null when they may. */
  failure: AmqpTransportError | null;
  checkedAt: number;
  running: Promise<void> | null;
}

const noop = () => {};
const brokerCode = (err: unknown): unknown => (err as { code?: unknown } | null)?.code;

/**
 * What a worker needs on the broker before it publishes (docs/protocol.md §16.1): the request and
 * forward exchanges exist, its reply queue is bound to the forward exchange under its own name,
 * and the broker accepts its principal as `user_id`. Everything is checked on a throwaway
 * channel: a missing exchange (404), a refusal (403) or a foreign `user_id` (406) closes the
 * channel it happens on, and that must never be the connection's confirm channel, which carries
 * every request and reply.
 *
 * Missing exchanges are declared when this user may (`guest` may); under `lockq setup-broker`'s
 * layout a worker may not, and then sends are refused, saying to start a coordinator or run
 * `setup-broker` first, and the next send after a short while checks again.
 */
export class AmqpRoutes {
  readonly #o: AmqpRoutesOptions;
  #check: Check | null = null;

  constructor(options: AmqpRoutesOptions) {
    this.#o = options;
  }

  /**
   * The check of a new connection (its set-up). Rejects only when the broker refuses the
   * principal, which no retry can mend; missing exchanges are left for sends to report.
   */
  async setUp(c: AmqpConnection): Promise<void> {
    const check: Check = { c, failure: null, checkedAt: 0, running: null };
    this.#check = check;
    await this.#run(check);
    if (check.failure !== null && brokerCode(check.failure.cause) === 406) throw check.failure;
  }

  /** True when requests and forwards may be published on `c` now (the check passed). */
  isReady(c: AmqpConnection): boolean {
    const check = this.#check;
    return check !== null && check.c === c && check.running === null && check.failure === null && check.checkedAt > 0;
  }

  /**
   * Resolves once requests and forwards may be published on `c`; otherwise rejects with why not
   * (`refused: true` when the broker refuses). A failure is checked again once it is
   * `RECHECK_MS` old.
   */
  async ready(c: AmqpConnection): Promise<void> {
    let check = this.#check;
    if (check === null || check.c !== c) {
      check = { c, failure: null, checkedAt: 0, running: null };
      this.#check = check;
    }
    if (check.running === null && (check.checkedAt === 0 || (check.failure !== null && performance.now() - check.checkedAt >= RECHECK_MS))) {
      await this.#run(check);
    } else if (check.running !== null) {
      await check.running;
    }
    if (check.failure !== null) throw check.failure;
  }

  /** Runs the check once at a time; its outcome lands on `check`. */
  #run(check: Check): Promise<void> {
    check.running ??= this.#checkOnce(check.c).then(
      (failure) => {
        check.failure = failure;
        check.checkedAt = performance.now();
        check.running = null;
        if (failure !== null) this.#o.log?.warn({ err: failure }, 'cannot publish requests yet');
      },
      (err: unknown) => {
        // The connection itself failed meanwhile: the link reconnects and checks again.
        check.failure = new AmqpTransportError('lost the connection while checking the exchanges', { cause: err });
        check.checkedAt = performance.now();
        check.running = null;
      },
    );
    return check.running;
  }

  /** One pass: exchanges, binding, `user_id`. Resolves with what failed, or null when all is well. */
  async #checkOnce(c: AmqpConnection): Promise<AmqpTransportError | null> {
    const { requestExchange, forwardExchange, replyQueue } = this.#o;
    let ch = await this.#channel(c);
    try {
      try {
        // Passive: needs no permission, unlike a declaration.
        await ch.checkExchange(requestExchange);
        await ch.checkExchange(forwardExchange);
      } catch (err) {
        if (brokerCode(err) !== 404) throw err;
        ch = await this.#channel(c); // the 404 closed the first one
        try {
          await ch.assertExchange(requestExchange, 'direct', { durable: true });
          await ch.assertExchange(forwardExchange, 'direct', { durable: true });
          this.#o.log?.info({ requestExchange, forwardExchange }, 'declared the exchanges no coordinator had declared yet');
        } catch (cause) {
          if (brokerCode(cause) !== 403) throw cause;
          return new AmqpTransportError(
            `the exchanges ${requestExchange} and ${forwardExchange} do not exist and this user may not declare them: ` +
              'start a coordinator, or run `lockq setup-broker`, first',
            { refused: true, cause },
          );
        }
      }
      await ch.bindQueue(replyQueue, forwardExchange, replyQueue);
      // A foreign user_id is refused when published (406, closing the channel): the next
      // round trip on the channel reports it.
      ch.publish(requestExchange, PROBE_KEY, Buffer.alloc(0), { userId: this.#o.principal });
      await ch.checkExchange(requestExchange);
      return null;
    } catch (err) {
      return this.#failure(err);
    } finally {
      await ch.close().catch(noop);
    }
  }

  async #channel(c: AmqpConnection): Promise<Channel> {
    const ch = await c.model.createChannel();
    // Channel errors here are expected answers; the awaited operation reports them.
    ch.on('error', (err: Error) => this.#o.log?.debug({ err }, 'check channel closed by the broker'));
    return ch;
  }

  #failure(err: unknown): AmqpTransportError {
    const { principal, urlUser, forwardExchange, replyQueue } = this.#o;
    const text = err instanceof Error ? err.message : String(err);
    if (brokerCode(err) === 406 && text.includes('user_id')) {
      const user = /authenticated user was '([^']*)'/.exec(text)?.[1] ?? urlUser;
      return new AmqpTransportError(
        `the broker refuses principal "${principal}" as user_id: this connection is logged in as "${user}", and ` +
          `RabbitMQ accepts only the connection's own user; set principal to "${user}" or connect as "${principal}"`,
        { refused: true, cause: err },
      );
    }
    if (brokerCode(err) === 403) {
      return new AmqpTransportError(
        `the broker refused this user what a worker needs (binding ${replyQueue} to ${forwardExchange}, publishing ` +
          `to the request exchange): ${text}`,
        { refused: true, cause: err },
      );
    }
    return new AmqpTransportError(`checking the exchanges failed: ${text}`, { refused: false, cause: err });
  }
}
