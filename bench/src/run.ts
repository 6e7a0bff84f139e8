import { abuseSuite } from './abuse.js';
import { amqpSuite } from './amqp.js';
import { distinctLocks, hotLock } from './core.js';
import { kafkaSuite } from './kafka.js';
import { kafkaRepliesSuite } from './kafka-replies.js';
import { codecCycles, memoryCycles } from './memory.js';
import { fmt, median } from './stats.js';
import { storeSuite } from './store.js';
import { interruption } from './workload.js';

/**
 * `npm run bench [-- suite...]`: each figure is the median of several runs, all in this one
 * process so ratios are measured side by side. Suites: core, memory (the default: both, no
 * broker needed), and amqp and store, which need RabbitMQ and Redis (and etcd, for store) and
 * run only when named; abuse (floods beside a well-behaved worker, memory and RabbitMQ) too; kafka
 * (lockq over Kafka beside RabbitMQ, and the Kafka store against Redis's) needs Kafka as well, and
 * kafka-replies (the reply layout on Kafka, raw kafkajs) Kafka alone. LOCKQ_BENCH_RUNS (default 5) and LOCKQ_BENCH_SECONDS (default 2) size
 * the runs.
 */
const runs = Number(process.env.LOCKQ_BENCH_RUNS ?? 5);
const seconds = Number(process.env.LOCKQ_BENCH_SECONDS ?? 2);
const SUITES = ['core', 'memory', 'amqp', 'store', 'abuse', 'kafka', 'kafka-replies'];
const BY_DEFAULT = ['core', 'memory'];
const suites = process.argv.slice(2).filter((a) => !a.startsWith('-'));
for (const s of suites) {
  if (!SUITES.includes(s)) {
    console.error(`unknown suite ${JSON.stringify(s)}; suites: ${SUITES.join(', ')}`);
    process.exit(2);
  }
}
const wanted = (name: string) => (suites.length === 0 ? BY_DEFAULT.includes(name) : suites.includes(name));

async function measure(label: string, unit: string, target: number | undefined, once: () => number | Promise<number>): Promise<void> {
  const values: number[] = [];
  for (let i = 0; i < runs; i++) values.push(await once());
  const m = median(values);
  const verdict = target === undefined ? '' : m >= target ? `  ✓ target ${fmt(target)}` : `  ✗ below target ${fmt(target)}`;
  console.log(`${label.padEnd(58)} ${fmt(m).padStart(12)} ${unit}  (median of ${runs}; min ${fmt(Math.min(...values))}, max ${fmt(Math.max(...values))})${verdict}`);
}

console.log(`lockq bench — node ${process.version}, ${runs} runs x ${seconds}s each\n`);
// Memory first: the core suite leaves a large heap behind (10,000 locks' worth of garbage in old
// space), which taxed the end-to-end figure by a quarter when it ran second.
if (wanted('memory')) {
  await measure('memory end to end: 64 workers, distinct locks', 'cycles/s', 100_000, () => memoryCycles(64, seconds));
  await measure('  the codec alone on the same cycle (its ceiling)', 'cycles/s', undefined, () => codecCycles(seconds));
}
if (wanted('core')) {
  await measure('core: one hot lock, 64 waiters', 'decisions/s', 1_000_000, () => hotLock(seconds));
  await measure('core: 10,000 distinct locks', 'decisions/s', 1_000_000, () => distinctLocks(seconds));
}
// The broker suites clean up their queues, keys and etcd after an interrupt; a second one exits at once.
for (const signal of wanted('amqp') || wanted('store') || wanted('kafka') || wanted('kafka-replies') ? (['SIGINT', 'SIGTERM'] as const) : []) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping after the current step, then cleaning up (again to exit at once)`);
    interruption.abort();
    process.exitCode = 130;
    process.once(signal, () => process.exit(130));
  });
}
if (wanted('amqp')) {
  console.log('');
  await amqpSuite(runs, seconds);
}
if (wanted('store') && !interruption.signal.aborted) {
  console.log('');
  await storeSuite(runs, seconds);
}
if (wanted('kafka') && !interruption.signal.aborted) {
  console.log('');
  await kafkaSuite(runs, seconds);
}
if (wanted('kafka-replies') && !interruption.signal.aborted) {
  console.log('');
  await kafkaRepliesSuite(runs, seconds);
}
if (wanted('abuse')) {
  console.log('');
  await abuseSuite();
}
