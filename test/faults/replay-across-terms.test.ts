/**
 * Regression test for a bug the coordinator-kill fault runs found (fixed in 8a495b8):
 *
 * Journal replay diverged from what had been decided as soon as the journal spanned two or more
 * terms. A claim replays snapshot + journal and then raises the token floor to the reserved
 * ceiling, so the new term issues tokens above it (10001, 10002, ... after a first term that
 * reserved 10000). That floor raise was not in the journal, so the NEXT claim replayed the second
 * term's entries on top of the first's without it and re-issued the second term's grants with
 * other tokens (2, 3, ...) than the workers held. From then on the state was wrong: a release or
 * extend with the real token was NOT_HOLDER, replayed holds stayed "held" until their lease ran out
 * (phantom holders), later acquires queued behind them (83 phantom waiters for 4 workers after
 * one take-over in a kill run; a FIFO round stalled for the gate's whole 30 s lease; take-overs of
 * up to 20 s), and once a phantom expired the lock could go to another worker while the real
 * holder's lease was valid (mutual exclusion by lease broken; fencing still held). A claim now
 * snapshots the rebuilt core before the new term decides anything, so a journal never spans two
 * terms.
 *
 * The test runs three terms in one process on the memory broker, which hands a partition to the
 * next consumer when the active one stops, like RabbitMQ's single-active-consumer queues.
 */
import { Coordinator, MemoryServerTransport, MemoryStore } from '@lockq/coordinator';
import { LockClient } from '@lockq/worker-sdk';
import { MemoryBroker, MemoryClientTransport } from '@lockq/worker-sdk/transport';
import { afterAll, describe, expect, it } from 'vitest';


const clients: LockClient[] = [];
const coordinators: Coordinator[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  await Promise.all(coordinators.map((c) => c.stop()));
});

interface Outcome {
  readonly firstTermToken: number;
  /** What the worker holds, granted by the second term. */
  readonly heldToken: number;
  /** The holders of the lock as the third term rebuilt them from the journal. */
  readonly replayedTokens: readonly number[];
  /** After the worker released its hold: could another worker take the lock? */
  readonly freeAfterRelease: boolean;
}

let scenario: Promise<Outcome> | undefined;
function runScenario(): Promise<Outcome> {
  scenario ??= (async () => {
    const broker = new MemoryBroker();
    // A clock before 2025 seeds nothing: tokens count from 1, as the scenario above tells it.
    const store = new MemoryStore({ journal: true, wallClockMs: () => 0 });
    const start = async () => {
      const c = await Coordinator.start({ transport: new MemoryServerTransport(broker), store });
      coordinators.push(c);
      return c;
    };
    const client = async (workerId: string) => {
      const c = await LockClient.connect('memory:', { workerId, transport: new MemoryClientTransport(broker, { workerId, instance: 'i' }) });
      clients.push(c);
      return c;
    };
    const a = await start(); // active
    const b = await start(); // standby
    const w = await client('w');
    const other = await client('other');

    const first = await w.acquire('x', { ttlMs: 60_000 }); // term 1 (a)
    await first.release();
    await a.stop(); // b takes over on the next delivery
    const c = await start(); // standby behind b
    const held = await w.acquire('x', { ttlMs: 60_000 }); // term 2 (b): a token above term 1's ceiling
    await b.stop(); // c takes over on the next delivery and replays terms 1 and 2
    const view = await other.inspect('x');
    await held.release();
    const again = await other.tryAcquire('x', { ttlMs: 60_000 });
    await again?.release();
    void c;
    return {
      firstTermToken: first.token,
      heldToken: held.token,
      replayedTokens: (view.lock?.holders ?? []).map((h) => h.token),
      freeAfterRelease: again !== null,
    };
  })();
  return scenario;
}

describe('journal replay over more than one term', () => {
  it('sets up three terms: the second issues tokens above the first term\'s reserved ceiling', async () => {
    const r = await runScenario();
    expect(r.firstTermToken).toBe(1);
    expect(r.heldToken).toBeGreaterThan(10_000);
    expect(r.replayedTokens).toHaveLength(1);
  });

  // Under the bug the third term rebuilt the second term's grant with token 2, not the token the
  // worker held, so the worker's release was NOT_HOLDER and the lock stayed held by a phantom.
  it('the third term knows the hold by the token the worker got, and frees the lock on its release', async () => {
    const r = await runScenario();
    expect(r.replayedTokens).toEqual([r.heldToken]);
    expect(r.freeAfterRelease).toBe(true);
  });
});
