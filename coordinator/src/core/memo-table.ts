import type { ReplyBody, Request } from '@lockq/protocol';
import { createMemo, type Memo, type Session } from './entities.js';
import { FifoQueue } from './fifo-index.js';
import type { CoreLimits } from './options.js';
import { error, granted, positionOf, queued } from './replies.js';

/**
 * The partition's remembered answers, by session and request id (idempotency): a duplicate gets
 * the same answer, and the same id with another payload gets `IDEMPOTENCY_CONFLICT`.
 *
 * A memo lives in its session (`Session.memos`), so it goes when the session does. Memos of
 * unnumbered requests age out of the dedupe window, oldest first, under a cap for the partition;
 * memos of numbered requests (`seq`) are forgotten as the worker's watermark (`settled`) passes
 * them, under a cap per session.
 */
export class MemoTable {
  readonly #limits: Pick<CoreLimits, 'dedupeWindowMs' | 'maxDedupeEntries' | 'maxUnsettledPerSession'>;
  /** Every memo of an unnumbered request, oldest first (entries of ended sessions are skipped). */
  readonly #queue = new FifoQueue<Memo>();
  /** Memos of unnumbered requests of live sessions. */
  #count = 0;

  constructor(limits: Pick<CoreLimits, 'dedupeWindowMs' | 'maxDedupeEntries' | 'maxUnsettledPerSession'>) {
    this.#limits = limits;
  }

  /** The memo of `session`'s request `id`, if it is still remembered. */
  get(session: Session, id: string): Memo | undefined {
    return session.memos.get(id);
  }

  /** Remembers the outcome of `request`, made at `at`. */
  remember(session: Session, request: Request, outcome: Memo['outcome'], at: number): void {
    this.add(createMemo(request, session, outcome, at));
  }

  /** Remembers a memo already made (a waiter's, which the waiter points at). */
  add(memo: Memo): void {
    const session = memo.session;
    session.memos.set(memo.request.id, memo);
    if (memo.request.seq === undefined) {
      this.#queue.push(memo);
      this.#count++;
      return;
    }
    // A worker that numbers its requests but never settles them is held to a cap.
    session.numbered.push(memo);
    if (session.numbered.length > this.#limits.maxUnsettledPerSession) forget(session.numbered.shift());
  }

  /** The worker has the answers up to `settled`: forget them. */
  settle(session: Session, settled: number): void {
    session.settled = settled;
    for (let m = session.numbered.peek(); m !== undefined && (m.request.seq as number) <= settled; m = session.numbered.peek()) {
      forget(session.numbered.shift());
    }
  }

  /** `session` ended and took its memos along; their entries in the queue are skipped when they come up. */
  endSession(session: Session): void {
    for (const m of session.memos.values()) if (m.request.seq === undefined) this.#count--;
  }

  /**
   * Ages out memos older than the dedupe window, or the oldest beyond the cap. A memo of a live
   * wait or hold is kept while it lives, under the cap. Stops at the first entry still young, so
   * it is O(1) when there is nothing to do.
   */
  prune(now: number): void {
    const max = this.#limits.maxDedupeEntries;
    const horizon = now - this.#limits.dedupeWindowMs;
    // Bounded by the queue's length now, so memos kept and re-queued are not visited twice.
    for (let n = this.#queue.length, m = this.#queue.peek(); n > 0 && m !== undefined; n--, m = this.#queue.peek()) {
      const current = m.session.live;
      if (current && m.at > horizon && this.#count <= max) break;
      this.#queue.shift();
      if (!current) continue; // its session ended and took its memos along
      const o = m.outcome;
      if (this.#count <= max && !('type' in o) && o.live) {
        m.at = now;
        this.#queue.push(m);
      } else {
        m.session.memos.delete(m.request.id);
        this.#count--;
      }
    }
  }

  /**
   * Every remembered memo of the live `sessions`: unnumbered ones oldest first, then each
   * session's numbered ones in arrival order (the order restoring them gives back).
   */
  *entries(sessions: Iterable<Session>): IterableIterator<Memo> {
    for (const m of this.#queue.items()) if (isCurrent(m)) yield m;
    for (const s of sessions) for (const m of s.numbered.items()) if (isCurrent(m)) yield m;
  }
}

/**
 * Same request apart from where the answer goes and its hand-off proof: a duplicate, not a
 * conflict. The proof only authorises; a re-sent copy may lose it (a new term checks it with
 * another key), and its session gets the answer it was already given.
 */
export function samePayload(a: Request, b: Request): boolean {
  const ra = a as unknown as Record<string, unknown>;
  const rb = b as unknown as Record<string, unknown>;
  const keys = Object.keys(ra);
  if (keys.length - ('handoff' in ra ? 1 : 0) !== Object.keys(rb).length - ('handoff' in rb ? 1 : 0)) return false;
  for (const k of keys) if (k !== 'replyTo' && k !== 'handoff' && ra[k] !== rb[k]) return false;
  return true;
}

/**
 * The answer `memo` gives a duplicate `request` at `now`: a final answer as it was; a wait with
 * its position now; a grant with what is left of its lease and the duplicate as basis, or
 * `LEASE_EXPIRED` once it is gone.
 */
export function recall(memo: Memo, request: Request, now: number): ReplyBody {
  const outcome = memo.outcome;
  if ('type' in outcome) return outcome;
  if (outcome.kind === 'waiter') return queued(request.id, outcome, positionOf(outcome));
  return outcome.live ? granted(request.id, outcome, now, request.id) : error(request.id, 'LEASE_EXPIRED');
}

function forget(memo: Memo | undefined): void {
  if (memo !== undefined && memo.session.memos.get(memo.request.id) === memo) memo.session.memos.delete(memo.request.id);
}

/** Still the memo its session remembers for that id, and the session lives. */
function isCurrent(m: Memo): boolean {
  return m.session.live && m.session.memos.get(m.request.id) === m;
}
