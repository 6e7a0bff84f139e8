/**
 * Fault scenario 1 — the active coordinator is SIGKILLed under load, again and again.
 *
 * Two `lockq coordinator` processes (same prefix, same Redis store; the RabbitMQ
 * single-active-consumer queues make one active, the other standby) serve 4 increment workers
 * (read-modify-write of fenced counters) and a gate plus 4 waiters for gated FIFO rounds. At
 * seeded random moments the active coordinator is killed with SIGKILL and restarted at once as
 * the new standby; every 4th kill happens while FIFO waiters are queued. Each take-over is
 * timed: from the kill to the survivor's 'partition claimed' lines, and to the first grant a
 * worker gets from the new term (its token is above the claimed ceiling). Then the history is
 * checked (see checkHistory in test/support/faults-history.ts): no double grant, tokens strictly
 * increasing per lock across every fail-over, no lost waiter, FIFO in every gated round, and
 * final counters equal to the accepted writes. No acquire may fail: the broker keeps every
 * request the dead coordinator had not acknowledged, and the survivor answers it. The take-over
 * must stay short (p50 under 1 s, max under 10 s; see the bounds at the end).
 *
 * Environment:
 *   LOCKQ_FAULT_SEED   seed of every random choice (printed; default 20240611)
 *   LOCKQ_FAULT_KILLS  kills (default 20; the long run uses e.g. 200)
 *
 * Uses the shared RabbitMQ (never restarted here) and its own redis-server child process.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { requireRabbit } from '../support/brokers.js';
import { between, envInt, faultSeed, percentile, summarize } from '../support/faults-history.js';
import { FaultRig, type Takeover } from '../support/faults-rig.js';
import { requireRedisServer } from '../support/faults-redis.js';
import { elapse } from '../support/wait-for.js';

const ready = (await requireRabbit()) && (await requireRedisServer());
const KILLS = envInt('LOCKQ_FAULT_KILLS', 20);

let rig: FaultRig | undefined;
afterEach(async () => {
  await rig?.destroy();
  rig = undefined;
});

describe.skipIf(!ready)('fault: SIGKILL of the active coordinator', () => {
  it(
    `fails over ${KILLS} times with no double grant, no lost waiter, FIFO and tokens intact`,
    async () => {
      const seed = faultSeed();
      console.log(`[coordinator-kill] LOCKQ_FAULT_SEED=${seed} LOCKQ_FAULT_KILLS=${KILLS}`);
      const { rig: r, began } = await FaultRig.underLoad({ name: 'kill', seed });
      rig = r;

      const takeovers: Takeover[] = [];
      for (let k = 0; k < KILLS; k++) {
        await elapse(between(r.random, 20, 1500));
        const victim = r.active();
        if (victim === undefined) throw new Error(`no active coordinator before kill ${k + 1}\n${r.diagnostics()}`);
        const owned = r.ownedBy(victim);
        const kill = async () => {
          const at = Date.now();
          console.log(`[coordinator-kill] kill ${k + 1} at ${at}`);
          victim.signal('SIGKILL');
          // A supervisor restarts it at once; it queues behind the survivor as the new standby.
          const restarted = r.startCoordinator();
          const t = await r.takeover(at, owned, 30_000, victim);
          await restarted;
          await victim.exited;
          takeovers.push(t);
          console.log(
            `[coordinator-kill] kill ${k + 1}/${KILLS}: ${victim.name} -> ${t.by.name} (epochs ${t.epochs.join(',')}): ` +
              `claimed after ${t.claimMs} ms (all ${t.allClaimedMs} ms), first grant after ${t.grantMs} ms`,
          );
        };
        if (k % 4 === 1) await r.fifoRound(kill);
        else await kill();
      }
      await r.progress(20, 30_000);

      const hung = await r.stopWorkers();
      const report = r.check();
      const grant = takeovers.map((t) => t.grantMs);
      const claim = takeovers.map((t) => t.claimMs);
      console.log(
        `[coordinator-kill] take-over (kill -> first grant of the new term) p50 ${percentile(grant, 50)} ms, max ${Math.max(...grant)} ms; ` +
          `kill -> claimed p50 ${percentile(claim, 50)} ms, max ${Math.max(...claim)} ms; ` +
          `${r.rounds.length} FIFO rounds; ${summarize(report)}; ${((Date.now() - began) / 1000).toFixed(1)} s`,
      );
      if (report.problems.length > 0 || hung.length > 0) console.log(r.diagnostics());
      if (report.problems.length > 0 || hung.length > 0 || process.env.LOCKQ_FAULT_DUMP === '1') console.log(`the whole run: ${r.dump()}`);
      expect(hung).toEqual([]);
      expect(report.problems).toEqual([]);
      expect(takeovers).toHaveLength(KILLS);
      expect(r.rounds.length).toBeGreaterThan(0);
      // The standby is already consuming and the broker redelivers at once: a take-over is a claim
      // (one Redis round trip plus a snapshot) away. Measured p50 ~50-120 ms and max ~150-350 ms on
      // the 2-core CI machine under load; the bounds only catch a stall (a phantom holder, a claim
      // that waits for a heartbeat), which took 2-20 s before the take-over fixes.
      expect(percentile(grant, 50)).toBeLessThan(1000);
      expect(Math.max(...grant)).toBeLessThan(10_000);
    },
    120_000 + KILLS * 10_000,
  );
});
