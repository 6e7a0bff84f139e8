import { Buffer } from 'node:buffer';
import { kafkaClientConfig, resolveKafkaLinkOptions } from '@lockq/protocol/kafka';
import type { Admin, Consumer, Kafka } from 'kafkajs';
import { readOnePartition } from './floor-kafka.js';
import { applyKafkajsIdleFix } from './kafka-idle-fix.js';
import { KAFKA_URL } from './kafka-lockq.js';
import { clock, type ReaderSpec, type RepliesCommand, type RepliesReport, sentAt } from './kafka-replies-ipc.js';
import { inBatches } from './lockq-amqp.js';

/**
 * A process of lightweight reply readers for the kafka-replies bench (kafka-replies.ts): each
 * reader is one kafkajs consumer in a group of its own reading one partition from its end,
 * read_committed, as a lockq worker reads its replies. Driven by the parent over IPC; reports
 * connect and close times, reply latencies (on this process's clock, which the parent
 * corrects by the offset it measured with `sync`) and the CPU this process used. Its IPC
 * messages are in kafka-replies-ipc.ts.
 */

interface Reader {
  readonly spec: ReaderSpec;
  consumer: Consumer | null;
}

function send(report: RepliesReport): void {
  process.send?.(report);
}

const message = (err: unknown) => (err instanceof Error ? (err.cause instanceof Error ? `${err.message}: ${err.cause.message}` : err.message) : String(err));

async function main(): Promise<void> {
  applyKafkajsIdleFix(true);
  process.on('SIGINT', () => {}); // the parent stops the run and closes this process
  const { default: kafkajs } = await import('kafkajs');
  const link = resolveKafkaLinkOptions({ url: KAFKA_URL, driverLogLevel: 'nothing' }, 'lockq-bench-reader');
  const kafka: Kafka = new kafkajs.Kafka(kafkaClientConfig(link, undefined));
  let admin: Admin | null = null;
  const readers: Reader[] = [];
  let latencies: number[] = [];
  let fetched = 0;
  let own = 0;
  let cpu = process.cpuUsage();

  const connectOne = async (reader: Reader): Promise<number> => {
    const t0 = performance.now();
    const { spec } = reader;
    const a = admin as Admin;
    let from = '0';
    if (spec.ownTopic) {
      await a.createTopics({ waitForLeaders: true, topics: [{ topic: spec.topic, numPartitions: 1 }] });
    } else {
      const ends = await a.fetchTopicOffsets(spec.topic);
      from = ends.find((e) => e.partition === spec.partition)?.offset ?? '0';
    }
    const key = Buffer.from(spec.address);
    reader.consumer = await readOnePartition(kafka, kafkajs.AssignerProtocol, link, { topic: spec.topic, partition: spec.partition, groupId: spec.address, from }, ({ batch }) => {
      const now = clock();
      for (const m of batch.messages) {
        fetched++;
        if (m.key === null || !key.equals(m.key)) continue; // another reader's
        own++;
        latencies.push(now - sentAt(m.value));
      }
    });
    return performance.now() - t0;
  };

  const closeOne = async (reader: Reader): Promise<number> => {
    const t0 = performance.now();
    await reader.consumer?.disconnect();
    reader.consumer = null;
    if (reader.spec.ownTopic) await (admin as Admin).deleteTopics({ topics: [reader.spec.topic] });
    return performance.now() - t0;
  };

  let exiting = false;
  const exit = async () => {
    if (exiting) return;
    exiting = true;
    await Promise.all(readers.map((r) => r.consumer?.disconnect().catch(() => undefined)));
    await admin?.disconnect().catch(() => undefined);
    process.exit(0);
  };
  process.on('disconnect', () => void exit());

  process.on('message', (raw) => {
    const c = raw as RepliesCommand;
    void (async () => {
      switch (c.type) {
        case 'sync':
          send({ type: 'sync', id: c.id, now: clock() });
          return;
        case 'connect': {
          admin ??= kafka.admin();
          await admin.connect();
          const errors: string[] = [];
          const fresh = c.readers.map((spec) => ({ spec, consumer: null }) as Reader);
          readers.push(...fresh);
          const connectMs = await inBatches(fresh.length, c.width, (i) =>
            connectOne(fresh[i] as Reader).catch((err: unknown) => {
              if (errors.length < 5) errors.push(message(err));
              return Number.NaN;
            }),
          );
          send({ type: 'connected', connectMs, errors });
          return;
        }
        case 'measure':
          latencies = [];
          fetched = 0;
          own = 0;
          cpu = process.cpuUsage();
          send({ type: 'measuring' });
          return;
        case 'report': {
          const used = process.cpuUsage(cpu);
          send({ type: 'report', latencies, fetched, own, cpuSeconds: (used.user + used.system) / 1e6 });
          return;
        }
        case 'close': {
          const closeMs = await inBatches(readers.length, c.width, (i) => closeOne(readers[i] as Reader).catch(() => Number.NaN));
          readers.length = 0;
          send({ type: 'closed', closeMs });
          return;
        }
      }
    })();
  });
}

void main();
