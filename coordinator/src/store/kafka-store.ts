import { performance } from 'node:perf_hooks';
import { changelogTopic, checkInteger } from '@lockq/protocol';
import { isFencedError, KafkaTransportError, partitionCount } from '@lockq/protocol/kafka';
import { pino, type Logger } from 'pino';
import type { CoreSnapshot } from '../core/snapshot.js';
import type { KafkaRecord, KafkaServerTransport, KafkaStoreLink } from '../transport/kafka.js';
import { clockSeedMs, SEED_TOKENS_PER_MS } from './clock-seed.js';
import {
  type ChangelogWrite,
  claimWrite,
  foldChangelog,
  journalKey,
  journalWrite,
  snapshotWrite,
  termWrite,
  tombstone,
} from './kafka-changelog.js';
import { ChangelogReader } from './kafka-changelog-reader.js';
import { type ClaimedPartition, type JournalEntry, StaleEpochError, type StateStore } from './types.js';

/** Options of {@link KafkaStore}. Only `transport` is required. */
export interface KafkaStoreOptions {
  /**
   * The coordinator's Kafka transport: the store writes through its per-partition transactions
   * (so a batch's journal entry commits with its replies and offsets) and shares its client.
   * Closing the store does not close it.
   */
  readonly transport: KafkaServerTransport;
  /** Prefix of the changelog topic, `<prefix>.changelog`, and of the reader's group. @defaultValue the transport's prefix */
  readonly prefix?: string;
  /**
   * `max.message.bytes` of the changelog topic when this store creates it: a partition's
   * snapshot is one record and must fit (a core at its default limits can need more; see
   * docs/durability.md). @defaultValue 67108864 (64 MiB)
   */
  readonly maxRecordBytes?: number;
  /** More topic configs for the changelog topic when this store creates it (e.g. `segment.ms`), beside `cleanup.policy=compact`. @defaultValue none */
  readonly topicConfig?: Readonly<Record<string, string>>;
  /** How long a claim may take to read its partition's changelog before it fails (and is retried). @defaultValue 60000 */
  readonly readTimeoutMs?: number;
  /** @defaultValue a silent logger */
  readonly logger?: Logger;
  /**
   * The wall clock, in ms since 1970, that seeds each claim's epoch and token ceiling (see
   * `clock-seed.ts`), so epochs and tokens rise even across a deleted changelog; one that reads
   * before 2025 seeds nothing. @defaultValue `Date.now`
   */
  readonly wallClockMs?: () => number;
}

export const DEFAULT_KAFKA_STORE_OPTIONS = Object.freeze({
  maxRecordBytes: 64 * 1024 * 1024,
  readTimeoutMs: 60_000,
});

/** How long the changelog reader sleeps when idle, and waits at the broker: bounds how fast a claim's read starts. */
const READER_MAX_WAIT_MS = 20;
/** Attempts to set the changelog up at construction (100 ms, 200 ms, … apart) before saying so. */
const WARM_UP_ATTEMPTS = 5;

/** A partition's term as this store holds it. */
interface Term {
  readonly epoch: number;
  /** The number of the term's next journal entry. */
  next: number;
  /** The token ceiling as last written. */
  tokenCeiling: number;
  /** Journal keys live in the changelog (as far as this term knows): the next snapshot tombstones them. */
  journalKeys: string[];
}

/** What one claim took, for logs and tests. */
export interface KafkaClaimTiming {
  readonly partition: number;
  /** From the call until the term record was written. */
  readonly totalMs: number;
  /** Reading the changelog (offsets and records). */
  readonly readMs: number;
  /** Committed records read (compaction keeps this to the term, the snapshot and the journal since). */
  readonly records: number;
}

/**
 * Keeps each partition's state in `<prefix>.changelog`, a compacted topic with one partition
 * per lockq partition, written through the Kafka transport's transactions (docs/durability.md,
 * docs/kafka.md): a batch's journal entry commits in one transaction with its replies and
 * consumed offsets, so "journaled before answered" holds as "journaled in the same atomic
 * commit as the answers". The record keys (see `kafka-changelog.ts`) let compaction keep exactly
 * the term record, the latest snapshot and the journal after it.
 *
 * A claim writes a `claim` record (which goes out only once the transport's producer for the
 * partition has fenced the previous owner and settled its own last transaction), reads its
 * partition of the changelog to its end (`read_committed`), and writes the new term record
 * (epoch + 1, at least the wall-clock seed). Inside a batch all of it is in the batch's
 * transaction. Fencing is Kafka's: the previous owner's
 * writes fail with its producer fenced, which this store reports as {@link StaleEpochError}.
 *
 * @example
 * const transport = new KafkaServerTransport({ url: 'kafka://127.0.0.1:9092', partitions: 8 });
 * const store = new KafkaStore({ transport });
 * const coordinator = await Coordinator.start({ transport, store, partitions: 8, identity: 'off' });
 */
export class KafkaStore implements StateStore {
  readonly durable = true;
  readonly journals = true;
  /** The changelog topic. */
  readonly topic: string;
  readonly #transport: KafkaServerTransport;
  readonly #prefix: string;
  readonly #maxRecordBytes: number;
  readonly #topicConfig: Readonly<Record<string, string>>;
  readonly #readTimeoutMs: number;
  readonly #log: Logger;
  readonly #wallClockMs: () => number;
  readonly #terms = new Map<number, Term>();
  #ready: Promise<{ link: KafkaStoreLink; reader: ChangelogReader }> | null = null;
  #reader: ChangelogReader | null = null;
  #closed = false;
  /** The last claims' timings, newest last (at most 64). */
  readonly claims: KafkaClaimTiming[] = [];

  constructor(options: KafkaStoreOptions) {
    this.#transport = options.transport;
    this.#prefix = options.prefix ?? options.transport.prefix;
    if (!/^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$/.test(this.#prefix)) throw new RangeError('prefix: 1 to 64 of A-Z a-z 0-9 _ . - (not starting with .)');
    this.#maxRecordBytes = checkInteger('maxRecordBytes', options.maxRecordBytes ?? DEFAULT_KAFKA_STORE_OPTIONS.maxRecordBytes, 1024, 1_000_000_000);
    this.#readTimeoutMs = checkInteger('readTimeoutMs', options.readTimeoutMs ?? DEFAULT_KAFKA_STORE_OPTIONS.readTimeoutMs, 1, 3_600_000);
    const topicConfig = options.topicConfig ?? {};
    for (const name of ['cleanup.policy', 'max.message.bytes']) {
      if (name in topicConfig) throw new RangeError(`topicConfig: ${name} is set by the store (cleanup.policy is always compact; use maxRecordBytes)`);
    }
    this.#topicConfig = Object.freeze({ ...topicConfig });
    this.#wallClockMs = options.wallClockMs ?? (() => Date.now());
    this.#log = (options.logger ?? pino({ level: 'silent' })).child({ component: 'kafka-store' });
    this.topic = changelogTopic(this.#prefix);
    void this.#warmUp();
  }

  /**
   * Sets up now rather than at the first claim, which on a standby is a take-over: the reader's
   * group join waits out the broker's group.initial.rebalance.delay.ms (3 s by default). A topic
   * just created may not be served for a moment: a few quiet attempts, then a warning.
   */
  async #warmUp(): Promise<void> {
    for (let attempt = 0; !this.#closed; attempt++) {
      try {
        await this.#open();
        return;
      } catch (err) {
        if (this.#closed) return;
        if (attempt >= WARM_UP_ATTEMPTS - 1) {
          this.#log.warn({ err }, 'cannot set up the changelog yet; the first claim tries again');
          return;
        }
        this.#log.debug({ err, attempt }, 'setting up the changelog failed; trying again');
        await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
      }
    }
  }

  async claim(partition: number): Promise<ClaimedPartition> {
    checkInteger('partition', partition, 0, this.#transport.partitions - 1);
    const started = performance.now();
    const { link, reader } = await this.#open();
    this.#terms.delete(partition);
    const seed = clockSeedMs(this.#wallClockMs); // waits up to a millisecond: alongside the read
    // Written before reading, so that the read sees every committed record: the partition's
    // transactional producer sends it only once it has fenced the previous owner (whose open
    // transaction the broker settles first), and only once this producer's own previous
    // transaction is settled, markers written (the broker runs one transaction of an id at a
    // time). A commit returns before its markers are written, and until they are the last
    // stable offset, where a read_committed read ends, stays before that transaction.
    await this.#write(partition, [claimWrite(Math.floor(this.#wallClockMs()))]);
    const admin = await link.admin();
    // read_committed: the end is the last stable offset, after every settled transaction.
    const offsets = (await admin.fetchTopicOffsets(this.topic)).find((o) => o.partition === partition);
    if (offsets === undefined) throw new Error(`${this.topic} has no partition ${partition}`);
    const records = await reader.read(partition, offsets.low, offsets.high, this.#readTimeoutMs);
    const readMs = performance.now() - started;
    const folded = foldChangelog(records);
    const seedMs = await seed;
    const epoch = Math.max((folded.term?.epoch ?? 0) + 1, seedMs);
    const tokenCeiling = Math.max(folded.tokenCeiling, seedMs * SEED_TOKENS_PER_MS);
    await this.#write(partition, [termWrite({ epoch, tokenCeiling })]);
    this.#terms.set(partition, { epoch, next: 0, tokenCeiling, journalKeys: [...folded.covered, ...folded.journal.map((j) => j.key)] });
    const timing = { partition, totalMs: performance.now() - started, readMs, records: records.length };
    this.claims.push(timing);
    if (this.claims.length > 64) this.claims.shift();
    this.#log.info({ ...timing, epoch, journal: folded.journal.length, snapshot: folded.snapshot !== null }, 'claimed from the changelog');
    return {
      epoch,
      tokenCeiling,
      snapshot: folded.snapshot?.snapshot ?? null,
      journal: folded.journal.map((j) => j.entry),
    };
  }

  async append(partition: number, epoch: number, entry: JournalEntry): Promise<void> {
    const term = this.#current(partition, epoch);
    const n = term.next++;
    const writes = [journalWrite(epoch, n, entry)];
    const raised = entry.tokenCeiling !== undefined && entry.tokenCeiling > term.tokenCeiling ? entry.tokenCeiling : undefined;
    // The term record carries the reservation past the snapshot that tombstones this entry.
    if (raised !== undefined) writes.push(termWrite({ epoch, tokenCeiling: raised }));
    await this.#write(partition, writes);
    term.journalKeys.push(journalKey(epoch, n));
    if (raised !== undefined && raised > term.tokenCeiling) term.tokenCeiling = raised;
  }

  async snapshot(partition: number, epoch: number, snapshot: CoreSnapshot): Promise<void> {
    const term = this.#current(partition, epoch);
    const covered = term.journalKeys.length;
    await this.#write(partition, [snapshotWrite({ epoch, through: term.next, snapshot }), ...term.journalKeys.map(tombstone)]);
    // Entries appended meanwhile (none: the runner serialises) stay for the next snapshot.
    term.journalKeys = term.journalKeys.slice(covered);
  }

  /** Stops the changelog reader; the transport stays open (it is the caller's). Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#terms.clear();
    await this.#ready?.catch(() => {});
    const reader = this.#reader;
    this.#reader = null;
    await reader?.stop();
  }

  /** The term `epoch` of `partition`, if it is this store's current one and the transport still holds the partition. */
  #current(partition: number, epoch: number): Term {
    const term = this.#terms.get(partition);
    if (this.#closed) throw new Error('KafkaStore is closed');
    if (term === undefined || term.epoch !== epoch) throw new StaleEpochError(`partition ${partition}: epoch ${epoch} is stale`);
    if (!this.#transport.holds(partition)) {
      this.#terms.delete(partition);
      throw new StaleEpochError(`partition ${partition}: no longer held by this coordinator (epoch ${epoch})`);
    }
    return term;
  }

  /** Writes in the partition's current transaction; a fenced producer or a lost partition is a stale epoch. */
  async #write(partition: number, writes: readonly ChangelogWrite[]): Promise<void> {
    const records: KafkaRecord[] = writes.map((w) => ({ topic: this.topic, partition, key: w.key, value: w.value }));
    try {
      await this.#transport.writeInTransaction(partition, records);
    } catch (err) {
      const fenced = (err instanceof KafkaTransportError && err.fenced) || isFencedError(err);
      if (fenced || !this.#transport.holds(partition)) {
        this.#terms.delete(partition);
        throw new StaleEpochError(`partition ${partition}: ${fenced ? 'fenced by a newer owner' : 'not held by this coordinator'}`, { cause: err });
      }
      throw err;
    }
  }

  /** The changelog topic (created when missing) and the reader; again after a failure. */
  #open(): Promise<{ link: KafkaStoreLink; reader: ChangelogReader }> {
    if (this.#closed) return Promise.reject(new Error('KafkaStore is closed'));
    this.#ready ??= (async () => {
      const link = await this.#transport.storeLink();
      await this.#ensureTopic(link);
      if (this.#closed) throw new Error('KafkaStore is closed');
      this.#reader ??= new ChangelogReader({
        kafka: link.kafka,
        assignerProtocol: link.assignerProtocol,
        link: link.link,
        topic: this.topic,
        partitions: this.#transport.partitions,
        groupPrefix: `${this.#prefix}.changelog-reader`,
        maxWaitMs: READER_MAX_WAIT_MS,
        maxBytesPerPartition: Math.min(this.#maxRecordBytes, 16 * 1024 * 1024),
        log: this.#log,
      });
      await this.#reader.start();
      return { link, reader: this.#reader };
    })().catch((err: unknown) => {
      this.#ready = null;
      throw err;
    });
    return this.#ready;
  }

  async #ensureTopic(link: KafkaStoreLink): Promise<void> {
    const admin = await link.admin();
    const partitions = this.#transport.partitions;
    if (!(await admin.listTopics()).includes(this.topic)) {
      const configEntries = [
        { name: 'cleanup.policy', value: 'compact' },
        { name: 'max.message.bytes', value: String(this.#maxRecordBytes) },
        ...Object.entries(this.#topicConfig).map(([name, value]) => ({ name, value })),
      ];
      // False when another coordinator created it meanwhile: then it is checked like any other.
      await admin.createTopics({ topics: [{ topic: this.topic, numPartitions: partitions, replicationFactor: link.replicationFactor, configEntries }], waitForLeaders: true });
      this.#log.info({ topic: this.topic, partitions }, 'created the changelog topic');
    }
    const found = partitionCount(await admin.fetchTopicMetadata({ topics: [this.topic] }), this.topic);
    if (found !== partitions) {
      throw new KafkaTransportError(`${this.topic} has ${found ?? 'no'} partitions, but this coordinator has ${partitions}: the changelog must have one per lockq partition`);
    }
  }
}
