import { Buffer } from 'node:buffer';
import { kafkaClientConfig, resolveKafkaLinkOptions } from '@lockq/protocol/kafka';
import type { Admin, Consumer, Kafka } from 'kafkajs';
import { readOnePartition } from './floor-kafka.js';
import { applyKafkajsIdleFix } from './kafka-idle-fix.js';
import { KAFKA_URL } from './kafka-lockq.js';
import { inBatches } from './lockq-amqp.js';

/**
 * A process of lightweight reply readers for the kafka-replies bench (kafka-replies.ts): each
 * reader is one kafkajs consumer in a group of its own reading one partition from its end,
 * read_committed, as a lockq worker reads its replies. Driven by the parent over IPC; reports
 * connect and close times, reply latencies (on this process's clock, which the parent
 * corrects by the offset it measured with `sync`) and the CPU this process used.
 */

/** Where a reader's replies are. */
export interface ReaderSpec {
  /** The reply address: record key and the reader's group id. */
  readonly address: string;
  readonly topic: string;
  readonly partition: number;
  /** Per-worker layout: the reader creates its topic when it connects and deletes it when it closes. */
  readonly ownTopic: boolean;
}

export type RepliesCommand =
  | { readonly type: 'sync'; readonly id: number }
  | { readonly type: 'connect'; readonly readers: readonly ReaderSpec[]; readonly width: number }
  | { readonly type: 'measure' }
  | { readonly type: 'report' }
  | { readonly type: 'close'; readonly width: number };

export type RepliesReport =
  | { readonly type: 'sync'; readonly id: number; readonly now: number }
  /** Per reader, ms from starting to connect until reading (NaN: failed); failures' messages, a few. */
  | { readonly type: 'connected'; readonly connectMs: readonly number[]; readonly errors: readonly string[] }
  | { readonly type: 'measuring' }
  /**
   * Since `measure`: latencies (ms, this process's clock minus the send time in the record),
   * records fetched (own and others'), CPU seconds of this process.
   */
  | { readonly type: 'report'; readonly latencies: readonly number[]; readonly fetched: number; readonly own: number; readonly cpuSeconds: number }
  | { readonly type: 'closed'; readonly closeMs: readonly number[] };

/** Wall-clock ms with sub-millisecond resolution; comparable across processes up to a constant offset. */
export const clock = () => performance.timeOrigin + performance.now();

/** The first 8 bytes of a reply: the send time on the sender's clock. */
export function sentAt(value: Buffer | null): number {
  return value === null || value.length < 8 ? Number.NaN : value.readDoubleBE(0);
}

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
