/**
 * Fault scenario 4 — RabbitMQ restarts under load.
 *
 * !!! THIS TEST RESTARTS THE SHARED RABBITMQ BROKER (`rabbitmqctl stop_app && rabbitmqctl
 * start_app`): every client of the local broker is disconnected for the duration, including
 * other suites'. It runs in the sequential faults pass (vitest.faults.config.ts), after every
 * other suite, for that reason; do not run it while anything else uses the broker. !!!
 *
 * Two `lockq coordinator` processes (active + standby, same prefix, this test's own redis-server
 * as the store) serve 4 increment workers and a FIFO gate plus 4 waiters. While the waiters are
 * queued, the broker application is stopped and started again, and the test waits until it
 * answers AMQP. Quorum queues keep the requests they hold; both coordinators and every worker
 * reconnect (workers re-send what was in flight, with the same ids), one coordinator consumes
 * each partition again, and the load goes on. The time from the broker answering again to the
 * first grant is printed. Then the history is checked (test/support/faults-history.ts): no double
 * grant, tokens strictly increasing per lock, no lost waiter, FIFO in the gated round, counters
 * equal to the accepted writes.
 *
 * Environment:
 *   LOCKQ_FAULT_SEED             seed of every random choice (printed; default 20240611)
 *   LOCKQ_FAULT_RABBIT_RESTARTS  broker restarts (default 1)
 *
 * Needs rabbitmqctl to reach the local node (it is skipped with a loud message otherwise, and
 * fails under CI=true).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { requireRabbit } from '../support/brokers.js';
import { between, envInt, faultSeed, percentile, summarize } from '../support/faults-history.js';
import { rabbitmqctlWorks, restartRabbitApp } from '../support/faults-rabbitmq.js';
import { FaultRig } from '../support/faults-rig.js';
import { requireRedisServer } from '../support/faults-redis.js';
import { elapse } from '../support/wait-for.js';

const rabbit = (await requireRabbit()) && (await requireRedisServer());
const ctl = rabbit && (await rabbitmqctlWorks());
if (rabbit && !ctl) {
  if (process.env.CI === 'true') throw new Error('rabbitmqctl cannot reach the local RabbitMQ node and CI=true');
  console.warn('\n\n*** RABBITMQCTL CANNOT REACH THE BROKER: the RabbitMQ-restart fault test is SKIPPED. ***\n\n');
}
const RESTARTS = envInt('LOCKQ_FAULT_RABBIT_RESTARTS', 1);

let rig: FaultRig | undefined;
afterEach(async () => {
  await rig?.destroy();
  rig = undefined;
});

describe.skipIf(!ctl)('fault: RabbitMQ restarts under load (restarts the shared broker)', () => {
  it(
    `survives ${RESTARTS} broker restart(s) with no double grant, no lost waiter, FIFO and tokens intact`,
    async () => {
      const seed = faultSeed();
      console.log(`[rabbitmq-restart] LOCKQ_FAULT_SEED=${seed} LOCKQ_FAULT_RABBIT_RESTARTS=${RESTARTS}`);
      // Requests in flight wait out the outage: the SDK re-sends them after its reconnect.
      const { rig: r, began } = await FaultRig.underLoad({ name: 'rabbit', seed, requestTimeoutMs: 120_000 });
      rig = r;

      const recoveries: number[] = [];
      for (let i = 0; i < RESTARTS; i++) {
        await elapse(between(r.random, 200, 1500));
        const restart = async () => {
          const { stoppedAt, backAt } = await restartRabbitApp();
          const first = await r.firstGrantAfter(backAt, 120_000);
          await r.progress(20, 120_000);
          recoveries.push(first.at - backAt);
          // Both coordinators lost the broker and came back (neither gave up and exited); the
          // standby may take a few more seconds (reconnect backoff up to 5 s).
          expect(r.live).toHaveLength(2);
          const reconnected = await Promise.all(
            r.live.map(async (c) => Number((await c.waitFor('"reconnected"', (l) => l.msg === 'reconnected' && Number(l.time) >= stoppedAt, 60_000)).time) - backAt),
          );
          console.log(
            `[rabbitmq-restart] restart ${i + 1}/${RESTARTS}: broker down for ${backAt - stoppedAt} ms (stop_app to answering); ` +
              `first grant ${first.at - backAt} ms after; coordinators reconnected ${reconnected.join(' ms, ')} ms after; ` +
              `claims since: [${r.live.flatMap((c) => c.logged('partition claimed', stoppedAt).map((l) => `${c.name}:${l.partition}@${l.epoch}`)).join(' ')}]`,
          );
        };
        if (i === 0) await r.fifoRound(restart);
        else await restart();
      }
      await r.progress(20, 60_000);

      const hung = await r.stopWorkers();
      const report = r.check();
      console.log(
        `[rabbitmq-restart] broker answering -> first grant p50 ${percentile(recoveries, 50)} ms, max ${Math.max(...recoveries)} ms; ` +
          `${r.rounds.length} FIFO rounds; ${summarize(report)}; ${((Date.now() - began) / 1000).toFixed(1)} s`,
      );
      if (report.problems.length > 0 || hung.length > 0) console.log(r.diagnostics());
      if (report.problems.length > 0 || hung.length > 0 || process.env.LOCKQ_FAULT_DUMP === '1') console.log(`the whole run: ${r.dump()}`);
      expect(hung).toEqual([]);
      expect(report.problems).toEqual([]);
      expect(recoveries).toHaveLength(RESTARTS);
    },
    180_000 + RESTARTS * 180_000,
  );
});
