/**
 * Fault scenario 2 — the active coordinator is paused (SIGSTOP) past the take-over, then resumed.
 *
 * Two `lockq coordinator` processes share a prefix and a Redis store, with 4 increment workers
 * and a FIFO gate plus 4 waiters. Each round: the gate takes the FIFO lock (3 s lease, renewed)
 * and the waiters queue; the load pauses for a moment so the active coordinator has no batch in
 * flight; it is SIGSTOPped and the load resumes. RabbitMQ must notice the silent connection
 * (AMQP heartbeat), hand the queues to the standby, which claims the partitions (epoch bump,
 * replay) and serves: the take-over is timed from the SIGSTOP to the first grant of the new term.
 * The gate is released while the old coordinator is still paused (the new one hands the lock
 * down the queue, FIFO), and the pause lasts past every lease the old one knew of, so when it is
 * SIGCONTed its expiry timer makes it commit: that write must be fenced (StaleEpochError in its
 * log, 'another coordinator took this partition over; standing by'), it must not claim again
 * nor bump the epoch, and it must rejoin as the standby — the next round pauses the other
 * coordinator, so it has to take over in turn. Its replies could not be believed anyway (workers
 * ignore lower epochs); the history checks (test/support/faults-history.ts) confirm no double
 * grant, increasing tokens, no lost waiter, FIFO and exact counters.
 *
 * Heartbeat: `lockq coordinator` has no heartbeat flag or variable. The transport URL takes one
 * as a query parameter (`--transport 'amqp://…?heartbeat=1'`; the RabbitMQ transport keeps a
 * heartbeat given in the URL, its default is 10 s), so this test passes `heartbeat=1`: RabbitMQ
 * then drops a silent connection after 2–3 s.
 *
 * Environment:
 *   LOCKQ_FAULT_SEED   seed of every random choice (printed; default 20240611)
 *   LOCKQ_FAULT_STOPS  pause/resume rounds (default 3)
 *
 * Uses the shared RabbitMQ (never restarted here) and its own redis-server child process.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { requireRabbit } from '../support/brokers.js';
import { between, envInt, faultSeed, percentile, summarize } from '../support/faults-history.js';
import { CLAIMED, CONSUMER_LOST, DROPPED, type LogLine, STOOD_BY } from '../support/faults-processes.js';
import { FaultRig, type Takeover } from '../support/faults-rig.js';
import { requireRedisServer } from '../support/faults-redis.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const ready = (await requireRabbit()) && (await requireRedisServer());
const STOPS = envInt('LOCKQ_FAULT_STOPS', 3);

let rig: FaultRig | undefined;
afterEach(async () => {
  await rig?.destroy();
  rig = undefined;
});

describe.skipIf(!ready)('fault: SIGSTOP of the active coordinator, then SIGCONT', () => {
  it(
    `${STOPS} paused coordinators are fenced, stand by, and take over again later`,
    async () => {
      const seed = faultSeed();
      console.log(`[coordinator-stop] LOCKQ_FAULT_SEED=${seed} LOCKQ_FAULT_STOPS=${STOPS}`);
      const r = await FaultRig.start({ name: 'stop', seed, coordinatorHeartbeatS: 1, gateTtlMs: 3000 });
      rig = r;
      const partitions = Array.from({ length: r.o.partitions }, (_, p) => p);
      const began = Date.now();
      await r.startCoordinator();
      await r.startCoordinator();
      await r.startWorkers();
      await r.takeover(began, partitions, 30_000);
      await r.progress(20, 30_000);

      const takeovers: Takeover[] = [];
      let fenced = 0;
      for (let s = 0; s < STOPS; s++) {
        const victim = r.active();
        if (victim === undefined) throw new Error(`no active coordinator before stop ${s + 1}\n${r.diagnostics()}`);
        const survivor = r.live.find((c) => c !== victim);
        if (survivor === undefined) throw new Error('no standby');
        const owned = r.ownedBy(victim);
        let stoppedAt = 0;
        await r.fifoRound(async () => {
          await r.pauseLoad(); // nothing in flight on the victim but the gate's renewals
          await sleep(between(r.random, 50, 300));
          stoppedAt = Date.now();
          victim.signal('SIGSTOP');
          r.resumeLoad();
          const t = await r.takeover(stoppedAt, owned, 60_000, victim);
          takeovers.push(t);
          console.log(
            `[coordinator-stop] stop ${s + 1}/${STOPS}: ${victim.name} paused -> ${t.by.name} (epochs ${t.epochs.join(',')}): ` +
              `claimed after ${t.claimMs} ms (all ${t.allClaimedMs} ms), first grant after ${t.grantMs} ms`,
          );
          await r.progress(20, 30_000); // the new coordinator serves
          // Paused past the gate's lease as the victim knew it: on waking it has an expiry to commit.
          await sleep(Math.max(0, r.o.gateTtlMs + 1000 - (Date.now() - stoppedAt)) + between(r.random, 0, 1000));
        }); // the gate is released and the waiters granted while the victim is still paused
        const resumedAt = Date.now();
        victim.signal('SIGCONT');

        // Its first write after waking is refused, and it steps back. (Were it stopped mid-batch,
        // that batch's publish would fail on its dead connection first and it would drop its
        // state; had it noticed the lost consumer before its expiry timer, it would drop its state
        // without writing. Both are safe too, and tolerated per round.)
        const woke = (await victim.waitFor(
          'a fenced commit or dropped state',
          (l) => (l.msg === STOOD_BY || l.msg === DROPPED || l.msg === CONSUMER_LOST) && Number(l.time) >= resumedAt,
          30_000,
        )) as LogLine;
        if (woke.msg === STOOD_BY) {
          expect(woke.err?.type).toBe('StaleEpochError');
          fenced++;
          // It rejoins as a standby after its pause (the transport logs 'consuming' again).
          await victim.waitFor('consuming again', (l) => l.msg === 'consuming' && l.component === 'amqp-server-transport' && Number(l.time) >= woke.time, 30_000);
        }
        console.log(`[coordinator-stop] stop ${s + 1}: ${victim.name} resumed; logged "${woke.msg}" (${woke.err?.type ?? 'no error type'}) ${woke.time - resumedAt} ms later`);
        await r.progress(20, 30_000);
        // It never claimed again (that would have fenced the new coordinator), nor was the new one fenced.
        expect(victim.logged(CLAIMED, stoppedAt)).toEqual([]);
        expect(survivor.logged(STOOD_BY, stoppedAt)).toEqual([]);
        expect(survivor.logged(DROPPED, stoppedAt)).toEqual([]);
        for (const p of owned) {
          const claim = survivor.logged(CLAIMED, stoppedAt).filter((l) => l.partition === p);
          const epoch = await r.redis.command('GET', `{${r.prefix}:p${p}}:epoch`);
          expect(Number(epoch)).toBe(claim[claim.length - 1]?.epoch);
        }
      }
      await r.progress(20, 30_000);

      const hung = await r.stopWorkers();
      const report = r.check();
      const grant = takeovers.map((t) => t.grantMs);
      const claim = takeovers.map((t) => t.claimMs);
      console.log(
        `[coordinator-stop] take-over (SIGSTOP -> first grant of the new term) p50 ${percentile(grant, 50)} ms, max ${Math.max(...grant)} ms; ` +
          `SIGSTOP -> claimed p50 ${percentile(claim, 50)} ms, max ${Math.max(...claim)} ms; fenced on waking ${fenced}/${STOPS}; ` +
          `${summarize(report)}; ${((Date.now() - began) / 1000).toFixed(1)} s`,
      );
      if (report.problems.length > 0 || hung.length > 0) console.log(r.diagnostics());
      if (report.problems.length > 0 || hung.length > 0 || process.env.LOCKQ_FAULT_DUMP === '1') console.log(`the whole run: ${r.dump()}`);
      expect(hung).toEqual([]);
      expect(report.problems).toEqual([]);
      expect(takeovers).toHaveLength(STOPS);
      // A paused coordinator wakes with its expiry timer due (its timers run before it reads the
      // broker's close from its socket) and nothing in flight, so its first write is the fenced one.
      expect(fenced).toBeGreaterThan(0);
      expect(percentile(grant, 50)).toBeLessThan(10_000);
    },
    120_000 + STOPS * 60_000,
  );
});
