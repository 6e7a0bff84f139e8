import { decodeRequest, encodeReply, type LockView, type PartitionCounts } from '@lockq/worker-sdk/protocol';
import type { Logger } from 'pino';
import { type Decision, LockCore } from '../core/index.js';
import type { Outbound } from '../transport/types.js';
import { type CoordinatorOptions, type ResolvedCoordinatorOptions, resolveCoordinatorOptions } from './options.js';
import { CoordinatorStats } from './stats.js';

/**
 * One partition's loop: take a batch of requests in order, decide it in the core at one `now`,
 * make what must be durable durable, publish the answers, then let the transport ack the batch.
 * Expiry runs on the same serial chain, driven by one timer set to the core's earliest deadline.
 */
class PartitionRunner {
  readonly core: LockCore;
  readonly #opts: ResolvedCoordinatorOptions;
  readonly #stats: CoordinatorStats;
  readonly #log: Logger;
  #chain: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #stopped = false;

  constructor(core: LockCore, opts: ResolvedCoordinatorOptions, stats: CoordinatorStats, log: Logger) {
    this.core = core;
    this.#opts = opts;
    this.#stats = stats;
    this.#log = log;
  }

  /** The transport's batch handler: runs after anything already queued on this partition. */
  readonly onBatch = (batch: readonly Uint8Array[]): Promise<void> => this.#serial(() => this.#decideBatch(batch));

  #serial(step: () => Promise<void>): Promise<void> {
    const run = this.#chain.then(step);
    // The chain continues after a failure; the failing batch's own promise still rejects.
    this.#chain = run.catch(() => {});
    return run;
  }

  async #decideBatch(batch: readonly Uint8Array[]): Promise<void> {
    const { core } = this;
    const now = this.#opts.clock();
    const out: Decision[] = [];
    const debug = this.#log.isLevelEnabled('debug');
    this.#stats.batches++;
    this.#stats.requests += batch.length;
    for (const body of batch) {
      const decoded = decodeRequest(body, this.#opts.maxMessageBytes);
      if (!decoded.ok) {
        this.#stats.rejected++;
        if (decoded.replyTo !== undefined) {
          const { code, message, field } = decoded;
          const reply = { type: 'error', re: decoded.id ?? '', code, message } as const;
          out.push({ type: 'reply', to: decoded.replyTo, body: field === undefined ? reply : { ...reply, field } });
        } else {
          this.#stats.deadLettered++;
          await this.#opts.transport.deadLetter(core.partition, body, decoded.code);
        }
        if (debug) this.#log.debug({ code: decoded.code, field: decoded.field }, 'request refused');
        continue;
      }
      try {
          core.handle(decoded.request, now, out);
      } catch (err) {
        // A bug, not bad input (the core answers all input): park the request rather than
        // let its redelivery wedge the partition.
        this.#log.error({ err, op: decoded.request.op }, 'core failed on a request; dead-lettering it');
        this.#stats.deadLettered++;
        await this.#opts.transport.deadLetter(core.partition, body, 'INTERNAL');
      }
    }
    await this.#commit(out, batch.length);
  }

  async #tick(): Promise<void> {
    if (this.#stopped) return;
    const out: Decision[] = [];
    this.core.tick(this.#opts.clock(), out);
    await this.#commit(out, 0);
  }

  /** Persists reservations, then publishes replies: nothing is answered before it is durable. */
  async #commit(out: readonly Decision[], requests: number): Promise<void> {
    const { core } = this;
    const replies: Outbound[] = [];
    let ceiling = 0;
    for (const d of out) {
      if (d.type === 'reserve-tokens') ceiling = d.ceiling;
      else replies.push({ to: d.to, body: encodeReply(d.body, core.epoch, core.partition) });
    }
    if (ceiling > 0) await this.#opts.store.reserveTokens(core.partition, core.epoch, ceiling);
    if (replies.length > 0) await this.#opts.transport.publish(replies);
    this.#stats.count(out);
    this.#opts.observer?.batch(core.partition, requests, out);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped) return;
    const next = this.core.nextDeadline();
    if (next === this.#timerAt) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    if (next === undefined) return;
    this.#timerAt = next;
    // +1 ms: timers may fire a hair early, and a deadline is due only once `now` reaches it.
    const delay = Math.max(0, Math.ceil(next - this.#opts.clock()) + 1);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Number.POSITIVE_INFINITY;
      this.#serial(() => this.#tick()).catch((err: unknown) => {
        this.#log.error({ err }, 'expiry failed; retrying');
        this.#schedule();
      });
    }, delay);
  }

  /** Waits for the work in progress, then stops the timer. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#chain;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * A coordinator process: one pure core per owned partition, fed by a transport. Use
 * {@link Coordinator.start}; stop it with {@link Coordinator.stop} (SIGTERM in the CLI).
 *
 * @example
 * const coordinator = await Coordinator.start({ transport: new MemoryServerTransport(memoryBroker()) });
 * // ... workers connect with LockClient.connect('memory:')
 * await coordinator.stop();
 */
export class Coordinator {
  readonly options: ResolvedCoordinatorOptions;
  readonly stats = new CoordinatorStats();
  readonly #runners = new Map<number, PartitionRunner>();
  readonly #log: Logger;
  #stopping: Promise<void> | undefined;

  private constructor(options: ResolvedCoordinatorOptions) {
    this.options = options;
    this.#log = options.logger.child({ component: 'coordinator' });
  }

  static async start(options: CoordinatorOptions): Promise<Coordinator> {
    const c = new Coordinator(resolveCoordinatorOptions(options));
    await c.#start();
    return c;
  }

  async #start(): Promise<void> {
    const o = this.options;
    if (!o.store.durable) {
      this.#log.warn('state store is not durable: holds, queues and sessions live only in this process');
    }
    for (const partition of o.ownPartitions) {
      const term = await o.store.claim(partition);
      const core = new LockCore({
        partition,
        partitions: o.partitions,
        epoch: term.epoch,
        tokenFloor: term.tokenFloor,
        tokenBlockSize: o.tokenBlockSize,
        limits: o.limits,
      });
      const runner = new PartitionRunner(core, o, this.stats, this.#log.child({ partition }));
      this.#runners.set(partition, runner);
      await o.transport.consume(partition, runner.onBatch);
      this.#log.info({ partition, epoch: term.epoch, tokenFloor: term.tokenFloor }, 'partition started');
    }
  }

  /** Partition counts, for each owned partition. */
  counts(): Map<number, PartitionCounts> {
    const out = new Map<number, PartitionCounts>();
    for (const [p, r] of this.#runners) out.set(p, r.core.counts());
    return out;
  }

  /** Holders and waiters of a lock owned by this process, or null when it is free or not owned here. */
  inspect(lock: string): LockView | null {
    const now = this.options.clock();
    for (const r of this.#runners.values()) {
      const view = r.core.inspect(lock, now);
      if (view !== null) return view;
    }
    return null;
  }

  /** Every lock with a holder or a waiter, across owned partitions. */
  locks(): LockView[] {
    const now = this.options.clock();
    const views: LockView[] = [];
    for (const r of this.#runners.values()) {
      for (const name of r.core.lockNames()) {
        const view = r.core.inspect(name, now);
        if (view !== null) views.push(view);
      }
    }
    return views;
  }

  /** Graceful stop: stop consuming, finish the batch in progress and its replies, close. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      const o = this.options;
      for (const p of this.#runners.keys()) await o.transport.stopConsuming(p);
      for (const r of this.#runners.values()) await r.stop();
      await o.transport.close();
      await o.store.close();
      this.#log.info('stopped');
    })();
    return this.#stopping;
  }
}
