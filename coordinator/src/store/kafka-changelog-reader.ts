import { Buffer } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { fixedPartitionAssigner, kafkaConsumerSettings, type ResolvedKafkaLinkOptions } from '@lockq/protocol/kafka';
import type { AssignerProtocol, Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import type { Logger } from 'pino';
import type { ChangelogRecord } from './kafka-changelog.js';

/** Settings of a {@link ChangelogReader}. */
export interface ChangelogReaderOptions {
  readonly kafka: Kafka;
  readonly assignerProtocol: typeof AssignerProtocol;
  readonly link: ResolvedKafkaLinkOptions;
  readonly topic: string;
  /** The changelog's partition count: the reader is given all of them. */
  readonly partitions: number;
  /** Names the reader's private group: `<groupPrefix>.<uuid>`. */
  readonly groupPrefix: string;
  /** Longest a fetch waits, and how long an idle reader sleeps between looks: bounds how fast a read starts. */
  readonly maxWaitMs: number;
  /** Largest record batch the reader asks for per partition (a larger one still comes, alone). */
  readonly maxBytesPerPartition: number;
  readonly log: Logger | undefined;
}

/** One read in progress: records of [next, end) of one partition, collected. */
interface Read {
  next: bigint;
  readonly end: bigint;
  readonly records: ChangelogRecord[];
  readonly resolve: (records: ChangelogRecord[]) => void;
  readonly reject: (err: Error) => void;
}

const noop = () => {};

/**
 * Reads a range of one changelog partition, `read_committed`, for a claim. kafkajs has no
 * `assign()`, and a consumer group of its own per claim would wait out the broker's
 * `group.initial.rebalance.delay.ms` (3 s by default) every time; so the reader is one
 * long-lived consumer in a private group (never committing) that is given every partition of
 * the changelog, all paused. A read seeks its partition to the range's start, resumes it, takes
 * batches until the range's end, and pauses it again. Reads of different partitions run side by
 * side; reads of one partition queue.
 */
export class ChangelogReader {
  readonly #o: ChangelogReaderOptions;
  readonly #groupId: string;
  readonly #reads = new Map<number, Read>();
  /** Per partition, the read queued last (reads of one partition run one after another). */
  readonly #queues = new Map<number, Promise<unknown>>();
  #consumer: Consumer | null = null;
  #starting: Promise<void> | null = null;
  #crashes = 0;
  /** The consumer crashed for good: the next read starts a new one. */
  #broken = false;
  #stopped = false;

  constructor(options: ChangelogReaderOptions) {
    this.#o = options;
    this.#groupId = `${options.groupPrefix}.${randomUUID()}`;
  }

  /** Connects and joins the private group (once; again after the consumer gave up). */
  start(): Promise<void> {
    if (this.#stopped) return Promise.reject(new Error('the changelog reader is stopped'));
    if (this.#broken) {
      this.#broken = false;
      this.#starting = null;
      const old = this.#consumer;
      this.#consumer = null;
      old?.disconnect().catch(noop);
    }
    this.#starting ??= this.#run().catch((err: unknown) => {
      this.#starting = null;
      const old = this.#consumer;
      this.#consumer = null;
      old?.disconnect().catch(noop);
      throw err;
    });
    return this.#starting;
  }

  /**
   * The committed records of `partition` with offsets in [`from`, `to`), oldest first (aborted
   * transactions and control records left out). Rejects after `timeoutMs`.
   */
  read(partition: number, from: string, to: string, timeoutMs: number): Promise<ChangelogRecord[]> {
    const previous = this.#queues.get(partition) ?? Promise.resolve();
    const run = previous.catch(noop).then(() => this.#readNow(partition, BigInt(from), BigInt(to), timeoutMs));
    this.#queues.set(partition, run);
    void run.finally(() => {
      if (this.#queues.get(partition) === run) this.#queues.delete(partition);
    }).catch(noop);
    return run;
  }

  /** Leaves the group and disconnects; reads in progress reject. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const [p, r] of this.#reads) {
      this.#reads.delete(p);
      r.reject(new Error('the changelog reader is stopped'));
    }
    const consumer = this.#consumer;
    this.#consumer = null;
    await this.#starting?.catch(noop);
    await consumer?.disconnect().catch(noop);
  }

  async #readNow(partition: number, from: bigint, end: bigint, timeoutMs: number): Promise<ChangelogRecord[]> {
    if (from >= end) return [];
    await this.start();
    const consumer = this.#consumer;
    if (consumer === null) throw new Error('the changelog reader is stopped');
    const { topic } = this.#o;
    return new Promise<ChangelogRecord[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.#reads.get(partition) !== read) return;
        this.#finish(partition);
        reject(new Error(`reading partition ${partition} of ${topic} did not reach offset ${end} within ${timeoutMs} ms (at ${read.next})`));
      }, timeoutMs);
      const read: Read = {
        next: from,
        end,
        records: [],
        resolve: (records) => {
          clearTimeout(timer);
          resolve(records);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      this.#reads.set(partition, read);
      try {
        consumer.seek({ topic, partition, offset: from.toString() });
        consumer.resume([{ topic, partitions: [partition] }]);
      } catch (err) {
        this.#reads.delete(partition);
        read.reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  /** The read of `partition` is over: stop fetching it. */
  #finish(partition: number): void {
    this.#reads.delete(partition);
    try {
      this.#consumer?.pause([{ topic: this.#o.topic, partitions: [partition] }]);
    } catch {
      // not running (stopping or crashed): nothing is fetched anyway
    }
  }

  async #run(): Promise<void> {
    const o = this.#o;
    const consumer = o.kafka.consumer({
      groupId: this.#groupId,
      partitionAssigners: [fixedPartitionAssigner('LockqChangelogReader', o.topic, Array.from({ length: o.partitions }, (_, p) => p), o.assignerProtocol)],
      ...kafkaConsumerSettings(o.link),
      maxWaitTimeInMs: o.maxWaitMs,
      maxBytesPerPartition: o.maxBytesPerPartition,
      readUncommitted: false,
      retry: { restartOnFailure: async () => ++this.#crashes < o.link.reconnect.attempts },
    });
    this.#consumer = consumer;
    let joined = false;
    consumer.on(consumer.events.GROUP_JOIN, () => {
      joined = true;
      this.#crashes = 0;
      // Before the first fetch of this membership: fetch only what reads are waiting for.
      consumer.pause([{ topic: o.topic }]);
      for (const [p, r] of this.#reads) {
        consumer.seek({ topic: o.topic, partition: p, offset: r.next.toString() });
        consumer.resume([{ topic: o.topic, partitions: [p] }]);
      }
    });
    // kafkajs does not hand a batch of nothing but transaction markers or aborted records to
    // eachBatch (it resolves it itself), but reports it here: a read may end on one.
    consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
      if (payload.topic !== o.topic || payload.batchSize !== 0 || payload.firstOffset === null) return;
      const read = this.#reads.get(payload.partition);
      if (read === undefined || BigInt(payload.firstOffset) < read.next) return;
      this.#advance(payload.partition, read, BigInt(payload.lastOffset));
    });
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      o.log?.warn({ err: payload.error, restart: payload.restart }, 'the changelog reader crashed');
      if (payload.restart) return; // kafkajs joins again; GROUP_JOIN re-seeks the reads
      this.#broken = true;
      for (const [p, r] of this.#reads) {
        this.#reads.delete(p);
        r.reject(new Error('the changelog reader gave up', { cause: payload.error }));
      }
    });
    await consumer.connect();
    await consumer.subscribe({ topic: o.topic, fromBeginning: true });
    // Resolves once the group is joined (or the start failed).
    await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: (payload) => this.#onBatch(payload) });
    if (!joined) throw new Error(`the changelog reader could not join its group ${this.#groupId}`);
    o.log?.debug({ group: this.#groupId }, 'changelog reader joined its group');
  }

  async #onBatch({ batch, resolveOffset, pause }: EachBatchPayload): Promise<void> {
    const partition = batch.partition;
    const read = this.#reads.get(partition);
    if (read === undefined) {
      pause(); // fetched before a read ended: nobody wants it
      return;
    }
    // kafkajs's Batch has it; its typings do not say so.
    const fetched = BigInt((batch as { fetchedOffset?: string }).fetchedOffset ?? batch.firstOffset() ?? '-1');
    if (fetched !== read.next) {
      // A fetch from before this read's seek: fetch again from where the read is.
      this.#consumer?.seek({ topic: this.#o.topic, partition, offset: read.next.toString() });
      return;
    }
    for (const m of batch.messages) {
      if (BigInt(m.offset) >= read.end) break;
      read.records.push({ key: m.key === null ? null : m.key.toString('utf8'), value: m.value === null ? null : Buffer.from(m.value), offset: m.offset });
    }
    // Control records (transaction markers) and aborted records count: they are in lastOffset.
    resolveOffset(batch.lastOffset());
    this.#advance(partition, read, BigInt(batch.lastOffset()));
  }

  /** The read has everything up to `last`: done once that reaches its end. */
  #advance(partition: number, read: Read, last: bigint): void {
    if (last >= read.next) read.next = last + 1n;
    if (read.next < read.end || this.#reads.get(partition) !== read) return;
    this.#finish(partition);
    read.resolve(read.records);
  }
}

