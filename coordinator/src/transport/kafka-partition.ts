import { Buffer } from 'node:buffer';
import { backoffMs } from '@lockq/protocol';
import {
  coordinatorTransactionalId,
  explicitPartitioner,
  isFencedError,
  kafkaErrorType,
  KafkaTransportError,
  type ResolvedKafkaLinkOptions,
  kafkaConsumerSettings,
} from '@lockq/protocol/kafka';
import type { Admin, AssignerProtocol, Consumer, EachBatchPayload, Kafka, Producer, TopicMessages, Transaction } from 'kafkajs';
import type { Logger } from 'pino';
import { type ClaimData, lockqPartitionAssigner } from './kafka-assigner.js';
import type { BatchHandler } from './types.js';

/** What a partition needs from its transport. */
export interface KafkaPartitionHost {
  readonly kafka: Kafka;
  /**
   * A kafkajs client for one partition's consumer alone. kafkajs keeps one cache of committed
   * offsets per group in each client, shared by every consumer made from it, and a consumer
   * joining with an assignment without the request topic deletes the topic's entry: another
   * consumer of this process then crashes in its next fetch (a TypeError, not retried) and the
   * transport gives up. Seen in test/faults/rebalance.kafka.test.ts as partitions moved.
   */
  readonly consumerClient: () => Kafka;
  readonly assignerProtocol: typeof AssignerProtocol;
  readonly link: ResolvedKafkaLinkOptions;
  readonly prefix: string;
  readonly requestTopic: string;
  readonly groupId: string;
  /** This transport's id in the group: partitions are spread over owners. */
  readonly owner: string;
  readonly admin: () => Promise<Admin>;
  readonly log: Logger | undefined;
  /** False once the transport is closing. */
  readonly isOpen: () => boolean;
  /** A consumer that had crashed joined its group again. */
  readonly reconnected: () => void;
  /** A consumer crashed once too often (`reconnect.attempts`) and will not be restarted. */
  readonly gaveUp: (err: Error) => void;
}

/** The transaction of the batch being decided: its replies, dead letters and offsets commit together. */
interface OpenBatch {
  txn: Promise<Transaction> | null;
  /** The transaction's sends, one after another (kafkajs's transactional sends must not overlap). */
  sends: Promise<void>;
}

/**
 * A transactional producer retries quickly: back-to-back transactions of one id meet
 * `CONCURRENT_TRANSACTIONS` while the broker still writes the last one's markers, for a few
 * milliseconds, and kafkajs's usual 100 ms+ backoff would dominate every batch.
 */
const TRANSACTION_RETRY = Object.freeze({ initialRetryTime: 5, maxRetryTime: 1000, retries: 12 });
const EMPTY = Buffer.alloc(0);
const noop = () => {};

/**
 * `txn.sendOffsets`, retried while the broker answers `CONCURRENT_TRANSACTIONS` (it still writes
 * the previous transaction's markers, for milliseconds): kafkajs retries that answer for the
 * records' AddPartitionsToTxn but not for AddOffsetsToTxn, which is the first request of a batch
 * that wrote nothing. Safe to repeat: kafkajs marks the offsets added only once it succeeded.
 */
async function sendOffsets(txn: Transaction, offsets: Parameters<Transaction['sendOffsets']>[0]): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await txn.sendOffsets(offsets);
      return;
    } catch (err) {
      if (kafkaErrorType(err) !== 'CONCURRENT_TRANSACTIONS' || attempt >= 12) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.min(200, 2 ** attempt)));
    }
  }
}

/** Whether `err` (or what it wraps) says a transactional producer was fenced. */
function fenced(err: unknown): boolean {
  return (err as { fenced?: unknown } | null)?.fenced === true || isFencedError(err);
}

/**
 * One lockq partition consumed by {@link KafkaServerTransport}: a consumer of its own in the
 * coordinators' group, which the group's assigner gives this partition or nothing (a standby),
 * and, while it holds the partition, a transactional producer with the partition's
 * transactional id.
 *
 * Holding: when the group assigns the partition, the partition claims it: a fresh producer's
 * InitProducerId bumps the id's epoch (fencing the previous owner, whose open transaction the
 * broker aborts or completes first), then the committed offset is read (final now) and the
 * consumer sought there. A batch fetched before that is dropped and fetched again. When the
 * group takes the partition away (or the consumer crashes), `onLost` is called; batches are
 * never in progress then (kafkajs rejoins between batches).
 *
 * A batch: its replies and dead letters are written in one transaction with the batch's offsets
 * (`sendOffsets`), committed when `onBatch` resolves, aborted when it rejects; then the consumer
 * is sought back to the batch's first offset and, after a backoff, the batch comes again with
 * whatever arrived behind it. A failed commit, or a fenced producer, is reported with `onLost`:
 * replies the caller believes sent may not be.
 */
export class KafkaPartition {
  readonly partition: number;
  readonly #host: KafkaPartitionHost;
  readonly #onBatch: BatchHandler;
  readonly #onLost: (() => void) | undefined;
  /** Told once a claim is done: the coordinator takes the partition's state over then. */
  readonly #onGained: (() => void) | undefined;
  readonly #startedAt = Date.now();
  readonly #log: Logger | undefined;
  #consumer: Consumer | null = null;
  /** Wall-clock ms since the group gave this partition to this consumer; null while it does not hold it. */
  #heldSince: number | null = null;
  #producer: Producer | null = null;
  /** The claim in progress or done for the current holding; null: claim on the next use. */
  #claiming: Promise<void> | null = null;
  /** Claims begun so far: a claim that is no longer the latest does not seek. */
  #claims = 0;
  /** Batches in a row that did not start at `#expect` (see `#handle`). */
  #mismatches = 0;
  /** The producer was fenced: nothing is written until the group gives the partition again. */
  #fenced = false;
  /** The offset the next accepted batch must start at (after a seek); null: any. */
  #expect: string | null = null;
  /** The offset after the last committed batch, while held. */
  #position: string | null = null;
  #batch: OpenBatch | null = null;
  /** Transactions of this partition run one at a time (a batch's, or a tick's own). */
  #txnLock: Promise<void> = Promise.resolve();
  #inFlight: Promise<void> | null = null;
  #stopping = false;
  #crashes = 0;
  #crashed = false;
  /** Consecutive failed batches, for the backoff. */
  #failures = 0;
  #wake: (() => void) | null = null;

  constructor(host: KafkaPartitionHost, partition: number, onBatch: BatchHandler, onLost: (() => void) | undefined, onGained?: () => void) {
    this.#host = host;
    this.partition = partition;
    this.#onBatch = onBatch;
    this.#onLost = onLost;
    this.#onGained = onGained;
    this.#log = host.log?.child({ partition });
  }

  /** Whether the group has given this partition to this consumer. */
  get held(): boolean {
    return this.#heldSince !== null;
  }

  /** Connects the consumer and starts it; it joins the group in the background. Rejects when the broker cannot be reached. */
  async start(): Promise<void> {
    const { link, requestTopic } = this.#host;
    const consumer = this.#host.consumerClient().consumer({
      groupId: this.#host.groupId,
      partitionAssigners: [lockqPartitionAssigner(requestTopic, () => this.#claimData(), this.#host.assignerProtocol)],
      ...kafkaConsumerSettings(link),
      retry: { restartOnFailure: async () => ++this.#crashes < link.reconnect.attempts },
    });
    this.#consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => this.#joined(payload.memberAssignment));
    consumer.on(consumer.events.CRASH, ({ payload }) => this.#crash(payload.error, payload.restart));
    await consumer.connect();
    await consumer.subscribe({ topic: requestTopic, fromBeginning: true });
    // Not awaited: run() resolves only once the group is joined, and every partition of a
    // coordinator should join in one rebalance, not one after another.
    consumer
      .run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: (payload) => this.#eachBatch(payload) })
      .catch((err: unknown) => this.#log?.error({ err }, 'the consumer did not start'));
  }

  /**
   * Stops: no new batch starts, the batch in progress (and a tick's transaction) finishes and
   * commits, the consumer leaves the group (so the partition moves at once) and the producer
   * disconnects. Records fetched but not handed over are fetched again by the next owner.
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    const consumer = this.#consumer;
    this.#consumer = null;
    // kafkajs's stop waits for the batch in progress before leaving the group.
    await consumer?.disconnect().catch((err: unknown) => this.#log?.warn({ err }, 'disconnecting the consumer failed'));
    await this.#inFlight?.catch(noop);
    await this.#txnLock;
    this.#heldSince = null;
    this.#dropProducer();
  }

  /**
   * Writes `topicMessages` for this partition: in the transaction of the batch in progress, or
   * in one of their own (an expiry tick's replies). Rejects when the partition is not held here,
   * its producer was fenced, or the broker did not take them.
   */
  write(topicMessages: readonly TopicMessages[]): Promise<void> {
    const open = this.#batch;
    if (open !== null) return this.#sendInBatch(open, topicMessages);
    return this.#exclusive(() => this.#ownTransaction(topicMessages));
  }

  #claimData(): ClaimData {
    return { partition: this.partition, owner: this.#host.owner, heldSince: this.#heldSince, startedAt: this.#startedAt };
  }

  /** After each rebalance: what the group gave this consumer. */
  #joined(assignment: Readonly<Record<string, readonly number[] | undefined>>): void {
    this.#crashes = 0;
    if (this.#crashed) {
      this.#crashed = false;
      this.#host.reconnected();
    }
    const topic = this.#host.requestTopic;
    const assigned = assignment[topic]?.includes(this.partition) === true;
    if (!assigned) {
      if (this.held) this.#lose('the group gave the partition to another coordinator');
      return;
    }
    this.#consumer?.resume([{ topic, partitions: [this.partition] }]); // paused when it was fenced
    if (!this.held) {
      this.#heldSince = Date.now();
      this.#log?.info('the group gave this coordinator the partition; claiming it');
      this.#claim();
      return;
    }
    // Kept across the rebalance: continue where the last commit ended (the broker's committed
    // offset may not show it yet), unless the producer needs claiming afresh.
    if (this.#fenced || this.#position === null) {
      this.#claim();
      return;
    }
    this.#seek(this.#position);
  }

  #crash(error: Error, restart: boolean): void {
    this.#crashed = true;
    this.#log?.warn({ err: error, restart }, 'the consumer crashed');
    if (this.held) this.#lose('the consumer crashed');
    if (!restart) this.#host.gaveUp(new KafkaTransportError(`the consumer of partition ${this.partition} gave up`, { cause: error }));
  }

  /** The partition is no longer held here: forget the holding and tell the owner. */
  #lose(reason: string): void {
    this.#heldSince = null;
    this.#claiming = null;
    this.#claims++;
    this.#expect = null;
    this.#position = null;
    this.#fenced = false;
    this.#dropProducer();
    this.#log?.warn({ reason }, 'lost the partition');
    this.#lostPlace();
  }

  #lostPlace(): void {
    if (this.#stopping) return;
    try {
      this.#onLost?.();
    } catch {
      // the owner's problem; the transport carries on
    }
  }

  #dropProducer(): void {
    const producer = this.#producer;
    this.#producer = null;
    producer?.disconnect().catch(noop);
  }

  /**
   * A fresh transactional producer for the partition's id: its InitProducerId fences the
   * previous owner and settles its open transaction; then the committed offset is final and the
   * consumer is sought there.
   */
  #claim(): void {
    const generation = ++this.#claims;
    const claiming = this.#claimAs(generation);
    this.#claiming = claiming;
    claiming.catch((err: unknown) => {
      if (this.#claiming === claiming) this.#claiming = null;
      this.#log?.warn({ err }, 'claiming the partition failed; trying again with the next delivery');
    });
  }

  async #claimAs(generation: number): Promise<void> {
    this.#dropProducer();
    const { kafka, prefix } = this.#host;
    const producer = kafka.producer({
      transactionalId: coordinatorTransactionalId(this.partition, prefix),
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      createPartitioner: explicitPartitioner,
      retry: TRANSACTION_RETRY,
    });
    this.#producer = producer;
    this.#fenced = false;
    await producer.connect();
    const init = await producer.transaction(); // InitProducerId, once per producer
    await init.abort(); // nothing was sent: no request, just back to ready
    const offset = await this.#committedOffset();
    if (this.#claims !== generation) return; // lost, or claimed again, meanwhile
    this.#position = offset;
    this.#seek(offset);
    this.#log?.info({ offset }, 'partition claimed');
    this.#onGained?.();
  }

  /** The group's committed offset of this partition; the partition's start when there is none. */
  async #committedOffset(): Promise<string> {
    const { groupId, requestTopic } = this.#host;
    const admin = await this.#host.admin();
    const [committed] = await admin.fetchOffsets({ groupId, topics: [requestTopic] });
    const offset = committed?.partitions.find((p) => p.partition === this.partition)?.offset;
    if (offset !== undefined && offset !== '-1') return offset;
    const ends = await admin.fetchTopicOffsets(requestTopic);
    return ends.find((p) => p.partition === this.partition)?.low ?? '0';
  }

  /** Fetching continues at `offset`; batches that do not start there are dropped until one does. */
  #seek(offset: string): void {
    this.#expect = offset;
    this.#consumer?.seek({ topic: this.#host.requestTopic, partition: this.partition, offset });
  }

  async #eachBatch(payload: EachBatchPayload): Promise<void> {
    const run = this.#handle(payload);
    this.#inFlight = run;
    try {
      await run;
    } finally {
      if (this.#inFlight === run) this.#inFlight = null;
    }
  }

  async #handle({ batch, resolveOffset, heartbeat, isStale, pause }: EachBatchPayload): Promise<void> {
    if (this.#stopping || !this.#host.isOpen() || !this.held) return; // not resolved: fetched again by whoever holds it
    // kafkajs heartbeats only between batches: a long batch must not cost the group membership.
    const beat = setInterval(() => heartbeat().catch(noop), this.#host.link.heartbeatIntervalMs);
    try {
      if (this.#claiming === null) this.#claim();
      try {
        await this.#claiming;
      } catch {
        await this.#backoff();
        return;
      }
      if (this.#fenced) {
        // Nothing can commit until the group gives the partition again: stop fetching it till then.
        pause();
        return;
      }
      if (this.#stopping || !this.held || isStale()) return;
      // kafkajs's Batch has it; its typings do not say so.
      const from = (batch as { fetchedOffset?: string }).fetchedOffset ?? batch.firstOffset() ?? '';
      if (this.#expect !== null && from !== this.#expect) {
        // Fetched from a stale position (kafkajs's idea of the committed offset): fetch again from
        // ours. Unless the records there are gone (retention deleted them unconsumed, and kafkajs
        // moved to the partition's start): then go on from where the broker has records.
        if (++this.#mismatches < 3 || BigInt(from) < BigInt(this.#expect)) {
          this.#seek(this.#expect);
          return;
        }
        this.#log?.error({ expected: this.#expect, from }, 'requests of this partition are gone from the topic unconsumed (retention?); continuing after them');
      }
      this.#expect = null;
      this.#mismatches = 0;
      if (!(await this.#decide(batch.messages.map((m) => m.value ?? EMPTY), from, batch.lastOffset(), resolveOffset))) {
        await this.#backoff();
      }
    } finally {
      clearInterval(beat);
    }
  }

  /**
   * Hands the batch over and commits its transaction with its offsets; on failure aborts,
   * seeks back to `first` and returns false.
   */
  async #decide(bodies: readonly Uint8Array[], first: string, last: string, resolveOffset: (offset: string) => void): Promise<boolean> {
    const { groupId, requestTopic } = this.#host;
    const next = (BigInt(last) + 1n).toString();
    return this.#exclusive(async () => {
      const open: OpenBatch = { txn: null, sends: Promise.resolve() };
      this.#batch = open;
      let committing = false;
      try {
        await this.#onBatch(bodies);
        // Closed to later writes from here: a write after the handler resolved (the runner's
        // snapshot, a tick) must not join a transaction that is committing; it waits for one of
        // its own, after this one (#exclusive).
        this.#batch = null;
        committing = true;
        const txn = await this.#transactionOf(open);
        await open.sends;
        await sendOffsets(txn, { consumerGroupId: groupId, topics: [{ topic: requestTopic, partitions: [{ partition: this.partition, offset: next }] }] });
        await txn.commit();
        resolveOffset(last);
        this.#position = next;
        this.#failures = 0;
        return true;
      } catch (err) {
        await this.#abort(open);
        this.#batchFailed(err, committing, bodies.length);
        if (this.held && this.#claiming !== null) this.#seek(first);
        return false;
      } finally {
        if (this.#batch === open) this.#batch = null;
      }
    });
  }

  #batchFailed(err: unknown, committing: boolean, size: number): void {
    if (fenced(err)) {
      this.#fenced = true;
      this.#log?.warn({ err }, 'fenced: another coordinator has taken this partition over; standing by');
      this.#lostPlace();
      return;
    }
    if (committing) {
      // The caller believes its replies are out; they are not. It must rebuild before deciding again.
      this.#log?.warn({ err, size }, 'committing the batch failed; redelivering');
      this.#lostPlace();
      return;
    }
    this.#log?.warn({ err, size }, 'batch rejected; redelivering');
  }

  /** The batch's transaction, begun at its first write (or at its commit, when it wrote nothing). */
  #transactionOf(open: OpenBatch): Promise<Transaction> {
    open.txn ??= (async () => {
      const producer = this.#producer;
      if (producer === null || this.#fenced) throw this.#unheld();
      return producer.transaction();
    })();
    return open.txn;
  }

  #unheld(): KafkaTransportError {
    return this.#fenced
      ? new KafkaTransportError(`partition ${this.partition}: this coordinator's producer was fenced by a newer owner`, { fenced: true })
      : new KafkaTransportError(`partition ${this.partition} is not held by this coordinator`);
  }

  async #sendInBatch(open: OpenBatch, topicMessages: readonly TopicMessages[]): Promise<void> {
    const txn = await this.#transactionOf(open);
    const send = open.sends.then(async () => {
      await txn.sendBatch({ topicMessages: [...topicMessages], acks: -1 });
    });
    open.sends = send.catch(noop);
    try {
      await send;
    } catch (err) {
      throw new KafkaTransportError(`writing in partition ${this.partition}'s transaction failed`, { cause: err, fenced: fenced(err) });
    }
  }

  /** Writes outside a batch, in a transaction of their own (which waits for the batch's). */
  async #ownTransaction(topicMessages: readonly TopicMessages[]): Promise<void> {
    if (!this.held) throw this.#unheld();
    if (this.#claiming === null) this.#claim();
    await this.#claiming;
    const producer = this.#producer;
    if (producer === null || this.#fenced || !this.held) throw this.#unheld();
    const txn = await producer.transaction();
    try {
      await txn.sendBatch({ topicMessages: [...topicMessages], acks: -1 });
      await txn.commit();
    } catch (err) {
      const open: OpenBatch = { txn: Promise.resolve(txn), sends: Promise.resolve() };
      await this.#abort(open);
      if (fenced(err)) {
        this.#fenced = true;
        this.#lostPlace();
      }
      throw new KafkaTransportError(`a transaction of partition ${this.partition} failed`, { cause: err, fenced: fenced(err) });
    }
  }

  /** Aborts `open`'s transaction if it began; a producer that cannot abort is claimed afresh. */
  async #abort(open: OpenBatch): Promise<void> {
    if (open.txn === null) return;
    try {
      const txn = await open.txn;
      await open.sends;
      if (txn.isActive()) await txn.abort();
    } catch (err) {
      if (fenced(err)) {
        this.#fenced = true;
        return;
      }
      // kafkajs leaves such a producer in a state it cannot leave: start over with a new one.
      this.#log?.debug({ err }, 'aborting failed; a new producer claims the partition with the next delivery');
      this.#claiming = null;
    }
  }

  #exclusive<T>(step: () => Promise<T>): Promise<T> {
    const run = this.#txnLock.then(step);
    this.#txnLock = run.then(noop, noop);
    return run;
  }

  async #backoff(): Promise<void> {
    if (this.#stopping) return;
    const ms = backoffMs(this.#host.link.reconnect, this.#failures++);
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }
}
