import { Buffer } from 'node:buffer';
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { replyDestination, replyTopic } from '@lockq/protocol';
import { explicitPartitioner, kafkaClientConfig, replyPartitionOf, resolveKafkaLinkOptions } from '@lockq/protocol/kafka';
import type { Admin, Producer } from 'kafkajs';
import { applyKafkajsIdleFix, idleFixEnvironment, KAFKAJS_IDLE_FIX_ENV } from './kafka-idle-fix.js';
import { deleteKafkaPrefix, KAFKA_URL, kafkaAdmin } from './kafka-lockq.js';
import { type BrokerProcess, cpuShare, kafkaBroker, type ProcessSample, watchProcess } from './kafka-proc.js';
import { clock, type ReaderSpec, type RepliesCommand, type RepliesReport } from './kafka-replies-ipc.js';
import { uniquePrefix } from './lockq-amqp.js';
import { cell, ms, printTable, progress } from './report.js';
import { fmt, median, percentile } from './stats.js';
import { interruption, sleep, withDeadline } from './workload.js';

/**
 * `npm run bench -- kafka-replies`: which reply layout lockq should use on Kafka (issue 10), in
 * raw kafkajs, at 64 and 1,000 workers (LOCKQ_BENCH_REPLY_WORKERS, default "64,1000"):
 *
 * - shared: one `<prefix>.replies` topic with 16 partitions (lockq's default `replyPartitions`;
 *   LOCKQ_BENCH_REPLY_PARTITIONS to try another count), a reply keyed by its address in the
 *   partition the address hashes to; each worker reads only that partition from its end and
 *   drops the other workers' records (what lockq does);
 * - per-worker: a one-partition topic per worker, created when it connects and deleted when it
 *   closes.
 *
 * Either way a worker is one kafkajs consumer in a group of its own (kafkajs has no assign()),
 * read_committed, with lockq's session, heartbeat and fetch-wait settings; the workers are
 * spread over LOCKQ_BENCH_REPLY_PROCESSES processes (default 4) and connect 8 at a time in each.
 * A responder in this process writes replies as a coordinator does, in transactions (one per
 * 5 ms tick, LOCKQ_BENCH_REPLY_RATE replies/s in all, default 1,000, round robin over the
 * workers), each stamped with its send time; a worker's process measures the latency on its own
 * clock, corrected by the offset measured over IPC.
 *
 * Figures per scenario: connect time (all workers; each worker's p50/p99), connects that failed,
 * reply latency p50/p99/max, records fetched per reply (the shared layout's read amplification),
 * the broker's topics and partitions for the layout, its resident memory (before, once
 * connected, peak), its CPU while connecting, per second while replying, and while closing, the
 * workers' processes' CPU per second while replying, and close time (per-worker: deleting the
 * topics). Each scenario runs once per round, rounds repeat LOCKQ_BENCH_RUNS times (medians); a
 * reply window lasts LOCKQ_BENCH_SECONDS, at least 5 s.
 */

const WORKER = fileURLToPath(new URL('./kafka-replies-worker.js', import.meta.url));
const LAYOUTS = ['shared', 'per-worker'] as const;
type Layout = (typeof LAYOUTS)[number];
const CONNECT_WIDTH = 8;
const TICK_MS = 5;
const MIN_WINDOW_S = 5;
const REPLY = Buffer.alloc(200, 'g');

const sizes = (process.env.LOCKQ_BENCH_REPLY_WORKERS ?? '64,1000').split(',').map(Number);
const processCount = Number(process.env.LOCKQ_BENCH_REPLY_PROCESSES ?? 4);
const replyRate = Number(process.env.LOCKQ_BENCH_REPLY_RATE ?? 1000);
/** Partitions of the shared topic: lockq's default `replyPartitions`, 16, unless LOCKQ_BENCH_REPLY_PARTITIONS says otherwise. */
const SHARED_PARTITIONS = Number(process.env.LOCKQ_BENCH_REPLY_PARTITIONS ?? 16);

/** One scenario's figures. */
interface Outcome {
  connectAllS: number;
  connectP50: number;
  connectP99: number;
  failed: number;
  p50: number;
  p99: number;
  max: number;
  /** Replies received ÷ sent. */
  delivered: number;
  fetchedPerReply: number;
  topics: number;
  partitions: number;
  rssBeforeMb: number;
  rssConnectedMb: number;
  rssPeakMb: number;
  fdsBefore: number;
  fdsConnected: number;
  brokerCpuConnectS: number;
  brokerCpuWindow: number;
  brokerCpuCloseS: number;
  clientCpuWindow: number;
  closeAllS: number;
  errors: string[];
}

/** A process of readers and its IPC. */
class ReaderProcess {
  readonly child: ChildProcess;
  /** This process's clock minus ours, ms (from `sync`). */
  offset = 0;
  readonly #waiting: { readonly resolve: (r: RepliesReport) => void; readonly reject: (err: Error) => void }[] = [];
  #gone: Error | null = null;

  constructor() {
    this.child = fork(WORKER, [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
      env: idleFixEnvironment(),
      detached: true, // out of the bench's process group: a Ctrl-C reaches the bench, which closes this process
    });
    this.child.on('message', (r) => this.#waiting.shift()?.resolve(r as RepliesReport));
    const gone = (err: Error) => {
      this.#gone ??= err;
      for (const w of this.#waiting.splice(0)) w.reject(err);
    };
    this.child.on('exit', (code, signal) => gone(new Error(`a reader process exited (${signal ?? code})`)));
    this.child.on('error', gone);
  }

  /** Sends `c` and resolves with the next report (commands are answered in order, one at a time). */
  ask<T extends RepliesReport['type']>(c: RepliesCommand, type: T): Promise<Extract<RepliesReport, { type: T }>> {
    if (this.#gone !== null) return Promise.reject(this.#gone);
    return new Promise((resolve, reject) => {
      this.#waiting.push({
        resolve: (r) => (r.type === type ? resolve(r as Extract<RepliesReport, { type: T }>) : reject(new Error(`expected ${type}, got ${r.type}`))),
        reject,
      });
      this.child.send(c);
    });
  }

  /** Measures the clock offset: the sample with the shortest round trip of ten. */
  async sync(): Promise<void> {
    let best = Number.POSITIVE_INFINITY;
    for (let id = 0; id < 10; id++) {
      const t0 = clock();
      const r = await this.ask({ type: 'sync', id }, 'sync');
      const t1 = clock();
      if (t1 - t0 < best) {
        best = t1 - t0;
        this.offset = r.now - (t0 + t1) / 2;
      }
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    // Its readers leave their groups and it exits once the channel closes.
    if (this.child.connected) this.child.disconnect();
    else this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Where worker `i`'s replies go in `layout`. */
function readerSpec(layout: Layout, prefix: string, i: number): ReaderSpec {
  const address = replyDestination('anonymous', `w${i}`, 'x', prefix);
  return layout === 'shared'
    ? { address, topic: replyTopic(prefix), partition: replyPartitionOf(address, SHARED_PARTITIONS), ownTopic: false }
    : { address, topic: `${prefix}.reply.w${i}`, partition: 0, ownTopic: true };
}

/** A coordinator-like writer: replies in a transaction per tick, at `rate` replies/s round robin over `readers`. */
async function respond(producer: Producer, readers: readonly ReaderSpec[], rate: number, seconds: number): Promise<number> {
  let sent = 0;
  let next = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end && !interruption.signal.aborted) {
    const due = Math.floor(((performance.now() - start) / 1000) * rate) - sent;
    if (due > 0) {
      const byTopic = new Map<string, { key: string; value: Buffer; partition: number }[]>();
      for (let k = 0; k < due; k++) {
        const r = readers[next++ % readers.length] as ReaderSpec;
        const value = Buffer.from(REPLY);
        value.writeDoubleBE(clock(), 0);
        const list = byTopic.get(r.topic) ?? [];
        list.push({ key: r.address, value, partition: r.partition });
        byTopic.set(r.topic, list);
      }
      const txn = await producer.transaction();
      try {
        await txn.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
        await txn.commit();
      } catch (err) {
        await txn.abort().catch(() => undefined);
        throw err;
      }
      sent += due;
    }
    await sleep(TICK_MS);
  }
  return sent;
}

const mb = (s: ProcessSample | null) => (s === null ? Number.NaN : s.rssBytes / 1_048_576);
const cpuSeconds = (a: ProcessSample | null, b: ProcessSample | null) => (a === null || b === null ? Number.NaN : b.cpuSeconds - a.cpuSeconds);

/** One scenario: `workers` readers in `layout`, connected, replied to for `seconds`, closed. */
async function scenario(layout: Layout, workers: number, seconds: number, broker: BrokerProcess | undefined): Promise<Outcome> {
  const prefix = uniquePrefix('kreplies');
  const processes = Array.from({ length: Math.min(processCount, workers) }, () => new ReaderProcess());
  let admin: Admin | undefined;
  let producer: Producer | undefined;
  try {
    admin = await kafkaAdmin();
    if (layout === 'shared') {
      await admin.createTopics({ waitForLeaders: true, topics: [{ topic: replyTopic(prefix), numPartitions: SHARED_PARTITIONS, configEntries: [{ name: 'retention.ms', value: '3600000' }] }] });
    }
    const { default: kafkajs } = await import('kafkajs');
    const link = resolveKafkaLinkOptions({ url: KAFKA_URL, driverLogLevel: 'nothing' }, 'lockq-bench-responder');
    producer = new kafkajs.Kafka(kafkaClientConfig(link, undefined)).producer({
      transactionalId: `${prefix}.responder`,
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      createPartitioner: explicitPartitioner,
      retry: { initialRetryTime: 5, maxRetryTime: 1000, retries: 12 },
    });
    await producer.connect();
    for (const p of processes) await p.sync();
    const readers = Array.from({ length: workers }, (_, i) => readerSpec(layout, prefix, i));
    const mine = (p: number) => readers.filter((_, i) => i % processes.length === p);

    // Connect: every process at once, CONNECT_WIDTH readers at a time in each.
    const rssBefore = broker?.sample() ?? null;
    const connectWatch = watchProcess(broker);
    const t0 = performance.now();
    const connected = await Promise.all(processes.map((p, i) => p.ask({ type: 'connect', readers: mine(i), width: CONNECT_WIDTH }, 'connected')));
    const connectAllS = (performance.now() - t0) / 1000;
    const afterConnect = connectWatch.stop();
    const connectMs = connected.flatMap((c) => c.connectMs);
    const ok = connectMs.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
    const failedIndexes = new Set(connected.flatMap((c, p) => c.connectMs.flatMap((v, k) => (Number.isNaN(v) ? [k * processes.length + p] : []))));
    const reading = readers.filter((_, i) => !failedIndexes.has(i));
    const metadata = await admin.fetchTopicMetadata({ topics: [...new Set(reading.map((r) => r.topic))] });

    // Reply: a coordinator's transactions at the configured rate.
    const windowWatch = watchProcess(broker);
    await Promise.all(processes.map((p) => p.ask({ type: 'measure' }, 'measuring')));
    const w0 = broker?.sample() ?? null;
    const sent = reading.length === 0 ? 0 : await respond(producer, reading, replyRate, Math.max(MIN_WINDOW_S, seconds));
    await sleep(1000); // the last replies arrive
    const w1 = broker?.sample() ?? null;
    const reports = await Promise.all(processes.map((p) => p.ask({ type: 'report' }, 'report')));
    const afterWindow = windowWatch.stop();
    const latencies = reports.flatMap((r, i) => r.latencies.map((l) => l - (processes[i] as ReaderProcess).offset)).sort((a, b) => a - b);
    const own = reports.reduce((s, r) => s + r.own, 0);
    const fetched = reports.reduce((s, r) => s + r.fetched, 0);
    const windowS = ((w1?.at ?? Number.NaN) - (w0?.at ?? Number.NaN)) / 1000;

    // Close: consumers leave, per-worker topics are deleted.
    const closeWatch = watchProcess(broker);
    const c0 = performance.now();
    await Promise.all(processes.map((p) => p.ask({ type: 'close', width: CONNECT_WIDTH }, 'closed')));
    const closeAllS = (performance.now() - c0) / 1000;
    const afterClose = closeWatch.stop();

    return {
      connectAllS,
      connectP50: percentile(ok, 50),
      connectP99: percentile(ok, 99),
      failed: workers - ok.length,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      max: latencies[latencies.length - 1] ?? Number.NaN,
      delivered: sent === 0 ? Number.NaN : own / sent,
      fetchedPerReply: own === 0 ? Number.NaN : fetched / own,
      topics: metadata.topics.length,
      partitions: metadata.topics.reduce((s, t) => s + t.partitions.length, 0),
      rssBeforeMb: mb(rssBefore),
      rssConnectedMb: mb(afterConnect.last),
      rssPeakMb: Math.max(afterConnect.peakRssBytes, afterWindow.peakRssBytes, afterClose.peakRssBytes) / 1_048_576,
      fdsBefore: rssBefore?.fds ?? Number.NaN,
      fdsConnected: afterConnect.last?.fds ?? Number.NaN,
      brokerCpuConnectS: cpuSeconds(afterConnect.first, afterConnect.last),
      brokerCpuWindow: cpuShare(w0, w1),
      brokerCpuCloseS: cpuSeconds(afterClose.first, afterClose.last),
      clientCpuWindow: reports.reduce((s, r) => s + r.cpuSeconds, 0) / windowS,
      closeAllS,
      errors: connected.flatMap((c) => c.errors),
    };
  } finally {
    await producer?.disconnect().catch(() => undefined);
    await admin?.disconnect().catch(() => undefined);
    await Promise.all(processes.map((p) => p.stop()));
    await deleteKafkaPrefix(prefix).catch((err: unknown) => console.log(`!! cleaning up ${prefix} failed: ${String(err)}`));
  }
}

function medianOf(outcomes: readonly Outcome[], key: Exclude<keyof Outcome, 'errors'>): number {
  const values = outcomes.map((o) => o[key]).filter((v) => !Number.isNaN(v));
  return values.length === 0 ? Number.NaN : median(values);
}

export async function kafkaRepliesSuite(runs: number, seconds: number): Promise<void> {
  console.log('kafka-replies: the reply layout on Kafka, shared topic vs a topic per worker, raw kafkajs (medians over rounds)');
  const fixed = applyKafkajsIdleFix(true);
  console.log(
    fixed
      ? `kafkajs 2.2.4 with the idle-timer fix (kafka-idle-fix.ts), so ${fmt(Math.max(...sizes))} idle consumers do not starve the machine on their own; ${KAFKAJS_IDLE_FIX_ENV}=0 for kafkajs as shipped`
      : `!! kafkajs 2.2.4 as shipped (${KAFKAJS_IDLE_FIX_ENV}=0): each idle connection polls every 1 ms`,
  );
  const broker = kafkaBroker();
  const results = new Map<string, Outcome[]>();
  const key = (layout: Layout, n: number) => `${n} ${layout}`;
  for (let round = 0; round < runs && !interruption.signal.aborted; round++) {
    for (const n of sizes) {
      for (const layout of LAYOUTS) {
        if (interruption.signal.aborted) break;
        progress(`round ${round + 1}/${runs}: ${n} workers, ${layout} reply topic${layout === 'shared' ? '' : 's'}`);
        try {
          const o = await withDeadline(`${n} workers, ${layout}`, 15 * 60_000, scenario(layout, n, seconds, broker));
          results.set(key(layout, n), [...(results.get(key(layout, n)) ?? []), o]);
          if (o.failed > 0) console.log(`!! ${n} workers, ${layout}, round ${round + 1}: ${o.failed} could not connect, e.g. ${o.errors[0] ?? '?'}`);
        } catch (err) {
          console.log(`!! ${n} workers, ${layout}, round ${round + 1} failed: ${err instanceof Error ? err.message : String(err)}`);
        }
        await sleep(2000); // let the broker settle (deleted topics, left groups)
      }
    }
  }

  console.log('');
  console.log(`workers: kafkajs consumers, one group each, read_committed, lockq's settings; ${processCount} processes, ${CONNECT_WIDTH} connecting at a time in each`);
  console.log(`replies: ${fmt(replyRate)}/s round robin, in a transaction per ${TICK_MS} ms tick; window ${Math.max(MIN_WINDOW_S, seconds)} s; shared topic: ${SHARED_PARTITIONS} partitions`);
  console.log(
    `broker: ${broker === undefined ? 'not found in /proc (no RSS, files or CPU)' : `Kafka pid ${broker.pid}`}; RSS includes the JVM's committed heap, so it moves little;` +
      ' fds = open files and sockets; CPU in seconds (connect, close) or seconds per second (replying)',
  );
  console.log('');
  const rows = sizes.flatMap((n) => LAYOUTS.map((layout) => ({ n, layout, o: results.get(key(layout, n)) ?? [] })));
  const m = (o: readonly Outcome[], k: Exclude<keyof Outcome, 'errors'>) => medianOf(o, k);
  printTable(
    ['workers', 'layout', 'connect all s', 'connect p50', 'connect p99', 'failed', 'reply p50', 'reply p99', 'reply max', 'delivered', 'read/reply', 'close all s'],
    rows.map(({ n, layout, o }) => [
      fmt(n),
      layout,
      cell(m(o, 'connectAllS'), 1),
      ms(m(o, 'connectP50')),
      ms(m(o, 'connectP99')),
      cell(m(o, 'failed')),
      ms(m(o, 'p50')),
      ms(m(o, 'p99')),
      ms(m(o, 'max')),
      cell(100 * m(o, 'delivered'), 1) + (o.length === 0 ? '' : '%'),
      cell(m(o, 'fetchedPerReply'), 1),
      cell(m(o, 'closeAllS'), 1),
    ]),
    (i) => i !== 1,
  );
  console.log('');
  console.log("the broker's cost");
  printTable(
    ['workers', 'layout', 'topics', 'partitions', 'RSS before MB', 'RSS connected MB', 'RSS peak MB', 'fds before', 'fds connected', 'CPU connect s', 'CPU replying', 'CPU close s', 'workers CPU replying'],
    rows.map(({ n, layout, o }) => [
      fmt(n),
      layout,
      cell(m(o, 'topics')),
      cell(m(o, 'partitions')),
      cell(m(o, 'rssBeforeMb')),
      cell(m(o, 'rssConnectedMb')),
      cell(m(o, 'rssPeakMb')),
      cell(m(o, 'fdsBefore')),
      cell(m(o, 'fdsConnected')),
      cell(m(o, 'brokerCpuConnectS'), 2),
      cell(m(o, 'brokerCpuWindow'), 2),
      cell(m(o, 'brokerCpuCloseS'), 2),
      cell(m(o, 'clientCpuWindow'), 2),
    ]),
    (i) => i !== 1,
  );
  console.log('');
  console.log('lockq uses the shared layout (docs/kafka.md); beside the other:');
  for (const n of sizes) {
    const shared = results.get(key('shared', n)) ?? [];
    const own = results.get(key('per-worker', n)) ?? [];
    if (shared.length === 0 || own.length === 0) continue;
    console.log(
      `  i ${fmt(n)} workers: reply p50/p99 ${ms(m(shared, 'p50'))}/${ms(m(shared, 'p99'))} ms shared vs ${ms(m(own, 'p50'))}/${ms(m(own, 'p99'))} ms per-worker; ` +
        `connecting all ${cell(m(shared, 'connectAllS'), 1)} s vs ${cell(m(own, 'connectAllS'), 1)} s; ${cell(m(shared, 'partitions'))} vs ${cell(m(own, 'partitions'))} partitions; ` +
        `broker CPU replying ${cell(m(shared, 'brokerCpuWindow'), 2)} vs ${cell(m(own, 'brokerCpuWindow'), 2)}`,
    );
  }
}
