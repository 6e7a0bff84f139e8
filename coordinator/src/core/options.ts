/** Bounds the core enforces. Every one answers with its own stable code when hit. */
export interface CoreLimits {
  /** Waiters per lock; one more is answered `QUEUE_FULL` at once (the backpressure signal). */
  readonly maxWaitersPerLock: number;
  /** Holds plus waiting requests per session (`TOO_MANY_HOLDS`). */
  readonly maxHoldsPerSession: number;
  /** Waiting requests per session (`TOO_MANY_WAITS`). */
  readonly maxWaitsPerSession: number;
  /** Open sessions per partition (`TOO_MANY_SESSIONS`). */
  readonly maxSessions: number;
  /** How long an answer is remembered for idempotent replay (longer while its hold or wait is live). */
  readonly dedupeWindowMs: number;
  /** Hard cap on remembered answers of unnumbered requests; the oldest are forgotten first. */
  readonly maxDedupeEntries: number;
  /**
   * Remembered answers of numbered requests per session not yet settled by the worker's
   * watermark (see the `settled` request field); the oldest are forgotten first.
   */
  readonly maxUnsettledPerSession: number;
}

export interface CoreOptions {
  readonly partition: number;
  readonly partitions: number;
  /** Coordinator term; carried by every reply. */
  readonly epoch: number;
  /** Every token this core issues is above this (the durable store's reservation ceiling). */
  readonly tokenFloor: number;
  /** Tokens reserved at a time; each reservation is a `reserve-tokens` decision to persist. */
  readonly tokenBlockSize: number;
  readonly limits: CoreLimits;
}

export const DEFAULT_CORE_LIMITS: CoreLimits = Object.freeze({
  maxWaitersPerLock: 10_000,
  maxHoldsPerSession: 1_000,
  maxWaitsPerSession: 1_000,
  maxSessions: 100_000,
  dedupeWindowMs: 60_000,
  maxDedupeEntries: 200_000,
  maxUnsettledPerSession: 10_000,
});

export const DEFAULT_TOKEN_BLOCK_SIZE = 10_000;
