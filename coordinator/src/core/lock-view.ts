import type { HolderView, LockView, WaiterView } from '@lockq/protocol';
import type { LockState } from './entities.js';

/**
 * What `inspect` shows of a lock at `now`: its holders and waiters (the first `maxListed` of
 * each, in order) with the lease or wait each has left.
 */
export function viewOf(lock: LockState, now: number, maxListed: number): LockView {
  const holders: HolderView[] = [];
  for (const h of lock.holders.values()) {
    if (holders.length >= maxListed) break;
    holders.push({
      worker: h.session.worker,
      session: h.session.id,
      token: h.token,
      mode: h.mode,
      permits: h.permits,
      ttlMs: Math.max(0, Math.floor(h.deadline - now)),
    });
  }
  const waiters: WaiterView[] = [];
  let position = 0;
  for (let w = lock.head; w !== null && position < maxListed; w = w.next) {
    waiters.push({
      worker: w.session.worker,
      session: w.session.id,
      request: w.request.id,
      mode: w.request.mode,
      permits: w.request.permits,
      position: ++position,
      waitMs: Math.max(0, Math.floor(w.deadline - now)),
    });
  }
  return {
    lock: lock.name,
    kind: lock.kind,
    limit: lock.limit,
    holderCount: lock.holders.size,
    waiterCount: lock.waiting,
    holders,
    waiters,
  };
}
