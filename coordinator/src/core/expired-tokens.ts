import { FifoQueue } from './fifo-index.js';
import type { CoreLimits } from './options.js';

/**
 * Tokens of holds whose lease ran out, with the session that held them, kept for the dedupe
 * window: a late release or extend by that session is then answered `LEASE_EXPIRED`, not
 * `NOT_HOLDER`.
 */
export class ExpiredTokens {
  readonly #limits: Pick<CoreLimits, 'dedupeWindowMs' | 'maxDedupeEntries'>;
  /** token -> session id. */
  readonly #owners = new Map<number, string>();
  readonly #queue = new FifoQueue<{ readonly token: number; readonly at: number }>();

  constructor(limits: Pick<CoreLimits, 'dedupeWindowMs' | 'maxDedupeEntries'>) {
    this.#limits = limits;
  }

  add(token: number, session: string, at: number): void {
    this.#owners.set(token, session);
    this.#queue.push({ token, at });
  }

  /** The session whose hold of `token` expired, if that is still remembered. */
  ownerOf(token: number): string | undefined {
    return this.#owners.get(token);
  }

  /** Forgets tokens that expired longer than the dedupe window ago, or the oldest beyond the cap. */
  prune(now: number): void {
    const max = this.#limits.maxDedupeEntries;
    const horizon = now - this.#limits.dedupeWindowMs;
    for (let e = this.#queue.peek(); e !== undefined; e = this.#queue.peek()) {
      if (e.at > horizon && this.#owners.size <= max) break;
      this.#queue.shift();
      this.#owners.delete(e.token);
    }
  }

  /** Every remembered token in the order it expired; `at` falls back to `now`. */
  entries(now: number): { token: number; session: string; at: number }[] {
    const at = new Map<number, number>();
    for (const e of this.#queue.items()) at.set(e.token, e.at);
    return [...this.#owners].map(([token, session]) => ({ token, session, at: at.get(token) ?? now }));
  }
}
