import { Buffer } from 'node:buffer';
import { backoffMs, checkInteger, replyTopic, requestTopic } from '@lockq/protocol';
import {
  explicitPartitioner,
  FORWARD_ORIGIN,
  isRefusalError,
  KafkaTransportError,
  kafkaClientConfig,
  kafkaTlsHint,
  type KafkaLinkOptions,
  ORIGIN_HEADER,
  partitionCount,
  replyPartitionOf,
  requestKey,
  type ResolvedKafkaLinkOptions,
  resolveKafkaLinkOptions,
  fixedPartitionAssigner,
  kafkaConsumerSettings,
} from '@lockq/protocol/kafka';
import type { Admin, Consumer, EachBatchPayload, IHeaders, Kafka, Message, Producer } from 'kafkajs';
import type { Logger } from 'pino';
import { resolveClientIdentity } from './identity.js';
import type { ClientTransport, ClientTransportHandlers, ClientTransportOptions, ReplyOrigin } from './types.js';

/**
 * Options of {@link KafkaClientTransport}; the connection settings are {@link KafkaLinkOptions}.
 * `principal` defaults to `'anonymous'`: Kafka vouches for nobody (docs/security.md §3), so it
 * only names this client's reply namespace.
 */
export interface KafkaClientTransportOptions extends ClientTransportOptions, KafkaLinkOptions {
  /**
   * The deployment's partition count (the SDK's `partitions`): when given, `open` fails unless
   * the request topic has exactly this many partitions. @defaultValue not checked
   */
  readonly partitions?: number;
  /** How often the position in the reply partition is committed to the broker. @defaultValue 1000 */
  readonly commitIntervalMs?: number;
}

const DEFAULT_COMMIT_INTERVAL_MS = 1000;
const EMPTY = new Uint8Array(0);

/** One record waiting to be produced, with the caller's promise. */
interface Outgoing {
  readonly topic: string;
  readonly message: Message;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

type State = 'idle' | 'opening' | 'open' | 'closing' | 'closed';

/**
 * The worker side of Kafka (docs/protocol.md §17).
 *
 * Requests: one idempotent producer (acks from all in-sync replicas) writes each request to
 * `<prefix>.requests` at the partition the SDK computed (= the lockq partition), keyed by its
 * lock name (session id for `open`, `heartbeat`, `close`). Sends are queued and go out in order,
 * the queue's records in one produce request at a time, so requests to one partition keep their
 * `send` order, calls not awaited included.
 *
 * Replies: every worker shares `<prefix>.replies`; this one's records are keyed by its reply
 * address and live in the partition the address hashes to ({@link replyPartitionOf}). kafkajs has
 * no `assign()`, so the transport reads that partition through a consumer group of its own (its
 * id is the reply address) whose assigner gives its one member just that partition, reading
 * committed records only, and drops records keyed for other workers. The group's committed
 * position is where a reopened transport with the same identity resumes (replies published while
 * it was away wait there, until the broker's `offsets.retention.minutes`); a new identity starts
 * at the partition's end, set before `open` resolves, so a reply published right after `open`
 * is never skipped. The position is committed every `commitIntervalMs` and at `close`.
 *
 * Origin: a record with header `lockq-origin: forward` is another worker's forward; one without
 * it a coordinator's reply; any other value is dropped and counted (`strayReplies`). Anyone who
 * may write the topic can write either: on Kafka the origin is no evidence (docs/security.md §3).
 *
 * Failures: kafkajs retries each operation and restarts a crashed consumer (on the `reconnect`
 * policy); `send` rejects when an operation fails for good, and `onReconnect` follows once the
 * broker answers again or the consumer rejoined; `onError` when the consumer gave up.
 *
 * @example
 * ```ts
 * const transport = new KafkaClientTransport({ url: 'kafka://127.0.0.1:9092', workerId: 'billing-7', instance: randomUUID() });
 * await transport.open({ onReply: (body) => handle(body), onReconnect: () => resendPending() });
 * await transport.send(partitionOf('invoice:42', 4), encodedRequest);
 * ```
 */
export class KafkaClientTransport implements ClientTransport {
  readonly replyAddress: string;
  /** Who this client says it is; no broker checks it on Kafka. */
  readonly principal: string;
  readonly #link: ResolvedKafkaLinkOptions;
  readonly #prefix: string;
  readonly #requestTopic: string;
  readonly #replyTopic: string;
  readonly #address: Buffer;
  readonly #partitions: number | undefined;
  readonly #commitIntervalMs: number;
  readonly #log: Logger | undefined;
  readonly #driverLog: Logger | undefined;
  #state: State = 'idle';
  #handlers: ClientTransportHandlers | null = null;
  #admin: Admin | null = null;
  #producer: Producer | null = null;
  #consumer: Consumer | null = null;
  #requestPartitions = 0;
  #replyPartitions = 0;
  #replyPartition = 0;
  /** The next offset of the reply partition not yet handed over (null before `open`), and the last one committed. */
  #position: string | null = null;
  #committed: string | null = null;
  #commitTimer: NodeJS.Timeout | null = null;
  #queue: Outgoing[] = [];
  #flushing = false;
  /** Something failed (a send, the consumer): `onReconnect` is due once the broker answers again. */
  #broken = false;
  #probing = false;
  #crashes = 0;
  #stray = 0;

  constructor(options: KafkaClientTransportOptions) {
    this.#link = resolveKafkaLinkOptions(options, 'lockq-worker');
    const identity = resolveClientIdentity(options, { principal: 'anonymous', from: 'the Kafka default' });
    this.principal = identity.principal;
    this.replyAddress = identity.replyAddress;
    this.#address = Buffer.from(this.replyAddress, 'utf8');
    this.#prefix = identity.prefix;
    this.#requestTopic = requestTopic(this.#prefix);
    this.#replyTopic = replyTopic(this.#prefix);
    if (options.partitions !== undefined) checkInteger('partitions', options.partitions, 1);
    this.#partitions = options.partitions;
    this.#commitIntervalMs = checkInteger('commitIntervalMs', options.commitIntervalMs ?? DEFAULT_COMMIT_INTERVAL_MS, 1);
    this.#log = options.logger?.child({ component: 'kafka-client-transport', replyAddress: this.replyAddress });
    this.#driverLog = this.#link.driverLogLevel === 'nothing' ? undefined : this.#log;
  }

  /** Records in this client's reply partition, keyed for it, with an origin header it does not know: dropped. */
  get strayReplies(): number {
    return this.#stray;
  }

  /**
   * Connects, checks the topics (a coordinator of this prefix creates them), positions this
   * client in its reply partition and joins its reply group; rejects, and may be called again,
   * when any of it fails.
   */
  async open(handlers: ClientTransportHandlers): Promise<void> {
    if (this.#state !== 'idle') throw new Error(`KafkaClientTransport.open: transport is ${this.#state}`);
    this.#state = 'opening';
    this.#handlers = handlers;
    try {
      const { default: kafkajs } = await import('kafkajs');
      const kafka = new kafkajs.Kafka(kafkaClientConfig(this.#link, this.#driverLog));
      await this.#checkTopics(kafka);
      await this.#positionReplies();
      const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: explicitPartitioner });
      this.#producer = producer;
      await producer.connect();
      await this.#consumeReplies(kafka, kafkajs.AssignerProtocol);
    } catch (err) {
      await this.#disconnect();
      this.#state = 'idle';
      this.#handlers = null;
      if (err instanceof KafkaTransportError) throw err;
      const hint = kafkaTlsHint(this.#link.tls, err);
      throw new KafkaTransportError(`cannot open a Kafka transport at ${this.#link.logUrl}${hint === undefined ? '' : `: ${hint}`}`, { cause: err });
    }
    this.#state = 'open';
    this.#commitTimer = setInterval(() => void this.#commit(), this.#commitIntervalMs).unref();
  }

  async send(partition: number, body: Uint8Array): Promise<void> {
    if (this.#state !== 'open') throw this.#notConnected();
    checkInteger('partition', partition, 0);
    if (partition >= this.#requestPartitions) {
      throw new KafkaTransportError(
        `partition ${partition}, but ${this.#requestTopic} has ${this.#requestPartitions}: the client's partitions option must equal the coordinators'`,
        { refused: true },
      );
    }
    return this.#enqueue(this.#requestTopic, { partition, key: requestKey(body), value: Buffer.from(body.buffer, body.byteOffset, body.byteLength) });
  }

  /**
   * Writes `body` into `address`'s reply partition, keyed by it, with header `lockq-origin:
   * forward`; through the same queue as requests, so it leaves before a request sent after it.
   */
  async forward(address: string, body: Uint8Array): Promise<void> {
    if (this.#state !== 'open') throw this.#notConnected();
    return this.#enqueue(this.#replyTopic, {
      partition: replyPartitionOf(address, this.#replyPartitions),
      key: address,
      value: Buffer.from(body.buffer, body.byteOffset, body.byteLength),
      headers: { [ORIGIN_HEADER]: FORWARD_ORIGIN },
    });
  }

  /** Commits the position in the reply partition, leaves the reply group and disconnects. Idempotent. */
  async close(): Promise<void> {
    if (this.#state === 'closed' || this.#state === 'closing') return;
    const wasOpen = this.#state === 'open';
    this.#state = 'closing';
    if (this.#commitTimer !== null) clearInterval(this.#commitTimer);
    this.#commitTimer = null;
    for (const o of this.#queue.splice(0)) o.reject(new KafkaTransportError('transport closed'));
    if (wasOpen) await this.#commit();
    await this.#disconnect();
    this.#state = 'closed';
  }

  #notConnected(): KafkaTransportError {
    return new KafkaTransportError(`Kafka transport is ${this.#state}, not open`);
  }

  /** Both topics must exist (a coordinator makes them); the request topic has the deployment's partition count. */
  async #checkTopics(kafka: Kafka): Promise<void> {
    const admin = kafka.admin();
    this.#admin = admin;
    await admin.connect();
    const existing = new Set(await admin.listTopics());
    const missing = [this.#requestTopic, this.#replyTopic].filter((t) => !existing.has(t));
    if (missing.length > 0) {
      throw new KafkaTransportError(
        `no topic ${missing.join(' or ')} at ${this.#link.logUrl}: start a lockq coordinator with prefix ${JSON.stringify(this.#prefix)} first`,
      );
    }
    const metadata = await admin.fetchTopicMetadata({ topics: [this.#requestTopic, this.#replyTopic] });
    this.#requestPartitions = partitionCount(metadata, this.#requestTopic) ?? 0;
    this.#replyPartitions = partitionCount(metadata, this.#replyTopic) ?? 0;
    if (this.#partitions !== undefined && this.#requestPartitions !== this.#partitions) {
      throw new KafkaTransportError(
        `${this.#requestTopic} has ${this.#requestPartitions} partitions, but this client is set to ${this.#partitions}: ` +
          "set the client's partitions option to the coordinators' partition count",
      );
    }
    this.#replyPartition = replyPartitionOf(this.replyAddress, this.#replyPartitions);
  }

  /**
   * Where this client starts reading: where this identity's group left off, or, for a new
   * identity, the partition's end as it is now (read before the group is joined, so nothing
   * published after `open` resolves is before it). The consumer is sought there as it joins.
   */
  async #positionReplies(): Promise<void> {
    const admin = this.#admin as Admin;
    const [committed] = await admin.fetchOffsets({ groupId: this.replyAddress, topics: [this.#replyTopic] });
    const mine = committed?.partitions.find((p) => p.partition === this.#replyPartition)?.offset;
    if (mine !== undefined && mine !== '-1') {
      this.#committed = mine;
      this.#position = mine;
      return;
    }
    const ends = await admin.fetchTopicOffsets(this.#replyTopic);
    this.#position = ends.find((p) => p.partition === this.#replyPartition)?.offset ?? '0';
  }

  async #consumeReplies(kafka: Kafka, protocol: typeof import('kafkajs').AssignerProtocol): Promise<void> {
    const link = this.#link;
    const consumer = kafka.consumer({
      groupId: this.replyAddress,
      partitionAssigners: [fixedPartitionAssigner('LockqReplyPartition', this.#replyTopic, [this.#replyPartition], protocol)],
      ...kafkaConsumerSettings(link),
      retry: { restartOnFailure: async () => ++this.#crashes < link.reconnect.attempts },
    });
    this.#consumer = consumer;
    let joined = false;
    consumer.on(consumer.events.GROUP_JOIN, () => {
      joined = true;
      // Before the first fetch of this membership: continue after the last reply handed over.
      const offset = this.#position;
      if (offset !== null) consumer.seek({ topic: this.#replyTopic, partition: this.#replyPartition, offset });
      this.#crashes = 0;
      if (this.#state === 'open') this.#reconnected();
    });
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (this.#state !== 'open') return;
      this.#log?.warn({ err: payload.error, restart: payload.restart }, 'reply consumer crashed');
      this.#broken = true;
      if (!payload.restart) this.#handlers?.onError?.(new KafkaTransportError('the reply consumer gave up', { cause: payload.error }));
    });
    await consumer.connect();
    await consumer.subscribe({ topic: this.#replyTopic, fromBeginning: false });
    // Resolves once the group is joined and the partition assigned, or after a failed start.
    await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: (p) => this.#onBatch(p) });
    if (!joined) throw new KafkaTransportError(`could not join the reply group of ${this.replyAddress}`);
  }

  async #onBatch({ batch, resolveOffset }: EachBatchPayload): Promise<void> {
    const handlers = this.#handlers;
    for (const m of batch.messages) {
      if (m.key === null || !this.#address.equals(m.key)) continue; // another worker's
      const origin = originOf(m.headers);
      if (origin === null) {
        this.#stray++;
        this.#log?.debug({ offset: m.offset }, 'dropped a reply with an unknown origin header');
        continue;
      }
      try {
        handlers?.onReply(m.value ?? EMPTY, origin);
      } catch (err) {
        this.#log?.error({ err }, 'onReply threw; the reply is dropped');
      }
    }
    const last = batch.lastOffset();
    resolveOffset(last);
    this.#position = (BigInt(last) + 1n).toString();
  }

  /** Commits the position handed over so far, if it moved; a failure is retried on the next tick. */
  async #commit(): Promise<void> {
    const position = this.#position;
    if (position === null || position === this.#committed || this.#consumer === null) return;
    try {
      await this.#consumer.commitOffsets([{ topic: this.#replyTopic, partition: this.#replyPartition, offset: position }]);
      this.#committed = position;
    } catch (err) {
      this.#log?.debug({ err }, 'committing the reply position failed; retrying on the next tick');
    }
  }

  #enqueue(topic: string, message: Message): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ topic, message, resolve, reject });
      if (!this.#flushing) void this.#flush();
    });
  }

  /** Produces the queued records, all at once, one produce request at a time: order is kept. */
  async #flush(): Promise<void> {
    this.#flushing = true;
    try {
      while (this.#queue.length > 0 && this.#producer !== null) {
        const batch = this.#queue.splice(0);
        const byTopic = new Map<string, Message[]>();
        for (const o of batch) {
          const list = byTopic.get(o.topic);
          if (list === undefined) byTopic.set(o.topic, [o.message]);
          else list.push(o.message);
        }
        try {
          await this.#producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
          for (const o of batch) o.resolve();
          if (this.#broken) this.#reconnected();
        } catch (err) {
          // A refusal is the record's own only when it was alone: otherwise some may have been written.
          const refused = batch.length === 1 && isRefusalError(err);
          const e = new KafkaTransportError(`the broker did not take ${batch.length} record(s)${refused ? ' (refused)' : ''}`, { cause: err, refused });
          for (const o of batch) o.reject(e);
          if (!refused) this.#lost(err);
        }
      }
    } finally {
      this.#flushing = false;
    }
  }

  /** A send failed for a reason other than the record: probe until the broker answers, then `onReconnect`. */
  #lost(err: unknown): void {
    this.#log?.warn({ err }, 'a send to Kafka failed; probing until the broker answers');
    this.#broken = true;
    if (this.#probing) return;
    this.#probing = true;
    void (async () => {
      for (let attempt = 0; this.#broken && this.#state === 'open'; attempt++) {
        await new Promise((r) => setTimeout(r, backoffMs(this.#link.reconnect, attempt)));
        try {
          await this.#admin?.fetchTopicMetadata({ topics: [this.#requestTopic] });
          this.#reconnected();
        } catch {
          // still away
        }
      }
      this.#probing = false;
    })();
  }

  #reconnected(): void {
    if (!this.#broken) return;
    this.#broken = false;
    this.#log?.info('reconnected');
    this.#handlers?.onReconnect?.();
  }

  async #disconnect(): Promise<void> {
    const parts = [this.#consumer, this.#producer, this.#admin];
    this.#consumer = null;
    this.#producer = null;
    this.#admin = null;
    for (const part of parts) await part?.disconnect().catch((err: unknown) => this.#log?.debug({ err }, 'disconnect failed'));
  }
}

/** `'coordinator'` without an origin header, `'forward'` with the forward one, null otherwise. */
function originOf(headers: IHeaders | undefined): ReplyOrigin | null {
  const value = headers?.[ORIGIN_HEADER];
  if (value === undefined) return 'coordinator';
  const text = Array.isArray(value) ? undefined : value.toString();
  return text === FORWARD_ORIGIN ? 'forward' : null;
}

