import { Buffer } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { checkInteger, deadLetterDestination, replyTopic, requestTopic, TOPOLOGY_PREFIX } from '@lockq/protocol';
import {
  coordinatorGroup,
  DEAD_LETTER_HEADERS,
  explicitPartitioner,
  KafkaTransportError,
  kafkaClientConfig,
  kafkaIntegerOption,
  kafkaTlsHint,
  type KafkaLinkOptions,
  partitionCount,
  replyPartitionOf,
  type ResolvedKafkaLinkOptions,
  resolveKafkaLinkOptions,
} from '@lockq/protocol/kafka';
import type { Admin, AssignerProtocol, Kafka, Message, Producer, TopicMessages } from 'kafkajs';
import type { Logger } from 'pino';
import { type DeadLetterBounds, deadLetterPrefix, resolveDeadLetterBounds } from './dead-letter.js';
import { KafkaPartition, type KafkaPartitionHost } from './kafka-partition.js';
import type { BatchHandler, Outbound, ServerTransport } from './types.js';

/**
 * Options of {@link KafkaServerTransport}; the connection settings are {@link KafkaLinkOptions}.
 * Every coordinator of a deployment must use the same `partitions` and `prefix`.
 */
export interface KafkaServerTransportOptions extends KafkaLinkOptions, DeadLetterBounds {
  /** Prefix of every topic, group and transactional id. @defaultValue `'lockq'` */
  readonly prefix?: string;
  /**
   * The deployment's partition count (the coordinator's `partitions`): the request topic has
   * exactly this many Kafka partitions, and a coordinator finding another count refuses to
   * start. @defaultValue 1
   */
  readonly partitions?: number;
  /**
   * Partitions of the reply topic when this coordinator creates it (an existing topic keeps its
   * count; readers and writers take it from the topic). More spread the reading: a worker reads
   * its address's partition and drops the records of the others there. Also `?replyPartitions=`
   * in the URL. @defaultValue 16
   */
  readonly replyPartitions?: number;
  /** Replicas of each topic it creates; -1 is the broker's `default.replication.factor`. Also in the URL. @defaultValue -1 */
  readonly replicationFactor?: number;
  /** `retention.ms` of the reply topic it creates: how long a reply waits for a worker that is away. @defaultValue 3600000 */
  readonly replyRetentionMs?: number;
  /**
   * The consumer group of the coordinators. Only for tests that must put two coordinators of one
   * prefix in separate groups. @defaultValue `<prefix>.coordinators`
   */
  readonly groupId?: string;
  /** Called when a consumer that had crashed joined its group again (for metrics). */
  readonly onReconnect?: () => void;
  /** Called when a consumer crashed once too often (`reconnect.attempts`) and was not restarted. */
  readonly onError?: (error: Error) => void;
}

const DEFAULT_REPLY_PARTITIONS = 16;
const DEFAULT_REPLICATION_FACTOR = -1;
const DEFAULT_REPLY_RETENTION_MS = 3_600_000;
/** Segments of the dead-letter topic are no smaller than this (Kafka 4 refuses below 1 MiB). */
const MIN_SEGMENT_BYTES = 1_048_576;
/** Room per dead letter beyond its kept body: key, headers, record overhead. */
const DEAD_LETTER_OVERHEAD_BYTES = 256;

/** One record to write in a partition's transaction: see {@link KafkaServerTransport.writeInTransaction}. */
export interface KafkaRecord {
  readonly topic: string;
  readonly partition: number;
  readonly key?: string | Buffer | null;
  readonly value: Buffer | null;
  readonly headers?: Readonly<Record<string, string | Buffer>>;
}

/** What {@link KafkaServerTransport.storeLink} gives a store that keeps its state in Kafka. */
export interface KafkaStoreLink {
  readonly kafka: Kafka;
  readonly assignerProtocol: typeof AssignerProtocol;
  readonly link: ResolvedKafkaLinkOptions;
  /** Replicas of each topic the transport creates (-1: the broker's default). */
  readonly replicationFactor: number;
  /** The transport's admin client, connected on first use. */
  readonly admin: () => Promise<Admin>;
}

/**
 * The coordinator side of Kafka (docs/kafka.md, docs/protocol.md §17).
 *
 * Topology, created at the first use (`ensureTopics`) when missing: `<prefix>.requests` with one
 * Kafka partition per lockq partition, `<prefix>.replies` with `replyPartitions` (a reply is
 * keyed by its address, in the partition the address hashes to), and `<prefix>.dead-letter`
 * (one partition, bounded in bytes to about `deadLetterMaxLength` letters).
 *
 * Consuming: each `consume(p)` is a consumer of its own in the group `<prefix>.coordinators`,
 * whose assigner gives partition `p` to one of the consumers that asked for it: the one that
 * holds it (sticky), unless its coordinator has more than its share, so a new coordinator
 * takes half the partitions and a second consumer of a partition is a standby. The partition's
 * batches then arrive in order, one at a time, and each batch's replies, dead letters and
 * offsets commit in one transaction of the partition's transactional producer
 * (`<prefix>.coordinator.<p>`); a zombie that lost the partition is fenced by Kafka. Details in
 * {@link KafkaPartition}.
 *
 * Identity: Kafka cannot say who wrote a record, so batches come without principals and the
 * coordinator must run with identity `off` ({@link vouchesForSenders}).
 *
 * Publishing: `publish(replies, p)` writes into partition `p`'s transaction (the batch's, or one
 * of its own for an expiry tick) and rejects unless `p` is held here; without a partition it
 * uses a plain idempotent producer (tools and tests, never the runner). Kafka takes any reply
 * address as a key, so no reply is refused alone: a failure fails the whole publish.
 *
 * @example
 * ```ts
 * const transport = new KafkaServerTransport({ url: 'kafka://127.0.0.1:9092', partitions: 8, logger });
 * const coordinator = await Coordinator.start({ transport, partitions: 8, identity: 'off' });
 * ```
 */
export class KafkaServerTransport implements ServerTransport {
  readonly prefix: string;
  /** Kafka cannot say who wrote a record: batches carry no principals (docs/security.md §3). */
  readonly vouchesForSenders = false as const;
  /** The deployment's partition count: the request topic's. */
  readonly partitions: number;
  readonly #link: ResolvedKafkaLinkOptions;
  readonly #options: KafkaServerTransportOptions;
  readonly #log: Logger | undefined;
  readonly #deadLetters: Required<DeadLetterBounds>;
  readonly #replyPartitionsWanted: number;
  readonly #replicationFactor: number;
  readonly #replyRetentionMs: number;
  readonly #groupId: string;
  readonly #requestTopic: string;
  readonly #replyTopic: string;
  readonly #deadLetterTopic: string;
  /** This transport's name in the group: the unit partitions are spread over. */
  readonly #owner = randomUUID();
  readonly #parts = new Map<number, KafkaPartition>();
  #client: Promise<{ kafka: Kafka; host: KafkaPartitionHost }> | null = null;
  #admin: Promise<Admin> | null = null;
  #plain: Promise<Producer> | null = null;
  #topics: Promise<void> | null = null;
  #replyPartitions = 0;
  #closing = false;

  constructor(options: KafkaServerTransportOptions) {
    this.#options = options;
    this.#link = resolveKafkaLinkOptions(options, 'lockq-coordinator');
    const q = this.#link.query;
    this.prefix = options.prefix ?? TOPOLOGY_PREFIX;
    this.partitions = checkInteger('partitions', options.partitions ?? 1, 1, 100_000);
    this.#replyPartitionsWanted = kafkaIntegerOption('replyPartitions', options.replyPartitions, q, DEFAULT_REPLY_PARTITIONS, 1, 100_000);
    this.#replicationFactor = kafkaIntegerOption('replicationFactor', options.replicationFactor, q, DEFAULT_REPLICATION_FACTOR, -1, 32_767);
    if (this.#replicationFactor === 0) throw new RangeError('replicationFactor: expected -1 (the broker default) or at least 1, got 0');
    this.#replyRetentionMs = checkInteger('replyRetentionMs', options.replyRetentionMs ?? DEFAULT_REPLY_RETENTION_MS, 1);
    this.#deadLetters = resolveDeadLetterBounds(options);
    this.#groupId = options.groupId ?? coordinatorGroup(this.prefix);
    this.#requestTopic = requestTopic(this.prefix);
    this.#replyTopic = replyTopic(this.prefix);
    this.#deadLetterTopic = deadLetterDestination(this.prefix);
    this.#log = options.logger?.child({ component: 'kafka-server-transport' });
  }

  /**
   * Creates the topics that are missing and checks the request topic's partition count;
   * resolves once they can be used. Called by the first `consume`, `publish` or `deadLetter`;
   * a failure is reported and the next call tries again.
   */
  ensureTopics(): Promise<void> {
    this.#topics ??= this.#makeTopics().catch((err: unknown) => {
      this.#topics = null;
      if (err instanceof KafkaTransportError) throw err;
      const hint = kafkaTlsHint(this.#link.tls, err);
      throw new KafkaTransportError(`cannot set up the topics at ${this.#link.logUrl}${hint === undefined ? '' : `: ${hint}`}`, { cause: err });
    });
    return this.#topics;
  }

  async consume(partition: number, onBatch: BatchHandler, onLost?: () => void, onGained?: () => void): Promise<void> {
    checkInteger('partition', partition, 0);
    if (partition >= this.partitions) {
      throw new RangeError(`partition: ${partition}, but this transport has ${this.partitions} (its partitions option must equal the coordinator's)`);
    }
    if (this.#closing) throw new KafkaTransportError('transport is closed');
    if (this.#parts.has(partition)) throw new Error(`partition ${partition} is already being consumed`);
    const { host } = await this.#clientOf();
    const part = new KafkaPartition(host, partition, onBatch, onLost, onGained);
    this.#parts.set(partition, part);
    try {
      await this.ensureTopics();
      await part.start();
    } catch (err) {
      if (this.#parts.get(partition) === part) this.#parts.delete(partition);
      await part.stop().catch(() => {});
      throw err instanceof KafkaTransportError ? err : new KafkaTransportError(`cannot consume partition ${partition}`, { cause: err });
    }
    this.#log?.info({ partition, group: this.#groupId }, 'consuming');
  }

  /**
   * Writes `replies` to `<prefix>.replies`, each keyed by its address in the address's
   * partition: in partition `partition`'s transaction (the batch's, or one of their own), or,
   * without a partition, through a plain idempotent producer.
   */
  async publish(replies: readonly Outbound[], partition?: number): Promise<void> {
    if (replies.length === 0) return;
    await this.ensureTopics();
    const messages = replies.map((r) => ({
      key: r.to,
      value: Buffer.from(r.body.buffer, r.body.byteOffset, r.body.byteLength),
      partition: replyPartitionOf(r.to, this.#replyPartitions),
    }));
    await this.#write(partition, [{ topic: this.#replyTopic, messages }]);
  }

  /**
   * Parks at most the first `deadLetterBodyBytes` of `body` on `<prefix>.dead-letter`, keyed by
   * the request topic, with headers `lockq-code`, `lockq-partition` and, when it was cut,
   * `lockq-original-bytes`; in the batch's transaction when one is open.
   */
  async deadLetter(partition: number, body: Uint8Array, code: string): Promise<void> {
    await this.ensureTopics();
    const kept = deadLetterPrefix(body, this.#deadLetters.deadLetterBodyBytes);
    const headers: Record<string, string> = { [DEAD_LETTER_HEADERS.code]: code, [DEAD_LETTER_HEADERS.partition]: String(partition) };
    if (kept !== body) headers[DEAD_LETTER_HEADERS.originalBytes] = String(body.byteLength);
    const message: Message = { key: this.#requestTopic, value: Buffer.from(kept.buffer, kept.byteOffset, kept.byteLength), partition: 0, headers };
    const part = this.#parts.get(partition);
    await this.#write(part?.held === true ? partition : undefined, [{ topic: this.#deadLetterTopic, messages: [message] }]);
  }

  /**
   * Writes `records` in partition `partition`'s current transaction: the batch's when one is
   * being decided (they commit or abort with its replies and offsets), else one of their own.
   * For stores that keep their state in Kafka (a changelog written with the replies). Rejects
   * unless `partition` is held here, or when its producer was fenced.
   */
  async writeInTransaction(partition: number, records: readonly KafkaRecord[]): Promise<void> {
    const byTopic = new Map<string, Message[]>();
    for (const r of records) {
      const m: Message = { key: r.key ?? null, value: r.value, partition: r.partition, ...(r.headers === undefined ? {} : { headers: { ...r.headers } }) };
      const list = byTopic.get(r.topic);
      if (list === undefined) byTopic.set(r.topic, [m]);
      else list.push(m);
    }
    await this.#write(partition, [...byTopic].map(([topic, messages]) => ({ topic, messages })));
  }

  /** What a store keeping its state in Kafka shares with this transport: its kafkajs client, admin and settings. */
  async storeLink(): Promise<KafkaStoreLink> {
    const { kafka, host } = await this.#clientOf();
    return { kafka, assignerProtocol: host.assignerProtocol, link: this.#link, replicationFactor: this.#replicationFactor, admin: () => this.#adminOf() };
  }

  /** Whether the group has given `partition` to this transport (it may be consuming it as a standby). */
  holds(partition: number): boolean {
    return this.#parts.get(partition)?.held === true;
  }

  /**
   * Stops consuming `partition`: the batch in progress finishes and commits, then the consumer
   * leaves the group and the partition moves to a standby at once. Idempotent.
   */
  async stopConsuming(partition: number): Promise<void> {
    const part = this.#parts.get(partition);
    if (part === undefined) return;
    await part.stop();
    if (this.#parts.get(partition) === part) this.#parts.delete(partition);
    this.#log?.info({ partition }, 'stopped consuming');
  }

  /** Stops consuming every partition (letting batches in progress commit) and disconnects. Idempotent. */
  async close(): Promise<void> {
    this.#closing = true;
    await Promise.all([...this.#parts.keys()].map((p) => this.stopConsuming(p)));
    const [plain, admin] = [this.#plain, this.#admin];
    this.#plain = null;
    this.#admin = null;
    await (await plain?.catch(() => null))?.disconnect().catch(() => {});
    await (await admin?.catch(() => null))?.disconnect().catch(() => {});
  }

  async #write(partition: number | undefined, topicMessages: readonly TopicMessages[]): Promise<void> {
    if (partition === undefined) {
      const producer = await this.#plainProducer();
      try {
        await producer.sendBatch({ topicMessages: [...topicMessages], acks: -1 });
      } catch (err) {
        throw new KafkaTransportError('the broker did not take the records', { cause: err });
      }
      return;
    }
    const part = this.#parts.get(partition);
    if (part === undefined || !part.held) throw new KafkaTransportError(`partition ${partition} is not held by this coordinator`);
    await part.write(topicMessages);
  }

  /** kafkajs, loaded on first use (so memory: and amqp: users never load it), and what partitions share. */
  #clientOf(): Promise<{ kafka: Kafka; host: KafkaPartitionHost }> {
    this.#client ??= (async () => {
      const { default: kafkajs } = await import('kafkajs');
      const driverLog = this.#link.driverLogLevel === 'nothing' ? undefined : this.#log;
      const kafka = new kafkajs.Kafka(kafkaClientConfig(this.#link, driverLog));
      const { onReconnect, onError } = this.#options;
      const host: KafkaPartitionHost = {
        kafka,
        consumerClient: () => new kafkajs.Kafka(kafkaClientConfig(this.#link, driverLog)),
        assignerProtocol: kafkajs.AssignerProtocol,
        link: this.#link,
        prefix: this.prefix,
        requestTopic: this.#requestTopic,
        groupId: this.#groupId,
        owner: this.#owner,
        admin: () => this.#adminOf(),
        log: this.#log,
        isOpen: () => !this.#closing,
        reconnected: () => {
          this.#log?.info('reconnected');
          onReconnect?.();
        },
        gaveUp: (err) => onError?.(err),
      };
      return { kafka, host };
    })();
    return this.#client;
  }

  #adminOf(): Promise<Admin> {
    this.#admin ??= (async () => {
      const admin = (await this.#clientOf()).kafka.admin();
      await admin.connect();
      return admin;
    })().catch((err: unknown) => {
      this.#admin = null;
      throw err;
    });
    return this.#admin;
  }

  #plainProducer(): Promise<Producer> {
    this.#plain ??= (async () => {
      const producer = (await this.#clientOf()).kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        createPartitioner: explicitPartitioner,
      });
      await producer.connect();
      return producer;
    })().catch((err: unknown) => {
      this.#plain = null;
      throw new KafkaTransportError(`cannot connect to ${this.#link.logUrl}`, { cause: err });
    });
    return this.#plain;
  }

  async #makeTopics(): Promise<void> {
    const admin = await this.#adminOf();
    const existing = new Set(await admin.listTopics());
    const replicationFactor = this.#replicationFactor;
    const deadLetterBytes = Math.max(
      MIN_SEGMENT_BYTES,
      this.#deadLetters.deadLetterMaxLength * (this.#deadLetters.deadLetterBodyBytes + DEAD_LETTER_OVERHEAD_BYTES),
    );
    const specs = [
      { topic: this.#requestTopic, numPartitions: this.partitions, replicationFactor, configEntries: [] },
      {
        topic: this.#replyTopic,
        numPartitions: this.#replyPartitionsWanted,
        replicationFactor,
        configEntries: [{ name: 'retention.ms', value: String(this.#replyRetentionMs) }],
      },
      {
        topic: this.#deadLetterTopic,
        numPartitions: 1,
        replicationFactor,
        // Deleted by size, oldest segment first: roughly the newest deadLetterMaxLength letters stay.
        configEntries: [
          { name: 'retention.bytes', value: String(deadLetterBytes) },
          { name: 'segment.bytes', value: String(Math.max(MIN_SEGMENT_BYTES, Math.floor(deadLetterBytes / 4))) },
        ],
      },
    ].filter((s) => !existing.has(s.topic));
    if (specs.length > 0) {
      await admin.createTopics({ topics: specs, waitForLeaders: true });
      this.#log?.info({ topics: specs.map((s) => s.topic) }, 'created topics');
    }
    const metadata = await admin.fetchTopicMetadata({ topics: [this.#requestTopic, this.#replyTopic, this.#deadLetterTopic] });
    const found = partitionCount(metadata, this.#requestTopic);
    if (found !== this.partitions) {
      throw new KafkaTransportError(
        `${this.#requestTopic} has ${found ?? 'no'} partitions, but this coordinator has ${this.partitions} (--partitions): ` +
          'every coordinator and worker of a deployment must use the topic’s count; a topic cannot lose partitions, ' +
          'so to change it stop the deployment, delete the prefix’s topics and start again (docs/kafka.md)',
      );
    }
    this.#replyPartitions = partitionCount(metadata, this.#replyTopic) ?? 0;
  }
}
