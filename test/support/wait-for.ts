/**
 * The one way a test waits: for a condition, polled until it holds or a deadline passes. Tests
 * never sleep a guessed time to let something happen; `elapse` exists only for the assertions
 * that something does NOT happen within a window (a lease that must still hold, a message that
 * must not arrive), where the passing of time is itself the point.
 */

export interface WaitForOptions {
  /** Give up after this long. @defaultValue 5000 */
  readonly timeoutMs?: number;
  /** Poll period. @defaultValue 5 */
  readonly intervalMs?: number;
}

/**
 * Resolves once `condition` returns true (or a promise of true); rejects naming `what` when it
 * has not by the deadline. An exception from `condition` is not swallowed.
 *
 * @example
 * await waitFor(() => received.length === 3, 'three replies');
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  options: WaitForOptions = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const intervalMs = options.intervalMs ?? 5;
  const deadline = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await elapse(intervalMs);
  }
}

/** Lets `ms` pass. Only for asserting that something does not happen within a window. */
export function elapse(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
