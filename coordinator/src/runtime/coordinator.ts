import type { LockView, PartitionCounts } from '@lockq/protocol';
import type { Logger } from 'pino';
import { type CoordinatorOptions, type ResolvedCoordinatorOptions, resolveCoordinatorOptions } from './options.js';
import { type PartitionStall, PartitionRunner } from './partition-runner.js';
import { CoordinatorStats } from './stats.js';

export type { PartitionStall } from './partition-runner.js';

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
      this.#log.warn(
        'state store is not durable: holds, queues and sessions are lost with this process; ' +
          'epochs and fencing tokens still rise across restarts and take-overs (seeded from the wall clock)',
      );
    }
    for (const partition of o.ownPartitions) {
      const runner = new PartitionRunner(partition, o, this.stats.partition(partition), this.#log.child({ partition }));
      this.#runners.set(partition, runner);
      if (o.claimAtStart) await runner.claimNow();
      await o.transport.consume(partition, runner.onBatch, runner.onConsumerLost, runner.onConsumerGained);
      this.#log.info({ partition }, 'consuming');
    }
  }

  /** Partition counts, for each owned partition. */
  counts(): Map<number, PartitionCounts> {
    const out = new Map<number, PartitionCounts>();
    for (const [p, r] of this.#runners) {
      const counts = r.core?.counts();
      if (counts !== undefined) out.set(p, counts);
    }
    return out;
  }

  /**
   * Holders and waiters of a lock owned by this process, or null when it is free or not owned
   * here. Times left are read on the partition's clock, which continues the previous term's.
   */
  inspect(lock: string): LockView | null {
    for (const r of this.#runners.values()) {
      const view = r.inspect(lock);
      if (view !== null) return view;
    }
    return null;
  }

  /** Every lock with a holder or a waiter, across owned partitions. */
  locks(): LockView[] {
    return [...this.#runners.values()].flatMap((r) => r.locks());
  }

  /**
   * Owned partitions that are not answering: their oldest unanswered work (a batch, or replies
   * that did not go out) is `stallMs` old or older. A partition stays listed until it answers
   * again or another coordinator fences it. Empty when every partition answers.
   */
  stalled(): PartitionStall[] {
    const out: PartitionStall[] = [];
    for (const r of this.#runners.values()) {
      const stall = r.stall();
      if (stall !== undefined) out.push(stall);
    }
    return out;
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
