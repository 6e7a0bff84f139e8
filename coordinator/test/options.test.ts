import { resolveCoordinatorOptions, type ServerTransport } from '@lockq/coordinator';
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
});
