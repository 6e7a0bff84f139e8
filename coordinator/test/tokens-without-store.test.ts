/**
 * Fencing tokens and epochs keep rising without a durable store (issue 9, item 4). Each
 * coordinator here has its own default memory store, as separate processes would: nothing is
 * shared but the broker. Before the memory store seeded its claims from the wall clock, every
 * new term started at epoch 1 and token 1: a restarted coordinator, or a standby taking over,
 * issued tokens a fenced resource had already seen, and a worker that had heard a higher epoch
 * ignored the new coordinator altogether.
 */
import { Coordinator, MemoryServerTransport, MemoryStore } from '@lockq/coordinator';
import { LockClient } from '@lockq/worker-sdk';
import { MemoryBroker, MemoryClientTransport } from '@lockq/worker-sdk/transport';
import { afterEach, describe, expect, it } from 'vitest';

const clients: LockClient[] = [];
const coordinators: Coordinator[] = [];

afterEach(async () => {
  // Clients first, while a coordinator still answers their close.
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  for (const c of coordinators.splice(0).reverse()) await c.stop().catch(() => undefined);
});

async function client(broker: MemoryBroker, workerId: string): Promise<LockClient> {
  const transport = new MemoryClientTransport(broker, { workerId, instance: 'i' });
  // A short timeout: a reply the worker ignores shows as a failure here, not after 10 s.
  const c = await LockClient.connect('memory:', { workerId, transport, requestTimeoutMs: 2000 });
  clients.push(c);
  return c;
}

async function coordinator(transport: MemoryServerTransport, store?: MemoryStore): Promise<Coordinator> {
  const c = await Coordinator.start({ transport, ...(store === undefined ? {} : { store }) });
  coordinators.push(c);
  return c;
}

/** Takes and gives back `lock`; the token it was granted. */
async function grant(c: LockClient, lock: string): Promise<number> {
  const lease = await c.acquire(lock, { ttlMs: 10_000 });
  await lease.release();
  return lease.token;
}

describe('fencing tokens without a durable store', () => {
  it('a coordinator stopped and a new one started keep tokens rising per lock, as a long-lived worker sees them', async () => {
    const broker = new MemoryBroker();
    const a = await coordinator(new MemoryServerTransport(broker));
    const w = await client(broker, 'w');
    const jobA = await grant(w, 'job');
    const otherA = await grant(w, 'other');
    const epochA = (await w.inspect('job')).epoch;
    await a.stop();

    await coordinator(new MemoryServerTransport(broker)); // a new process: a store of its own
    const jobB = await grant(w, 'job');
    const otherB = await grant(w, 'other');
    expect(jobB).toBeGreaterThan(jobA);
    expect(otherB).toBeGreaterThan(otherA);
    // Tokens are per partition: the new term is above everything the old one issued.
    expect(jobB).toBeGreaterThan(Math.max(jobA, otherA));
    expect((await w.inspect('job')).epoch).toBeGreaterThan(epochA);
  });

  it("a worker that heard a higher epoch (a store that counts them, as Redis does) is still answered by a restart without one", async () => {
    const broker = new MemoryBroker();
    // Two earlier terms of a store that counts epochs from 1: this coordinator's term is epoch 3.
    const counting = new MemoryStore({ wallClockMs: () => 0 });
    await counting.claim(0);
    await counting.claim(0);
    const a = await coordinator(new MemoryServerTransport(broker), counting);
    const w = await client(broker, 'w');
    const before = await grant(w, 'job');
    expect((await w.inspect('job')).epoch).toBe(3);
    await a.stop();

    // Restarted without that store. Before the fix its epoch was 1: the worker ignored every
    // reply of it as coming from a replaced coordinator, and this acquire timed out.
    await coordinator(new MemoryServerTransport(broker));
    const after = await grant(w, 'job');
    expect(after).toBeGreaterThan(before);
    expect((await w.inspect('job')).epoch).toBeGreaterThan(3);
  });

  it('standbys, each with its own default store, take the partition over in turn: tokens keep rising and the worker keeps being answered', async () => {
    const broker = new MemoryBroker();
    const transportA = new MemoryServerTransport(broker);
    await coordinator(transportA); // active: the broker delivers to the first consumer
    await coordinator(new MemoryServerTransport(broker)); // B stands by
    const w = await client(broker, 'w');
    const tokens = [await grant(w, 'job'), await grant(w, 'other'), await grant(w, 'job')];
    const epochs = [(await w.inspect('job')).epoch];

    // A crashes: it stops consuming with its state still in memory; B takes over on the next delivery.
    await transportA.stopConsuming(0);
    const c = await coordinator(new MemoryServerTransport(broker)); // C stands by behind B
    tokens.push(await grant(w, 'job'), await grant(w, 'other'));
    epochs.push((await w.inspect('job')).epoch);

    // B is replaced too (a graceful stop this time): C takes over.
    await coordinators[1]?.stop();
    tokens.push(await grant(w, 'other'), await grant(w, 'job'));
    epochs.push((await w.inspect('job')).epoch);
    void c;

    for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1] as number);
    expect(epochs[1]).toBeGreaterThan(epochs[0] as number);
    expect(epochs[2]).toBeGreaterThan(epochs[1] as number);
  });
});
