import { distinctLocks, hotLock } from './core.js';
import { memoryCycles } from './memory.js';
import { fmt, median } from './stats.js';

/**
 * `npm run bench [-- suite...]`: each figure is the median of several runs, all in this one
 * process so ratios are measured side by side. Suites: core, memory (default: both).
 * LOCKQ_BENCH_RUNS (default 5) and LOCKQ_BENCH_SECONDS (default 2) size the runs.
 */
const runs = Number(process.env.LOCKQ_BENCH_RUNS ?? 5);
const seconds = Number(process.env.LOCKQ_BENCH_SECONDS ?? 2);
const suites = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const wanted = (name: string) => suites.length === 0 || suites.includes(name);

async function measure(label: string, unit: string, target: number | undefined, once: () => number | Promise<number>): Promise<void> {
  const values: number[] = [];
  for (let i = 0; i < runs; i++) values.push(await once());
  const m = median(values);
  const verdict = target === undefined ? '' : m >= target ? `  ✓ target ${fmt(target)}` : `  ✗ below target ${fmt(target)}`;
  console.log(`${label.padEnd(58)} ${fmt(m).padStart(12)} ${unit}  (median of ${runs}; min ${fmt(Math.min(...values))}, max ${fmt(Math.max(...values))})${verdict}`);
}

console.log(`lockq bench — node ${process.version}, ${runs} runs x ${seconds}s each\n`);
if (wanted('core')) {
  await measure('core: one hot lock, 64 waiters', 'decisions/s', 1_000_000, () => hotLock(seconds));
  await measure('core: 10,000 distinct locks', 'decisions/s', 1_000_000, () => distinctLocks(seconds));
}
if (wanted('memory')) {
  await measure('memory end to end: 64 workers, distinct locks', 'cycles/s', 100_000, () => memoryCycles(64, seconds));
}
