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
  /**
   * Open sessions of one principal per partition (`QUOTA_EXCEEDED`, field `sessions`). A worker
   * opens one session per partition, so this is the number of workers that may share one
   * principal.
   */
  readonly maxSessionsPerPrincipal: number;
  /** Holds plus waiting requests of one principal per partition (`QUOTA_EXCEEDED`, field `holds`). */
  readonly maxHoldsPerPrincipal: number;
  /** Waiting requests of one principal per partition (`QUOTA_EXCEEDED`, field `waits`). */
  readonly maxWaitsPerPrincipal: number;
  /**
   * Waiting requests of one principal on one lock (`QUOTA_EXCEEDED`, field `lockWaits`), so one
   * principal cannot fill a lock's queue for everyone. Unless set, a quarter of
   * `maxWaitersPerLock` (see {@link coreLimits}).
   */
  readonly maxLockWaitsPerPrincipal: number;
  /** Distinct lock names one principal holds or awaits per partition (`QUOTA_EXCEEDED`, field `names`). */
  readonly maxNamesPerPrincipal: number;
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
  maxSessionsPerPrincipal: 1_000,
  maxHoldsPerPrincipal: 20_000,
  maxWaitsPerPrincipal: 20_000,
  maxLockWaitsPerPrincipal: 2_500,
  maxNamesPerPrincipal: 20_000,
  dedupeWindowMs: 60_000,
  maxDedupeEntries: 200_000,
  maxUnsettledPerSession: 10_000,
});

/**
 * `limits` over the defaults. `maxLockWaitsPerPrincipal` follows a `maxWaitersPerLock` given
 * without it (a quarter of it, at least 1), so a smaller queue keeps its share per principal.
 *
 * @example
 * coreLimits({ maxWaitersPerLock: 400 }).maxLockWaitsPerPrincipal; // 100
 */
export function coreLimits(limits: Partial<CoreLimits> = {}): CoreLimits {
  const resolved: { -readonly [K in keyof CoreLimits]: number } = { ...DEFAULT_CORE_LIMITS, ...limits };
  if (limits.maxLockWaitsPerPrincipal === undefined && limits.maxWaitersPerLock !== undefined) {
    resolved.maxLockWaitsPerPrincipal = Math.max(1, Math.floor(limits.maxWaitersPerLock / 4));
  }
  return resolved;
}

export const DEFAULT_TOKEN_BLOCK_SIZE = 10_000;
