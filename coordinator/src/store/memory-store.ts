import type { CoreSnapshot } from '../core/snapshot.js';
import { type ClaimedPartition, type JournalEntry, StaleEpochError, type StateStore } from './types.js';

interface PartitionState {
  epoch: number;
  tokenCeiling: number;
  snapshot: CoreSnapshot | null;
  journal: JournalEntry[];
}

/**
 * Keeps every partition's state in this process. A coordinator restarted in the same process,
 * or a second one sharing the store (as in tests), resumes exactly where the last left off;
 * nothing survives the process.
 */
export class MemoryStore implements StateStore {
  readonly durable = false;
  readonly journals: boolean;
  readonly #partitions = new Map<number, PartitionState>();
  /**
   * Keep snapshot and journal, so a coordinator restarted in this process resumes its state?
   * Off by default: an embedded coordinator then keeps only epochs and token ceilings (a restart
   * starts empty but above every token issued), and pays nothing per batch.
   */
  readonly #journal: boolean;

  constructor(options: { readonly journal?: boolean } = {}) {
    this.#journal = options.journal ?? false;
    this.journals = this.#journal;
  }

  async claim(partition: number): Promise<ClaimedPartition> {
    const p = this.#partitions.get(partition) ?? { epoch: 0, tokenCeiling: 0, snapshot: null, journal: [] };
    p.epoch++;
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
