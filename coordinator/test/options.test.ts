import { DEFAULT_CORE_LIMITS, resolveCoordinatorOptions, type ServerTransport } from '@lockq/coordinator';
import { describe, expect, it } from 'vitest';

const transport = {} as ServerTransport; // resolving options only stores it

describe('resolveCoordinatorOptions', () => {
  it('fills in the defaults of the timing options', () => {
    const o = resolveCoordinatorOptions({ transport });
    expect({ standbyPauseMs: o.standbyPauseMs, stallMs: o.stallMs }).toEqual({ standbyPauseMs: 1000, stallMs: 10_000 });
    expect(resolveCoordinatorOptions({ transport, standbyPauseMs: 0 }).standbyPauseMs).toBe(0);
  });

  it('refuses a standbyPauseMs or stallMs that is not a whole number of ms in range, naming the field', () => {
    for (const standbyPauseMs of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2_000_000_000]) {
      expect(() => resolveCoordinatorOptions({ transport, standbyPauseMs })).toThrow(/^standbyPauseMs: expected an integer/);
    }
    for (const stallMs of [0, -1, 2.5, Number.NaN]) {
      expect(() => resolveCoordinatorOptions({ transport, stallMs })).toThrow(/^stallMs: expected an integer/);
    }
  });

  it('fills in the per-principal quotas, deriving maxLockWaitsPerPrincipal from a maxWaitersPerLock given alone', () => {
    expect(resolveCoordinatorOptions({ transport }).limits).toEqual(DEFAULT_CORE_LIMITS);
    const small = resolveCoordinatorOptions({ transport, limits: { maxWaitersPerLock: 8 } }).limits;
    expect(small).toMatchObject({ maxWaitersPerLock: 8, maxLockWaitsPerPrincipal: 2 });
    const given = resolveCoordinatorOptions({ transport, limits: { maxWaitersPerLock: 8, maxLockWaitsPerPrincipal: 8 } }).limits;
    expect(given.maxLockWaitsPerPrincipal).toBe(8);
    expect(resolveCoordinatorOptions({ transport, limits: { maxSessionsPerPrincipal: 5 } }).limits).toMatchObject({
      maxSessionsPerPrincipal: 5,
      maxLockWaitsPerPrincipal: 2500,
    });
  });

  it('refuses a per-principal quota that is not a whole number of at least 1, naming it', () => {
    const quotas = ['maxSessionsPerPrincipal', 'maxHoldsPerPrincipal', 'maxWaitsPerPrincipal', 'maxLockWaitsPerPrincipal', 'maxNamesPerPrincipal'] as const;
    for (const name of quotas) {
      for (const value of [0, -1, 1.5, Number.NaN]) {
        expect(() => resolveCoordinatorOptions({ transport, limits: { [name]: value } }), `${name} ${value}`).toThrow(new RegExp(`^limits\\.${name}: expected an integer`));
      }
    }
    // A bad maxWaitersPerLock is named as itself, not as the quota derived from it.
    expect(() => resolveCoordinatorOptions({ transport, limits: { maxWaitersPerLock: 0.5 } })).toThrow(/^limits\.maxWaitersPerLock: /);
  });
});
