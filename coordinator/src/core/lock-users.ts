import type { LockState, LockUse, Principal } from './entities.js';

/*
 * Which principals hold or await a lock, and how often: what a principal's `names` count is made
 * of, and its waiters per lock (the `lockWaits` quota). Most locks are used by one principal at a
 * time, so the first one is counted in the lock's own fields and only others in a map: a grant
 * and release of an uncontended lock then make and drop no map entry (a map that empties shrinks
 * its table, with a call into the runtime) and touch no object beside the lock. A principal is in
 * the fields or in the map, never both.
 */

/** One more hold (or with `wait`, waiter) of `principal` on `lock`; true when it had none there. */
export function addUse(lock: LockState, principal: Principal, wait: boolean): boolean {
  if (lock.user === principal) {
    lock.userUses++;
    if (wait) lock.userWaits++;
    return false;
  }
  const others = lock.otherUsers;
  if (lock.user === null && (others === null || others.size === 0 || !others.has(principal))) {
    lock.user = principal;
    lock.userUses = 1;
    lock.userWaits = wait ? 1 : 0;
    return true;
  }
  let map = others;
  if (map === null) {
    map = new Map();
    lock.otherUsers = map; // kept when the lock is recycled (see PartitionState.removeLock)
  }
  const use = map.get(principal);
  if (use === undefined) {
    map.set(principal, { uses: 1, waits: wait ? 1 : 0 });
    return true;
  }
  use.uses++;
  if (wait) use.waits++;
  return false;
}

/** One hold (or waiter) fewer; true when `principal` has none left on `lock`. */
export function removeUse(lock: LockState, principal: Principal, wait: boolean): boolean {
  if (lock.user === principal) {
    if (wait) lock.userWaits--;
    if (--lock.userUses > 0) return false;
    lock.user = null;
    return true;
  }
  const map = lock.otherUsers as Map<Principal, LockUse>;
  const use = map.get(principal) as LockUse;
  if (wait) use.waits--;
  if (--use.uses > 0) return false;
  map.delete(principal);
  return true;
}

/** Whether `principal` holds or awaits `lock`. */
export function uses(lock: LockState, principal: Principal): boolean {
  return lock.user === principal || (lock.otherUsers?.has(principal) ?? false);
}

/** How many waiters of `principal` are in `lock`'s queue. */
export function waitsOf(lock: LockState, principal: Principal): number {
  if (lock.user === principal) return lock.userWaits;
  return lock.otherUsers?.get(principal)?.waits ?? 0;
}
