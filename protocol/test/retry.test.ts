import { describe, expect, it } from 'vitest';
import { backoffMs, DEFAULT_RETRY_POLICY, resolveRetryPolicy } from '../src/retry.js';

describe('retry policy', () => {
  it('backs off exponentially up to the cap, with jitter between half and all of it', () => {
    const p = resolveRetryPolicy({ initialMs: 100, maxMs: 1000, factor: 2 });
    expect([0, 1, 2, 3, 4, 10].map((n) => backoffMs(p, n, () => 1))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect([0, 1, 4].map((n) => backoffMs(p, n, () => 0))).toEqual([50, 100, 500]);
  });

  it('fills in defaults, freezes, and names the bad field', () => {
    const p = resolveRetryPolicy({ initialMs: 5 });
    expect(p).toEqual({ ...DEFAULT_RETRY_POLICY, initialMs: 5 });
    expect(Object.isFrozen(p)).toBe(true);
    expect(() => resolveRetryPolicy({ factor: 0.5 }, 'reconnect')).toThrow('reconnect.factor');
    expect(() => resolveRetryPolicy({ initialMs: 10, maxMs: 5 })).toThrow('retry.maxMs');
    expect(() => resolveRetryPolicy({ attempts: 0 })).toThrow('retry.attempts');
  });
});
