import { type PartitionTerm, StaleEpochError, type StateStore } from './types.js';

/**
 * Keeps epochs and token reservations in this process. A coordinator restarted in the same
 * process (or a second one sharing the store, as in tests) continues above every token issued
 * before; nothing survives the process.
 */
export class MemoryStore implements StateStore {
  readonly durable = false;
  readonly #partitions = new Map<number, { epoch: number; ceiling: number }>();

  async claim(partition: number): Promise<PartitionTerm> {
    const p = this.#partitions.get(partition) ?? { epoch: 0, ceiling: 0 };
    p.epoch++;
    this.#partitions.set(partition, p);
    return { epoch: p.epoch, tokenFloor: p.ceiling };
  }

  async reserveTokens(partition: number, epoch: number, ceiling: number): Promise<void> {
    const p = this.#partitions.get(partition);
    if (p === undefined || p.epoch !== epoch) throw new StaleEpochError(`partition ${partition}: epoch ${epoch} is stale`);
    p.ceiling = Math.max(p.ceiling, ceiling);
  }

  async close(): Promise<void> {}
}
