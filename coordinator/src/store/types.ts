/**
 * Durable state of the coordinator's partitions. The memory store keeps it for the life of the
 * process; the Redis store (later) keeps it across processes. Every write is conditional on the
 * epoch returned by `claim`, so a coordinator that lost its partition can no longer write.
 */
export interface StateStore {
  /** True when state survives the process; a coordinator without one says so at start-up. */
  readonly durable: boolean;
  /**
   * Takes partition `partition` for a new term: bumps its epoch and returns it with the token
   * floor (every token issued before is at or below it).
   */
  claim(partition: number): Promise<PartitionTerm>;
  /** Records that tokens up to `ceiling` may be issued in this term; resolves once durable. */
  reserveTokens(partition: number, epoch: number, ceiling: number): Promise<void>;
  close(): Promise<void>;
}

export interface PartitionTerm {
  readonly epoch: number;
  readonly tokenFloor: number;
}

/** The write was refused because another coordinator has claimed the partition since. */
export class StaleEpochError extends Error {
  override readonly name = 'StaleEpochError';
}
