/**
 * The Kafka adapters on a real Kafka broker (docs/kafka.md: `npm run kafka` starts one): the
 * transport contract, then what the contract cannot say: a rejected batch sought back and
 * redelivered, a partition revoked when a second coordinator joins the group, a zombie whose
 * transactional producer is fenced. Every test has a prefix of its own; its topics and groups
 * are deleted after it. Pure parts (URL options, the assigner, the reply partition) first.
 */
import { Buffer } from 'node:buffer';
import { replyTopic } from '@lockq/protocol';
import { coordinatorGroup, parseKafkaUrl, replyPartitionOf, requestKey, resolveKafkaLinkOptions } from '@lockq/protocol/kafka';
import { type ClientTransport, KafkaClientTransport, type KafkaClientTransportOptions } from '@lockq/worker-sdk/transport';
import kafkajs from 'kafkajs';
import { afterEach, describe, expect, it } from 'vitest';
import { Coordinator } from '../coordinator/src/index.js';
import { assignPartitions, type PartitionClaim } from '../coordinator/src/transport/kafka-assigner.js';
import { KafkaServerTransport, type KafkaServerTransportOptions } from '../coordinator/src/transport/kafka.js';
import { KAFKA_BROKERS, requireKafka } from './support/brokers.js';
import { dec, defineTransportContract, enc, type TransportUnderTest } from './transport-contract.js';
import { elapse, waitFor } from './support/wait-for.js';

const available = await requireKafka();
const URL = `kafka://${KAFKA_BROKERS}`;
const RUN = `tk${Date.now().toString(36)}${process.pid.toString(36)}`;
let made = 0;

/** Short group timings, so that joins, rebalances and take-overs take well under a second. */
export const FAST = Object.freeze({
  sessionTimeoutMs: 3000,
  heartbeatIntervalMs: 200,
  rebalanceTimeoutMs: 5000,
  maxWaitMs: 100,
  reconnect: { initialMs: 20, maxMs: 500 },
});

const silent = { logLevel: kafkajs.logLevel.NOTHING };
const testKafka = new kafkajs.Kafka({ brokers: KAFKA_BROKERS.split(','), clientId: 'lockq-test', ...silent });

/** Deletes the topics and consumer groups of `prefix` (every name starts with `<prefix>.`). */
async function deletePrefix(prefix: string): Promise<void> {
  const admin = testKafka.admin();
  await admin.connect();
  try {
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(`${prefix}.`));
    if (topics.length > 0) await admin.deleteTopics({ topics });
    const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(`${prefix}.`));
    if (groups.length > 0) await admin.deleteGroups(groups).catch(() => undefined);
  } finally {
    await admin.disconnect();
  }
}

/** Everything on `topic` (one partition), read committed, with its headers as text. */
async function readTopic(topic: string): Promise<{ value: Buffer; headers: Record<string, string> }[]> {
  const admin = testKafka.admin();
  await admin.connect();
  const [end] = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const high = BigInt(end?.high ?? '0');
  const got: { value: Buffer; headers: Record<string, string> }[] = [];
  if (high === 0n) return got;
  const consumer = testKafka.consumer({ groupId: `${topic}.reader.${made++}`, maxWaitTimeInMs: 100 });
  let reached = false;
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    if (BigInt(payload.lastOffset) + 1n >= high) reached = true;
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const headers = Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)]));
      got.push({ value: message.value ?? Buffer.alloc(0), headers });
    },
  });
  await waitFor(() => reached, `reading ${topic} to its end`);
  await consumer.disconnect();
  return got;
}

function serverOptions(prefix: string, extra: Partial<KafkaServerTransportOptions> = {}): KafkaServerTransportOptions {
  return { url: URL, prefix, partitions: 4, replyPartitions: 4, ...FAST, ...extra };
}

function clientOptions(prefix: string, workerId: string): KafkaClientTransportOptions {
  return { url: URL, prefix, workerId, instance: 'i', ...FAST };
}

/** A fresh prefix with its topics made (as a coordinator would), deleted again by `cleanup`. */
async function topology(): Promise<TransportUnderTest & { prefix: string }> {
  const prefix = `${RUN}.${++made}`;
  const setup = new KafkaServerTransport(serverOptions(prefix));
  await setup.ensureTopics();
  await setup.close();
  return {
    prefix,
    principal: 'anonymous',
    vouchesForSenders: false,
    client: (workerId) => new KafkaClientTransport(clientOptions(prefix, workerId)),
    server: () => new KafkaServerTransport(serverOptions(prefix)),
    deadLetters: async () =>
      (await readTopic(`${prefix}.dead-letter`)).map((d) => ({ body: new Uint8Array(d.value), code: d.headers['lockq-code'] ?? '' })),
    cleanup: () => deletePrefix(prefix),
  };
}

defineTransportContract('kafka', topology, { skip: !available });
