import type { HolderView, InspectedCounts, LockView, PartitionCounts, WaiterView } from '@lockq/protocol';
import type { Hold, LockState, Waiter } from './entities.js';

/**
 * Everything the core knows of a lock's holders and waiters, session and request ids included:
 * for the coordinator's own tests and debugging, never published (see {@link viewOf}).
 */
export interface LockDetail extends Omit<LockView, 'holders' | 'waiters'> {
  readonly holders: readonly (HolderView & { readonly principal: string; readonly session: string })[];
  readonly waiters: readonly (WaiterView & { readonly principal: string; readonly session: string; readonly request: string })[];
}

/**
 * What `inspect` shows of a lock at `now`, on the wire and on the admin listener alike: its
 * holders and waiters (the first `maxListed` of each, in order) with the lease or wait each has
 * left. No session or request ids: with a worker id, they are what a forged release, extend or
 * cancel names (docs/security.md, "What the views show").
 */
export function viewOf(lock: LockState, now: number, maxListed: number): LockView {
  const holders: HolderView[] = [];
  for (const h of lock.holders.values()) {
    if (holders.length >= maxListed) break;
    holders.push(holderView(h, now));
  }
  const waiters: WaiterView[] = [];
  let position = 0;
  for (let w = lock.head; w !== null && position < maxListed; w = w.next) waiters.push(waiterView(w, ++position, now));
  return { ...totals(lock), holders, waiters };
}

/** {@link viewOf} with every holder's principal and session and every waiter's principal, session and request. */
export function detailOf(lock: LockState, now: number): LockDetail {
  const holders = [...lock.holders.values()].map((h) => ({ ...holderView(h, now), principal: h.session.principal.name, session: h.session.id }));
  const waiters: LockDetail['waiters'][number][] = [];
  for (let w = lock.head; w !== null; w = w.next) {
    const { principal, id: session } = w.session;
    waiters.push({ ...waiterView(w, waiters.length + 1, now), principal: principal.name, session, request: w.request.id });
  }
  return { ...totals(lock), holders, waiters };
}

/** A partition's counts as the wire's `inspected` carries them: without the token counter. */
export function inspectedCounts(c: PartitionCounts): InspectedCounts {
  return { locks: c.locks, holds: c.holds, waiters: c.waiters, sessions: c.sessions };
}

function totals(lock: LockState): Omit<LockView, 'holders' | 'waiters'> {
  return { lock: lock.name, kind: lock.kind, limit: lock.limit, holderCount: lock.holders.size, waiterCount: lock.waiting };
}

function holderView(h: Hold, now: number): HolderView {
  return { worker: h.session.worker, token: h.token, mode: h.mode, permits: h.permits, ttlMs: Math.max(0, Math.floor(h.deadline - now)) };
}

function waiterView(w: Waiter, position: number, now: number): WaiterView {
  return {
    worker: w.session.worker,
    mode: w.request.mode,
    permits: w.request.permits,
    position,
    waitMs: Math.max(0, Math.floor(w.deadline - now)),
  };
}
