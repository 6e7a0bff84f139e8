/**
 * Kafka fault scenario — partitions move between coordinators: one is SIGKILLed, a new one joins.
 *
 * Three `lockq coordinator --transport kafka://… --identity off --partitions 8` processes share a
 * prefix and a durable store (the rig's own redis-server, then, in a second run, `--store kafka:`,
 * the partitions' changelogs on the same broker); Kafka's consumer group spreads the 8
 * partitions over them (3, 3, 2). Increment workers (processes) read-modify-write fenced
 * counters on locks of all 8 partitions; a gate and waiters run gated FIFO rounds. Each round a
 * coordinator is killed with SIGKILL (every other round the one deciding the FIFO lock, with
 * waiters queued on it): the broker drops its group members after the session timeout, the
 * survivors are given its partitions, claim them (a new transactional producer fences the dead
 * one's, the store's epoch rises, the state is restored) and serve. Then a new coordinator
 * joins and takes its share from the survivors (a clean revocation: the batch in progress
 * commits, the old owner drops its state, the new one claims). Every move is timed per
 * partition — from the kill (or the join) to the claim, and to the first grant a worker got on
 * that partition in the new term — and after each round the admin listeners (`/v1/locks`) must
 * show every partition active at exactly one process, the one that claimed it last. Then the
 * history checks (test/support/faults-history.ts): no double grant at the fenced resource,
 * tokens strictly increasing per lock across every move, no lost waiter, FIFO, counters equal to
 * the accepted writes.
 *
 * Environment:
 *   LOCKQ_FAULT_SEED        seed of every random choice (printed; default 20240611)
 *   LOCKQ_FAULT_MOVES       kill-and-join rounds (default 3)
 *   LOCKQ_KAFKA_SESSION_MS  the coordinators' group session timeout (default 3000)
 *   LOCKQ_KAFKA_FAULT_STORES  the stores to run with, in turn (default redis,kafka)
 *
 * Uses the shared Kafka (topics and groups under a prefix of its own, deleted after) and its own
 * redis-server child process.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { requireKafka } from '../support/brokers.js';
import { between, envInt, faultSeed, percentile, summarize } from '../support/faults-history.js';
import { KAFKA_LOAD_TTL_MS, PROGRESS_MS, kafkaFaultBroker, kafkaFaultStores, ownershipProblems, type PartitionMove, partitionMoves, storeOption } from '../support/faults-kafka.js';
import { FaultRig } from '../support/faults-rig.js';
import { requireRedisServer } from '../support/faults-redis.js';
import { elapse, waitFor } from '../support/wait-for.js';

const ready = (await requireKafka()) && (await requireRedisServer());
const MOVES = envInt('LOCKQ_FAULT_MOVES', 3);
const SESSION_MS = envInt('LOCKQ_KAFKA_SESSION_MS', 3000);
const PARTITIONS = 8;

let rig: FaultRig | undefined;
afterEach(async () => {
  await rig?.destroy();
  rig = undefined;
});

/** p50 and max of a list of milliseconds, for the log. */
function spread(ms: readonly number[]): string {
  return `p50 ${percentile(ms, 50)} ms, max ${Math.max(...ms)} ms (n=${ms.length})`;
}

for (const store of kafkaFaultStores()) {
  describe.skipIf(!ready)(`fault (Kafka, ${store} store): SIGKILL of a coordinator and a new one joining, 8 partitions over 3 coordinators`, () => {
    it(
      `${MOVES} kills and joins move partitions with no double grant, no lost waiter, FIFO and tokens intact`,
      async ({ onTestFailed }) => {
        const seed = faultSeed();
        console.log(`[rebalance.kafka] ${store} store, LOCKQ_FAULT_SEED=${seed} LOCKQ_FAULT_MOVES=${MOVES} LOCKQ_KAFKA_SESSION_MS=${SESSION_MS}`);
        const r = await FaultRig.start({
          name: 'rebalance',
          seed,
          broker: kafkaFaultBroker({ sessionTimeoutMs: SESSION_MS }),
          ...storeOption(store),
          partitions: PARTITIONS,
          workers: 6,
          counters: PARTITIONS, // one counter per partition: every partition has work
          fifoWaiters: 3,
          ttlMs: KAFKA_LOAD_TTL_MS,
          requestTimeoutMs: 60_000,
        });
        rig = r;
        // Any failure, a timeout included, leaves the whole run on disk.
        onTestFailed(() => console.log(`the whole run: ${r.dump()}`));
        const began = Date.now();
        const all = Array.from({ length: PARTITIONS }, (_, p) => p);
        for (let i = 0; i < 3; i++) await r.startCoordinator();
        await r.startWorkers();
        await r.takeover(began, all, 60_000);
        // The group has spread the partitions: each of the three decides its share.
        await waitFor(async () => (await ownershipProblems(r)).length === 0 && r.live.every((c) => r.ownedBy(c).length >= 2), 'the first spread', {
          timeoutMs: 60_000,
          intervalMs: 200,
        });
        await r.progress(30, PROGRESS_MS);
        console.log(`[rebalance.kafka] spread: ${r.live.map((c) => `${c.name} ${r.ownedBy(c).join(',')}`).join('; ')} after ${Date.now() - began} ms`);

        const killMoves: PartitionMove[] = [];
        const joinMoves: PartitionMove[] = [];
        for (let m = 0; m < MOVES; m++) {
          await elapse(between(r.random, 100, 1500));
          const fifoOwner = r.owners().get(r.partitionOf(r.fifoLock));
          const holders = r.live.filter((c) => r.ownedBy(c).length > 0);
          const victim = m % 2 === 0 && fifoOwner?.alive === true ? fifoOwner : holders[Math.floor(r.random() * holders.length)];
          if (victim === undefined) throw new Error(`no coordinator to kill in round ${m + 1}\n${r.diagnostics()}`);
          const owned = r.ownedBy(victim);
          const kill = async () => {
            const killedAt = Date.now();
            victim.signal('SIGKILL');
            await victim.exited;
            const moves = await waitFor(
              () => partitionMoves(r, killedAt, owned, victim),
              () => `partitions ${owned.join(',')} of ${victim.name} to move\n${r.diagnostics()}`,
              { timeoutMs: 60_000 + 2 * SESSION_MS, intervalMs: 25 },
            );
            killMoves.push(...moves);
            console.log(
              `[rebalance.kafka] round ${m + 1}: killed ${victim.name} (partitions ${owned.join(',')}): ` +
                moves.map((v) => `p${v.partition} -> ${v.to.name} epoch ${v.epoch} claimed ${v.claimMs} ms, granted ${v.grantMs} ms`).join('; '),
            );
          };
          if (m % 2 === 0) await r.fifoRound(kill);
          else await kill();

          // A new coordinator joins: the group gives it a share, taken from the survivors.
          const joinedAt = Date.now();
          const newcomer = await r.startCoordinator();
          await waitFor(() => newcomer.claims().length >= 2, () => `${newcomer.name} to claim its share\n${r.diagnostics()}`, {
            timeoutMs: 60_000,
            intervalMs: 25,
          });
          const taken = [...new Set(newcomer.claims().map((l) => l.partition as number))];
          const moves = await waitFor(
            () => partitionMoves(r, joinedAt, taken),
            () => `grants on partitions ${taken.join(',')} from ${newcomer.name}\n${r.diagnostics()}`,
            { timeoutMs: 60_000, intervalMs: 25 },
          );
          joinMoves.push(...moves);
          let problems: string[] = [];
          await waitFor(
            async () => {
              problems = await ownershipProblems(r);
              return problems.length === 0;
            },
            () => `one active owner per partition: ${problems.join('; ')}`,
            { timeoutMs: 30_000, intervalMs: 200 },
          );
          console.log(
            `[rebalance.kafka] round ${m + 1}: ${newcomer.name} joined and took ${taken.join(',')}: ` +
              moves.map((v) => `p${v.partition} claimed ${v.claimMs} ms, granted ${v.grantMs} ms`).join('; ') +
              `; now ${r.live.map((c) => `${c.name} ${r.ownedBy(c).join(',')}`).join('; ')}`,
          );
          await r.progress(30, PROGRESS_MS);
        }

        const hung = await r.stopWorkers();
        const report = r.check();
        const grant = killMoves.map((v) => v.grantMs);
        const claim = killMoves.map((v) => v.claimMs);
        console.log(
          `[rebalance.kafka] ${store} store, session ${SESSION_MS} ms: kill -> first grant on a moved partition ${spread(grant)}; kill -> claimed ${spread(claim)}; ` +
            `join -> first grant ${spread(joinMoves.map((v) => v.grantMs))}; ${r.rounds.length} FIFO rounds; ${summarize(report)}; ${((Date.now() - began) / 1000).toFixed(1)} s`,
        );
        if (report.problems.length > 0 || hung.length > 0) console.log(r.diagnostics());
        if (process.env.LOCKQ_FAULT_DUMP === '1') console.log(`the whole run: ${r.dump()}`);
        expect(hung).toEqual([]);
        expect(report.problems).toEqual([]);
        expect(r.rounds.length).toBeGreaterThan(0);
        // A dead coordinator's partitions wait for the session timeout, then a rebalance and a claim.
        expect(Math.min(...claim)).toBeGreaterThanOrEqual(SESSION_MS / 2);
        expect(Math.max(...grant)).toBeLessThan(SESSION_MS + 15_000);
      },
      180_000 + MOVES * (60_000 + 4 * SESSION_MS),
    );
  });
}
