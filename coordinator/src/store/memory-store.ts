import type { CoreSnapshot } from '../core/snapshot.js';
import { CLOCK_SEED_ORIGIN_MS, clockSeedMs, SEED_TOKENS_PER_MS } from './clock-seed.js';
import { type ClaimedPartition, type JournalEntry, StaleEpochError, type StateStore } from './types.js';

interface PartitionState {
  epoch: number;
  tokenCeiling: number;
  snapshot: CoreSnapshot | null;
  journal: JournalEntry[];
}

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
    const seedMs = await clockSeedMs(this.#wallClockMs);
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

  #current(partition: number, epoch: number): PartitionState {
    const p = this.#partitions.get(partition);
    if (p === undefined || p.epoch !== epoch) throw new StaleEpochError(`partition ${partition}: epoch ${epoch} is stale`);
    return p;
  }
}
