/** Exponential backoff with jitter, as a policy shared by every reconnect and retry loop. */
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

/** Fills in and validates a policy, naming the bad field (`<name>.<field>`), and freezes it. */
export function resolveRetryPolicy(policy: Partial<RetryPolicy> = {}, name = 'retry'): RetryPolicy {
  const p = { ...DEFAULT_RETRY_POLICY, ...policy };
  const check = (field: keyof RetryPolicy, ok: boolean) => {
    if (!ok) throw new RangeError(`${name}.${field}: out of range (${String(p[field])})`);
  };
  check('initialMs', Number.isFinite(p.initialMs) && p.initialMs >= 0);
  check('maxMs', Number.isFinite(p.maxMs) && p.maxMs >= p.initialMs);
  check('factor', Number.isFinite(p.factor) && p.factor >= 1);
  check('attempts', p.attempts >= 1);
  return Object.freeze(p);
}
