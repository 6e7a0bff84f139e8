import { backoffMs, decodeRequest, encodeReply, ERROR_CODES, grantMac, type LockView, type ReplyBody, type Request, type RetryPolicy } from '@lockq/protocol';
import type { Logger } from 'pino';
import { type Decision, LockCore } from '../core/index.js';
import { StoreUnavailableError } from '../errors.js';
import { type JournalEntry, StaleEpochError } from '../store/types.js';
import { type BatchHandler, type Outbound, publishRefusal } from '../transport/types.js';
import type { Admission, ForbiddenReason } from './admission.js';
import type { ResolvedCoordinatorOptions } from './options.js';
import type { PartitionStats } from './stats.js';

/** A partition logs refused senders at warn at most this often, with the count since. */
const FORBIDDEN_LOG_GAP_MS = 60_000;
const STORE_RETRY: RetryPolicy = { initialMs: 50, maxMs: 2000, factor: 2, attempts: Number.POSITIVE_INFINITY };

/** A partition that has left work unanswered for `stallMs` or longer, as `/readyz` reports it. */
export interface PartitionStall {
  readonly partition: number;
  /** Age of its oldest unanswered work: a batch not yet answered, or replies not yet out. */
  readonly unansweredMs: number;
  /** Attempts (batches, expiry ticks) that failed since it last answered everything. */
  readonly failures: number;
}

/**
 * One partition's loop: take a batch of requests in order, decide it in the core at one `now`,
 * make it durable (one store round trip), publish the answers, then let the transport ack the
 * batch. Expiry runs on the same serial chain, driven by one timer set to the core's earliest
 * deadline.
 *
 * The partition is claimed (epoch bumped, state loaded) on its first delivery, not at start: a
 * standby that the broker never delivers to never fences the active coordinator. Any failure to
 * commit drops the in-memory state, which the next delivery reloads from the store: state that
 * was not made durable is never trusted, because nothing of it was published. A reply the
 * transport refuses for good is dropped and counted, never retried: it must not hold back the
 * partition's other replies.
 */
export class PartitionRunner {
  readonly partition: number;
  #core: LockCore | undefined;
  /** Maps this process's clock onto the core's, which continues the previous term's clock. */
  #clockOffset = 0;
  #sinceSnapshot = 0;
  #unpublished: Outbound[] = [];
  /**
   * Process clock when the oldest work not yet answered arrived; undefined when all is answered.
   * Kept across a lost consumer and a redelivery: a batch that keeps failing is the same work.
   */
  #unansweredSince: number | undefined;
  #failures = 0;
  /** Bumped each time the transport reports the consumer lost. */
  #consumerLosses = 0;
  readonly #opts: ResolvedCoordinatorOptions;
  readonly #stats: PartitionStats;
  readonly #log: Logger;
  #chain: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #stopped = false;
  readonly #admission: Admission;
  #forbiddenLoggedAt = Number.NEGATIVE_INFINITY;
  #forbiddenSinceLog = 0;

  constructor(partition: number, opts: ResolvedCoordinatorOptions, stats: PartitionStats, log: Logger) {
    this.partition = partition;
    this.#opts = opts;
    this.#admission = opts.admission();
    this.#stats = stats;
    this.#log = log;
  }

  /** The core, once this partition has been claimed. */
  get core(): LockCore | undefined {
    return this.#core;
  }

  /** The core's clock: lease and wait times are read against it, never against the process clock. */
  #now(): number {
    return this.#opts.clock() + this.#clockOffset;
  }

  /** Holders and waiters of `lock`, or null when it is free or the partition is not claimed here. */
  inspect(lock: string): LockView | null {
    return this.#core?.inspect(lock, this.#now()) ?? null;
  }

  /** Every lock with a holder or a waiter; empty when the partition is not claimed here. */
  locks(): LockView[] {
    const core = this.#core;
    if (core === undefined) return [];
    const now = this.#now();
    const views: LockView[] = [];
    for (const name of core.lockNames()) {
      const view = core.inspect(name, now);
      if (view !== null) views.push(view);
    }
    return views;
  }

  /** Set when this partition's oldest unanswered work is `stallMs` old or older. */
  stall(): PartitionStall | undefined {
    const since = this.#unansweredSince;
    if (since === undefined) return undefined;
    const unansweredMs = Math.floor(this.#opts.clock() - since);
    return unansweredMs >= this.#opts.stallMs ? { partition: this.partition, unansweredMs, failures: this.#failures } : undefined;
  }

  /**
   * The transport lost this partition's consumer: another coordinator may be served meanwhile,
   * so with a journaling store the state is dropped (after the batch in progress) and the next
   * delivery claims afresh, rather than deciding a batch on a stale core only to be fenced.
   */
  readonly onConsumerLost = (): void => {
    // At once, not on the chain: a batch held through a store outage must stop retrying.
    this.#consumerLosses++;
    this.#serial(async () => {
      // Without a journal there is nothing to rebuild from: the core is the only copy.
      if (this.#core === undefined || !this.#opts.store.journals) return;
      this.#log.warn({ epoch: this.#core.epoch }, 'lost the broker consumer; dropping state until the next delivery');
      this.#core = undefined;
      this.#clearTimer();
    }).catch(() => {});
  };

  /**
   * The broker made this consumer the partition's active one (where it says so: Kafka): claim
   * now, so a take-over waits for the group alone, not for the next request. A failed claim is
   * the next delivery's to repeat.
   */
  readonly onConsumerGained = (): void => {
    if (this.#stopped) return;
    this.#serial(async () => {
      if (this.#core !== undefined || this.#stopped) return;
      await this.#commit(await this.#claimOrFail(), undefined, [], 0);
    }).catch((err: unknown) => this.#log.warn({ err }, 'claiming the partition when the broker gave it failed; the next delivery claims it'));
  };

  /** The transport's batch handler: runs after anything already queued on this partition. */
  readonly onBatch: BatchHandler = (batch, principals) => {
    this.#unansweredSince ??= this.#opts.clock();
    return this.#serial(() => this.#decideDurably(batch, principals));
  };

  /**
   * Decides a batch, waiting out store trouble with the batch in hand rather than returning it
   * to the broker: every return would count against the queue's delivery limit, and a long
   * outage would dead-letter good requests. Meanwhile the prefetch bound holds the rest back.
   * A fenced coordinator, a broker failure or a lost consumer still returns the batch.
   */
  async #decideDurably(batch: readonly Uint8Array[], principals: readonly (string | undefined)[] | undefined): Promise<void> {
    const losses = this.#consumerLosses;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#decideBatch(batch, principals);
        return;
      } catch (err) {
        this.#failures++;
        // Once the consumer is lost the batch belongs to whoever the broker serves now.
        if (!(err instanceof StoreUnavailableError) || this.#stopped || this.#consumerLosses !== losses) throw err;
        if (attempt % 20 === 0) this.#log.warn({ err: err.cause, attempt }, 'state store unavailable; holding the batch and retrying');
        await new Promise((resolve) => setTimeout(resolve, backoffMs(STORE_RETRY, attempt)));
      }
    }
  }

  #serial(step: () => Promise<void>): Promise<void> {
    const run = this.#chain.then(step);
    // The chain continues after a failure; the failing batch's own promise still rejects.
    this.#chain = run.catch(() => {});
    return run;
  }

  /**
   * Claims at once rather than on the first delivery (`claimAtStart`), then commits nothing: that
   * sends what the claim re-derived and arms the expiry timer, as a first batch would.
   */
  claimNow(): Promise<void> {
    return this.#serial(async () => this.#commit(await this.#claim(), undefined, [], 0));
  }

  /** Takes the partition for a new term and rebuilds its state: snapshot, then journal replay. */
  async #claim(): Promise<LockCore> {
    const o = this.#opts;
    const claimed = await o.store.claim(this.partition);
    const options = {
      partition: this.partition,
      partitions: o.partitions,
      epoch: claimed.epoch,
      tokenFloor: 0,
      tokenBlockSize: o.tokenBlockSize,
      limits: o.limits,
    };
    const core = claimed.snapshot === null ? new LockCore(options) : LockCore.restore(claimed.snapshot, options);
    let last: Decision[] = [];
    for (const entry of claimed.journal) {
      last = [];
      if (entry.requests.length === 0) core.tick(entry.now, last);
      for (const request of entry.requests) core.handle(request, entry.now, last);
    }
    // Any token up to the reserved ceiling may have been issued by the last term.
    core.raiseTokenFloor(claimed.tokenCeiling);
    // Time resumes where the last term's journal ends: every live lease and wait is extended by
    // the time the partition was unattended, never cut short by it.
    this.#clockOffset = Number.isFinite(core.now) ? core.now - o.clock() : 0;
    // The new term starts from a snapshot of what it rebuilt, so its journal never spans two
    // terms: the token floor just raised, which no journal entry records, is in the snapshot.
    if (o.store.journals) await o.store.snapshot(this.partition, claimed.epoch, core.snapshot());
    this.#sinceSnapshot = 0;
    this.#core = core;
    // The last entry's replies may never have gone out: its coordinator can have died between
    // making it durable and publishing. Its own requesters will ask again (redelivery), but a
    // grant it handed to a waiter, or a `lost` it sent, would be lost for good: they go out
    // again, in this term's epoch, ahead of the next commit's. Duplicates are ignored by workers.
    this.#unpublished = this.#encode(core, last).replies;
    this.#log.info(
      { epoch: claimed.epoch, replayed: claimed.journal.length, snapshot: claimed.snapshot !== null, ...core.counts() },
      'partition claimed',
    );
    return core;
  }

  async #decideBatch(batch: readonly Uint8Array[], principals: readonly (string | undefined)[] | undefined): Promise<void> {
    const core = this.#core ?? (await this.#claimOrFail());
    const now = this.#now();
    const clock = this.#opts.clock();
    const door = this.#admission;
    const out: Decision[] = [];
    /** What reached the core and may have changed it: the journal entry's requests. */
    const fed: Request[] = [];
    const poison: { body: Uint8Array; code: string }[] = [];
    const debug = this.#log.isLevelEnabled('debug');
    const stats = this.#stats;
    stats.batches++;
    stats.requests += batch.length;
    for (let i = 0; i < batch.length; i++) {
      const body = batch[i] as Uint8Array;
      // Who sent it, before a byte of it is read: a flood costs a lookup per message.
      const sender = door.sender(principals?.[i], clock);
      if (!sender.admit) {
        if ('forbidden' in sender) this.#forbid(sender.forbidden, principals?.[i], body, poison);
        else this.#rateLimited(sender.reply, sender.retryAfterMs, principals?.[i], body, out);
        continue;
      }
      const { principal } = sender;
      const decoded = decodeRequest(body, this.#opts.maxMessageBytes);
      if (!decoded.ok) {
        stats.rejected++;
        if (decoded.replyTo !== undefined && door.mayAnswer(principal, decoded.replyTo)) {
          const { code, message, field } = decoded;
          const reply = { type: 'error', re: decoded.id ?? '', code, message } as const;
          out.push({ type: 'reply', to: decoded.replyTo, body: field === undefined ? reply : { ...reply, field } });
        } else if (decoded.replyTo !== undefined) {
          // Answering would itself send an error into somebody else's queue.
          this.#forbid('reply-address', principal, body, poison);
        } else {
          poison.push({ body, code: decoded.code });
        }
        if (debug) this.#log.debug({ code: decoded.code, field: decoded.field }, 'request refused');
        continue;
      }
      if (!door.mayAnswer(principal, decoded.request.replyTo)) {
        this.#forbid('reply-address', principal, body, poison);
        continue;
      }
      // The decoder made this object for us alone: the principal goes on it, not on a copy.
      if (principal !== undefined) (decoded.request as { principal?: string }).principal = principal;
      const before = out.length;
      // A hand-off proof is checked here, so the core and the journal see only whether it held.
      const request = this.#opts.handOffProofs.check(this.partition, decoded.request);
      try {
        core.handle(request, now, out);
      } catch (err) {
        // A bug, not bad input (the core answers all input): park the request rather than
        // let its redelivery wedge the partition.
        this.#log.error({ err, op: request.op }, 'core failed on a request; dead-lettering it');
        poison.push({ body, code: 'INTERNAL' });
        continue;
      }
      // An inspect that expired nothing changed nothing: it need not cost a journal write.
      if (request.op !== 'inspect' || out.length - before > 1) fed.push(request);
    }
    await this.#commit(core, fed.length > 0 ? { now, requests: fed } : undefined, out, batch.length);
    // Only once the batch is committed, so a batch that fails and comes back parks nothing twice.
    // A bounded number a second: the rest of a flood of poison is acked and only counted.
    const parked = poison.filter(() => door.mayDeadLetter(clock));
    stats.deadLettered += parked.length;
    stats.deadLettersSkipped += poison.length - parked.length;
    await Promise.all(parked.map((p) => this.#opts.transport.deadLetter(this.partition, p.body, p.code)));
  }

  /**
   * A request refused for who sent it or where it wants answers: never answered (its reply
   * address is not its sender's), dead-lettered `FORBIDDEN`, counted, and logged at warn at
   * most once a minute per partition with the count since.
   */
  #forbid(reason: ForbiddenReason, principal: string | undefined, body: Uint8Array, poison: { body: Uint8Array; code: string }[]): void {
    this.#stats.forbidden.set(reason, (this.#stats.forbidden.get(reason) ?? 0) + 1);
    poison.push({ body, code: 'FORBIDDEN' });
    this.#forbiddenSinceLog++;
    const clock = this.#opts.clock();
    if (clock - this.#forbiddenLoggedAt < FORBIDDEN_LOG_GAP_MS) return;
    this.#log.warn({ reason, principal, refused: this.#forbiddenSinceLog }, 'refused requests for who sent them or where they want answers (FORBIDDEN)');
    this.#forbiddenLoggedAt = clock;
    this.#forbiddenSinceLog = 0;
  }

  /**
   * A request over its principal's rate: dropped unread, unless it is the one in
   * `RATE_LIMITED_REPLY_GAP_MS` that is answered `RATE_LIMITED` (then it is read for its id and
   * reply address, and answered only at the principal's own address).
   */
  #rateLimited(reply: boolean, retryAfterMs: number, principal: string | undefined, body: Uint8Array, out: Decision[]): void {
    this.#stats.rateLimited++;
    if (!reply) return;
    const decoded = decodeRequest(body, this.#opts.maxMessageBytes);
    const id = decoded.ok ? decoded.request.id : decoded.id;
    const replyTo = decoded.ok ? decoded.request.replyTo : decoded.replyTo;
    if (replyTo === undefined || !this.#admission.mayAnswer(principal, replyTo)) return;
    const { text } = ERROR_CODES.RATE_LIMITED;
    out.push({ type: 'reply', to: replyTo, body: { type: 'error', re: id ?? '', code: 'RATE_LIMITED', message: text, retryAfterMs } });
  }

  async #claimOrFail(): Promise<LockCore> {
    try {
      return await this.#claim();
    } catch (err) {
      throw new StoreUnavailableError('claiming the partition failed', { cause: err });
    }
  }

  async #tick(): Promise<void> {
    const core = this.#core;
    if (this.#stopped || core === undefined) return;
    const now = this.#now();
    const out: Decision[] = [];
    core.tick(now, out);
    if (out.length > 0) {
      this.#unansweredSince ??= this.#opts.clock();
      await this.#commit(core, { now, requests: [] }, out, 0);
    } else if (this.#unpublished.length > 0) await this.#commit(core, undefined, out, 0);
    else this.#schedule();
  }

  /**
   * Makes the batch durable (`entry`: what reached the core, or an expiry tick; plus any token
   * reservation), then publishes its replies: nothing is answered before it is durable. On any
   * failure the in-memory state is dropped and the next delivery reloads it from the store.
   */
  async #commit(core: LockCore, entry: JournalEntry | undefined, out: readonly Decision[], count: number): Promise<void> {
    const store = this.#opts.store;
    const { replies: fresh, ceiling } = this.#encode(core, out);
    // Replies not out yet go first: those a failed publish left (without a journal), or those a
    // claim re-derived from the journal's last entry.
    const replies = this.#unpublished.length === 0 ? fresh : this.#unpublished.concat(fresh);
    this.#unpublished = [];
    // A reservation comes only with a grant, so only with an entry.
    if (entry !== undefined && (store.journals || ceiling > 0)) {
      const journaled = store.journals ? entry : { now: entry.now, requests: [] };
      try {
        await store.append(this.partition, core.epoch, ceiling > 0 ? { ...journaled, tokenCeiling: ceiling } : journaled);
      } catch (err) {
        this.#reset(err);
        throw err instanceof StaleEpochError ? err : new StoreUnavailableError('journal append failed', { cause: err });
      }
      if (store.journals && ++this.#sinceSnapshot >= this.#opts.snapshotEvery) {
        this.#sinceSnapshot = 0;
        // Next on the chain, after this batch is answered: ordered with the appends around it.
        this.#serial(() => this.#snapshot(core)).catch(() => {});
      }
    }
    try {
      if (replies.length > 0) await this.#opts.transport.publish(replies, this.partition);
    } catch (err) {
      const refusal = publishRefusal(err);
      // A refused reply can never go out: retrying it would fail every later publish with it.
      const retry = refusal === null ? replies : this.#dropRefused(replies, new Set(refusal.refusedIndexes), err);
      if (refusal?.refused !== true) {
        // Durable but maybe unanswered: the redelivered batch is answered from memory, and grants
        // or events it sent to others go out again (from the journal, or from here).
        if (!store.journals) this.#unpublished = retry;
        this.#reset(err);
        throw err;
      }
    }
    this.#answered();
    this.#stats.count(out);
    this.#opts.observer?.batch(core.partition, count, out);
    this.#schedule();
  }

  /** Drops the refused replies (counted and logged) and returns the others. */
  #dropRefused(replies: readonly Outbound[], refused: ReadonlySet<number>, err: unknown): Outbound[] {
    const kept = replies.filter((_, i) => !refused.has(i));
    this.#stats.repliesRefused += replies.length - kept.length;
    const to = [...refused].slice(0, 3).map((i) => replies[i]?.to);
    this.#log.warn({ err, refused: replies.length - kept.length, to }, 'the transport refused replies it can never deliver; dropped them');
    return kept;
  }

  /** Everything taken on so far has been answered (or is no longer this runner's to answer). */
  #answered(): void {
    this.#unansweredSince = undefined;
    this.#failures = 0;
  }

  /** The wire form of the decisions' replies, and the token ceiling they reserve (0: none). */
  #encode(core: LockCore, decisions: readonly Decision[]): { replies: Outbound[]; ceiling: number } {
    const replies: Outbound[] = [];
    let ceiling = 0;
    for (const d of decisions) {
      if (d.type === 'reserve-tokens') ceiling = d.ceiling;
      else replies.push({ to: d.to, body: encodeReply(this.#withKeys(d, core.epoch), core.epoch, core.partition) });
    }
    return { replies, ceiling };
  }

  /**
   * The reply's body with what only the runtime can add, from keys the core never sees
   * (docs/security.md §6): an `opened` reply gets its session's key; a successor event's grant
   * gets the hand-off proof and the MAC under the named waiter's session key, so the holder
   * passes on what it cannot make itself.
   */
  #withKeys(d: Extract<Decision, { type: 'reply' }>, epoch: number): ReplyBody {
    const body = d.body;
    const keys = this.#opts.handOffProofs;
    if (body.type === 'opened') {
      // Without the session's principal no key is sent: the worker then believes no forward, which fails safe.
      if (d.principal === undefined) return body;
      return { ...body, key: keys.sessionKey(this.partition, d.principal, body.session).toString('base64url') };
    }
    if (body.type !== 'successor' || body.next === undefined || d.nextSession === undefined) return body;
    const { grant } = body.next;
    const principal = d.nextPrincipal ?? '';
    const proof = keys.proof(this.partition, grant.lock, grant.token, principal, d.nextSession);
    const mac = grantMac(keys.sessionKey(this.partition, principal, d.nextSession), this.partition, epoch, { ...grant, proof });
    return { ...body, next: { to: body.next.to, grant: { ...grant, proof, mac } } };
  }

  /** A failed snapshot costs nothing but a longer replay: the journal still has everything. */
  async #snapshot(core: LockCore): Promise<void> {
    if (this.#core !== core) return; // dropped or replaced meanwhile
    try {
      await this.#opts.store.snapshot(this.partition, core.epoch, core.snapshot());
    } catch (err) {
      if (err instanceof StaleEpochError) this.#reset(err);
      else this.#log.warn({ err }, 'snapshot failed; the journal keeps growing until the next one');
    }
  }

  /**
   * After a failed commit or publish. Fenced: drop the state and stand by. Otherwise, with a
   * journaling store, drop it too: the next delivery rebuilds it from what is durable. Without
   * one, the core is the only copy there is, so it is kept, and the redelivered batch is answered
   * from its memory.
   */
  #reset(err: unknown): void {
    if (this.#core === undefined) return;
    const stale = err instanceof StaleEpochError;
    if (!stale && !this.#opts.store.journals) {
      this.#log.error({ err }, 'commit failed; keeping state (no journal to reload it from)');
      return;
    }
    this.#log[stale ? 'warn' : 'error'](
      { err, epoch: this.#core.epoch },
      stale ? 'another coordinator took this partition over; standing by' : 'commit failed; dropping state to reload it',
    );
    this.#core = undefined;
    this.#clearTimer();
    if (stale) {
      this.#answered(); // the new owner answers from here on
      this.#standBy();
    }
  }

  /**
   * Fenced: another coordinator claimed the partition, so the broker has made it the consumer.
   * Claiming again on the next stray delivery would fence it back; instead stop consuming, and
   * after a pause rejoin as a standby behind it.
   */
  #standBy(): void {
    const transport = this.#opts.transport;
    // Not awaited here: stopping waits for the batch in progress, which is the caller.
    setImmediate(async () => {
      try {
        await transport.stopConsuming(this.partition);
        await new Promise((resolve) => setTimeout(resolve, this.#opts.standbyPauseMs));
        if (!this.#stopped) await transport.consume(this.partition, this.onBatch, this.onConsumerLost, this.onConsumerGained);
      } catch (err) {
        this.#log.error({ err }, 'could not rejoin as standby');
      }
    });
  }

  #schedule(): void {
    const core = this.#core;
    if (this.#stopped || core === undefined) return;
    const next = core.nextDeadline();
    if (next === this.#timerAt) return;
    this.#clearTimer();
    if (next === undefined) return;
    this.#timerAt = next;
    // +1 ms: timers may fire a hair early, and a deadline is due only once `now` reaches it.
    const delay = Math.max(0, Math.ceil(next - this.#now()) + 1);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Number.POSITIVE_INFINITY;
      this.#serial(() => this.#tick()).catch(() => {
        // #commit has logged and reset; the next delivery reloads the state.
        this.#failures++;
      });
    }, delay);
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
  }

  /**
   * Waits for the work in progress, then stops the timer. Without a journaling store the state
   * dies here, so waiters are answered SHUTTING_DOWN and holders told their hold is lost first.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#serial(async () => {
      const core = this.#core;
      // A successor rebuilds from the journal; without one, this state dies here.
      if (core === undefined || this.#opts.store.journals) return;
      const out: Decision[] = [];
      core.shutdown(this.#now(), out);
      if (out.length > 0) await this.#commit(core, undefined, out, 0);
    }).catch((err: unknown) => this.#log.warn({ err }, 'could not tell clients about the shutdown'));
    this.#clearTimer();
  }
}
