/**
 * Kafka fault scenario — a zombie coordinator: SIGSTOPped past its group session timeout, its
 * partitions move, then SIGCONTed.
 *
 * Two `lockq coordinator --transport kafka://… --identity off` processes share 6 partitions
 * (3 each) and a durable store (the rig's redis-server, then `--store kafka:`), with increment workers on a counter per
 * partition and a FIFO gate and waiters; every worker traces the replies it receives. Each
 * round, while the gate holds the FIFO lock and the waiters are queued, the load pauses (no
 * batch in flight) and the coordinator deciding the FIFO lock is SIGSTOPped. At once a probe
 * (a raw Kafka client in this process) sends an `inspect` to each of its other partitions: the
 * paused coordinator's fetch in flight takes it, so on waking it has a batch to decide that
 * needs no store write, only the batch's Kafka transaction. The load resumes, the broker drops
 * the silent members after the session timeout, and the other coordinator claims the partitions
 * (a fresh producer with each partition's transactional id: InitProducerId bumps its epoch and
 * fences the paused one; the store's epoch rises too) and serves: the probe's inspects, the
 * load, and the FIFO round (the gate releases, the waiters are granted in order). Then the
 * paused coordinator is SIGCONTed. Each of its partitions must end its term in one of the safe
 * ways: its transaction fenced by Kafka (the transport logs 'fenced: …'; with the Kafka store the
 * journal write is in that transaction, and the store reports the fence as StaleEpochError), its
 * Redis store write refused (StaleEpochError, 'standing by'), or the group telling it the
 * partition is gone. And:
 * - nothing it decided reached anyone: every inspect was answered exactly once, in the new
 *   owner's epoch; no worker received a reply with an epoch below one it had already seen on
 *   that partition (on RabbitMQ such replies arrive and the SDK drops them; Kafka's read-committed
 *   replies never show an aborted or fenced transaction); each waiter's grant came in the new
 *   term (token above the new claim's starting point);
 * - it never claimed a partition the group had not given it again after it woke, and the new
 *   owner was never fenced; the Redis store's epoch is the last claimer's;
 * - once it has rejoined, the group gives it its share back (clean moves), and `/v1/locks` shows
 *   every partition active at exactly its last claimer;
 * - the history checks (test/support/faults-history.ts) hold: no double grant, increasing tokens,
 *   no lost waiter, FIFO, exact counters.
 * At least one partition must have been fenced by Kafka over the run (the inspect makes it
 * likely in every round), else the test has not exercised what it is for.
 *
 * Environment:
 *   LOCKQ_FAULT_SEED        seed of every random choice (printed; default 20240611)
 *   LOCKQ_FAULT_STOPS       pause/resume rounds (default 2)
 *   LOCKQ_KAFKA_SESSION_MS  the coordinators' group session timeout (default 3000)
 *   LOCKQ_KAFKA_FAULT_STORES  the stores to run with, in turn (default redis,kafka)
 */
import { randomUUID } from 'node:crypto';
import { KafkaClientTransport } from '@lockq/worker-sdk/transport';
import { afterEach, describe, expect, it } from 'vitest';
import { requireKafka } from '../support/brokers.js';
import { between, envInt, faultSeed, percentile, summarize } from '../support/faults-history.js';
import {
  KAFKA_FENCED,
  KAFKA_LOAD_TTL_MS,
  PROGRESS_MS,
  KAFKA_LOST,
  KAFKA_URL,
  kafkaFaultBroker,
  kafkaFaultStores,
  ownershipProblems,
  type PartitionMove,
  partitionMoves,
  storeOption,
  transportClaims,
} from '../support/faults-kafka.js';
import { DROPPED, type LogLine, STOOD_BY } from '../support/faults-processes.js';
import { FaultRig } from '../support/faults-rig.js';
import { requireRedisServer } from '../support/faults-redis.js';
import { elapse, waitFor } from '../support/wait-for.js';

const ready = (await requireKafka()) && (await requireRedisServer());
const STOPS = envInt('LOCKQ_FAULT_STOPS', 2);
const SESSION_MS = envInt('LOCKQ_KAFKA_SESSION_MS', 3000);
const PARTITIONS = 6;

let rig: FaultRig | undefined;
let probe: KafkaClientTransport | undefined;
afterEach(async () => {
  await probe?.close();
  probe = undefined;
  await rig?.destroy();
  rig = undefined;
});

interface ProbeReply {
  readonly re: string;
  readonly epoch: number;
  readonly partition: number;
  readonly type: string;
}

/** How a partition's term ended at the woken coordinator. */
type Ending = 'kafka-fenced' | 'store-fenced' | 'group-revoked';

function ending(l: LogLine): Ending | undefined {
  // The transport logs the fence of a batch's transaction; an expiry tick's own transaction is
  // refused the same way, and only the runner says so (dropping its state on the fenced error).
  if (l.msg === KAFKA_FENCED || (l.msg === DROPPED && (l.err as { fenced?: boolean } | undefined)?.fenced === true)) return 'kafka-fenced';
  // The Kafka store writes the journal in the batch's transaction: its fence is Kafka's too.
  if (l.msg === STOOD_BY && l.err?.type === 'StaleEpochError') return l.err.message?.includes('fenced by a newer owner') ? 'kafka-fenced' : 'store-fenced';
  if (l.msg === KAFKA_LOST) return 'group-revoked';
  return undefined;
}

for (const store of kafkaFaultStores()) {
  describe.skipIf(!ready)(`fault (Kafka, ${store} store): a zombie coordinator, SIGSTOPped past its session timeout, then SIGCONTed`, () => {
    it(
      `${STOPS} woken coordinators are fenced and nothing they decided reaches a worker`,
      async ({ onTestFailed }) => {
        const seed = faultSeed();
        console.log(`[zombie.kafka] ${store} store, LOCKQ_FAULT_SEED=${seed} LOCKQ_FAULT_STOPS=${STOPS} LOCKQ_KAFKA_SESSION_MS=${SESSION_MS}`);
        const r = await FaultRig.start({
          name: 'zombie',
          seed,
          broker: kafkaFaultBroker({ sessionTimeoutMs: SESSION_MS }),
          ...storeOption(store),
          partitions: PARTITIONS,
          counters: PARTITIONS,
          fifoWaiters: 3,
          ttlMs: KAFKA_LOAD_TTL_MS,
          requestTimeoutMs: 60_000,
          trace: true,
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
        await waitFor(async () => (await ownershipProblems(r)).length === 0 && r.live.every((c) => r.ownedBy(c).length === PARTITIONS / 2), 'the first spread', {
          timeoutMs: 60_000,
          intervalMs: 200,
        });
        await r.progress(20, PROGRESS_MS);

        const replies: ProbeReply[] = [];
        probe = new KafkaClientTransport({ url: KAFKA_URL, workerId: 'zombie-probe', instance: randomUUID().slice(0, 8), prefix: r.prefix });
        await probe.open({ onReply: (body) => replies.push(JSON.parse(Buffer.from(body).toString()) as ProbeReply) });
        const inspect = async (partition: number, lock: string): Promise<string> => {
          const id = randomUUID();
          const request = { v: 1, id, worker: 'zombie-probe', session: 'zombie-probe', replyTo: (probe as KafkaClientTransport).replyAddress, op: 'inspect', lock };
          await (probe as KafkaClientTransport).send(partition, Buffer.from(JSON.stringify(request)));
          return id;
        };

        const fifoPartition = r.partitionOf(r.fifoLock);
        /** Every broken promise of a round, in words; checked at the end, after the run is dumped. */
        const broken: string[] = [];
        const moves: PartitionMove[] = [];
        const endings: Record<Ending, number> = { 'kafka-fenced': 0, 'store-fenced': 0, 'group-revoked': 0 };
        for (let s = 0; s < STOPS; s++) {
          const victim = r.owners().get(fifoPartition);
          const survivor = r.live.find((c) => c !== victim);
          if (victim === undefined || !victim.alive || survivor === undefined) throw new Error(`no victim and survivor in round ${s + 1}\n${r.diagnostics()}`);
          const owned = r.ownedBy(victim);
          const probed: { partition: number; id: string }[] = [];
          let stoppedAt = 0;
          let moved: PartitionMove[] = [];
          const round = await r.fifoRound(async () => {
            await r.pauseLoad(); // nothing in flight on the victim but the gate's renewals
            await elapse(between(r.random, 100, 300));
            stoppedAt = Date.now();
            victim.signal('SIGSTOP');
            // Straight after the stop: the victim's fetches in flight (each waits up to 500 ms at the
            // broker) are answered with these, and it reads them on waking.
            for (const p of owned.filter((p) => p !== fifoPartition)) probed.push({ partition: p, id: await inspect(p, `probe-${s}-${p}`) });
            r.resumeLoad();
            moved = await waitFor(
              () => partitionMoves(r, stoppedAt, owned, victim),
              () => `partitions ${owned.join(',')} of the paused ${victim.name} to move\n${r.diagnostics()}`,
              { timeoutMs: 60_000 + 2 * SESSION_MS, intervalMs: 25 },
            );
            await waitFor(() => probed.every(({ id }) => replies.some((x) => x.re === id)), 'the inspects answered', { timeoutMs: 30_000 });
            await r.progress(20, PROGRESS_MS); // the new owner serves
            // Paused well past the session timeout (the broker counts it from the last heartbeat).
            await elapse(Math.max(0, SESSION_MS + 1000 - (Date.now() - stoppedAt)));
          }); // the gate is released and the waiters granted while the victim is still paused
          moves.push(...moved);
          const resumedAt = Date.now();
          victim.signal('SIGCONT');
          console.log(
            `[zombie.kafka] stop ${s + 1}/${STOPS}: ${victim.name} (partitions ${owned.join(',')}) paused ${resumedAt - stoppedAt} ms; ` +
              moved.map((v) => `p${v.partition} -> ${v.to.name} epoch ${v.epoch} claimed ${v.claimMs} ms, granted ${v.grantMs} ms`).join('; '),
          );

          // Each partition it held ends its term at the woken coordinator, one safe way or another.
          const ends = new Map<number, Ending>();
          for (const p of owned) {
            const line = (await victim.waitFor(
              `the end of its term on partition ${p}`,
              (l) => (l as LogLine).partition === p && (l as LogLine).time >= resumedAt && ending(l as LogLine) !== undefined,
              30_000,
            )) as LogLine;
            ends.set(p, ending(line) as Ending);
            endings[ending(line) as Ending]++;
          }
          console.log(`[zombie.kafka] stop ${s + 1}: ${victim.name} woke: ${[...ends].map(([p, e]) => `p${p} ${e}`).join(', ')}`);

          // Every inspect was answered once, by the new owner, in its epoch.
          for (const { partition, id } of probed) {
            const epochs = replies.filter((x) => x.re === id).map((a) => a.epoch);
            const claim = moved.find((v) => v.partition === partition);
            if (epochs.length !== 1 || epochs[0] !== claim?.epoch) broken.push(`stop ${s + 1}: the inspect on partition ${partition} was answered in epochs [${epochs}], not once in ${claim?.epoch}`);
          }
          // The waiters were served by the new owner: its grant (the head's may have come first as
          // the gate's forward, with the token the old term reserved for it), and no answer of the
          // old term after the stop.
          const fifoEpoch = moved.find((v) => v.partition === fifoPartition)?.epoch;
          for (const { worker, token } of round.waiters) {
            const got = (r.workers.find((w) => w.workerId === worker)?.events ?? []).filter(
              (e) => e.event === 'reply' && e.at >= stoppedAt && e.origin !== 'forward' && (e.body as { partition?: number }).partition === fifoPartition,
            );
            const bodies = got.map((e) => e.body as { epoch: number; type: string; token?: number });
            if (!bodies.some((b) => b.type === 'granted' && b.token === token && b.epoch === fifoEpoch)) {
              broken.push(`stop ${s + 1}: ${worker} (token ${token}) got no grant from the new owner (epoch ${fifoEpoch})`);
            }
            for (const b of bodies.filter((b) => b.epoch !== fifoEpoch)) broken.push(`stop ${s + 1}: ${worker} got a ${b.type} of epoch ${b.epoch} after the stop`);
          }

          // It rejoins and the group gives it its share back: clean moves, each one claimed afresh.
          await waitFor(() => victim.claims(resumedAt).length >= PARTITIONS / 2, () => `${victim.name} to take its share again\n${r.diagnostics()}`, {
            timeoutMs: 60_000,
            intervalMs: 50,
          });
          let problems: string[] = [];
          await waitFor(
            async () => {
              problems = await ownershipProblems(r);
              return problems.length === 0;
            },
            () => `one active owner per partition: ${problems.join('; ')}`,
            { timeoutMs: 30_000, intervalMs: 200 },
          );
          await r.progress(20, PROGRESS_MS);
          // It claimed (epoch bump, restore) only what the group gave it after it woke, never on a
          // stray delivery: its transport took each such partition's transactional id first.
          for (const claim of victim.claims(resumedAt)) {
            const given = transportClaims(victim, resumedAt).filter((l) => l.partition === claim.partition && l.time <= claim.time);
            if (given.length === 0) broken.push(`stop ${s + 1}: ${victim.name} claimed partition ${claim.partition} at ${claim.time} without the group giving it`);
          }
          // The new owner was never fenced, by Kafka or by the store.
          for (const msg of [KAFKA_FENCED, STOOD_BY]) {
            for (const l of survivor.logged(msg, stoppedAt)) broken.push(`stop ${s + 1}: ${survivor.name} on partition ${l.partition}: ${msg}`);
          }
          // The Redis store's epoch is the last claimer's (the Kafka store's term is checked by its own tests).
          for (let p = 0; p < PARTITIONS && store === 'redis'; p++) {
            const last = r.live.flatMap((c) => c.claims().filter((l) => l.partition === p)).sort((a, b) => a.time - b.time).at(-1);
            const epoch = Number(await r.redis.command('GET', `{${r.prefix}:p${p}}:epoch`));
            if (epoch !== last?.epoch) broken.push(`stop ${s + 1}: partition ${p}'s store epoch is ${epoch}, its last claim's ${last?.epoch}`);
          }
        }

        const hung = await r.stopWorkers();
        const report = r.check();
        // No worker received a reply of a replaced term: per partition, epochs never go down.
        const stale: string[] = [];
        for (const w of r.workers) {
          const seen = new Map<number, number>();
          for (const e of w.events) {
            const body = e.body as { epoch?: number; partition?: number; type?: string } | undefined;
            if (e.event !== 'reply' || body?.epoch === undefined || body.partition === undefined) continue;
            const max = seen.get(body.partition) ?? 0;
            if (body.epoch < max) stale.push(`${w.workerId} got a ${body.type} of epoch ${body.epoch} on partition ${body.partition} after epoch ${max}`);
            seen.set(body.partition, Math.max(max, body.epoch));
          }
        }
        const grant = moves.map((v) => v.grantMs);
        console.log(
          `[zombie.kafka] ${store} store, session ${SESSION_MS} ms: SIGSTOP -> first grant on a moved partition p50 ${percentile(grant, 50)} ms, max ${Math.max(...grant)} ms (n=${grant.length}); ` +
            `on waking: ${Object.entries(endings).map(([k, n]) => `${k} ${n}`).join(', ')}; replies of replaced terms that reached workers: ${stale.length}; ` +
            `${r.rounds.length} FIFO rounds; ${summarize(report)}; ${((Date.now() - began) / 1000).toFixed(1)} s`,
        );
        const failed = report.problems.length > 0 || hung.length > 0 || stale.length > 0 || broken.length > 0;
        if (failed) console.log(r.diagnostics());
        if (process.env.LOCKQ_FAULT_DUMP === '1') console.log(`the whole run: ${r.dump()}`);
        expect(broken).toEqual([]);
        expect(hung).toEqual([]);
        expect(report.problems).toEqual([]);
        expect(stale).toEqual([]);
        expect(r.rounds).toHaveLength(STOPS);
        expect(endings['kafka-fenced']).toBeGreaterThan(0);
      },
      120_000 + STOPS * (90_000 + 4 * SESSION_MS),
    );
  });
}
