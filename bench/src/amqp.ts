import { type Floor, openFloor } from './floor.js';
import { AMQP_URL, type LockqAmqpSystem, openLockqAmqp } from './lockq-amqp.js';
import { openRedisPeers, PEER_VARIANTS, REDIS_URL, type RedisPeers } from './peers.js';
import { cell, ms, printTable, progress, verdict } from './report.js';
import { fmt, percentile } from './stats.js';
import { distinctLocks, type Figures, hotLock, interruption, type LockSystem, medians, NOT_MEASURED, sleep, withDeadline } from './workload.js';

/**
 * `npm run bench -- amqp`: lockq over RabbitMQ, the raw broker floor under it, and the Redis
 * peers, under the same workloads, side by side in one run. Every configuration runs once per
 * round and rounds repeat LOCKQ_BENCH_RUNS times, so a slow stretch of a shared machine hits
 * every system alike; each figure is the median over the rounds.
 */

const WORKERS = 64;
const DISTINCT = [1, 8, 64] as const;
const HOLDS = [0, 5] as const;

interface Config {
  readonly section: 'distinct' | 'hot';
  readonly workload: string;
  readonly system: string;
  readonly run: (namespace: string) => Promise<Figures>;
  readonly results: Figures[];
}

function floorRun(floor: Floor, n: number, seconds: number): () => Promise<Figures> {
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

/**
 * Jain's index of a perfectly fair FIFO over a finite window: with `m` grants per worker on
 * average, counts are ⌊m⌋ or ⌈m⌉, which caps the index below 1 when m is small.
 */
function roundRobinJain(m: number): number {
  const f = m - Math.floor(m);
  return m === 0 ? Number.NaN : (m * m) / (m * m + f * (1 - f));
}

export async function amqpSuite(runs: number, seconds: number): Promise<void> {
  console.log('amqp: lockq over RabbitMQ vs the raw broker floor vs Redis peers (medians over rounds)');
  let floor: Floor | undefined;
  let lockq: LockqAmqpSystem | undefined;
  let viaBroker: LockqAmqpSystem | undefined;
  let peers: RedisPeers | undefined;
  try {
    progress(`connecting ${WORKERS} floor requesters, ${WORKERS} lockq clients and ${WORKERS} Redis connections`);
    floor = await open('raw floor', AMQP_URL, () => openFloor(WORKERS));
    lockq = await open('lockq over RabbitMQ', AMQP_URL, () => openLockqAmqp({ workers: WORKERS }));
    // The same, but every hand-off crosses the broker, as when each worker is its own process.
    viaBroker = await open('lockq over RabbitMQ (hand-off via broker)', AMQP_URL, () => openLockqAmqp({ workers: WORKERS, localHandOff: false, label: 'lockq (hand-off via broker)' }));
    peers = await open('Redis peers', REDIS_URL, () => openRedisPeers(WORKERS));

    const configs: Config[] = [];
    const add = (section: Config['section'], workload: string, system: string, run: Config['run']) =>
      configs.push({ section, workload, system, run, results: [] });
    const peerSystems: LockSystem[] = peers === undefined ? [] : Object.values(peers.systems);
    for (const n of DISTINCT) {
      const workload = `distinct x${n}`;
      if (floor !== undefined) add('distinct', workload, 'floor (round trips/s)', floorRun(floor, n, seconds));
      for (const s of lockq === undefined ? peerSystems : [lockq, ...peerSystems]) {
        add('distinct', workload, s.label, (namespace) => distinctLocks(s, n, { seconds, namespace }));
      }
    }
    for (const hold of HOLDS) {
      const workload = `hot x${WORKERS} hold ${hold} ms`;
      for (const s of [lockq, viaBroker, ...peerSystems].filter((x): x is LockSystem => x !== undefined)) {
        add('hot', workload, s.label, (namespace) => hotLock(s, hold, { seconds, namespace }));
      }
    }

    for (let round = 0; round < runs && !interruption.signal.aborted; round++) {
      for (const c of configs) {
        if (interruption.signal.aborted) break;
        progress(`round ${round + 1}/${runs}: ${c.workload}, ${c.system}`);
        c.results.push(await withDeadline(`${c.workload}, ${c.system}`, seconds * 1000 + 120_000, c.run(`r${round}`)));
        await sleep(100); // let the broker and the collector catch up between configurations
      }
    }

    console.log('');
    console.log(`lockq: coordinator in this process (AmqpServerTransport, MemoryStore); one LockClient per simulated worker, each with its own AMQP connection (AmqpClientTransport)`);
    console.log(`       a hand-off to a client in the same process skips the broker (localHandOff); 'hand-off via broker' turns that off, as for workers in separate processes`);
    console.log(`floor: amqplib no-op responder on the same topology (quorum request queue, confirms both sides, prefetch 256, manual acks); one connection per requester`);
    if (peers !== undefined) {
      console.log(`peers: Redis ${peers.serverVersion} at ${REDIS_URL}, one ioredis connection per simulated worker; msgs/acq counts Redis commands`);
      for (const v of Object.values(PEER_VARIANTS)) console.log(`       ${v.note}`);
    }
    console.log('msgs/acq (lockq): broker publishes on both sides (requests + replies) per acquisition');
    console.log('');
    console.log('distinct locks: cycles/s (floor: round trips/s), acquire latency');
    printTable(
      ['workload', 'system', 'rate/s', 'p50 ms', 'p99 ms', 'msgs/acq'],
      configs.filter((c) => c.section === 'distinct').map((c) => {
        const f = medians(c.results);
        return [c.workload, c.system, cell(f.rate), ms(f.p50), ms(f.p99), cell(f.perAcquisition, 2)];
      }),
      (i) => i >= 2,
    );
    console.log('');
    console.log(`one hot lock, ${WORKERS} workers: hand-offs/s; wait from asking to holding (a wait still open when the window ends counts as long as it was); gap = previous release call to next grant`);
    printTable(
      ['workload', 'system', 'hand-offs/s', 'wait p50', 'wait p99', 'wait max', 'Jain', 'msgs/acq', 'gave up/acq', 'gap p50'],
      configs.filter((c) => c.section === 'hot').map((c) => {
        const f = medians(c.results);
        return [c.workload, c.system, cell(f.rate), ms(f.p50), ms(f.p99), ms(f.max), cell(f.jain, 3), cell(f.perAcquisition, 2), cell(f.gaveUp, 2), ms(f.gap)];
      }),
      (i) => i >= 2,
    );

    const find = (workload: string, system: string) => {
      const c = configs.find((x) => x.workload === workload && x.system === system);
      return c === undefined || c.results.length === 0 ? undefined : medians(c.results);
    };
    console.log('');
    console.log('targets');
    const floor64 = find('distinct x64', 'floor (round trips/s)');
    const floor1 = find('distinct x1', 'floor (round trips/s)');
    const lockq64 = find('distinct x64', 'lockq');
    const lockq1 = find('distinct x1', 'lockq');
    const hot5 = find(`hot x${WORKERS} hold 5 ms`, 'lockq');
    if (floor64 !== undefined && lockq64 !== undefined) {
      const want = (0.7 * floor64.rate) / 2;
      verdict(lockq64.rate >= want, `distinct x64: lockq ${fmt(lockq64.rate)} cycles/s ≥ 70% of floor ${fmt(floor64.rate)} round trips/s ÷ 2 = ${fmt(want)}  (${fmt((100 * lockq64.rate) / (floor64.rate / 2))}%)`);
    }
    if (floor1 !== undefined && lockq1 !== undefined) {
      const want = 1.3 * floor1.p50;
      verdict(lockq1.p50 <= want, `uncontended acquire p50: lockq ${ms(lockq1.p50)} ms ≤ 1.3 × floor ${ms(floor1.p50)} ms = ${ms(want)} ms  (${fmt(lockq1.p50 / floor1.p50, 2)}×)`);
    }
    if (hot5 !== undefined) {
      verdict(
        hot5.rate >= 190 && hot5.max < 500 && hot5.jain >= 0.99,
        `hot lock hold 5 ms: ${fmt(hot5.rate)} hand-offs/s ≥ 190, max wait ${ms(hot5.max)} ms < 500, Jain ${cell(hot5.jain, 3)} ≥ 0.99` +
          `  (strict round robin over this window would score ${cell(roundRobinJain((hot5.rate * seconds) / WORKERS), 3)})`,
      );
    }
    const hot5broker = find(`hot x${WORKERS} hold 5 ms`, 'lockq (hand-off via broker)');
    if (hot5 !== undefined && hot5broker !== undefined && floor1 !== undefined) {
      // Through the coordinator a hand-off is a round trip (release in, grant out); forwarded, it
      // is one hop through the broker, or none between clients of one process.
      const bound = 1000 / (5 + floor1.p50);
      console.log(
        `  i through the coordinator a hand-off is a round trip, at most 1000 / (5 ms + floor p50 ${ms(floor1.p50)} ms) = ${fmt(bound)} hand-offs/s here.` +
          ` Forwarded holder to successor it is one broker hop (gap p50 ${ms(hot5broker.gap)} ms: ${fmt(hot5broker.rate)} hand-offs/s),` +
          ` or none in one process (gap p50 ${ms(hot5.gap)} ms)`,
      );
    }
    if (floor === undefined || lockq === undefined) console.log('  (targets need both lockq and the floor: RabbitMQ was not reachable)');
  } finally {
    progress('cleaning up queues and keys');
    const report = (what: string) => (err: unknown) => console.log(`!! cleaning up ${what} failed: ${String(err)}`);
    await lockq?.close().catch(report('lockq'));
    await viaBroker?.close().catch(report('lockq (hand-off via broker)'));
    await floor?.close().catch(report('the floor'));
    await peers?.close().catch(report('the Redis peers'));
  }
}
