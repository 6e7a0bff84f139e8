/**
 * Pins a product bug found by the coordinator-kill fault runs (test/faults/coordinator-kill.test.ts):
 *
 * A grant that a batch hands to ANOTHER session — the waiter behind a release, behind an expiry
 * or a cancellation — is lost for good when the coordinator dies (or its publish fails) after the
 * batch was journaled and before its replies were published. The next term replays the journal,
 * so it believes the waiter holds the lock; the broker redelivers the batch, but a redelivered
 * request is a duplicate and only ITS OWN answer is sent again (the releaser gets 'released'),
 * never the grant it caused. The waiter's SDK re-sends pending requests only after a reconnect
 * of its own transport, which does not happen here, so it waits until waitMs + requestTimeoutMs
 * and fails with TIMEOUT, while the coordinator keeps the lock "held" for the lease's ttl,
 * stalling every waiter behind it (liveness; safety is intact: nobody else is granted).
 *
 * The same holds for the other replies such a batch or an expiry tick sends to other sessions
 * ('lost', WAIT_TIMEOUT).
 *
 * Only the LAST journal entry can have unpublished replies (a partition commits and publishes
 * one batch at a time, and snapshots only after publishing), so a fix can be: in
 * PartitionRunner.claim, keep the decisions of replaying the last journal entry and publish their
 * replies (with the new epoch) before deciding the first batch of the new term. Duplicates of
 * replies that did get out are harmless: the SDK drops replies nobody waits for, and a grant it
 * already holds. (An SDK-side complement: on a reply carrying a higher epoch, re-send the
 * pending requests of that partition with the same ids; the core answers a re-sent acquire with
 * its current state.)
 *
 * The test reproduces the crash window in process and deterministically: a transport whose
 * publish fails once, right after the release's batch was committed. The runtime then drops its
 * state, the batch is redelivered and the partition re-claimed from the journal — exactly what a
 * standby does after a SIGKILL at that moment.
 */
import { Coordinator, MemoryServerTransport, MemoryStore, type Outbound } from '@lockq/coordinator';
import { LockClient, type LockClientOptions } from '@lockq/worker-sdk';
import { MemoryBroker, MemoryClientTransport } from '@lockq/worker-sdk/transport';
import { afterEach, describe, expect, it } from 'vitest';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Publishes like the memory transport, except that when armed the next publish fails: a crash after the commit. */
class CrashBeforePublish extends MemoryServerTransport {
  armed = false;
  failed = 0;

  override async publish(replies: readonly Outbound[]): Promise<void> {
    if (this.armed) {
      this.armed = false;
      this.failed++;
      throw new Error('the coordinator died after the commit, before the publish');
    }
    await super.publish(replies);
  }
}

const started: { close(): Promise<void> }[] = [];
const stops: Coordinator[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((c) => c.close().catch(() => undefined)));
  await Promise.all(stops.splice(0).map((c) => c.stop()));
});

async function setup(): Promise<{ transport: CrashBeforePublish; client: (id: string, o?: LockClientOptions) => Promise<LockClient> }> {
  const broker = new MemoryBroker();
  const transport = new CrashBeforePublish(broker);
  stops.push(await Coordinator.start({ transport, store: new MemoryStore({ journal: true }) }));
  return {
    transport,
    client: async (workerId, options = {}) => {
      const c = await LockClient.connect('memory:', {
        workerId,
        transport: new MemoryClientTransport(broker, { workerId, instance: 'i' }),
        ...options,
      });
      started.push(c);
      return c;
    },
  };
}

describe('a batch journaled but not published (crash between commit and publish)', () => {
  it('control: the request that was in the batch is answered again when it is redelivered', async () => {
    const { transport, client } = await setup();
    const a = await client('a');
    transport.armed = true;
    const lease = await a.acquire('job', { ttlMs: 60_000 }); // first publish fails; the redelivery is answered
    expect(transport.failed).toBe(1);
    expect(lease.token).toBeGreaterThan(0);
    await lease.release();
  });

  /** The crash scenario, run once; the two tests below read its outcome. */
  let scenario: Promise<{ failedPublishes: number; holdersAfter: string[]; holderToken: number; waiter: { token: number } | { code: string } }> | undefined;
  const runScenario = () =>
    (scenario ??= (async () => {
      const { transport, client } = await setup();
      const holder = await client('holder');
      const waiter = await client('waiter', { requestTimeoutMs: 1000 });
      const lease = await holder.acquire('job', { ttlMs: 60_000 });
      let queued = false;
      const waiting = waiter.acquire('job', { ttlMs: 60_000, waitMs: 1500, onQueued: () => (queued = true) });
      waiting.catch(() => undefined);
      for (let i = 0; i < 200 && !queued; i++) await sleep(5);
      if (!queued) throw new Error('the waiter was never queued');
      transport.armed = true;
      await lease.release(); // committed: released + granted to the waiter; the publish fails; redelivered
      const view = await holder.inspect('job');
      const outcome = await waiting.then(
        (granted) => ({ token: granted.token }),
        (err: unknown) => ({ code: String((err as { code?: unknown }).code) }),
      );
      return {
        failedPublishes: transport.failed,
        holdersAfter: (view.lock?.holders ?? []).map((h) => h.worker),
        holderToken: lease.token,
        waiter: outcome,
      };
    })());

  it('reproduces the window: the batch is redelivered and the partition reloaded with the waiter holding the lock', async () => {
    const r = await runScenario();
    expect(r.failedPublishes).toBe(1);
    expect(r.holdersAfter).toEqual(['waiter']);
  });

  // BUG (see the header): the grant handed to the waiter by the lost batch is never sent. Under the
  // bug the waiter ends with TIMEOUT (after waitMs + requestTimeoutMs) although the coordinator says
  // it holds the lock. Remove `.fails` once the new term re-publishes the last journal entry's replies.
  it.fails('the waiter that the lost batch granted the lock to is told so', async () => {
    const r = await runScenario();
    expect(r.waiter).toEqual({ token: expect.any(Number) });
    expect((r.waiter as { token: number }).token).toBeGreaterThan(r.holderToken);
  });
});
