import type { CoreSnapshot } from '../core/snapshot.js';
import { type ClaimedPartition, type JournalEntry, StaleEpochError, type StateStore } from './types.js';

interface PartitionState {
  epoch: number;
  tokenCeiling: number;
  snapshot: CoreSnapshot | null;
  journal: JournalEntry[];
}

/**
 * Where the wall-clock seed of epochs and tokens counts from: 2025-01-01T00:00:00Z. Counted from
 * here rather than from 1970, seeded tokens keep to the codec's fast path (integers of at most 15
 * digits) until 2056, and stay below 2^53 until about 2310.
 */
export const CLOCK_SEED_ORIGIN_MS = Date.UTC(2025, 0, 1);

/**
 * Token seed per millisecond of the epoch seed: two terms claimed n ms apart start n × 1000 tokens
 * apart. So a term without a durable store may issue fewer than this many tokens per ms (1,000,000
 * per second) on average, from its claim until the next one, for the next term to start above it.
 */
export const SEED_TOKENS_PER_MS = 1000;

/** Options of a {@link MemoryStore}. */
export interface MemoryStoreOptions {
  /**
   * Keep snapshot and journal, so a coordinator restarted in this process resumes its state?
   * Without, an embedded coordinator keeps only epochs and token ceilings, and pays nothing per batch.
   * @defaultValue false
   */
  readonly journal?: boolean;
  /**
   * The wall clock, in ms since 1970, that seeds epochs and tokens; one that reads before
   * {@link CLOCK_SEED_ORIGIN_MS} seeds nothing. @defaultValue `Date.now`
   */
  readonly wallClockMs?: () => number;
}

/**
 * Keeps every partition's state in this process. A coordinator restarted in the same process,
 * or a second one sharing the store (as in tests), resumes exactly where the last left off;
 * nothing survives the process.
 *
 * Yet epochs and fencing tokens keep rising across processes and across stores: each claim seeds
 * the new term from the wall clock, so a restarted coordinator, or a standby with a store of its
 * own taking a partition over, starts above every epoch and token an earlier term issued. The
 * epoch becomes at least the milliseconds since {@link CLOCK_SEED_ORIGIN_MS}, and the token
 * ceiling at least {@link SEED_TOKENS_PER_MS} times that. This holds while every term issues
 * fewer than 1,000,000 tokens per second on average over its life (the core alone decides 2–3
 * million requests per second, a coordinator behind a broker about 100,000), and while the wall
 * clock is not set back by more than the age of the term being replaced.
 *
 * @example
 * const coordinator = await Coordinator.start({ transport, store: new MemoryStore({ journal: true }) });
 */
export class MemoryStore implements StateStore {
  readonly durable = false;
  readonly journals: boolean;
  readonly #partitions = new Map<number, PartitionState>();
  readonly #journal: boolean;
  readonly #wallClockMs: () => number;

  constructor(options: MemoryStoreOptions = {}) {
    this.#journal = options.journal ?? false;
    this.journals = this.#journal;
    this.#wallClockMs = options.wallClockMs ?? (() => Date.now());
  }

  async claim(partition: number): Promise<ClaimedPartition> {
    const seedMs = await this.#seedMs();
    // Read after the wait: a claim of the same partition meanwhile has bumped the epoch.
    const p = this.#partitions.get(partition) ?? { epoch: 0, tokenCeiling: 0, snapshot: null, journal: [] };
    p.epoch = Math.max(p.epoch + 1, seedMs);
    p.tokenCeiling = Math.max(p.tokenCeiling, seedMs * SEED_TOKENS_PER_MS);
    this.#partitions.set(partition, p);
    return { epoch: p.epoch, tokenCeiling: p.tokenCeiling, snapshot: p.snapshot, journal: [...p.journal] };
  }

  async append(partition: number, epoch: number, entry: JournalEntry): Promise<void> {
    const p = this.#current(partition, epoch);
    if (entry.tokenCeiling !== undefined) p.tokenCeiling = Math.max(p.tokenCeiling, entry.tokenCeiling);
    if (this.#journal) p.journal.push(structuredClone(entry));
  }

  async snapshot(partition: number, epoch: number, snapshot: CoreSnapshot): Promise<void> {
    const p = this.#current(partition, epoch);
    if (!this.#journal) return;
    p.snapshot = structuredClone(snapshot);
    p.journal = [];
  }

  async close(): Promise<void> {}

  /**
   * The new term's seed: milliseconds since {@link CLOCK_SEED_ORIGIN_MS}, read only once the clock
   * has ticked since this claim began. Any earlier term was claimed before this claim began, at an
   * earlier reading, so this seed is at least one millisecond above its seed even when both claims
   * fall in one millisecond (two coordinators in one process): up to a claim's first millisecond
   * is the price.
   */
  async #seedMs(): Promise<number> {
    const startMs = Math.floor(this.#wallClockMs());
    // A clock before the origin is wrong (or a test's): it seeds nothing, and epochs and tokens
    // count from where this store has them, as they did before seeding.
    if (startMs < CLOCK_SEED_ORIGIN_MS) return 0;
    let nowMs = startMs;
    while (nowMs <= startMs) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      nowMs = Math.floor(this.#wallClockMs());
    }
    return nowMs - CLOCK_SEED_ORIGIN_MS;
  }

  #current(partition: number, epoch: number): PartitionState {
    const p = this.#partitions.get(partition);
    if (p === undefined || p.epoch !== epoch) throw new StaleEpochError(`partition ${partition}: epoch ${epoch} is stale`);
    return p;
  }
}
