/**
 * Regression tests for two SDK bugs the Redis-restart fault runs found (test/faults/redis-restart.test.ts),
 * which together stalled the load after a 3 s Redis outage from ~50 grants/s to one grant per
 * lease ttl (3 s), for as long as the run went on:
 *
 * 1. A lease granted after a wait longer than its ttl was dead on arrival. The SDK trusts a lease
 *    until `sent(basis) + ttl - drift`, where `basis` is the last request the coordinator had
 *    processed from the session when it granted. A waiter sends nothing while it waits (its
 *    heartbeat comes every sessionTtlMs / 3), so the basis was the acquire itself, and any wait
 *    longer than ttl (a long queue, a request held through a store outage or a take-over) gave a
 *    lease whose signal was already aborted, though the coordinator had granted a full ttl from
 *    the moment of the grant. The SDK now extends such a lease before handing it over.
 *
 * 2. `Lease.release()` was a no-op once the SDK had given the lease up locally (its local deadline
 *    passed, or a renewal failed), although the coordinator still held it until ITS lease ran out
 *    (later still after a take-over or an outage, which extend leases); every waiter behind it
 *    waited that long for nothing. With (1), each dead-on-arrival lease was never released, so
 *    the next waiter also waited longer than ttl and got a dead lease in turn: a self-sustaining
 *    stall. release() now tells the coordinator unless the coordinator itself said the hold is gone.
 *
 * Both are reproduced in process on the memory broker.
 */
import { Coordinator, MemoryServerTransport } from '@lockq/coordinator';
import { LockClient, type LockClientOptions } from '@lockq/worker-sdk';
import { MemoryBroker, MemoryClientTransport } from '@lockq/worker-sdk/transport';
import { afterEach, describe, expect, it } from 'vitest';
import { elapse, waitFor } from '../support/wait-for.js';


let broker: MemoryBroker;
let coordinator: Coordinator | undefined;
const clients: LockClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  await coordinator?.stop();
  coordinator = undefined;
});

async function setup(): Promise<(workerId: string, options?: LockClientOptions) => Promise<LockClient>> {
  broker = new MemoryBroker();
  coordinator = await Coordinator.start({ transport: new MemoryServerTransport(broker) });
  return async (workerId, options = {}) => {
    const c = await LockClient.connect('memory:', { workerId, transport: new MemoryClientTransport(broker, { workerId, instance: 'i' }), ...options });
    clients.push(c);
    return c;
  };
}

describe('leases after a long wait', () => {
  // Under bug 1 the lease's signal was already aborted when acquire resolved.
  it('a lease granted after waiting longer than its ttl is alive on arrival', async () => {
    const client = await setup();
    const holder = await client('holder');
    const waiter = await client('waiter');
    let holding = false;
    const held = holder.withLock('x', { ttlMs: 1000 }, () => {
      holding = true;
      return elapse(1600); // renewed past its ttl
    });
    await waitFor(() => holding, 'the holder to hold');
    const lease = await waiter.acquire('x', { ttlMs: 1000, waitMs: 10_000 }); // granted ~1.5 s later
    const aborted = lease.signal.aborted;
    await lease.release();
    await held;
    expect(aborted).toBe(false);
  });

  it('control: a lease released in time frees the lock for the next waiter at once', async () => {
    const client = await setup();
    const a = await client('a');
    const b = await client('b');
    const lease = await a.acquire('y', { ttlMs: 2000 });
    let queued = false;
    const next = b.acquire('y', { ttlMs: 2000, waitMs: 10_000, onQueued: () => (queued = true) });
    await waitFor(() => queued, 'the waiter to be queued');
    const releasedAt = Date.now();
    await lease.release();
    await next;
    expect(Date.now() - releasedAt).toBeLessThan(300);
  });

  // Under bug 2 a lease the SDK gave up locally (here: a 1 s drift margin makes the SDK stop
  // trusting a 2 s lease after ~1 s) was not released; the coordinator held it for the rest of its
  // 2 s and the next waiter waited for nothing.
  it('releasing a lease the SDK gave up on still frees the lock for the next waiter', async () => {
    const client = await setup();
    const a = await client('a', { driftMarginMs: 1000 });
    const b = await client('b');
    const lease = await a.acquire('z', { ttlMs: 2000 });
    const next = b.acquire('z', { ttlMs: 2000, waitMs: 10_000 });
    const lost = new Promise((resolve) => lease.signal.addEventListener('abort', resolve));
    await lost; // ~1 s: the SDK no longer trusts it; the coordinator holds it ~1 s more
    const releasedAt = Date.now();
    await lease.release();
    await next;
    expect(Date.now() - releasedAt).toBeLessThan(300);
  });
});
