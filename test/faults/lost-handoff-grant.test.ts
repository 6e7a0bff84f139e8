/**
 * Regression test for a bug the coordinator-kill fault runs found (fixed in 8a495b8):
 *
 * A grant that a batch hands to ANOTHER session — the waiter behind a release, an expiry or a
 * cancellation — was lost for good when the coordinator died (or its publish failed) after the
 * batch was journaled and before its replies were published. The next term replayed the journal,
 * so it believed the waiter held the lock; the broker redelivered the batch, but a redelivered
 * request is a duplicate and only ITS OWN answer was sent again (the releaser got 'released'),
 * never the grant it caused. The waiter timed out (TIMEOUT after waitMs + requestTimeoutMs) while
 * the coordinator kept the lock "held" for the lease's ttl, stalling every waiter behind it. The
 * same held for the other replies such a batch or an expiry tick sends to other sessions ('lost',
 * WAIT_TIMEOUT). Only the last journal entry can have unpublished replies (a partition commits and
 * publishes one batch at a time, and snapshots only after publishing), so a new term now
 * publishes that entry's replies again, in its own epoch, when it claims the partition.
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
import { waitFor } from '../support/wait-for.js';


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
      await waitFor(() => queued, 'the waiter to be queued', { timeoutMs: 1000 });
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

  // Under the bug the waiter ended with TIMEOUT (after waitMs + requestTimeoutMs) although the
  // coordinator said it held the lock.
  it('the waiter that the lost batch granted the lock to is told so', async () => {
    const r = await runScenario();
    expect(r.waiter).toEqual({ token: expect.any(Number) });
    expect((r.waiter as { token: number }).token).toBeGreaterThan(r.holderToken);
  });
});
