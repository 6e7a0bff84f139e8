/**
 * The Kafka store on the real broker (`npm run kafka`): the StateStore contract the Redis store
 * passes, then what is Kafka's own: writes ride the transport's transactions (a batch's entry
 * commits or aborts with the batch), a new owner's producer fences the old one, tokens and
 * epochs rise across claims and an emptied changelog, the record keys let compaction keep only
 * what a restore needs, and how long a claim takes. The fold itself is checked without a broker.
 *
 * Every transport and store has its own prefix under this run's; the run's topics and groups
 * are deleted at the end.
 */
import { Buffer } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { type AcquireRequest, partitionOf } from '@lockq/protocol';
import kafkajs from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CORE_LIMITS, type Decision, LockCore } from '../src/core/index.js';
import { type ChangelogRecord, ChangelogFormatError, foldChangelog, journalWrite, snapshotWrite, termWrite, tombstone } from '../src/store/kafka-changelog.js';
import { type JournalEntry, KafkaStore, StaleEpochError } from '../src/store/index.js';
import { type BatchHandler, KafkaServerTransport } from '../src/transport/index.js';
import { KAFKA_BROKERS, requireKafka } from '../../test/support/brokers.js';
import { waitFor } from '../../test/support/wait-for.js';
import { defineStoreContract, requests, snapshotOf } from './store.contract.js';

const available = await requireKafka();

/** Short group timings (the test broker allows sessions down to 1 s). */
const URL = `kafka://${KAFKA_BROKERS}?sessionTimeoutMs=3000&heartbeatIntervalMs=200&maxWaitMs=100`;
/** Every topic and group this run makes starts with this. */
const RUN = `sk${Date.now().toString(36)}${process.pid.toString(36)}`;
let names = 0;
const prefixOf = (what: string) => `${RUN}.${what}${++names}`;
/** A clock before the seed's origin: epochs count 1, 2, … as the contract reads them. */
const PRE_2025 = () => 0;

const transports: KafkaServerTransport[] = [];
const stores: KafkaStore[] = [];
const idle: BatchHandler = async () => {};

/** A transport consuming `partitions` partitions (or those of `consume`), resolved once it holds them all. */
async function holding(
  prefix: string,
  partitions: number,
  options: { groupId?: string; onBatch?: BatchHandler; onLost?: () => void; consume?: readonly number[] } = {},
): Promise<KafkaServerTransport> {
  const transport = new KafkaServerTransport({ url: URL, prefix, partitions, ...(options.groupId === undefined ? {} : { groupId: options.groupId }) });
  transports.push(transport);
  const consumed = options.consume ?? Array.from({ length: partitions }, (_, p) => p);
  for (const p of consumed) await transport.consume(p, options.onBatch ?? idle, options.onLost);
  await waitFor(() => consumed.every((p) => transport.holds(p)), `${prefix} to hold its partitions`, { timeoutMs: 30_000, intervalMs: 20 });
  return transport;
}

function store(transport: KafkaServerTransport, options: Partial<ConstructorParameters<typeof KafkaStore>[0]> = {}): KafkaStore {
  const s = new KafkaStore({ transport, prefix: prefixOf('s'), ...options });
  stores.push(s);
  return s;
}

function entry(now: number, count: number, tokenCeiling?: number): JournalEntry {
  return { now: now + 0.5, requests: requests(now, count), ...(tokenCeiling === undefined ? {} : { tokenCeiling }) };
}

function kafka() {
  return new kafkajs.Kafka({ brokers: KAFKA_BROKERS.split(','), clientId: 'lockq-test', logLevel: kafkajs.logLevel.NOTHING });
}

/** Writes `count` request records to partition `partition` of `<prefix>.requests` (their bodies need not be requests). */
async function produceRequests(prefix: string, partition: number, count: number): Promise<void> {
  const producer = kafka().producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: kafkajs.Partitioners.DefaultPartitioner });
  await producer.connect();
  await producer.send({ topic: `${prefix}.requests`, acks: -1, messages: Array.from({ length: count }, (_, i) => ({ partition, value: `r${i}` })) });
  await producer.disconnect();
}

/** The offset the coordinators' group of `prefix` has committed on partition `partition` of its request topic. */
async function committedOffset(prefix: string, partition: number, groupId = `${prefix}.coordinators`): Promise<string | undefined> {
  const admin = kafka().admin();
  await admin.connect();
  try {
    const [topic] = await admin.fetchOffsets({ groupId, topics: [`${prefix}.requests`] });
    return topic?.partitions.find((p) => p.partition === partition)?.offset;
  } finally {
    await admin.disconnect();
  }
}

/** Every committed record of one changelog partition, from its start (what a reader sees). */
async function readAll(topic: string, partition: number): Promise<ChangelogRecord[]> {
  const client = kafka();
  const admin = client.admin();
  await admin.connect();
  const end = (await admin.fetchTopicOffsets(topic)).find((o) => o.partition === partition)!;
  await admin.disconnect();
  const records: ChangelogRecord[] = [];
  if (end.high === end.low) return records;
  const consumer = client.consumer({ groupId: `${RUN}.raw.${randomUUID()}`, maxWaitTimeInMs: 100, readUncommitted: false });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let reached = false;
  await consumer.run({
    eachBatch: async ({ batch }) => {
      if (batch.partition !== partition) return;
      for (const m of batch.messages) records.push({ key: m.key?.toString('utf8') ?? null, value: m.value, offset: m.offset });
      if (BigInt(batch.lastOffset()) + 1n >= BigInt(end.high)) reached = true;
    },
  });
  await waitFor(() => reached, `reading ${topic}/${partition} to ${end.high}`, { timeoutMs: 30_000, intervalMs: 20 });
  await consumer.disconnect();
  return records;
}

/** What compaction leaves of `records`: the newest record of each key, tombstoned keys gone. */
function compacted(records: readonly ChangelogRecord[]): ChangelogRecord[] {
  const latest = new Map<string, ChangelogRecord>();
  for (const r of records) if (r.key !== null) latest.set(r.key, r);
  return [...latest.values()].filter((r) => r.value !== null).sort((a, b) => Number(BigInt(a.offset) - BigInt(b.offset)));
}

afterAll(async () => {
  await Promise.all(stores.map((s) => s.close().catch(() => undefined)));
  await Promise.all(transports.map((t) => t.close().catch(() => undefined)));
  if (!available) return;
  const admin = kafka().admin();
  await admin.connect();
  try {
    const ours = (name: string) => name.startsWith(`${RUN}.`);
    const topics = (await admin.listTopics()).filter(ours);
    if (topics.length > 0) await admin.deleteTopics({ topics });
    const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter(ours);
    if (groups.length > 0) await admin.deleteGroups(groups).catch(() => undefined);
  } finally {
    await admin.disconnect();
  }
}, 60_000);

describe('the changelog fold (no broker)', () => {
  const at = (offset: number, w: { key: string; value: Buffer | null }): ChangelogRecord => ({ ...w, offset: String(offset) });

  it('keeps the newest term, the newest snapshot and the journal after it, oldest first', () => {
    const snap = snapshotOf(0, 2);
    const log = [
      termWrite({ epoch: 1, tokenCeiling: 0 }),
      journalWrite(1, 0, entry(1, 1)),
      journalWrite(1, 1, entry(2, 1, 10_000)),
      termWrite({ epoch: 1, tokenCeiling: 10_000 }),
      snapshotWrite({ epoch: 1, through: 2, snapshot: snap }),
      tombstone('j:1:0'),
      tombstone('j:1:1'),
      journalWrite(1, 2, entry(3, 2)),
      termWrite({ epoch: 2, tokenCeiling: 10_000 }),
      journalWrite(2, 0, entry(4, 1)),
    ].map((w, i) => at(i, w));
    const folded = foldChangelog(log);
    expect(folded.term).toEqual({ epoch: 2, tokenCeiling: 10_000 });
    expect(folded.tokenCeiling).toBe(10_000);
    expect(folded.snapshot).toEqual({ epoch: 1, through: 2, snapshot: snap });
    expect(folded.journal.map((j) => [j.key, j.entry])).toEqual([
      ['j:1:2', entry(3, 2)],
      ['j:2:0', entry(4, 1)],
    ]);
    expect(folded.covered).toEqual([]);
    // Compaction changes nothing a restore sees.
    expect(foldChangelog(compacted(log))).toEqual(folded);
  });

  it('leaves out entries the snapshot covers even without their tombstones, and lists them to tombstone', () => {
    const log = [journalWrite(3, 0, entry(1, 1)), journalWrite(3, 1, entry(2, 1)), journalWrite(2, 9, entry(0, 1)), snapshotWrite({ epoch: 3, through: 1, snapshot: snapshotOf(0, 1) })].map((w, i) => at(i, w));
    const folded = foldChangelog(log);
    expect(folded.journal.map((j) => j.key)).toEqual(['j:3:1']);
    expect(folded.covered).toEqual(['j:2:9', 'j:3:0']);
  });

  it('an empty changelog is a partition never claimed', () => {
    expect(foldChangelog([])).toEqual({ term: null, tokenCeiling: 0, snapshot: null, journal: [], covered: [] });
  });

  it('refuses a record it cannot read rather than resume from part of the state', () => {
    const bad = (key: string, text: string) => [at(0, { key, value: Buffer.from(text) })];
    expect(() => foldChangelog(bad('term', '{"epoch":'))).toThrow(ChangelogFormatError);
    expect(() => foldChangelog(bad('term', '{"epoch":-1,"tokenCeiling":0}'))).toThrow(ChangelogFormatError);
    expect(() => foldChangelog(bad('snapshot', '{"epoch":1,"through":0}'))).toThrow(ChangelogFormatError);
    expect(() => foldChangelog(bad('j:1:0', '{"requests":[]}'))).toThrow(ChangelogFormatError);
    // Keys it does not know are someone else's: ignored.
    expect(foldChangelog(bad('other', 'not json')).term).toBeNull();
  });
});

describe.skipIf(!available)('KafkaStore on the real broker', () => {
  let shared: KafkaServerTransport;
  beforeAll(async () => {
    shared = await holding(prefixOf('t'), 8);
  }, 60_000);

  // The contract counts epochs and ceilings from an empty store: a clock before 2025 seeds nothing.
  defineStoreContract('KafkaStore', () => store(shared, { wallClockMs: PRE_2025 }));

  it('bad options and partitions are refused, naming them', async () => {
    expect(() => new KafkaStore({ transport: shared, prefix: '.x' })).toThrow(/prefix/);
    expect(() => new KafkaStore({ transport: shared, maxRecordBytes: 10 })).toThrow(/maxRecordBytes/);
    expect(() => new KafkaStore({ transport: shared, topicConfig: { 'cleanup.policy': 'delete' } })).toThrow(/cleanup.policy/);
    const s = store(shared);
    await expect(s.claim(8)).rejects.toThrow(/partition/);
    await expect(s.claim(-1)).rejects.toThrow(/partition/);
  });

  it('creates <prefix>.changelog compacted, one partition per lockq partition', async () => {
    const s = store(shared, { wallClockMs: PRE_2025 });
    await s.claim(2);
    const admin = kafka().admin();
    await admin.connect();
    try {
      const metadata = await admin.fetchTopicMetadata({ topics: [s.topic] });
      expect(metadata.topics[0]?.partitions).toHaveLength(8);
      const { resources } = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: kafkajs.ConfigResourceTypes.TOPIC, name: s.topic }] });
      const config = new Map(resources[0]?.configEntries.map((e) => [e.configName, e.configValue]));
      expect(config.get('cleanup.policy')).toBe('compact');
      expect(config.get('max.message.bytes')).toBe(String(64 * 1024 * 1024));
      expect(s.topic).toMatch(/\.changelog$/);
    } finally {
      await admin.disconnect();
    }
  });

  it('a partition this coordinator does not hold cannot be claimed', async () => {
    const t = await holding(prefixOf('t'), 2, { consume: [0] });
    await expect(store(t).claim(1)).rejects.toThrow(StaleEpochError);
    await expect(store(t).claim(1)).rejects.toThrow(/not held/);
  }, 60_000);

  it('epochs and tokens rise across claims with the wall clock, and past an emptied changelog', async () => {
    const s = store(shared);
    const first = await s.claim(0);
    expect(first.epoch).toBeGreaterThan(10_000_000_000); // ms since 2025: seeded
    await s.append(0, first.epoch, entry(1, 1, first.tokenCeiling + 5_000));
    const second = await s.claim(0);
    expect(second.epoch).toBeGreaterThan(first.epoch);
    expect(second.tokenCeiling).toBeGreaterThanOrEqual(first.tokenCeiling + 5_000);
    // A changelog that is empty (its topic deleted, or a new prefix): the seed still starts above.
    const fresh = await store(shared).claim(0);
    expect(fresh.epoch).toBeGreaterThan(second.epoch);
    expect(fresh.tokenCeiling).toBeGreaterThan(second.tokenCeiling - 5_000);
    expect(fresh).toMatchObject({ snapshot: null, journal: [] });
  });

  it('tokens never repeat across claims: each term resumes the core and grants above the last reserved ceiling', async () => {
    const s = store(shared);
    const seen: number[] = [];
    for (let term = 0; term < 4; term++) {
      const claimed = await s.claim(1);
      const options = { partition: 1, partitions: 8, epoch: claimed.epoch, tokenFloor: 0, tokenBlockSize: 16, limits: DEFAULT_CORE_LIMITS };
      const core = claimed.snapshot === null ? new LockCore(options) : LockCore.restore(claimed.snapshot, options);
      for (const e of claimed.journal) for (const r of e.requests) core.handle(r, e.now, []);
      core.raiseTokenFloor(claimed.tokenCeiling);
      if (term === 2) await s.snapshot(1, claimed.epoch, core.snapshot());
      const now = 1_000 * (term + 1);
      const open = { v: 1, op: 'open', id: `o${term}`, worker: 'w', session: `s${term}`, replyTo: 'lockq.replies.w.x', sessionTtlMs: 60_000, partitions: 8 } as const;
      // Lock names of partition 1 (of 8), 20 per term.
      const locks = Array.from({ length: 400 }, (_, i) => `l${term}-${i}`).filter((name) => partitionOf(name, 8) === 1).slice(0, 20);
      const batch = [open, ...locks.map((lock, i): AcquireRequest => ({ v: 1, op: 'acquire', id: `a${term}-${i}`, worker: 'w', session: `s${term}`, replyTo: 'lockq.replies.w.x', lock, kind: 'mutex', mode: 'exclusive', limit: 1, permits: 1, ttlMs: 60_000, waitMs: 0 }))];
      const out: Decision[] = [];
      for (const r of batch) core.handle(r, now, out);
      let ceiling: number | undefined;
      for (const d of out) {
        if (d.type === 'reserve-tokens') ceiling = d.ceiling;
        else if (d.body.type === 'granted') seen.push(d.body.token);
      }
      await s.append(1, claimed.epoch, { now, requests: batch, ...(ceiling === undefined ? {} : { tokenCeiling: ceiling }) });
    }
    expect(seen).toHaveLength(80);
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1]!);
  });

  it('a snapshot over 1 MiB round-trips (one record, above the broker’s default record limit)', async () => {
    const s = store(shared, { wallClockMs: PRE_2025 });
    const { epoch } = await s.claim(3);
    const big = snapshotOf(3, 6_000);
    expect(JSON.stringify(big).length).toBeGreaterThan(1_100_000);
    await s.snapshot(3, epoch, big);
    await s.append(3, epoch, entry(1, 2));
    const again = await s.claim(3);
    expect(again.snapshot).toStrictEqual(big);
    expect(again.journal).toEqual([entry(1, 2)]);
  }, 60_000);

  it('a restore reads only what it needs: after many snapshots the live keys are the term, the snapshot and the journal since', async () => {
    const s = store(shared, { wallClockMs: PRE_2025 });
    let epoch = (await s.claim(4)).epoch;
    let last = snapshotOf(4, 0);
    for (let round = 0; round < 12; round++) {
      if (round % 4 === 3) epoch = (await s.claim(4)).epoch; // a take-over now and then
      for (let i = 0; i < 10; i++) await s.append(4, epoch, entry(round * 10 + i, 1, i === 5 ? (round + 1) * 1000 : undefined));
      last = snapshotOf(4, round + 1);
      await s.snapshot(4, epoch, last);
    }
    const tail = [entry(900, 1), entry(901, 2), entry(902, 0)];
    for (const e of tail) await s.append(4, epoch, e);

    const all = await readAll(s.topic, 4);
    const live = compacted(all);
    expect(live.map((r) => r.key)).toEqual(['claim', 'term', 'snapshot', `j:${epoch}:10`, `j:${epoch}:11`, `j:${epoch}:12`]);
    expect(all.length).toBeGreaterThan(150);
    // Each key's newest record and nothing else: what compaction keeps.
    const restored = foldChangelog(live);
    expect(restored).toMatchObject({ term: { epoch, tokenCeiling: 12_000 }, snapshot: { snapshot: last }, covered: [] });
    expect(restored.journal.map((j) => j.entry)).toEqual(tail);
    const claimed = await s.claim(4);
    expect(claimed).toEqual({ epoch: epoch + 1, tokenCeiling: 12_000, snapshot: last, journal: tail });
  }, 60_000);

  it('after the broker’s cleaner has compacted the changelog, a claim reads a handful of records and restores the same state', async () => {
    // Segments roll after 100 ms and any dirt is worth cleaning; the cleaner looks every 15 s (log.cleaner.backoff.ms).
    const topicConfig = { 'segment.ms': '100', 'min.cleanable.dirty.ratio': '0.001', 'delete.retention.ms': '100', 'min.compaction.lag.ms': '0' };
    const s = store(shared, { wallClockMs: PRE_2025, topicConfig });
    let epoch = (await s.claim(6)).epoch;
    for (let round = 0; round < 10; round++) {
      if (round % 3 === 2) epoch = (await s.claim(6)).epoch;
      for (let i = 0; i < 10; i++) await s.append(6, epoch, entry(round * 10 + i, 2, i === 3 ? (round + 1) * 1000 : undefined));
      await s.snapshot(6, epoch, snapshotOf(6, round + 1));
    }
    await s.append(6, epoch, entry(500, 1));
    const before = await s.claim(6);
    // Over 200 records were written; the cleaner may have run on some of them already (every 15 s).
    const readBefore = s.claims.at(-1)!.records;
    let after = before;
    await waitFor(
      async () => {
        after = await s.claim(6); // its writes, after segment.ms, roll the active segment
        return s.claims.at(-1)!.records < 20;
      },
      () => `the cleaner to compact ${s.topic} (a claim still reads ${s.claims.at(-1)?.records} records)`,
      { timeoutMs: 90_000, intervalMs: 1000 },
    );
    console.info(`compaction: a claim read ${readBefore} records before the cleaner ran, ${s.claims.at(-1)!.records} after`);
    expect(after.snapshot).toEqual(before.snapshot);
    expect(after.tokenCeiling).toBe(10_000);
    expect(after.journal).toEqual([entry(500, 1)]);
    expect(after.journal).toEqual(before.journal);
  }, 120_000);

  it('a batch’s writes commit with the batch: an aborted attempt leaves nothing, the committed retry is read back once', async () => {
    const prefix = prefixOf('t');
    let s!: KafkaStore;
    let epoch = 0;
    let attempts = 0;
    const t = await holding(prefix, 1, {
      onBatch: async () => {
        attempts++;
        await s.append(0, epoch, { now: attempts, requests: [] });
        if (attempts === 1) throw new Error('the first attempt fails after its append');
      },
    });
    s = store(t, { wallClockMs: PRE_2025 });
    epoch = (await s.claim(0)).epoch;
    await produceRequests(prefix, 0, 1);
    await waitFor(async () => (await committedOffset(prefix, 0)) === '1', 'the batch to commit', { timeoutMs: 20_000, intervalMs: 50 });
    expect(attempts).toBe(2);
    expect((await s.claim(0)).journal).toEqual([{ now: 2, requests: [] }]);
  }, 60_000);

  it('a second owner fences the first: its open batch is aborted, its later writes are refused as stale, nothing of it is read back', async () => {
    const prefix = prefixOf('t');
    const storePrefix = prefixOf('s');
    let sA!: KafkaStore;
    let epochA = 0;
    let entered!: () => void;
    const inBatch = new Promise<void>((resolve) => {
      entered = resolve;
    });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let batchFailed: unknown;
    let lost = 0;
    const a = await holding(prefix, 1, {
      onLost: () => lost++,
      onBatch: async () => {
        try {
          await sA.append(0, epochA, entry(2, 1)); // in the batch's open transaction
          entered();
          await gate;
        } catch (err) {
          batchFailed = err;
          throw err;
        }
      },
    });
    sA = store(a, { prefix: storePrefix, wallClockMs: PRE_2025 });
    epochA = (await sA.claim(0)).epoch;
    await sA.append(0, epochA, entry(1, 1)); // committed in a transaction of its own
    await produceRequests(prefix, 0, 1);
    await inBatch;

    // B: the same transactional ids, in a group of its own, so both hold the partition.
    const b = await holding(prefix, 1, { groupId: `${prefix}.other` });
    const sB = store(b, { prefix: storePrefix, wallClockMs: PRE_2025 });
    const claimed = await sB.claim(0);
    expect(claimed.epoch).toBe(epochA + 1);
    expect(claimed.journal).toEqual([entry(1, 1)]); // A's open batch was aborted by B's producer

    release();
    // The batch's commit fails, fenced, and the transport says the partition is lost to it.
    await waitFor(() => lost > 0, 'A to learn it was fenced', { timeoutMs: 20_000, intervalMs: 20 });
    await expect(sA.append(0, epochA, entry(3, 1))).rejects.toThrow(StaleEpochError);
    await expect(sA.snapshot(0, epochA, snapshotOf(0, 1))).rejects.toThrow(StaleEpochError);
    expect(batchFailed).toBeUndefined(); // the batch itself resolved; its commit is what failed
    expect(await committedOffset(prefix, 0)).not.toBe('1');

    await sB.append(0, claimed.epoch, entry(4, 1));
    expect(await sB.claim(0)).toEqual({ epoch: claimed.epoch + 1, tokenCeiling: 0, snapshot: null, journal: [entry(1, 1), entry(4, 1)] });
  }, 60_000);

  it('how long a claim takes: an empty changelog, and a snapshot with 1,000 entries after it', async () => {
    const s = store(shared, { wallClockMs: PRE_2025 });
    await s.claim(5);
    const empty = s.claims.at(-1)!;
    await s.claim(5);
    const again = s.claims.at(-1)!;
    // A full journal (snapshotEvery defaults to 1,000 batches), written straight to the topic.
    const producer = kafka().producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: kafkajs.Partitioners.DefaultPartitioner });
    await producer.connect();
    const epoch = (await s.claim(5)).epoch;
    const snap = snapshotOf(5, 300);
    const writes = [snapshotWrite({ epoch, through: 0, snapshot: snap }), ...Array.from({ length: 1000 }, (_, i) => journalWrite(epoch, i, entry(i, 10)))];
    for (let i = 0; i < writes.length; i += 250) {
      await producer.send({ topic: s.topic, acks: -1, messages: writes.slice(i, i + 250).map((w) => ({ partition: 5, key: w.key, value: w.value })) });
    }
    await producer.disconnect();
    const bytes = writes.reduce((n, w) => n + (w.value?.length ?? 0), 0);
    const full = await s.claim(5);
    const timed = s.claims.at(-1)!;
    expect(full.snapshot).toEqual(snap);
    expect(full.journal).toHaveLength(1000);
    console.info(
      `claim: empty changelog ${empty.totalMs.toFixed(0)} ms (first, with topic and reader set-up), ${again.totalMs.toFixed(0)} ms (again); ` +
        `snapshot + 1,000 entries (${(bytes / 1e6).toFixed(1)} MB, ${timed.records} records) ${timed.totalMs.toFixed(0)} ms, of which reading ${timed.readMs.toFixed(0)} ms`,
    );
  }, 60_000);
});

