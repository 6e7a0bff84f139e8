/**
 * The wall-clock seed of a new term's epoch and token ceiling, which every store applies at
 * claim: a term started without a durable store, or after switching stores, still starts above
 * every epoch and token an earlier term could have issued (docs/security.md, "Fencing without a
 * store", states the bounds).
 */

/**
 * Where the seed counts from: 2025-01-01T00:00:00Z. Counted from here rather than from 1970,
 * seeded tokens keep to the codec's fast path (integers of at most 15 digits) until 2056, and
 * stay below 2^53 until about 2310.
 */
export const CLOCK_SEED_ORIGIN_MS = Date.UTC(2025, 0, 1);

/**
 * Token seed per millisecond of the epoch seed: two terms claimed n ms apart start n × 1000 tokens
 * apart. So a term may issue fewer than this many tokens per ms (1,000,000 per second) on average,
 * from its claim until the next one, for the next term to start above it.
 */
export const SEED_TOKENS_PER_MS = 1000;

/**
 * The new term's seed: milliseconds since {@link CLOCK_SEED_ORIGIN_MS}, read only once the clock
 * has ticked since this claim began. Any earlier term was claimed before this claim began, at an
 * earlier reading, so this seed is at least one millisecond above its seed even when both claims
 * fall in one millisecond (two coordinators in one process): up to a claim's first millisecond
 * is the price. A clock before the origin is wrong (or a test's): it seeds nothing (0), and
 * epochs and tokens count from where the store has them.
 */
export async function clockSeedMs(wallClockMs: () => number): Promise<number> {
  const startMs = Math.floor(wallClockMs());
  if (startMs < CLOCK_SEED_ORIGIN_MS) return 0;
  let nowMs = startMs;
  while (nowMs <= startMs) {
    await new Promise((resolve) => setTimeout(resolve, 1));
    nowMs = Math.floor(wallClockMs());
  }
  return nowMs - CLOCK_SEED_ORIGIN_MS;
}
