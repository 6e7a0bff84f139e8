import type { Request } from '@lockq/protocol';
import type { CoreSnapshot } from '../core/snapshot.js';

/**
 * Durable state of the coordinator's partitions: per partition an epoch, a token ceiling, a
 * snapshot of the core and a journal of what was decided since. The core is deterministic, so
 * the journal records its inputs (requests and expiry ticks, each with the `now` it ran at) and
 * recovery replays them on the snapshot.
 *
 * Every write is conditional on the epoch returned by `claim`: a coordinator that lost its
 * partition can no longer write, so it can no longer publish (it publishes only what is durable).
 */
export interface StateStore {
  /** True when state survives the process; a coordinator without one says so at start-up. */
  readonly durable: boolean;
  /**
   * Does `append` want the batch's requests (and `snapshot` a snapshot)? A store that keeps only
   * epochs and token ceilings says no, and the coordinator then calls `append` only to reserve
   * tokens, and never builds a snapshot.
   */
  readonly journals: boolean;
  /** Takes the partition for a new term: bumps its epoch atomically and returns what to resume from. */
  claim(partition: number): Promise<ClaimedPartition>;
  /**
   * Appends one batch's journal entry, raising the token ceiling when the entry carries one; one
   * round trip. Resolves once durable; rejects with {@link StaleEpochError} if `epoch` is not current.
   */
  append(partition: number, epoch: number, entry: JournalEntry): Promise<void>;
  /** Replaces snapshot and journal with `snapshot`, if `epoch` is current. */
  snapshot(partition: number, epoch: number, snapshot: CoreSnapshot): Promise<void>;
  close(): Promise<void>;
}

export interface ClaimedPartition {
  /** The new term. */
  readonly epoch: number;
  /** Highest token ceiling ever reserved: the new term issues only tokens above it. */
  readonly tokenCeiling: number;
  readonly snapshot: CoreSnapshot | null;
  /** Entries appended after the snapshot, oldest first. */
  readonly journal: readonly JournalEntry[];
}

/** What one committed batch fed the core. An expiry tick has no requests. */
export interface JournalEntry {
  /** The core's clock when the batch ran. */
  readonly now: number;
  readonly requests: readonly Request[];
  /** A token reservation made by this batch. */
  readonly tokenCeiling?: number;
}

export { StaleEpochError } from '../errors.js';
