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
  /** Declares the reply queue on `ch` (the transport knows its arguments). */
  readonly declareReplyQueue: (ch: Channel) => Promise<unknown>;
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

/** How one pass of the check came out. */
interface Outcome {
  /** Why requests and forwards may not be published; null when they may. */
  readonly failure: AmqpTransportError | null;
  /** No retry mends it (a principal the broker refuses, a reply queue it will not declare): the connection's set-up fails. */
  readonly fatal: boolean;
}

/** One connection's check. */
interface Check {
  readonly c: AmqpConnection;
  outcome: Outcome | null;
  checkedAt: number;
  running: Promise<void> | null;
}

const noop = () => {};
const brokerCode = (err: unknown): unknown => (err as { code?: unknown } | null)?.code;
const ok: Outcome = Object.freeze({ failure: null, fatal: false });

/**
 * What a worker needs on the broker before it publishes (docs/protocol.md §16.1): the request and
 * forward exchanges exist, the broker accepts its principal as `user_id`, and its reply queue is
 * declared and bound to the forward exchange under its own name. Everything is done on a
 * throwaway channel: a missing exchange (404), a refusal (403) or a foreign `user_id` (406)
 * closes the channel it happens on, and that must never be the connection's confirm channel,
 * which carries every request and reply. The principal is checked before the reply queue is
 * declared, so a foreign one is reported as such, not as a queue outside this user's rights.
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
   * The check of a new connection (its set-up): declares the reply queue. Rejects when no retry
   * can mend what failed (a principal the broker refuses, a reply queue it will not declare);
   * missing exchanges are left for sends to report.
   */
  async setUp(c: AmqpConnection): Promise<void> {
    const check: Check = { c, outcome: null, checkedAt: 0, running: null };
    this.#check = check;
    await this.#run(check);
    if (check.outcome?.fatal === true && check.outcome.failure !== null) throw check.outcome.failure;
  }

  /** True when requests and forwards may be published on `c` now (the check passed). */
  isReady(c: AmqpConnection): boolean {
    const check = this.#check;
    return check !== null && check.c === c && check.running === null && check.outcome?.failure === null;
  }

  /**
   * Resolves once requests and forwards may be published on `c`; otherwise rejects with why not
   * (`refused: true` when the broker refuses). A failure is checked again once it is
   * `RECHECK_MS` old.
   */
  async ready(c: AmqpConnection): Promise<void> {
    let check = this.#check;
    if (check === null || check.c !== c) {
      check = { c, outcome: null, checkedAt: 0, running: null };
      this.#check = check;
    }
    const stale = check.outcome === null || (check.outcome.failure !== null && performance.now() - check.checkedAt >= RECHECK_MS);
    await (check.running ?? (stale ? this.#run(check) : undefined));
    const failure = check.outcome?.failure ?? null;
    if (failure !== null) throw failure;
  }

  /** Runs the check once at a time; its outcome lands on `check`. */
  #run(check: Check): Promise<void> {
    check.running ??= this.#checkOnce(check.c).then(
      (outcome) => {
        check.outcome = outcome;
        check.checkedAt = performance.now();
        check.running = null;
        if (outcome.failure !== null) this.#o.log?.warn({ err: outcome.failure }, 'cannot publish requests yet');
      },
      (err: unknown) => {
        // The connection itself failed meanwhile: the link reconnects and checks again.
        const failure = new AmqpTransportError('lost the connection while checking the exchanges', { cause: err });
        check.outcome = { failure, fatal: false };
        check.checkedAt = performance.now();
        check.running = null;
      },
    );
    return check.running;
  }

  /** One pass: exchanges, `user_id`, reply queue, binding. */
  async #checkOnce(c: AmqpConnection): Promise<Outcome> {
    const { requestExchange, forwardExchange, replyQueue } = this.#o;
    let ch = await this.#channel(c);
    try {
      let missing: AmqpTransportError | null = null;
      try {
        // Passive: needs no permission, unlike a declaration.
        await ch.checkExchange(requestExchange);
        await ch.checkExchange(forwardExchange);
      } catch (err) {
        if (brokerCode(err) !== 404) throw err;
        ch = await this.#channel(c); // the 404 closed the first one
        missing = await this.#declareExchanges(ch);
        if (missing !== null) ch = await this.#channel(c); // and the 403 this one
      }
      if (missing === null) {
        // A foreign user_id is refused when published (406, closing the channel): the next
        // round trip on the channel reports it.
        ch.publish(requestExchange, PROBE_KEY, Buffer.alloc(0), { userId: this.#o.principal });
        await ch.checkExchange(requestExchange);
      }
      try {
        await this.#o.declareReplyQueue(ch);
      } catch (err) {
        return { failure: new AmqpTransportError(`cannot declare the reply queue ${replyQueue}`, { refused: true, cause: err }), fatal: true };
      }
      if (missing !== null) return { failure: missing, fatal: false };
      await ch.bindQueue(replyQueue, forwardExchange, replyQueue);
      return ok;
    } catch (err) {
      return this.#failure(err);
    } finally {
      await ch.close().catch(noop);
    }
  }

  /** Declares both exchanges as coordinators do; the refusal to say when this user may not. */
  async #declareExchanges(ch: Channel): Promise<AmqpTransportError | null> {
    const { requestExchange, forwardExchange } = this.#o;
    try {
      await ch.assertExchange(requestExchange, 'direct', { durable: true });
      await ch.assertExchange(forwardExchange, 'direct', { durable: true });
      this.#o.log?.info({ requestExchange, forwardExchange }, 'declared the exchanges no coordinator had declared yet');
      return null;
    } catch (cause) {
      if (brokerCode(cause) !== 403) throw cause;
      return new AmqpTransportError(
        `the exchanges ${requestExchange} and ${forwardExchange} do not exist and this user may not declare them: ` +
          'start a coordinator, or run `lockq setup-broker`, first',
        { refused: true, cause },
      );
    }
  }

  async #channel(c: AmqpConnection): Promise<Channel> {
    const ch = await c.model.createChannel();
    // Channel errors here are expected answers; the awaited operation reports them.
    ch.on('error', (err: Error) => this.#o.log?.debug({ err }, 'check channel closed by the broker'));
    return ch;
  }

  #failure(err: unknown): Outcome {
    const { principal, urlUser, forwardExchange, replyQueue } = this.#o;
    const text = err instanceof Error ? err.message : String(err);
    if (brokerCode(err) === 406 && text.includes('user_id')) {
      const user = /authenticated user was '([^']*)'/.exec(text)?.[1] ?? urlUser;
      const failure = new AmqpTransportError(
        `the broker refuses principal "${principal}" as user_id: this connection is logged in as "${user}", and ` +
          `RabbitMQ accepts only the connection's own user; set principal to "${user}" or connect as "${principal}"`,
        { refused: true, cause: err },
      );
      return { failure, fatal: true };
    }
    if (brokerCode(err) === 403) {
      const failure = new AmqpTransportError(
        `the broker refused this user what a worker needs (publishing to the request exchange, binding ${replyQueue} ` +
          `to ${forwardExchange}): ${text}`,
        { refused: true, cause: err },
      );
      return { failure, fatal: false };
    }
    return { failure: new AmqpTransportError(`checking the exchanges failed: ${text}`, { cause: err }), fatal: false };
  }
}
