import { randomUUID } from 'node:crypto';
import { Coordinator, KafkaServerTransport, type Outbound, type StateStore } from '@lockq/coordinator';
import { kafkaClientConfig, resolveKafkaLinkOptions } from '@lockq/protocol/kafka';
import { LockClient } from '@lockq/worker-sdk';
import { KafkaClientTransport } from '@lockq/worker-sdk/transport';
import type { Admin } from 'kafkajs';
import { inBatches, uniquePrefix } from './lockq-amqp.js';
import type { Contender, LockSystem } from './workload.js';

/**
 * lockq over Kafka for the benches, and the Kafka housekeeping every Kafka bench shares: the
 * broker's URL, an admin client, and deleting a run's topics and consumer groups.
 */

/** The broker every Kafka bench uses. */
export const KAFKA_URL = process.env.LOCKQ_BENCH_KAFKA_URL ?? 'kafka://127.0.0.1:9092';

/** A connected kafkajs admin client on {@link KAFKA_URL}, with lockq's client settings. */
export async function kafkaAdmin(clientId = 'lockq-bench-admin'): Promise<Admin> {
  const { default: kafkajs } = await import('kafkajs');
  const admin = new kafkajs.Kafka(kafkaClientConfig(resolveKafkaLinkOptions({ url: KAFKA_URL, driverLogLevel: 'nothing' }, clientId), undefined)).admin();
  await admin.connect();
  return admin;
}

/**
 * Deletes every topic and consumer group whose name starts with `prefix` + '.' (a run's request,
 * reply, dead-letter and changelog topics, its coordinators' group and every worker's reply
 * group). Groups still emptying (a member leaving) are tried again for a few seconds. The
 * transactional ids stay: Kafka has no call to delete them; the broker forgets an unused one
 * after `transactional.id.expiration.ms` (7 days by default).
 */
export async function deleteKafkaPrefix(prefix: string): Promise<void> {
  const admin = await kafkaAdmin();
  try {
    const mine = (name: string) => name.startsWith(`${prefix}.`);
    const topics = (await admin.listTopics()).filter(mine);
    for (let i = 0; i < topics.length; i += 100) await admin.deleteTopics({ topics: topics.slice(i, i + 100) });
    await deleteGroups(admin, (await admin.listGroups()).groups.map((g) => g.groupId).filter(mine));
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** Deletes consumer groups, retrying those not empty yet (their members are still leaving). */
export async function deleteGroups(admin: Admin, groups: readonly string[]): Promise<void> {
  let left = [...groups];
  for (let attempt = 0; left.length > 0; attempt++) {
    const failed: string[] = [];
    for (let i = 0; i < left.length; i += 100) {
      const slice = left.slice(i, i + 100);
      try {
        await admin.deleteGroups(slice);
      } catch (err) {
        // kafkajs reports each group's outcome; a group that is gone already is fine.
        const outcomes = (err as { groups?: { groupId: string; errorCode: number }[] }).groups ?? slice.map((groupId) => ({ groupId, errorCode: -1 }));
        const GROUP_ID_NOT_FOUND = 69;
        failed.push(...outcomes.filter((g) => g.errorCode !== 0 && g.errorCode !== GROUP_ID_NOT_FOUND).map((g) => g.groupId));
      }
    }
    if (failed.length > 0 && attempt >= 10) throw new Error(`could not delete ${failed.length} consumer group(s), e.g. ${failed[0]}`);
    left = failed;
    if (left.length > 0) await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** The coordinator's transport, counting what it writes: replies and dead letters. */
class CountingKafkaServerTransport extends KafkaServerTransport {
  readonly count = { n: 0 };
  override publish(replies: readonly Outbound[], partition?: number): Promise<void> {
    this.count.n += replies.length;
    return super.publish(replies, partition);
  }
  override deadLetter(partition: number, body: Uint8Array, code: string): Promise<void> {
    this.count.n++;
    return super.deadLetter(partition, body, code);
  }
}

/** A worker's transport, counting what it writes: requests and forwarded grants. */
export class CountingKafkaClientTransport extends KafkaClientTransport {
  readonly #count: { n: number };
  constructor(options: ConstructorParameters<typeof KafkaClientTransport>[0], count: { n: number }) {
    super(options);
    this.#count = count;
  }
  override send(partition: number, body: Uint8Array): Promise<void> {
    this.#count.n++;
    return super.send(partition, body);
  }
  override forward(address: string, body: Uint8Array): Promise<void> {
    this.#count.n++;
    return super.forward(address, body);
  }
}

export interface LockqKafkaSystem extends LockSystem {
  readonly prefix: string;
  readonly coordinator: Coordinator;
  readonly transport: KafkaServerTransport;
  /** Closes the clients, stops the coordinator and deletes the run's topics and groups. */
  close(): Promise<void>;
}

/**
 * lockq over Kafka: a coordinator in this process on {@link KafkaServerTransport} (identity off:
 * Kafka vouches for no sender; one partition, as the RabbitMQ bench), and `workers` LockClients,
 * each on its own {@link KafkaClientTransport} (its own kafkajs client, producer and reply
 * group). Both sides count the records they write. `store` makes the coordinator's store from
 * its transport (a Kafka store writes through it); the default is the MemoryStore.
 */
export async function openLockqKafka(options: {
  readonly workers: number;
  readonly label?: string;
  readonly store?: (transport: KafkaServerTransport) => StateStore;
  /** False: every hand-off crosses the broker, as between workers in separate processes. @defaultValue true */
  readonly localHandOff?: boolean;
}): Promise<LockqKafkaSystem> {
  const prefix = uniquePrefix('k');
  const transport = new CountingKafkaServerTransport({ url: KAFKA_URL, prefix, clientId: 'lockq-bench-coordinator' });
  const published = { n: 0 };
  let coordinator: Coordinator | undefined;
  let clients: LockClient[] = [];
  const close = async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await (coordinator?.stop() ?? transport.close()).catch(() => undefined);
    await deleteKafkaPrefix(prefix);
  };
  try {
    const store = options.store?.(transport);
    coordinator = await Coordinator.start({ transport, identity: 'off', ...(store === undefined ? {} : { store }) });
    clients = await inBatches(options.workers, 16, async (i) => {
      const workerId = `bench-w${i}`;
      const inner = new CountingKafkaClientTransport({ url: KAFKA_URL, workerId, instance: randomUUID().slice(0, 8), prefix, clientId: 'lockq-bench-worker' }, published);
      return LockClient.connect(KAFKA_URL, { workerId, prefix, localHandOff: options.localHandOff ?? true, transport: inner });
    });
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
  const workers: Contender[] = clients.map((c) => ({
    async acquire(name) {
      const lease = await c.acquire(name, { ttlMs: 10_000, waitMs: 60_000 });
      return () => lease.release();
    },
  }));
  // Open each worker's session and let the JIT settle before anything is measured.
  await Promise.all(clients.map(async (c, i) => (await c.acquire(`warm-up:${i}`, { ttlMs: 10_000 })).release()));
  return {
    label: options.label ?? 'lockq',
    prefix,
    coordinator,
    transport,
    workers,
    messages: () => published.n + transport.count.n,
    close,
  };
}
