import { fmt } from './stats.js';
import type { Figures } from './workload.js';

/** Number columns right-aligned, the rest left-aligned, two spaces apart. */
export function printTable(header: readonly string[], rows: readonly (readonly string[])[], numeric: (column: number) => boolean): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (numeric(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  console.log(line(header));
  console.log(line(header.map((h) => '-'.repeat(h.length))));
  for (const r of rows) console.log(line(r));
}

/** A figure for a table cell: '-' when not measured. */
export function cell(n: number, digits = 0): string {
  return Number.isNaN(n) ? '-' : fmt(n, digits);
}

/** ms with a precision that suits its size. */
export function ms(n: number): string {
  return cell(n, Number.isNaN(n) || n >= 100 ? 0 : n >= 10 ? 1 : 2);
}

/** The columns every suite prints for a measured configuration. */
export const FIGURE_HEADER = ['rate/s', 'p50 ms', 'p99 ms', 'max ms', 'Jain', 'msgs/acq', 'gave up/acq', 'gap p50 ms'] as const;

export function figureCells(f: Figures): string[] {
  return [cell(f.rate), ms(f.p50), ms(f.p99), ms(f.max), cell(f.jain, 3), cell(f.perAcquisition, 2), cell(f.gaveUp, 2), ms(f.gap)];
}

/** One target line: ✓ or ✗, what was measured, and what it was held against. */
export function verdict(ok: boolean, text: string): void {
  console.log(`  ${ok ? '✓' : '✗'} ${text}`);
}

/** Prints a progress note on stderr, so the table on stdout stays clean. */
export function progress(text: string): void {
  process.stderr.write(`  … ${text}\n`);
}
