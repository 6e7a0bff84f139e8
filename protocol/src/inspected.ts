import type { HolderView, InspectedCounts, InspectedReply, LockKind, LockMode, LockView, WaiterView } from './messages.js';

/**
 * Reads the body of an `inspected` reply whose envelope is already checked: every documented field
 * with its type, and only those. A field the view does not document (an older coordinator's
 * `session`, `request` or `lastToken`) is dropped, so what a caller gets is exactly the public view
 * whichever coordinator answered; a view of the wrong shape is refused (null), as an `inspected`
 * reply is handed to user code as it is.
 */
export function readInspected(r: Readonly<Record<string, unknown>>, epoch: number, partition: number): InspectedReply | null {
  const counts = readCounts(r.counts);
  if (counts === null) return null;
  const base = { v: 1, type: 'inspected', re: r.re as string, epoch, partition, counts } as const;
  if (r.lock === undefined) return base;
  if (r.lock === null) return { ...base, lock: null };
  const lock = readLock(r.lock);
  return lock === null ? null : { ...base, lock };
}

const KINDS: readonly unknown[] = ['mutex', 'rwlock', 'semaphore'] satisfies LockKind[];
const MODES: readonly unknown[] = ['exclusive', 'shared'] satisfies LockMode[];

type Fields = Readonly<Record<string, unknown>>;

function isObject(v: unknown): v is Fields {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A safe integer at or above `min`. */
function isInt(v: unknown, min: number): v is number {
  return Number.isSafeInteger(v) && (v as number) >= min;
}

function readCounts(v: unknown): InspectedCounts | null {
  if (!isObject(v)) return null;
  const { locks, holds, waiters, sessions } = v;
  if (!isInt(locks, 0) || !isInt(holds, 0) || !isInt(waiters, 0) || !isInt(sessions, 0)) return null;
  return { locks, holds, waiters, sessions };
}

function readLock(v: unknown): LockView | null {
  if (!isObject(v)) return null;
  const { lock, kind, limit, holderCount, waiterCount } = v;
  if (typeof lock !== 'string' || !KINDS.includes(kind) || !isInt(limit, 1)) return null;
  if (!isInt(holderCount, 0) || !isInt(waiterCount, 0) || !Array.isArray(v.holders) || !Array.isArray(v.waiters)) return null;
  const holders: HolderView[] = [];
  for (const h of v.holders as unknown[]) {
    if (!isObject(h)) return null;
    const { worker, token, mode, permits, ttlMs } = h;
    if (typeof worker !== 'string' || !isInt(token, 1) || !MODES.includes(mode) || !isInt(permits, 1) || !isInt(ttlMs, 0)) return null;
    holders.push({ worker, token, mode: mode as LockMode, permits, ttlMs });
  }
  const waiters: WaiterView[] = [];
  for (const w of v.waiters as unknown[]) {
    if (!isObject(w)) return null;
    const { worker, mode, permits, position, waitMs } = w;
    if (typeof worker !== 'string' || !MODES.includes(mode) || !isInt(permits, 1) || !isInt(position, 1) || !isInt(waitMs, 0)) return null;
    waiters.push({ worker, mode: mode as LockMode, permits, position, waitMs });
  }
  return { lock, kind: kind as LockKind, limit, holderCount, waiterCount, holders, waiters };
}
