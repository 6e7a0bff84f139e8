import { describe, expect, it } from 'vitest';
import { CLOCK_SEED_ORIGIN_MS, MemoryStore, SEED_TOKENS_PER_MS } from '../src/store/index.js';
import { defineStoreContract } from './store.contract.js';

// The contract counts epochs and ceilings from an empty store: a wall clock before the seed's
// origin seeds nothing, so the store's own counting is what it checks.
defineStoreContract('MemoryStore({ journal: true })', () => new MemoryStore({ journal: true, wallClockMs: () => 0 }));

/** A wall clock that reads `readings` in turn, then keeps reading the last one. */
function scripted(...readings: number[]): { readonly clock: () => number; readonly reads: () => number } {
  let reads = 0;
  return {
    clock: () => readings[Math.min(reads++, readings.length - 1)] as number,
    reads: () => reads,
  };
}

describe('MemoryStore: epochs and tokens keep rising across stores (seeded from the wall clock)', () => {
  const T = Date.UTC(2026, 5, 1); // any time after the origin

  it('a second store, as in a restarted process or a standby with a store of its own, claims above the first', async () => {
    // Before seeding, both claims were { epoch: 1, tokenCeiling: 0 }: the new term issued 1, 2, 3 again.
    const first = await new MemoryStore().claim(0);
    const second = await new MemoryStore().claim(0);
    expect(second.epoch).toBeGreaterThan(first.epoch);
    // Claims at least one millisecond apart: 1000 tokens apart at least.
    expect(second.tokenCeiling).toBeGreaterThanOrEqual(first.tokenCeiling + SEED_TOKENS_PER_MS);
    // Within the codec's fast path (at most 15 digits), far below 2^53.
    expect(second.tokenCeiling).toBeLessThan(10 ** 15);
  });

  it('seeds the epoch with the ms since the origin and the ceiling with 1000 tokens per ms, read once the clock has ticked', async () => {
    // The claim begins at T + 0.4 ms and reads again until the millisecond changes.
    const c = scripted(T + 0.4, T + 0.9, T + 1.2);
    const claimed = await new MemoryStore({ wallClockMs: c.clock }).claim(3);
    const seedMs = T + 1 - CLOCK_SEED_ORIGIN_MS;
    expect(claimed).toEqual({ epoch: seedMs, tokenCeiling: seedMs * 1000, snapshot: null, journal: [] });
    expect(c.reads()).toBe(3);
  });

  it('terms claimed 5 ms apart are 5000 tokens apart: the bound a term without a store issues within', async () => {
    const a = await new MemoryStore({ wallClockMs: scripted(T, T + 1).clock }).claim(0);
    const b = await new MemoryStore({ wallClockMs: scripted(T + 5, T + 6).clock }).claim(0);
    expect(b.epoch - a.epoch).toBe(5);
    expect(b.tokenCeiling - a.tokenCeiling).toBe(5 * SEED_TOKENS_PER_MS);
  });

  it('never lowers what the store already has: a reserved ceiling above the seed, or a clock set back', async () => {
    const c = scripted(T + 10, T + 11, T + 2, T + 3);
    const store = new MemoryStore({ journal: true, wallClockMs: c.clock });
    const first = await store.claim(0);
    const reserved = first.tokenCeiling + 50_000;
    await store.append(0, first.epoch, { now: 1, requests: [], tokenCeiling: reserved });
    const second = await store.claim(0); // the clock now reads 8 ms earlier
    expect(second.epoch).toBe(first.epoch + 1);
    expect(second.tokenCeiling).toBe(reserved);
  });
});
