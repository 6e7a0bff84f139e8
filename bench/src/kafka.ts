import { randomUUID } from 'node:crypto';
import { KafkaStore, RedisStore } from '@lockq/coordinator';
import { Redis } from 'ioredis';
import { type Floor, openFloor } from './floor.js';
import { openKafkaFloor } from './floor-kafka.js';
import { startWorkerProcesses, type WorkerProcesses } from './kafka-contenders.js';
import { applyKafkajsIdleFix, KAFKAJS_IDLE_FIX_ENV } from './kafka-idle-fix.js';
import { KAFKA_URL, type LockqKafkaSystem, openLockqKafka } from './kafka-lockq.js';
import { type BrokerProcess, cpuShare, kafkaBroker, rabbitBroker } from './kafka-proc.js';
import { AMQP_URL, deleteTopology, type LockqAmqpSystem, openLockqAmqp } from './lockq-amqp.js';
import { deleteKeys, REDIS_URL } from './peers.js';
import { cell, ms, printTable, progress, verdict } from './report.js';
import { fmt, percentile } from './stats.js';
import { distinctLocks, type Figures, hotLock, interruption, type LockSystem, medians, NOT_MEASURED, sleep, withDeadline } from './workload.js';

/**
 * `npm run bench -- kafka`: lockq over Kafka beside lockq over RabbitMQ, each with the raw floor
 * of its broker under it, under the same workloads in one run (issue 10, Benchmark):
 *
 * 1. distinct locks at 1, 8 and 64 workers (LockClients in this process, as in the amqp suite),
 *    and one hot lock with 64 workers in processes of their own (kafka-contenders.ts), hold 0
 *    and 5 ms; every configuration once per round, rounds repeated LOCKQ_BENCH_RUNS times,
 *    figures the medians;
 * 2. lockq over Kafka with the Kafka store (`--store kafka:`) against the Redis store, distinct
 *    locks at 8 and 64 workers, interleaved the same way.
 *
 * Beside each figure: the broker process's CPU (from /proc, when the broker is local) and the
 * coordinator's batches per second (on Kafka each is one transaction).
 */

const WORKERS = 64;
const DISTINCT = [1, 8, 64] as const;
const HOLDS = [0, 5] as const;
const STORE_SIZES = [8, 64] as const;
/** Targets of issue 10. */
const TARGET_FLOOR_SHARE = 0.7;
const TARGET_HOT_RATE = 150;
const TARGET_HOT_JAIN = 0.99;
const TARGET_HOT_MAX_WAIT_MS = 1000;
const TARGET_STORE_RATIO = 0.75;

type Broker = 'RabbitMQ' | 'Kafka';

interface Config {
  readonly section: 'distinct' | 'hot' | 'store';
  readonly workload: string;
  readonly broker: Broker;
  readonly system: string;
  readonly run: (namespace: string) => Promise<Figures>;
  /** The broker process, for its CPU share during the run. */
  readonly brokerProcess: BrokerProcess | undefined;
  /** The coordinator's batches so far (lockq only). */
  readonly batches?: () => number;
  readonly results: Figures[];
  readonly cpu: number[];
  readonly batchRates: number[];
}

function floorRun(floor: Floor, n: number, seconds: number): (namespace: string) => Promise<Figures> {
  return async () => {
    const r = await floor.run(n, seconds);
    r.latencies.sort((a, b) => a - b);
    return { ...NOT_MEASURED, rate: r.rate, p50: percentile(r.latencies, 50), p99: percentile(r.latencies, 99), max: r.latencies[r.latencies.length - 1] ?? Number.NaN };
  };
}

async function open<T>(what: string, url: string, opening: () => Promise<T>): Promise<T | undefined> {
  try {
    return await opening();
  } catch (err) {
    console.log(`!! ${what} skipped: cannot reach ${url.replace(/\/\/[^@]*@/, '//')} (${err instanceof Error ? err.message : String(err)})`);
    return undefined;
  }
}

/** Runs every configuration once per round, `runs` rounds, recording figures, broker CPU and batch rates. */
async function runRounds(configs: readonly Config[], runs: number, seconds: number): Promise<void> {
  for (let round = 0; round < runs && !interruption.signal.aborted; round++) {
    for (const c of configs) {
      if (interruption.signal.aborted) break;
      progress(`round ${round + 1}/${runs}: ${c.workload}, ${c.broker}, ${c.system}`);
      const cpuBefore = c.brokerProcess?.sample() ?? null;
      const batchesBefore = c.batches?.() ?? Number.NaN;
      const t0 = performance.now();
      const label = `${c.workload}, ${c.broker}, ${c.system}`;
      try {
        c.results.push(await withDeadline(label, seconds * 1000 + 120_000, c.run(`r${round}`)));
      } catch (err) {
        // One configuration failing (a worker given up on after waitMs on a starved machine)
        // costs its round, not the run; what is left of it drains during the pause.
        console.log(`!! ${label}, round ${round + 1} failed: ${err instanceof Error ? err.message : String(err)}`);
        await sleep(5_000);
        continue;
      }
      const elapsed = (performance.now() - t0) / 1000;
      c.cpu.push(cpuShare(cpuBefore, c.brokerProcess?.sample() ?? null));
      c.batchRates.push(((c.batches?.() ?? Number.NaN) - batchesBefore) / elapsed);
      await sleep(100); // let the brokers and the collector catch up between configurations
    }
  }
}

const median = (values: readonly number[]) => medians(values.map((rate) => ({ ...NOT_MEASURED, rate }))).rate;
const percent = (share: number) => (Number.isNaN(share) ? '-' : `${fmt(100 * share)}%`);

function find(configs: readonly Config[], section: Config['section'], workload: string, broker: Broker, system: string): Figures | undefined {
  const c = configs.find((x) => x.section === section && x.workload === workload && x.broker === broker && x.system === system);
  return c === undefined || c.results.length === 0 ? undefined : medians(c.results);
}

export async function kafkaSuite(runs: number, seconds: number): Promise<void> {
  console.log('kafka: lockq over Kafka vs lockq over RabbitMQ, each with its raw broker floor (medians over rounds)');
  const fixed = applyKafkajsIdleFix(false);
  console.log(
    fixed
      ? `!! with a fix to kafkajs 2.2.4 that lockq does not ship (${KAFKAJS_IDLE_FIX_ENV}=1): no 1 ms request-queue timers while idle (kafka-idle-fix.ts)`
      : `kafkajs 2.2.4 as shipped (each idle connection polls itself every 1 ms; ${KAFKAJS_IDLE_FIX_ENV}=1 to measure with the fix, kafka-idle-fix.ts)`,
  );
  const kafkaProc = kafkaBroker();
  const rabbitProc = rabbitBroker();
  await lockqOnBothBrokers(runs, seconds, kafkaProc, rabbitProc);
  if (!interruption.signal.aborted) {
    console.log('');
    await kafkaStores(runs, seconds, kafkaProc);
  }
}

/** Part 1: floors and lockq on both brokers, distinct locks and the hot lock. */
async function lockqOnBothBrokers(runs: number, seconds: number, kafkaProc: BrokerProcess | undefined, rabbitProc: BrokerProcess | undefined): Promise<void> {
  let rabbitFloor: Floor | undefined;
  let kafkaFloor: Floor | undefined;
  let rabbitLockq: LockqAmqpSystem | undefined;
  let kafkaLockq: LockqKafkaSystem | undefined;
  let processes: WorkerProcesses | undefined;
  const processAddresses = new Map<string, string[]>();
  try {
    progress(`connecting ${WORKERS} floor requesters and ${WORKERS} lockq clients on each broker`);
    rabbitFloor = await open('raw RabbitMQ floor', AMQP_URL, () => openFloor(WORKERS));
    rabbitLockq = await open('lockq over RabbitMQ', AMQP_URL, () => openLockqAmqp({ workers: WORKERS }));
    kafkaFloor = await open('raw Kafka floor', KAFKA_URL, () => openKafkaFloor(WORKERS));
    kafkaLockq = await open('lockq over Kafka', KAFKA_URL, () => openLockqKafka({ workers: WORKERS }));
    const systems = [
      ...(rabbitLockq === undefined ? [] : [{ key: 'RabbitMQ', url: AMQP_URL, prefix: rabbitLockq.prefix }]),
      ...(kafkaLockq === undefined ? [] : [{ key: 'Kafka', url: KAFKA_URL, prefix: kafkaLockq.prefix }]),
    ];
    if (systems.length > 0) {
      progress(`starting ${WORKERS} worker processes, each with a client of ${systems.map((s) => s.key).join(' and ')}`);
      processes = await open('worker processes', KAFKA_URL, () => startWorkerProcesses(WORKERS, systems, processAddresses));
    }

    const configs: Config[] = [];
    const add = (c: Omit<Config, 'results' | 'cpu' | 'batchRates'>) => configs.push({ ...c, results: [], cpu: [], batchRates: [] });
    const brokers = [
      { broker: 'RabbitMQ' as const, floor: rabbitFloor, lockq: rabbitLockq, proc: rabbitProc },
      { broker: 'Kafka' as const, floor: kafkaFloor, lockq: kafkaLockq, proc: kafkaProc },
    ];
    for (const n of DISTINCT) {
      const workload = `distinct x${n}`;
      for (const b of brokers) {
        if (b.floor !== undefined) add({ section: 'distinct', workload, broker: b.broker, system: 'floor (round trips/s)', brokerProcess: b.proc, run: floorRun(b.floor, n, seconds) });
        const lockq = b.lockq;
        if (lockq !== undefined) {
          add({
            section: 'distinct',
            workload,
            broker: b.broker,
            system: 'lockq',
            brokerProcess: b.proc,
            batches: () => lockq.coordinator.stats.total('batches'),
            run: (namespace) => distinctLocks(lockq, n, { seconds, namespace }),
          });
        }
      }
    }
    for (const hold of HOLDS) {
      const workload = `hot x${WORKERS} hold ${hold} ms`;
      for (const b of brokers) {
        const lockq = b.lockq;
        if (lockq === undefined || processes === undefined) continue;
        const system = processes.system(b.broker, `lockq, ${WORKERS} processes`, () => lockq.messages());
        add({
          section: 'hot',
          workload,
          broker: b.broker,
          system: system.label,
          brokerProcess: b.proc,
          batches: () => lockq.coordinator.stats.total('batches'),
          run: (namespace) => hotLock(system, hold, { seconds, namespace }),
        });
      }
    }
    await runRounds(configs, runs, seconds);

    console.log('');
    console.log('lockq: coordinator in this process (one partition, MemoryStore): on RabbitMQ AmqpServerTransport, on Kafka KafkaServerTransport (identity off);');
    console.log(`       distinct: one LockClient per simulated worker in this process, each with its own connection (Kafka: its own kafkajs client and reply group)`);
    console.log(`       hot: ${WORKERS} worker processes, each with one LockClient per broker; the workload drives them over IPC, so every hand-off crosses the broker`);
    console.log('floor: RabbitMQ: amqplib no-op responder on lockq’s topology (floor.ts); Kafka: kafkajs no-op responder on lockq’s topics, a transaction per batch with');
    console.log('       sendOffsets, requesters reading their reply partition read_committed (floor-kafka.ts); one connection or kafkajs client per requester');
    console.log(`broker CPU: the broker process's CPU seconds per second during the configuration (1 = one core)${kafkaProc === undefined ? '; Kafka broker not found in /proc' : `; Kafka pid ${kafkaProc.pid}`}${rabbitProc === undefined ? ', RabbitMQ not found in /proc' : `, RabbitMQ pid ${rabbitProc.pid}`}`);
    console.log('batches/s: coordinator batches (on Kafka each is one transaction); msgs/acq: records or messages both sides wrote per acquisition');
    console.log('');
    console.log('distinct locks: cycles/s (floor: round trips/s), acquire latency');
    printTable(
      ['workload', 'broker', 'system', 'rate/s', 'p50 ms', 'p99 ms', 'msgs/acq', 'batches/s', 'broker CPU'],
      configs
        .filter((c) => c.section === 'distinct')
        .map((c) => {
          const f = medians(c.results);
          return [c.workload, c.broker, c.system, cell(f.rate), ms(f.p50), ms(f.p99), cell(f.perAcquisition, 2), cell(median(c.batchRates)), cell(median(c.cpu), 2)];
        }),
      (i) => i >= 3,
    );
    console.log('');
    console.log(`one hot lock, ${WORKERS} workers in processes of their own: hand-offs/s; wait from asking to holding; gap = previous release call to next grant`);
    printTable(
      ['workload', 'broker', 'system', 'hand-offs/s', 'wait p50', 'wait p99', 'wait max', 'Jain', 'msgs/acq', 'gap p50', 'batches/s', 'broker CPU'],
      configs
        .filter((c) => c.section === 'hot')
        .map((c) => {
          const f = medians(c.results);
          return [c.workload, c.broker, c.system, cell(f.rate), ms(f.p50), ms(f.p99), ms(f.max), cell(f.jain, 3), cell(f.perAcquisition, 2), ms(f.gap), cell(median(c.batchRates)), cell(median(c.cpu), 2)];
        }),
      (i) => i >= 3,
    );

    console.log('');
    console.log('targets (Kafka; RabbitMQ beside for comparison)');
    for (const b of brokers) {
      const floor64 = find(configs, 'distinct', 'distinct x64', b.broker, 'floor (round trips/s)');
      const lockq64 = find(configs, 'distinct', 'distinct x64', b.broker, 'lockq');
      if (floor64 === undefined || lockq64 === undefined) continue;
      const want = (TARGET_FLOOR_SHARE * floor64.rate) / 2;
      const text = `distinct x64 on ${b.broker}: lockq ${fmt(lockq64.rate)} cycles/s ≥ 70% of floor ${fmt(floor64.rate)} round trips/s ÷ 2 = ${fmt(want)}  (${percent(lockq64.rate / (floor64.rate / 2))})`;
      if (b.broker === 'Kafka') verdict(lockq64.rate >= want, text);
      else console.log(`  i ${text}`);
    }
    for (const b of brokers) {
      const hot5 = find(configs, 'hot', `hot x${WORKERS} hold 5 ms`, b.broker, `lockq, ${WORKERS} processes`);
      if (hot5 === undefined) continue;
      const ok = hot5.rate >= TARGET_HOT_RATE && hot5.jain >= TARGET_HOT_JAIN && hot5.max < TARGET_HOT_MAX_WAIT_MS;
      const text = `hot lock hold 5 ms on ${b.broker}, ${WORKERS} processes: ${fmt(hot5.rate)} hand-offs/s ≥ ${TARGET_HOT_RATE}, Jain ${cell(hot5.jain, 3)} ≥ ${TARGET_HOT_JAIN}, max wait ${ms(hot5.max)} ms < ${fmt(TARGET_HOT_MAX_WAIT_MS)}`;
      if (b.broker === 'Kafka') verdict(ok, text);
      else console.log(`  i ${text}`);
    }
    if (kafkaFloor === undefined || kafkaLockq === undefined) console.log('  (the Kafka targets need lockq and the floor on Kafka: the broker was not reachable)');
  } finally {
    progress('cleaning up worker processes, topics, groups and queues');
    const report = (what: string) => (err: unknown) => console.log(`!! cleaning up ${what} failed: ${String(err)}`);
    await processes?.close().catch(report('the worker processes'));
    await kafkaLockq?.close().catch(report('lockq over Kafka'));
    await rabbitLockq?.close().catch(report('lockq over RabbitMQ'));
    const processQueues = processAddresses.get('RabbitMQ') ?? [];
    if (processQueues.length > 0) await deleteTopology(processQueues, []).catch(report("the worker processes' reply queues"));
    await kafkaFloor?.close().catch(report('the Kafka floor'));
    await rabbitFloor?.close().catch(report('the RabbitMQ floor'));
  }
}

/** Part 2: lockq over Kafka with the Kafka store against the Redis store, distinct locks. */
async function kafkaStores(runs: number, seconds: number, kafkaProc: BrokerProcess | undefined): Promise<void> {
  console.log('kafka stores: lockq over Kafka with --store kafka: vs the Redis store (medians over rounds)');
  const keyPrefix = `lockq-bench-kstore-${randomUUID().slice(0, 8)}`;
  let redisStored: LockqKafkaSystem | undefined;
  let kafkaStored: LockqKafkaSystem | undefined;
  try {
    progress(`connecting 2 x ${WORKERS} lockq clients over Kafka`);
    redisStored = await open('lockq over Kafka, Redis store', REDIS_URL, () =>
      openLockqKafka({ workers: WORKERS, label: 'lockq, Redis store', store: () => new RedisStore({ url: REDIS_URL, keyPrefix }) }),
    );
    kafkaStored = await open('lockq over Kafka, Kafka store', KAFKA_URL, () => openLockqKafka({ workers: WORKERS, label: 'lockq, Kafka store', store: (transport) => new KafkaStore({ transport }) }));
    const configs: Config[] = [];
    for (const n of STORE_SIZES) {
      for (const system of [redisStored, kafkaStored]) {
        if (system === undefined) continue;
        configs.push({
          section: 'store',
          workload: `distinct x${n}`,
          broker: 'Kafka',
          system: system.label,
          brokerProcess: kafkaProc,
          batches: () => system.coordinator.stats.total('batches'),
          run: (namespace) => distinctLocks(system as LockSystem, n, { seconds, namespace }),
          results: [],
          cpu: [],
          batchRates: [],
        });
      }
    }
    await runRounds(configs, runs, seconds);

    console.log('');
    console.log(`lockq over Kafka, coordinator in this process; Redis store at ${REDIS_URL} (key prefix ${keyPrefix}): one Lua append per batch before its transaction commits;`);
    console.log('       Kafka store: the batch’s journal entry in the changelog topic, in the same transaction as its replies and offsets');
    printTable(
      ['workload', 'store', 'cycles/s', 'p50 ms', 'p99 ms', 'msgs/acq', 'batches/s', 'broker CPU'],
      configs.map((c) => {
        const f = medians(c.results);
        return [c.workload, c.system, cell(f.rate), ms(f.p50), ms(f.p99), cell(f.perAcquisition, 2), cell(median(c.batchRates)), cell(median(c.cpu), 2)];
      }),
      (i) => i >= 2,
    );
    console.log('');
    console.log('targets');
    for (const n of STORE_SIZES) {
      const redis = find(configs, 'store', `distinct x${n}`, 'Kafka', 'lockq, Redis store');
      const kafka = find(configs, 'store', `distinct x${n}`, 'Kafka', 'lockq, Kafka store');
      if (redis === undefined || kafka === undefined) continue;
      const ratio = kafka.rate / redis.rate;
      const text = `Kafka store at ${n} workers: ${fmt(kafka.rate)} cycles/s ≥ 75% of the Redis store's ${fmt(redis.rate)}  (${percent(ratio)})`;
      if (n === WORKERS) verdict(ratio >= TARGET_STORE_RATIO, text);
      else console.log(`  i ${text}`);
    }
  } finally {
    progress('cleaning up topics, groups and keys');
    const report = (what: string) => (err: unknown) => console.log(`!! cleaning up ${what} failed: ${String(err)}`);
    await redisStored?.close().catch(report('lockq over Kafka (Redis store)'));
    await kafkaStored?.close().catch(report('lockq over Kafka (Kafka store)'));
    if (redisStored !== undefined) await deleteStoreKeys(keyPrefix).catch(report('the Redis store keys'));
  }
}

async function deleteStoreKeys(keyPrefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: true });
  redis.on('error', () => {});
  try {
    await redis.connect();
    await deleteKeys(redis, `{${keyPrefix}:*`);
  } finally {
    redis.disconnect();
  }
}
