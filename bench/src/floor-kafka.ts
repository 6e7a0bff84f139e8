import { Buffer } from 'node:buffer';
import { replyDestination, replyTopic, requestTopic } from '@lockq/protocol';
import {
  coordinatorGroup,
  coordinatorTransactionalId,
  explicitPartitioner,
  kafkaClientConfig,
  replyPartitionOf,
  resolveKafkaLinkOptions,
  type ResolvedKafkaLinkOptions,
  fixedPartitionAssigner,
  kafkaConsumerSettings,
} from '@lockq/protocol/kafka';
import type { AssignerProtocol, Consumer, EachBatchPayload, Kafka, Producer } from 'kafkajs';
import type { Floor } from './floor.js';
import { deleteKafkaPrefix, KAFKA_URL, kafkaAdmin } from './kafka-lockq.js';
import { inBatches, uniquePrefix } from './lockq-amqp.js';
import { closedLoop } from './workload.js';

/**
 * The raw floor under lockq over Kafka: kafkajs directly, lockq's topic layout and delivery
 * guarantees, and nothing decided. A no-op responder answers each request in the requester's
 * partition of the shared reply topic; a round trip is one request and its reply, what each
 * half of a lockq acquire+release cycle costs at the least.
 *
 * Same as lockq (docs/kafka.md): `<prefix>.requests` with one partition (the bench's lockq runs
 * one), `<prefix>.replies` with 16 partitions, a reply keyed by its address in the partition the
 * address hashes to; requesters produce with an idempotent producer (acks from all in-sync
 * replicas), each from a kafkajs client of its own, and read only their reply partition through
 * a consumer group of their own (a one-partition assigner), read_committed, dropping other
 * requesters' records; the responder consumes in the coordinators' group and answers each batch
 * in one transaction of a transactional producer (`<prefix>.coordinator.0`) with the batch's
 * offsets (`sendOffsets`), committed before the next batch. So this is lockq's structure without
 * its decisions, codec and journal: batches are serial, as the coordinator's are.
 */

/** About the size of a lockq acquire request and its grant (as the RabbitMQ floor). */
const REQUEST = Buffer.alloc(280, 'r');
const REPLY = Buffer.alloc(200, 'g');
/** lockq's default reply partitions (KafkaServerTransport's `replyPartitions`). */
const REPLY_PARTITIONS = 16;
/** The header carrying the requester's address (lockq carries it in the request body). */
const REPLY_TO = 'reply-to';
/** As lockq's coordinator: back-to-back transactions of one id retry quickly (CONCURRENT_TRANSACTIONS). */
const TRANSACTION_RETRY = { initialRetryTime: 5, maxRetryTime: 1000, retries: 12 };



/**
 * Reads partition `partition` of `topic` from its current end, through a consumer group of its
 * own (`groupId`), read_committed; `onRecords` gets each batch. Resolves once the group is
 * joined and the consumer sought, so nothing written after it resolves is missed.
 */
export async function readOnePartition(
  kafka: Kafka,
  protocol: typeof AssignerProtocol,
  link: ResolvedKafkaLinkOptions,
  o: { readonly topic: string; readonly partition: number; readonly groupId: string; readonly from: string },
  onRecords: (payload: EachBatchPayload) => void,
): Promise<Consumer> {
  const consumer = kafka.consumer({ groupId: o.groupId, partitionAssigners: [fixedPartitionAssigner('LockqBenchOnePartition', o.topic, [o.partition], protocol)], ...kafkaConsumerSettings(link) });
  let joined = false;
  consumer.on(consumer.events.GROUP_JOIN, () => {
    joined = true;
    consumer.seek({ topic: o.topic, partition: o.partition, offset: o.from });
  });
  await consumer.connect();
  await consumer.subscribe({ topic: o.topic, fromBeginning: false });
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async (payload) => {
      onRecords(payload);
      payload.resolveOffset(payload.batch.lastOffset());
    },
  });
  if (!joined) throw new Error(`${o.groupId}: did not join its group`);
  return consumer;
}

interface Requester {
  readonly producer: Producer;
  readonly consumer: Consumer;
  roundTrip(): Promise<void>;
}

/** Opens the raw Kafka floor with `requesters` requesters, each on its own kafkajs client; see the file's comment. */
export async function openKafkaFloor(requesters: number): Promise<Floor> {
  const { default: kafkajs } = await import('kafkajs');
  const prefix = uniquePrefix('kfloor');
  const link = resolveKafkaLinkOptions({ url: KAFKA_URL, driverLogLevel: 'nothing' }, 'lockq-bench-floor');
  const requests = requestTopic(prefix);
  const replies = replyTopic(prefix);
  const parts: { disconnect(): Promise<void> }[] = [];
  const close = async () => {
    await Promise.all(parts.map((p) => p.disconnect().catch(() => undefined)));
    await deleteKafkaPrefix(prefix);
  };
  try {
    const admin = await kafkaAdmin();
    parts.push(admin);
    await admin.createTopics({
      waitForLeaders: true,
      topics: [
        { topic: requests, numPartitions: 1 },
        { topic: replies, numPartitions: REPLY_PARTITIONS, configEntries: [{ name: 'retention.ms', value: '3600000' }] },
      ],
    });

    // The responder: the coordinators' group, a transaction per batch with its offsets.
    const server = new kafkajs.Kafka(kafkaClientConfig(link, undefined));
    const producer = server.producer({
      transactionalId: coordinatorTransactionalId(0, prefix),
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      createPartitioner: explicitPartitioner,
      retry: TRANSACTION_RETRY,
    });
    parts.push(producer);
    await producer.connect();
    const responder = server.consumer({ groupId: coordinatorGroup(prefix), ...kafkaConsumerSettings(link) });
    parts.push(responder);
    await responder.connect();
    await responder.subscribe({ topic: requests, fromBeginning: true });
    await responder.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset }) => {
        if (batch.messages.length === 0) return;
        const txn = await producer.transaction();
        try {
          const messages = batch.messages.map((m) => {
            const to = m.headers?.[REPLY_TO]?.toString() ?? '';
            return { key: to, value: REPLY, partition: replyPartitionOf(to, REPLY_PARTITIONS) };
          });
          await txn.sendBatch({ acks: -1, topicMessages: [{ topic: replies, messages }] });
          const next = (BigInt(batch.lastOffset()) + 1n).toString();
          await txn.sendOffsets({ consumerGroupId: coordinatorGroup(prefix), topics: [{ topic: requests, partitions: [{ partition: batch.partition, offset: next }] }] });
          await txn.commit();
        } catch (err) {
          await txn.abort().catch(() => undefined);
          throw err; // kafkajs fetches the batch again
        }
        resolveOffset(batch.lastOffset());
      },
    });

    const ends = await admin.fetchTopicOffsets(replies);
    const list = await inBatches(requesters, 16, async (i): Promise<Requester> => {
      const kafka = new kafkajs.Kafka(kafkaClientConfig(link, undefined));
      const address = replyDestination('anonymous', `floor-${i}`, 'x', prefix);
      const key = Buffer.from(address);
      const partition = replyPartitionOf(address, REPLY_PARTITIONS);
      const requestProducer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: explicitPartitioner });
      parts.push(requestProducer);
      await requestProducer.connect();
      let waiting: (() => void) | null = null;
      let timer: NodeJS.Timeout | undefined;
      const from = ends.find((e) => e.partition === partition)?.offset ?? '0';
      const consumer = await readOnePartition(kafka, kafkajs.AssignerProtocol, link, { topic: replies, partition, groupId: address, from }, ({ batch }) => {
        for (const m of batch.messages) {
          if (m.key === null || !key.equals(m.key)) continue; // another requester's
          const done = waiting;
          waiting = null;
          clearTimeout(timer);
          done?.();
        }
      });
      parts.push(consumer);
      return {
        producer: requestProducer,
        consumer,
        roundTrip: () =>
          new Promise<void>((resolve, reject) => {
            waiting = resolve;
            timer = setTimeout(() => reject(new Error(`no reply for ${address} within 10 s`)), 10_000);
            // Like the SDK: the answer is what is awaited; a failed produce fails the run.
            requestProducer
              .send({ topic: requests, acks: -1, messages: [{ partition: 0, key: address, value: REQUEST, headers: { [REPLY_TO]: address } }] })
              .catch((err: unknown) => reject(new Error('the broker did not take a request', { cause: err })));
          }),
      };
    });
    await Promise.all(list.map((r) => r.roundTrip()));
    return {
      prefix,
      async run(n, seconds) {
        const r = await closedLoop(n, seconds, async (i) => {
          const t0 = performance.now();
          await (list[i] as Requester).roundTrip();
          return performance.now() - t0;
        });
        return { rate: r.rate, latencies: r.latencies };
      },
      close,
    };
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
}
