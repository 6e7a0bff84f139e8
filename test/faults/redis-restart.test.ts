/**
 * Fault scenario 3 — the Redis store goes away under load and comes back on the same data.
 *
 * Two `lockq coordinator` processes (active + standby) use this test's own redis-server (AOF on,
 * `appendfsync always`, its own directory and port; never the shared Redis) with 4 increment
 * workers and a FIFO gate plus 4 waiters. At seeded moments Redis is stopped — in one test with
 * kill -9, in the other with a clean SHUTDOWN — kept down for 3 s the first time and a seeded
 * 0.2–3.5 s after that, and started again on the same directory (the AOF). Every other restart
 * happens while FIFO waiters are queued. The coordinators must notice the lost connection. A
 * store operation waits for the connection up to the store's connectTimeoutMs (2 s) and fails
 * after that (kill -9 also fails the commands in flight at once): then the coordinator drops its
 * in-memory state (nothing of a batch that was not made durable was published), holds its batch
 * while the store is down, and re-claims from Redis once it is back — at least the 3 s outage
 * must take that path. Across every restart the epoch only rises, the token ceiling never goes
 * back, and the load goes on. Then the history is checked (test/support/faults-history.ts): no double grant, tokens
 * strictly increasing per lock across every restart, no lost waiter, FIFO in every gated round,
 * counters equal to the accepted writes.
 *
 * Environment:
 *   LOCKQ_FAULT_SEED            seed of every random choice (printed; default 20240611)
 *   LOCKQ_FAULT_REDIS_RESTARTS  restarts per test (default 3; so 3 kill -9 and 3 clean restarts)
 *
 * Uses the shared RabbitMQ (never restarted here) and its own redis-server child process.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { requireRabbit } from '../support/brokers.js';
import { between, envInt, faultSeed, percentile, summarize } from '../support/faults-history.js';
import { CLAIMED, DROPPED } from '../support/faults-processes.js';
import { FaultRig } from '../support/faults-rig.js';
import { requireRedisServer } from '../support/faults-redis.js';
import { elapse } from '../support/wait-for.js';

const ready = (await requireRabbit()) && (await requireRedisServer());
const RESTARTS = envInt('LOCKQ_FAULT_REDIS_RESTARTS', 3);
/** Logged by the runtime while it holds a batch through a store outage. */
const HOLDING = 'state store unavailable; holding the batch and retrying';
/** Logged by the Redis store once per lost connection. */
const LOST_REDIS = 'lost the connection to Redis; reconnecting';

let rig: FaultRig | undefined;
afterEach(async () => {
  await rig?.destroy();
  rig = undefined;
});

async function restarts(kind: 'kill' | 'shutdown'): Promise<void> {
  const seed = faultSeed() + (kind === 'kill' ? 0 : 1);
  console.log(`[redis-restart] ${kind}: LOCKQ_FAULT_SEED=${faultSeed()} LOCKQ_FAULT_REDIS_RESTARTS=${RESTARTS}`);
  const { rig: r, partitions, began } = await FaultRig.underLoad({ name: `redis-${kind}`, seed });
  rig = r;

  const key = (p: number, name: string) => `{${r.prefix}:p${p}}:${name}`;
  const read = async (name: string) => Promise.all(partitions.map(async (p) => Number(await r.redis.command('GET', key(p, name)))));
  const recoveries: number[] = [];
  for (let i = 0; i < RESTARTS; i++) {
    await elapse(between(r.random, 200, 1500));
    const restart = async () => {
      const epochs = await read('epoch');
      const ceilings = await read('ceiling');
      const downAt = Date.now();
      if (kind === 'kill') await r.redis.kill();
      else await r.redis.shutdown();
      // The first outage outlasts the store's 2 s wait for a connection, so commits fail for sure.
      const outage = i === 0 ? 3000 : between(r.random, 200, 3500);
      await elapse(outage);
      await r.redis.start();
      const upAt = Date.now();
      const first = await r.firstGrantAfter(upAt, 60_000);
      // Every partition whose state was dropped has been claimed again since.
      for (const c of r.live) {
        for (const p of new Set(c.logged(DROPPED, downAt).map((l) => l.partition))) {
          await c.waitFor(`a new claim of partition ${p}`, (l) => l.msg === CLAIMED && l.partition === p && Number(l.time) >= downAt, 60_000);
        }
      }
      await r.progress(10, 60_000);
      const dropped = r.live.flatMap((c) => c.logged(DROPPED, downAt));
      const held = r.live.flatMap((c) => c.logged(HOLDING, downAt));
      const reclaimed = r.live.flatMap((c) => c.logged(CLAIMED, downAt));
      recoveries.push(first.at - upAt);
      console.log(
        `[redis-restart] ${kind} ${i + 1}/${RESTARTS}: down ${upAt - downAt} ms (outage ${outage} ms + start); ` +
          `${dropped.length} state drops, ${held.length} holding lines, re-claimed partitions [${reclaimed.map((l) => `${l.partition}@${l.epoch}`).join(' ')}]; ` +
          `first grant ${first.at - upAt} ms after Redis was back`,
      );
      // The outage was noticed; one longer than the store's wait for a connection failed commits,
      // and the state was then re-read from Redis.
      expect(r.live.some((c) => c.logged(LOST_REDIS, downAt).length > 0)).toBe(true);
      if (i === 0) {
        expect(dropped.length + held.length).toBeGreaterThan(0);
        expect(reclaimed.length).toBeGreaterThan(0);
      }
      // What Redis acknowledged survived the restart: epochs only rise, the ceiling never goes back.
      const epochsAfter = await read('epoch');
      const ceilingsAfter = await read('ceiling');
      partitions.forEach((p) => {
        expect(epochsAfter[p]).toBeGreaterThanOrEqual(epochs[p] ?? 0);
        expect(ceilingsAfter[p]).toBeGreaterThanOrEqual(ceilings[p] ?? 0);
      });
    };
    if (i % 2 === 0) await r.fifoRound(restart);
    else await restart();
  }
  await r.progress(20, 30_000);

  const hung = await r.stopWorkers();
  const report = r.check();
  console.log(
    `[redis-restart] ${kind}: Redis back -> first grant p50 ${percentile(recoveries, 50)} ms, max ${Math.max(...recoveries)} ms; ` +
      `${r.rounds.length} FIFO rounds; ${summarize(report)}; ${((Date.now() - began) / 1000).toFixed(1)} s`,
  );
  if (report.problems.length > 0 || hung.length > 0) console.log(`${r.diagnostics()}\nredis log:\n${r.redis.log()}`);
  if (report.problems.length > 0 || hung.length > 0 || process.env.LOCKQ_FAULT_DUMP === '1') console.log(`the whole run: ${r.dump()}`);
  expect(hung).toEqual([]);
  expect(report.problems).toEqual([]);
  expect(recoveries).toHaveLength(RESTARTS);
}

describe.skipIf(!ready)('fault: the Redis store restarts under load', () => {
  it(`survives ${RESTARTS} kill -9 restarts of Redis (AOF, appendfsync always)`, () => restarts('kill'), 120_000 + RESTARTS * 60_000);
  it(`survives ${RESTARTS} clean restarts of Redis (SHUTDOWN, then start)`, () => restarts('shutdown'), 120_000 + RESTARTS * 60_000);
});
