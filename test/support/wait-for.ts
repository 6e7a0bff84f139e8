/**
 * The one way a test waits: for a condition, polled until it holds or a deadline passes. Tests
 * never sleep a guessed time to let something happen. `elapse` is for where the passing of time
 * is itself the point: a hold's length, a gap in a workload, an outage's length, or a window in
 * which something must NOT happen (a lease that must still hold, a message that must not arrive).
 */

export interface WaitForOptions {
  /** Give up after this long. @defaultValue 5000 */
  readonly timeoutMs?: number;
  /** Poll period. @defaultValue 5 */
  readonly intervalMs?: number;
}

/**
 * Resolves with the first value `condition` returns (or resolves to) that is neither `false`,
 * `undefined` nor `null`; rejects naming `what` when none came by the deadline (`what` may be a
 * function, to describe the state at that moment). An exception from `condition` is not swallowed.
 *
 * @example
 * await waitFor(() => received.length === 3, 'three replies');
 * const holder = await waitFor(async () => (await view('job'))?.holders[0], 'a holder');
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  what: string | (() => string),
  options: WaitForOptions = {},
): Promise<Exclude<T, false | undefined | null>> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const intervalMs = options.intervalMs ?? 5;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value !== false && value !== undefined && value !== null) return value as Exclude<T, false | undefined | null>;
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    }
    await elapse(intervalMs);
  }
}

/** Lets `ms` pass, where time passing is the point (see above); never to wait for something to happen. */
export function elapse(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
