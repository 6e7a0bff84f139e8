import type { Session } from './entities.js';
import { FifoQueue } from './fifo-index.js';
import type { CoreLimits } from './options.js';

/** The session a hold of an expired token belonged to, by its key (principal, session id). */
export interface ExpiredOwner {
  readonly principal: string;
  readonly session: string;
}

/**
 * Tokens of holds whose lease ran out, with the session that held them, kept for the dedupe
 * window: a late release or extend by that session is then answered `LEASE_EXPIRED`, not
 * `NOT_HOLDER`. The session is kept by its key, not the object: a session opened again under the
 * same id is told the same.
 */
export class ExpiredTokens {
  readonly #limits: Pick<CoreLimits, 'dedupeWindowMs' | 'maxDedupeEntries'>;
  readonly #owners = new Map<number, ExpiredOwner>();
  readonly #queue = new FifoQueue<{ readonly token: number; readonly at: number }>();

  constructor(limits: Pick<CoreLimits, 'dedupeWindowMs' | 'maxDedupeEntries'>) {
    this.#limits = limits;
  }

  add(token: number, owner: ExpiredOwner, at: number): void {
    this.#owners.set(token, owner);
    this.#queue.push({ token, at });
  }

  /** Whether `session` held `token` when its lease ran out, as far as is still remembered. */
  heldBy(token: number, session: Session): boolean {
    const owner = this.#owners.get(token);
    return owner !== undefined && owner.session === session.id && owner.principal === session.principal.name;
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
  entries(now: number): { token: number; principal: string; session: string; at: number }[] {
    const at = new Map<number, number>();
    for (const e of this.#queue.items()) at.set(e.token, e.at);
    return [...this.#owners].map(([token, o]) => ({ token, principal: o.principal, session: o.session, at: at.get(token) ?? now }));
  }
}
