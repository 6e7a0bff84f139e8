/**
 * Pins a product bug found by the coordinator-kill fault runs (test/faults/coordinator-kill.test.ts):
 *
 * Journal replay diverges from what was decided as soon as the journal spans two or more terms.
 * PartitionRunner.claim replays snapshot + journal and then calls `core.raiseTokenFloor(ceiling)`,
 * so the new term issues tokens above the reserved ceiling (10001, 10002, ... after a first term
 * that reserved 10000). That floor raise is not in the journal. The NEXT claim replays the second
 * term's entries on top of the first's without it, so the replayed core issues the second term's
 * grants with other tokens (2, 3, ...) than the ones the workers got (10001, 10002, ...). From
 * then on the state is wrong: a release or extend with the real token is NOT_HOLDER, so replayed
 * holds stay "held" until their lease runs out (phantom holders), every later acquire of the
 * term queues behind them (phantom waiters: 83 waiters for 4 workers after one take-over in a
 * kill run, and a FIFO round stalled for the gate's whole 30 s lease), a holder's renewal fails,
 * and once a phantom hold expires the lock can be granted to another worker while the real
 * holder's lease is still valid (mutual exclusion by lease broken; the fencing tokens still
 * protect the resource). Snapshots then persist the wrong state. Every take-over after the
 * second one without a snapshot in between is affected.
 *
 * Suggested fix: make the floor part of the journal. E.g. have claim() write a snapshot of the
 * rebuilt core (whose lastToken carries the floor) before the new term decides anything (the
 * journal then only ever holds one term's entries); or journal a marker entry `{ now, requests:
 * [], tokenFloor }` right after the claim and have replay call raiseTokenFloor when it meets one.
 *
 * The test runs three terms in one process on the memory broker, which hands a partition to the
 * next consumer when the active one stops, like RabbitMQ's single-active-consumer queues.
 */
import { Coordinator, type CoreSnapshot, type ClaimedPartition, type JournalEntry, MemoryServerTransport, MemoryStore, type StateStore } from '@lockq/coordinator';
import { LockClient } from '@lockq/worker-sdk';
import { MemoryBroker, MemoryClientTransport } from '@lockq/worker-sdk/transport';
import { afterAll, describe, expect, it } from 'vitest';

/** A journaling store that says it is durable and outlives the coordinators sharing it, like Redis. */
class SharedJournal implements StateStore {
  readonly durable = true;
  readonly journals = true;
  readonly #inner = new MemoryStore({ journal: true });
  claim(partition: number): Promise<ClaimedPartition> {
    return this.#inner.claim(partition);
  }
  append(partition: number, epoch: number, entry: JournalEntry): Promise<void> {
    return this.#inner.append(partition, epoch, entry);
  }
  snapshot(partition: number, epoch: number, snapshot: CoreSnapshot): Promise<void> {
    return this.#inner.snapshot(partition, epoch, snapshot);
  }
  async close(): Promise<void> {}
}

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
    const store = new SharedJournal();
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

  // BUG (see the header): the third term rebuilds the second term's grant with token 2, not the
  // token the worker holds, so the worker's release is NOT_HOLDER and the lock stays held by a
  // phantom until its lease runs out. Remove `.fails` once the token floor is journaled.
  it.fails('the third term knows the hold by the token the worker got, and frees the lock on its release', async () => {
    const r = await runScenario();
    expect(r.replayedTokens).toEqual([r.heldToken]);
    expect(r.freeAfterRelease).toBe(true);
  });
});
