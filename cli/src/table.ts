import type { LockView, PartitionCounts } from '@lockq/protocol';
import type { LocksResponse } from '@lockq/coordinator';
import { formatMs } from './stats-window.js';

/** Left-aligned columns, two spaces apart, header first. */
export function table(header: readonly string[], rows: readonly (readonly string[])[], indent = ''): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    indent +
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

/** One lock: a title line, then its holders and its waiters in queue order. */
export function formatLock(view: LockView): string[] {
  const limit = view.kind === 'semaphore' ? `, limit ${view.limit}` : '';
  const lines = [`${view.lock}  (${view.kind}${limit}; ${view.holderCount} holding, ${view.waiterCount} waiting)`];
  if (view.holders.length > 0) {
    lines.push(
      ...table(
        ['HOLDER', 'TOKEN', 'TTL LEFT', 'MODE', 'PERMITS'],
        view.holders.map((h) => [h.worker, String(h.token), formatMs(h.ttlMs), h.mode, String(h.permits)]),
        '  ',
      ),
    );
    if (view.holderCount > view.holders.length) lines.push(`  … and ${view.holderCount - view.holders.length} more holders`);
  }
  if (view.waiters.length > 0) {
    lines.push(
      ...table(
        ['POS', 'WAITER', 'WAIT LEFT', 'MODE', 'PERMITS'],
        view.waiters.map((w) => [String(w.position), w.worker, formatMs(w.waitMs), w.mode, String(w.permits)]),
        '  ',
      ),
    );
    if (view.waiterCount > view.waiters.length) lines.push(`  … and ${view.waiterCount - view.waiters.length} more waiters`);
  }
  return lines;
}

/** The whole view of `GET /v1/locks`: partition counts, then every lock listed. */
export function formatLocks(response: LocksResponse): string[] {
  const rows = response.owned.map((p) => {
    const c: PartitionCounts | undefined = response.partitions[String(p)];
    // A partition is claimed on its first delivery; until then (a standby) it has no state.
    if (c === undefined) return [String(p), 'standby', '-', '-', '-', '-', '-'];
    return [String(p), 'active', String(c.locks), String(c.holds), String(c.waiters), String(c.sessions), String(c.lastToken)];
  });
  const lines = table(['PARTITION', 'STATE', 'LOCKS', 'HOLDS', 'WAITERS', 'SESSIONS', 'LAST TOKEN'], rows);
  if (response.locks.length === 0) {
    lines.push('', 'no lock is held or awaited');
    return lines;
  }
  for (const view of response.locks) lines.push('', ...formatLock(view));
  if (response.truncated) lines.push('', `(only the first ${response.locks.length} locks are listed)`);
  return lines;
}
