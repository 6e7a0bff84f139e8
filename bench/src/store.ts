import { randomUUID } from 'node:crypto';
import { partitionKeys, RedisStore } from '@lockq/coordinator';
import { Redis } from 'ioredis';
import { type EtcdServer, type EtcdSystems, openEtcd, startEtcd } from './etcd.js';
import { AMQP_URL, type LockqAmqpSystem, openLockqAmqp } from './lockq-amqp.js';
import { REDIS_URL } from './peers.js';
import { cell, ms, printTable, progress, verdict } from './report.js';
import { fmt } from './stats.js';
import { distinctLocks, type Figures, interruption, type LockSystem, medians, sleep, withDeadline } from './workload.js';

/**
 * `npm run bench -- store`: what the durable store costs. lockq over RabbitMQ with the
 * RedisStore (every batch journaled in Redis before it is answered) and with the MemoryStore,
 * side by side, on distinct locks; and etcd's own locks, uncontended, as the durable peer.
 * Rounds interleave the configurations as in the amqp suite; figures are medians.
 */

const WORKERS = 64;
const SIZES = [8, 64] as const;

interface Config {
  readonly label: string;
  readonly workers: number;
  readonly system: LockSystem;
  readonly results: Figures[];
}

export async function storeSuite(runs: number, seconds: number): Promise<void> {
  console.log('store: lockq with the RedisStore vs the MemoryStore over RabbitMQ, and etcd locks (medians over rounds)');
  const keyPrefix = `lockq-bench-store-${randomUUID().slice(0, 8)}`;
  let memory: LockqAmqpSystem | undefined;
  let durable: LockqAmqpSystem | undefined;
  let etcd: EtcdServer | undefined;
  let etcdSystems: EtcdSystems | undefined;
  let etcdSkipped: string | undefined;
  try {
    progress(`connecting 2 x ${WORKERS} lockq clients`);
    try {
      memory = await openLockqAmqp({ workers: WORKERS, label: 'lockq, MemoryStore' });
      durable = await openLockqAmqp({ workers: WORKERS, label: 'lockq, RedisStore', store: new RedisStore({ url: REDIS_URL, keyPrefix }) });
    } catch (err) {
      console.log(`!! store suite skipped: cannot run lockq over RabbitMQ at ${AMQP_URL.replace(/\/\/[^@]*@/, '//')} with Redis at ${REDIS_URL} (${err instanceof Error ? err.message : String(err)})`);
      return;
    }
    progress('starting etcd');
    const started = await startEtcd();
    if ('skipped' in started) etcdSkipped = started.skipped;
    else {
      etcd = started;
      etcdSystems = await openEtcd(etcd.endpoint, WORKERS).catch((err: unknown) => {
        etcdSkipped = `cannot use etcd at ${started.endpoint}: ${err instanceof Error ? err.message : String(err)}`;
        return undefined;
      });
    }

    const configs: Config[] = [];
    for (const n of SIZES) {
      for (const system of [memory, durable]) configs.push({ label: `${system.label}, distinct x${n}`, workers: n, system, results: [] });
    }
    if (etcdSystems !== undefined) {
      for (const system of [etcdSystems.session, etcdSystems.lockHelper]) {
        configs.push({ label: `${system.label}, distinct x${WORKERS}`, workers: WORKERS, system, results: [] });
      }
    }
    for (let round = 0; round < runs && !interruption.signal.aborted; round++) {
      for (const c of configs) {
        if (interruption.signal.aborted) break;
        progress(`round ${round + 1}/${runs}: ${c.label}`);
        const run = distinctLocks(c.system, c.workers, { seconds, namespace: `r${round}` });
        c.results.push(await withDeadline(c.label, seconds * 1000 + 120_000, run));
        await sleep(100);
      }
    }
    const m = new Map(configs.filter((c) => c.results.length > 0).map((c) => [c.label, medians(c.results)]));

    console.log('');
    console.log('lockq: coordinator in this process on RabbitMQ, one LockClient (own AMQP connection) per simulated worker;');
    console.log(`       RedisStore at ${REDIS_URL} (key prefix ${keyPrefix}): one Lua append per batch before its replies`);
    if (etcd !== undefined) {
      console.log(`etcd:  ${etcd.version}, single member at ${etcd.endpoint}, data dir ${etcd.dataDir} (fsync on); etcd3 npm client, one gRPC connection per client;`);
      console.log('       session lease = one lease per client granted up front, lock = put-if-absent txn on it, unlock = delete (2 RPCs);');
      console.log('       etcd3 client.lock() = as shipped: a lease per lock (grant, keep-alive stream, txn, revoke)');
    }
    console.log('');
    printTable(
      ['configuration', 'cycles/s', 'p50 ms', 'p99 ms', 'msgs/acq'],
      configs.map((c) => {
        const f = m.get(c.label) ?? medians([]);
        return [c.label, cell(f.rate), ms(f.p50), ms(f.p99), cell(f.perAcquisition, 2)];
      }),
      (i) => i >= 1,
    );
    if (etcdSkipped !== undefined) console.log(`!! etcd skipped: ${etcdSkipped}`);

    console.log('');
    console.log('targets');
    for (const n of SIZES) {
      const off = m.get(`${memory.label}, distinct x${n}`);
      const on = m.get(`${durable.label}, distinct x${n}`);
      if (off === undefined || on === undefined) continue;
      const cost = (100 * (off.rate - on.rate)) / off.rate;
      verdict(cost <= 25, `RedisStore cost at ${n} workers: ${fmt(cost, 1)}% ≤ 25%  (${fmt(on.rate)} vs ${fmt(off.rate)} cycles/s)`);
    }
    const durable64 = m.get(`${durable.label}, distinct x${WORKERS}`);
    const etcdBest = configs
      .filter((c) => etcdSystems !== undefined && (c.system === etcdSystems.session || c.system === etcdSystems.lockHelper))
      .map((c) => ({ label: c.system.label, rate: m.get(c.label)?.rate ?? Number.NaN }))
      .filter((e) => !Number.isNaN(e.rate))
      .sort((a, b) => b.rate - a.rate)[0];
    if (durable64 !== undefined && etcdBest !== undefined) {
      const want = 1.5 * etcdBest.rate;
      verdict(durable64.rate >= want, `lockq with RedisStore ${fmt(durable64.rate)} cycles/s ≥ 1.5 × the faster etcd line, ${etcdBest.label} ${fmt(etcdBest.rate)} = ${fmt(want)}  (${fmt(durable64.rate / etcdBest.rate, 2)}×)`);
    } else {
      console.log(`  - lockq with RedisStore ≥ 1.5 × etcd: not measured (${etcdSkipped ?? 'etcd unavailable'})`);
    }
  } finally {
    progress('cleaning up queues, keys and etcd');
    const report = (what: string) => (err: unknown) => console.log(`!! cleaning up ${what} failed: ${String(err)}`);
    await memory?.close().catch(report('lockq (MemoryStore)'));
    await durable?.close().catch(report('lockq (RedisStore)'));
    if (durable !== undefined) await deleteStoreKeys(keyPrefix).catch(report('the RedisStore keys'));
    await etcdSystems?.close().catch(report('the etcd clients'));
    await etcd?.stop().catch(report('etcd'));
  }
}

async function deleteStoreKeys(keyPrefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: true });
  redis.on('error', () => {});
  try {
    await redis.connect();
    await redis.del(...Object.values(partitionKeys(keyPrefix, 0)));
  } finally {
    redis.disconnect();
  }
}
