/**
 * Kafka fault scenario — the coordinator SIGKILL test of RabbitMQ (coordinator-kill.test.ts), on
 * Kafka: a coordinator is killed under load and restarted at once, again and again.
 *
 * Two `lockq coordinator --transport kafka://… --identity off` processes share 4 partitions and
 * a durable store (the rig's redis-server, then `--store kafka:`); on Kafka both are active (the group gives each 2),
 * where on RabbitMQ one is the standby. At seeded random moments a random one is killed with
 * SIGKILL and a new one started at once, as a supervisor would: the newcomer's join starts a
 * rebalance, which waits for the dead members until the broker drops them (the session
 * timeout); then the dead one's partitions go to the survivor or the newcomer, which claim them
 * (a new transactional producer fences the dead one's, the store's epoch rises, the state is
 * restored) and serve, and the group settles at 2 and 2. Every third kill hits the coordinator
 * deciding the FIFO lock while waiters are queued on it. Each move is timed per partition, from
 * the kill to the claim and to the first grant on that partition in the new term. Then the
 * history checks (test/support/faults-history.ts): no double grant, tokens strictly increasing
 * per lock across every take-over, no lost waiter, FIFO, counters equal to the accepted writes.
 * No acquire may fail: the request topic keeps every request the dead coordinator had not
 * committed, and the new owner reads them from the committed offset.
 *
 * Environment:
 *   LOCKQ_FAULT_SEED         seed of every random choice (printed; default 20240611)
 *   LOCKQ_KAFKA_FAULT_KILLS  kills (default 5; each costs about a session timeout)
 *   LOCKQ_KAFKA_SESSION_MS   the coordinators' group session timeout (default 3000)
 *   LOCKQ_KAFKA_FAULT_STORES the stores to run with, in turn (default redis,kafka)
 */
import { afterEach, describe, expect, it } from 'vitest';
import { requireKafka } from '../support/brokers.js';
import { between, envInt, faultSeed, percentile, summarize } from '../support/faults-history.js';
import {
  KAFKA_LOAD_TTL_MS,
  PROGRESS_MS,
  kafkaFaultBroker,
  kafkaFaultStores,
  ownershipProblems,
  type PartitionMove,
  partitionMoves,
  storeOption,
} from '../support/faults-kafka.js';
import { FaultRig } from '../support/faults-rig.js';
import { requireRedisServer } from '../support/faults-redis.js';
import { elapse, waitFor } from '../support/wait-for.js';

const ready = (await requireKafka()) && (await requireRedisServer());
const KILLS = envInt('LOCKQ_KAFKA_FAULT_KILLS', 5);
const SESSION_MS = envInt('LOCKQ_KAFKA_SESSION_MS', 3000);
const PARTITIONS = 4;

let rig: FaultRig | undefined;
afterEach(async () => {
  await rig?.destroy();
  rig = undefined;
});

for (const store of kafkaFaultStores()) {
  describe.skipIf(!ready)(`fault (Kafka, ${store} store): SIGKILL of a coordinator, restarted at once`, () => {
    it(
      `moves partitions ${KILLS} times with no double grant, no lost waiter, FIFO and tokens intact`,
      async ({ onTestFailed }) => {
        const seed = faultSeed();
        console.log(`[coordinator-kill.kafka] ${store} store, LOCKQ_FAULT_SEED=${seed} LOCKQ_KAFKA_FAULT_KILLS=${KILLS} LOCKQ_KAFKA_SESSION_MS=${SESSION_MS}`);
        const r = await FaultRig.start({
          name: 'kill-kafka',
          seed,
          broker: kafkaFaultBroker({ sessionTimeoutMs: SESSION_MS }),
          ...storeOption(store),
          partitions: PARTITIONS,
          counters: PARTITIONS,
          ttlMs: KAFKA_LOAD_TTL_MS,
          requestTimeoutMs: 60_000,
        });
        rig = r;
        // Any failure, a timeout included, leaves the whole run on disk.
        onTestFailed(() => console.log(`the whole run: ${r.dump()}`));
        const began = Date.now();
        const all = Array.from({ length: PARTITIONS }, (_, p) => p);
        await r.startCoordinator();
        await r.startCoordinator();
        await r.startWorkers();
        await r.takeover(began, all, 60_000);
        let problems: string[] = [];
        const settled = () =>
          waitFor(
            async () => {
              problems = await ownershipProblems(r);
              return problems.length === 0 && r.live.every((c) => r.ownedBy(c).length === PARTITIONS / 2);
            },
            () => `the group to settle at 2 and 2: ${problems.join('; ')}\n${r.diagnostics()}`,
            { timeoutMs: 60_000, intervalMs: 200 },
          );
        await settled();
        await r.progress(20, PROGRESS_MS);

        const fifoPartition = r.partitionOf(r.fifoLock);
        const moves: PartitionMove[] = [];
        for (let k = 0; k < KILLS; k++) {
          await elapse(between(r.random, 20, 1500));
          const fifo = k % 3 === 1;
          const victim = fifo ? r.owners().get(fifoPartition) : r.live[Math.floor(r.random() * r.live.length)];
          if (victim === undefined || !victim.alive) throw new Error(`no coordinator to kill before kill ${k + 1}\n${r.diagnostics()}`);
          const owned = r.ownedBy(victim);
          const kill = async () => {
            const killedAt = Date.now();
            victim.signal('SIGKILL');
            const restarted = r.startCoordinator(); // a supervisor restarts it at once
            const moved = await waitFor(
              () => partitionMoves(r, killedAt, owned, victim),
              () => `partitions ${owned.join(',')} of ${victim.name} to move\n${r.diagnostics()}`,
              { timeoutMs: 60_000 + 2 * SESSION_MS, intervalMs: 25 },
            );
            const newcomer = await restarted;
            await victim.exited;
            moves.push(...moved);
            console.log(
              `[coordinator-kill.kafka] kill ${k + 1}/${KILLS}: ${victim.name} (partitions ${owned.join(',')}), ${newcomer.name} started: ` +
                moved.map((v) => `p${v.partition} -> ${v.to.name} epoch ${v.epoch} claimed ${v.claimMs} ms, granted ${v.grantMs} ms`).join('; '),
            );
          };
          if (fifo) await r.fifoRound(kill);
          else await kill();
          await settled();
          await r.progress(20, PROGRESS_MS);
        }

        const hung = await r.stopWorkers();
        const report = r.check();
        const grant = moves.map((v) => v.grantMs);
        const claim = moves.map((v) => v.claimMs);
        console.log(
          `[coordinator-kill.kafka] ${store} store, session ${SESSION_MS} ms: kill -> first grant on a moved partition p50 ${percentile(grant, 50)} ms, max ${Math.max(...grant)} ms; ` +
            `kill -> claimed p50 ${percentile(claim, 50)} ms, max ${Math.max(...claim)} ms (n=${moves.length}); ` +
            `${r.rounds.length} FIFO rounds; ${summarize(report)}; ${((Date.now() - began) / 1000).toFixed(1)} s`,
        );
        if (report.problems.length > 0 || hung.length > 0) console.log(r.diagnostics());
        if (process.env.LOCKQ_FAULT_DUMP === '1') console.log(`the whole run: ${r.dump()}`);
        expect(hung).toEqual([]);
        expect(report.problems).toEqual([]);
        expect(r.rounds.length).toBeGreaterThan(0);
        // A killed coordinator's partitions wait for the broker to drop its members (the session
        // timeout, counted from their last heartbeat), then a rebalance and a claim: never much
        // sooner, and on this machine well within the session plus 15 s even under load.
        expect(Math.min(...claim)).toBeGreaterThanOrEqual(SESSION_MS / 2);
        expect(Math.max(...grant)).toBeLessThan(SESSION_MS + 15_000);
      },
      120_000 + KILLS * (40_000 + 3 * SESSION_MS),
    );
  });
}
