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
 * down the queue, FIFO), and the pause lasts past every lease the old one knew of. It is paused
 * right after it answered an inspect from the test, so that when it is SIGCONTed its expiry
 * timer runs before its AMQP heartbeat touches the dead connection: on the gate's partition it
 * commits the expiry, and that write must be fenced (StaleEpochError in its log, 'another
 * coordinator took this partition over; standing by'); on the other partition it learns that the
 * broker dropped its consumer and drops its state without writing. It must not claim again nor
 * bump the epoch, the new coordinator must never be fenced, and it must rejoin as the standby —
 * the next round pauses the other coordinator, so it has to take over in turn. Workers trace
 * every reply: none from a replaced term may have produced a grant (the SDK ignores lower
 * epochs). Then the history checks (test/support/faults-history.ts): no double grant, increasing
 * tokens, no lost waiter, FIFO and exact counters.
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
import { elapse } from '../support/wait-for.js';

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
      // trace: workers report every reply they receive, so replies of a replaced term can be seen.
      const { rig: r, began } = await FaultRig.underLoad({ name: 'stop', seed, coordinatorHeartbeatS: 1, gateTtlMs: 3000, trace: true });
      rig = r;

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
          await elapse(between(r.random, 50, 300));
          // Pause it just after it published something: on waking, its AMQP heartbeat timer has
          // nothing to send yet, so it does not hit its dead connection before its expiry timer
          // makes it commit (otherwise it may learn of the lost consumer first and just drop its
          // state without writing: also safe, but then the fencing goes unexercised).
          await r.ping(r.fifoLock);
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
          await elapse(Math.max(0, r.o.gateTtlMs + 1000 - (Date.now() - stoppedAt)) + between(r.random, 0, 1000));
        }); // the gate is released and the waiters granted while the victim is still paused
        const resumedAt = Date.now();
        victim.signal('SIGCONT');

        // On waking, each partition it owned ends its term one way or another. Where its expiry
        // timer makes it commit (the gate's lease, which it saw renewed last, has run out), that
        // write is refused: StaleEpochError, 'standing by'. Where it first learns that the broker
        // dropped its consumer, it drops the state without writing; were it stopped mid-batch,
        // that batch's publish would fail on the dead connection first. All three are safe.
        const outcome = (l: LogLine) => (l.msg === STOOD_BY || l.msg === DROPPED || l.msg === CONSUMER_LOST) && l.time >= resumedAt;
        const ends: LogLine[] = [];
        for (const p of owned) {
          ends.push((await victim.waitFor(`the end of its term on partition ${p}`, (l) => outcome(l as LogLine) && l.partition === p, 30_000)) as LogLine);
        }
        for (const end of ends.filter((l) => l.msg === STOOD_BY)) {
          expect(end.err?.type).toBe('StaleEpochError');
          fenced++;
        }
        if (ends.some((l) => l.msg === STOOD_BY)) {
          // A fenced partition rejoins as a standby after its pause (the transport logs 'consuming').
          const last = Math.max(...ends.map((l) => l.time));
          await victim.waitFor('consuming again', (l) => l.msg === 'consuming' && l.component === 'amqp-server-transport' && Number(l.time) >= last, 30_000);
        }
        console.log(
          `[coordinator-stop] stop ${s + 1}: ${victim.name} resumed; ` +
            ends.map((l) => `partition ${l.partition}: "${l.msg}"${l.err?.type === undefined ? '' : ` (${l.err.type})`} after ${l.time - resumedAt} ms`).join('; '),
        );
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
      // No reply of a replaced term was believed: a reply whose epoch is below one the worker had
      // already seen on that partition is dropped by the SDK, so no grant may come from one.
      let staleReplies = 0;
      const believed: string[] = [];
      for (const w of r.workers) {
        const seen = new Map<number, number>();
        const staleGrants = new Set<number>();
        for (const e of w.events) {
          const body = e.body as { epoch?: number; partition?: number; type?: string; token?: number } | undefined;
          if (e.event === 'reply' && body?.epoch !== undefined && body.partition !== undefined) {
            const max = seen.get(body.partition) ?? 0;
            if (body.epoch < max) {
              staleReplies++;
              if (body.type === 'granted' && body.token !== undefined) staleGrants.add(body.token);
            }
            seen.set(body.partition, Math.max(max, body.epoch));
          } else if (e.event === 'granted' && staleGrants.has(Number(e.token))) {
            believed.push(`${w.workerId} took token ${e.token} from a replaced term`);
          }
        }
      }
      const grant = takeovers.map((t) => t.grantMs);
      const claim = takeovers.map((t) => t.claimMs);
      console.log(
        `[coordinator-stop] take-over (SIGSTOP -> first grant of the new term) p50 ${percentile(grant, 50)} ms, max ${Math.max(...grant)} ms; ` +
          `SIGSTOP -> claimed p50 ${percentile(claim, 50)} ms, max ${Math.max(...claim)} ms; writes fenced on waking ${fenced} (in ${STOPS} stops); ` +
          `replies from replaced terms that reached workers: ${staleReplies} (ignored); ${summarize(report)}; ${((Date.now() - began) / 1000).toFixed(1)} s`,
      );
      if (report.problems.length > 0 || hung.length > 0) console.log(r.diagnostics());
      if (report.problems.length > 0 || hung.length > 0 || process.env.LOCKQ_FAULT_DUMP === '1') console.log(`the whole run: ${r.dump()}`);
      expect(hung).toEqual([]);
      expect(report.problems).toEqual([]);
      expect(believed).toEqual([]);
      expect(takeovers).toHaveLength(STOPS);
      // The partition with the gate wakes with its expiry timer due (a process's timers run before
      // it reads the broker's close from its socket), so its first write is the fenced one.
      expect(fenced).toBeGreaterThan(0);
      expect(percentile(grant, 50)).toBeLessThan(10_000);
    },
    120_000 + STOPS * 60_000,
  );
});
