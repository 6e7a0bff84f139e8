import { type BatchHandler, Coordinator, MemoryServerTransport, type Outbound, RedisStore, StaleEpochError } from '@lockq/coordinator';
import { type Lease, LockClient } from '@lockq/worker-sdk';
import { encode } from '@lockq/protocol';
import { MemoryBroker, MemoryClientTransport } from '@lockq/worker-sdk/transport';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { REDIS_URL, requireRedis } from '../../test/support/brokers.js';
import { elapse, waitFor } from '../../test/support/wait-for.js';

const redisUp = await requireRedis();
/** A clock before the seed's origin: epochs count 1, 2 as this test reads them. */
const PRE_2025 = () => 0;
const keyPrefix = `lockq-recovery-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

/** The memory transport, plus a record of what this coordinator published and its batch handlers. */
class RecordingTransport extends MemoryServerTransport {
  readonly handlers = new Map<number, BatchHandler>();
  published = 0;

  override async consume(partition: number, onBatch: BatchHandler): Promise<void> {
    this.handlers.set(partition, onBatch);
    await super.consume(partition, onBatch);
  }

  override async publish(replies: readonly Outbound[]): Promise<void> {
    this.published += replies.length;
    await super.publish(replies);
  }
}

const clients: LockClient[] = [];
const coordinators: Coordinator[] = [];

afterAll(async () => {
  // Clients first, while a coordinator still answers their close.
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  for (const c of coordinators.reverse()) await c.stop().catch(() => undefined);
  if (!redisUp) return;
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`{${keyPrefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
});

describe.skipIf(!redisUp)('coordinator fail-over with the Redis store', () => {
  it('a new coordinator resumes holds and queues, issues higher tokens, and fences the old one', async () => {
    const broker = new MemoryBroker();
    const client = async (workerId: string): Promise<LockClient> => {
      const transport = new MemoryClientTransport(broker, { workerId, instance: 'x' });
      const c = await LockClient.connect('memory:', { workerId, transport });
      clients.push(c);
      return c;
    };

    const transportA = new RecordingTransport(broker);
    const a = await Coordinator.start({ transport: transportA, store: new RedisStore({ url: REDIS_URL, keyPrefix, wallClockMs: PRE_2025 }) });
    coordinators.push(a);
    const [holder, w1, w2] = await Promise.all([client('holder'), client('w1'), client('w2')]);

    // Term 1 (A): a grant released, a hold, and two waiters in a known order.
    const earlier = await holder.acquire('other', { ttlMs: 20_000 });
    await earlier.release();
    const held = await holder.acquire('job', { ttlMs: 20_000 });
    const tokensA = [earlier.token, held.token];
    const order: string[] = [];
    const waiting = (c: LockClient): Promise<Lease> =>
      c.acquire('job', { ttlMs: 20_000, waitMs: 20_000 }).then((lease) => {
        order.push(c.options.workerId);
        return lease;
      });
    const first = waiting(w1);
    await waitFor(async () => (await holder.inspect('job')).lock?.waiterCount === 1, 'w1 waiting');
    const second = waiting(w2);
    await waitFor(async () => (await holder.inspect('job')).lock?.waiterCount === 2, 'w2 waiting');
    const viewA = await holder.inspect('job');
    expect(viewA.epoch).toBe(1);
    expect(viewA.lock?.waiters.map((w) => w.worker)).toEqual(['w1', 'w2']);

    // A crashes: it stops consuming, with no graceful stop and its state still in memory.
    await transportA.stopConsuming(0);
    const publishedByA = transportA.published;

    const transportB = new RecordingTransport(broker);
    const b = await Coordinator.start({ transport: transportB, store: new RedisStore({ url: REDIS_URL, keyPrefix, wallClockMs: PRE_2025 }) });
    coordinators.push(b);

    // B claims on its first delivery (this release), replays A's journal, and hands over in order.
    await held.release();
    const lease1 = await first;
    expect(order).toEqual(['w1']);
    const viewB = await holder.inspect('job');
    expect(viewB.epoch).toBe(2);
    expect(viewB.lock?.holders.map((h) => [h.worker, h.token])).toEqual([['w1', lease1.token]]);
    expect(viewB.lock?.waiters.map((w) => w.worker)).toEqual(['w2']);
    await lease1.release();
    const lease2 = await second;
    expect(order).toEqual(['w1', 'w2']);
    for (const token of [lease1.token, lease2.token]) expect(token).toBeGreaterThan(Math.max(...tokensA));
    expect(lease2.token).toBeGreaterThan(lease1.token);

    // A wakes up and decides a batch: its commit is refused, and it publishes nothing.
    const zombieReplies: Uint8Array[] = [];
    broker.subscribeReplies('lockq.replies.zombie.z', (body) => zombieReplies.push(body));
    const open = encode({ v: 1, op: 'open', id: 'z-1', worker: 'zombie', session: 'z-s', replyTo: 'lockq.replies.zombie.z', sessionTtlMs: 15_000, partitions: 1 });
    const runA = transportA.handlers.get(0);
    expect(runA).toBeDefined();
    await expect(runA!([open], ['zombie'])).rejects.toBeInstanceOf(StaleEpochError);
    await elapse(20); // nothing goes out late either
    expect(transportA.published).toBe(publishedByA);
    expect(zombieReplies).toEqual([]);

    // B is unaffected.
    await lease2.release();
    expect(await w1.tryAcquire('job')).not.toBeNull();
    expect((await holder.inspect('job')).epoch).toBe(2);
  });
});
