/**
 * The runtime's rule for replies that cannot be published, on the memory transport: a reply the
 * transport refuses for good (its `publish` rejects naming it in `refusedIndexes`) is dropped and
 * counted, and never holds back the partition's other replies; replies that failed for a
 * connection reason are kept and go out with the next commit, as before.
 */
import {
  type BatchHandler,
  Coordinator,
  CoordinatorMetrics,
  MemoryServerTransport,
  MemoryStore,
  type Outbound,
  type PublishRefusal,
  type StateStore,
} from '@lockq/coordinator';
import { encode, type MemoryBroker as Broker } from '@lockq/protocol';
import { LockClient } from '@lockq/worker-sdk';
import { MemoryBroker, MemoryClientTransport } from '@lockq/worker-sdk/transport';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../test/support/wait-for.js';

/** An address no broker could carry, like a 256-byte AMQP routing key. */
const UNDELIVERABLE = 'lockq.replies.far.undeliverable';

/** A `publish` rejection as any transport words it (see `PublishRefusal`); nothing AMQP about it. */
class PublishFailed extends Error implements PublishRefusal {
  readonly refused: boolean;
  readonly refusedIndexes: readonly number[];
  constructor(message: string, refusal: PublishRefusal) {
    super(message);
    this.refused = refusal.refused;
    this.refusedIndexes = refusal.refusedIndexes;
  }
}

/**
 * The memory transport with a broker that refuses one address, the way the AMQP transport
 * refuses a routing key over 255 bytes: the other replies go out, then `publish` rejects naming
 * the refused ones. `connectionFailures` makes the next publishes fail whole, as a lost
 * connection does (`refused: false`); a refused reply among them is still named.
 */
class RefusingTransport extends MemoryServerTransport {
  readonly #broker: Broker;
  /** Every reply offered for the undeliverable address, refused or not. */
  attemptsAtUndeliverable = 0;
  connectionFailures = 0;
  /** Batches the coordinator handed back for redelivery (on RabbitMQ each costs a delivery attempt). */
  rejectedBatches = 0;

  constructor(broker: Broker) {
    super(broker);
    this.#broker = broker;
  }

  override consume(partition: number, onBatch: BatchHandler): Promise<void> {
    return super.consume(partition, (batch, principals) =>
      onBatch(batch, principals).catch((err: unknown) => {
        this.rejectedBatches++;
        throw err;
      }),
    );
  }

  override async publish(replies: readonly Outbound[]): Promise<void> {
    const refusedIndexes = replies.flatMap((r, i) => (r.to === UNDELIVERABLE ? [i] : []));
    this.attemptsAtUndeliverable += refusedIndexes.length;
    if (this.connectionFailures > 0) {
      this.connectionFailures--;
      throw new PublishFailed('not connected (reconnecting)', { refused: false, refusedIndexes });
    }
    for (const r of replies) if (r.to !== UNDELIVERABLE) this.#broker.publishReply(r.to, r.body);
    if (refusedIndexes.length > 0) throw new PublishFailed('the broker refused replies', { refused: true, refusedIndexes });
  }
}

const running: { coordinator: Coordinator; clients: LockClient[] }[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) {
    await Promise.all(r.clients.map((c) => c.close()));
    await r.coordinator.stop();
  }
});

async function setUp(store?: StateStore) {
  const broker = new MemoryBroker();
  const transport = new RefusingTransport(broker);
  const metrics = new CoordinatorMetrics();
  const coordinator = await Coordinator.start({ transport, observer: metrics, ...(store === undefined ? {} : { store }) });
  metrics.attach(coordinator);
  const clients: LockClient[] = [];
  running.push({ coordinator, clients });
  // A short request timeout: a partition that stopped answering fails the test quickly.
  const client = async (workerId: string) => {
    const c = await LockClient.connect('memory:', {
      workerId,
      requestTimeoutMs: 2000,
      transport: new MemoryClientTransport(broker, { workerId, instance: 'x' }),
    });
    clients.push(c);
    return c;
  };
  /** A well-formed `open` whose answer goes to the undeliverable address. */
  const openUndeliverable = (id: string) =>
    broker.publishRequest(
      0,
      encode({ v: 1, op: 'open', id, worker: 'far', session: `far-${id}`, replyTo: UNDELIVERABLE, sessionTtlMs: 10_000, partitions: 1 }),
      'far',
    );
  return { broker, transport, metrics, coordinator, client, openUndeliverable };
}

/** Acquires and releases `lock` a few times: the partition answers this worker. */
async function cycles(c: LockClient, lock: string): Promise<number[]> {
  const tokens: number[] = [];
  for (let i = 0; i < 3; i++) {
    const lease = await c.acquire(lock, { ttlMs: 5000 });
    tokens.push(lease.token);
    await lease.release();
  }
  return tokens;
}

describe('a reply the transport refuses for good', () => {
  for (const [name, store] of [
    ['memory store', () => undefined],
    ['journaling store', () => new MemoryStore({ journal: true })],
  ] as const) {
    it(`is dropped and counted; the partition goes on answering everyone else (${name})`, async () => {
      const { transport, metrics, coordinator, client, openUndeliverable } = await setUp(store());
      const good = await client('good');
      await (await good.acquire('job', { ttlMs: 5000 })).release();

      openUndeliverable('far-1');
      const pending = good.acquire('job', { ttlMs: 5000 }); // in the same batch as the refused reply
      await (await pending).release();
      expect(await cycles(good, 'job')).toHaveLength(3);

      // Offered once, then dropped: not carried into every later publish, and no batch was
      // returned to the broker (on RabbitMQ, every return burns a delivery attempt of each
      // request in it, and good requests end up dead-lettered).
      expect(transport.attemptsAtUndeliverable).toBe(1);
      expect(transport.rejectedBatches).toBe(0);
      expect(coordinator.stats.total('repliesRefused')).toBe(1);
      expect(await metrics.metrics()).toMatch(/^lockq_replies_refused_total\{partition="0"\} 1$/m);
      // The request itself was decided and kept: only its answer is gone.
      expect(coordinator.counts().get(0)?.sessions).toBe(2);
      expect(coordinator.stalled()).toEqual([]);
    });
  }

  it('refused alongside a connection failure: the refused reply is dropped, the others go out with the next commit', async () => {
    const { transport, coordinator, client, openUndeliverable } = await setUp();
    const good = await client('good');
    await (await good.acquire('warm-up', { ttlMs: 5000 })).release();

    transport.connectionFailures = 1;
    openUndeliverable('far-2');
    const lease = await good.acquire('job', { ttlMs: 5000 }); // its grant failed once, then went out
    await lease.release();
    expect(await cycles(good, 'job')).toHaveLength(3);
    // Once per delivery of its request (the failed batch came back once, and a duplicate is
    // answered again), never carried into later publishes.
    expect(transport.attemptsAtUndeliverable).toBe(2);
    expect(coordinator.stats.total('repliesRefused')).toBe(2);
    expect(transport.rejectedBatches).toBe(1);
    expect(coordinator.stalled()).toEqual([]);
  });

  it('a publish that fails for a connection reason keeps its replies: they go out with the next commit', async () => {
    const { transport, coordinator, client } = await setUp();
    const good = await client('good');
    transport.connectionFailures = 2;
    const lease = await good.acquire('job', { ttlMs: 5000 });
    expect(transport.connectionFailures).toBe(0);
    expect(transport.rejectedBatches).toBe(2);
    expect(coordinator.inspect('job')?.holders.map((h) => h.token)).toEqual([lease.token]);
    await lease.release();
    expect(coordinator.stats.total('repliesRefused')).toBe(0);
    await waitFor(() => coordinator.stalled().length === 0, 'the partition to have answered everything');
  });
});
