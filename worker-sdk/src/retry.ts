/** Exponential backoff with full jitter, as a policy shared by every reconnect loop. */
export interface RetryPolicy {
  /** First delay. @defaultValue 100 */
  readonly initialMs: number;
  /** Largest delay. @defaultValue 5000 */
  readonly maxMs: number;
  /** Growth per attempt. @defaultValue 2 */
  readonly factor: number;
  /** Attempts before giving up; Infinity keeps trying. @defaultValue Infinity */
  readonly attempts: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({
  initialMs: 100,
  maxMs: 5000,
  factor: 2,
  attempts: Number.POSITIVE_INFINITY,
});

/** The delay before attempt `attempt` (0-based): a random point in [0.5, 1] of the capped backoff. */
export function backoffMs(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const cap = Math.min(policy.maxMs, policy.initialMs * policy.factor ** attempt);
  return Math.round(cap * (0.5 + random() / 2));
}

/**
 * Runs `attempt` until it succeeds, the policy runs out, `shouldRetry` says no (by default:
 * errors marked `retriable: false` are final) or `signal` aborts.
 */
export async function retry<T>(
  attempt: (n: number) => Promise<T>,
  policy: RetryPolicy = DEFAULT_RETRY_POLICY,
  options: { readonly signal?: AbortSignal; readonly shouldRetry?: (err: unknown) => boolean } = {},
): Promise<T> {
  const shouldRetry =
    options.shouldRetry ?? ((err: unknown) => !(typeof err === 'object' && err !== null && (err as { retriable?: unknown }).retriable === false));
  for (let n = 0; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      if (n + 1 >= policy.attempts || !shouldRetry(err) || options.signal?.aborted === true) throw err;
      await sleep(backoffMs(policy, n), options.signal);
    }
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
