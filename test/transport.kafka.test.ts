/**
 * The Kafka adapters on a real Kafka broker (docs/kafka.md: `npm run kafka` starts one): the
 * transport contract, then what the contract cannot say: a rejected batch sought back and
 * redelivered, a partition revoked when a second coordinator joins the group, a zombie whose
 * transactional producer is fenced. Every test has a prefix of its own; its topics and groups
 * are deleted after it. Pure parts (URL options, the assigner, the reply partition) too.
 * `LOCKQ_KAFKA_TEST_LOG=info` shows the transports' logs.
 */
import { Buffer } from 'node:buffer';
import { replyTopic } from '@lockq/protocol';
import { coordinatorGroup, parseKafkaUrl, replyPartitionOf, requestKey, resolveKafkaLinkOptions } from '@lockq/protocol/kafka';
import { type ClientTransport, KafkaClientTransport, type KafkaClientTransportOptions } from '@lockq/worker-sdk/transport';
import kafkajs from 'kafkajs';
import { pino } from 'pino';
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
const FAST = Object.freeze({
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

/** The transports' logs on stderr at this level: `LOCKQ_KAFKA_TEST_LOG=info npx vitest run …`. */
const log = pino({ level: process.env.LOCKQ_KAFKA_TEST_LOG ?? 'silent' }, pino.destination(2));

function serverOptions(prefix: string, extra: Partial<KafkaServerTransportOptions> = {}): KafkaServerTransportOptions {
  return { url: URL, prefix, partitions: 4, replyPartitions: 4, ...FAST, logger: log, ...extra };
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

describe('Kafka plumbing without a broker', () => {
  it('parses kafka:// URLs: brokers (port 9092 by default), query options; refuses what it cannot honour, naming it', () => {
    expect(parseKafkaUrl('kafka://127.0.0.1:9092,kafka-2,[::1]:9093?clientId=x')).toEqual({
      brokers: ['127.0.0.1:9092', 'kafka-2:9092', '[::1]:9093'],
      query: new Map([['clientId', 'x']]),
    });
    expect(() => parseKafkaUrl('amqp://localhost')).toThrow(/expected kafka:\/\//);
    expect(() => parseKafkaUrl('kafka://user:secret@h:9092')).toThrow(/credentials.*not supported/);
    expect(() => parseKafkaUrl('kafka://h:9092?replyPartition=3')).toThrow(/unknown option "replyPartition"/);
    expect(() => parseKafkaUrl('kafka://h:99999')).toThrow(/port/);
    expect(() => parseKafkaUrl('kafka://')).toThrow(/broker/);
    const o = resolveKafkaLinkOptions({ url: 'kafka://h?sessionTimeoutMs=6000&maxWaitMs=50', maxWaitMs: 200 }, 'lockq-test');
    expect(o).toMatchObject({ brokers: ['h:9092'], sessionTimeoutMs: 6000, maxWaitMs: 200, heartbeatIntervalMs: 1000, clientId: 'lockq-test' });
    expect(() => resolveKafkaLinkOptions({ url: 'kafka://h', heartbeatIntervalMs: 5000, sessionTimeoutMs: 5000 }, 'x')).toThrow(/heartbeatIntervalMs/);
    expect(() => resolveKafkaLinkOptions({ url: 'kafka://h?sessionTimeoutMs=soon' }, 'x')).toThrow(/sessionTimeoutMs/);
    expect(() => new KafkaServerTransport({ url: 'kafka://h', replicationFactor: 0 })).toThrow(/replicationFactor/);
  });

  it('puts a reply address in a partition by FNV-1a of its UTF-8 bytes, and keys requests by lock or session', () => {
    // FNV-1a 32-bit test vectors: "a" = 0xe40c292c, "foobar" = 0xbf9cf968.
    expect(replyPartitionOf('a', 1_000_000)).toBe(0xe40c292c % 1_000_000);
    expect(replyPartitionOf('foobar', 1000)).toBe(0xbf9cf968 % 1000);
    expect(replyPartitionOf('anything', 1)).toBe(0);
    expect(requestKey(enc('{"v":1,"op":"acquire","session":"s1","lock":"job-7"}'))).toBe('job-7');
    expect(requestKey(enc('{"v":1,"op":"heartbeat","session":"s1"}'))).toBe('s1');
    expect(requestKey(enc('not json'))).toBeNull();
  });

  it('assigns each partition to one member that asked for it: sticky, spread over coordinators, a late asker is a standby', () => {
    const claim = (memberId: string, partition: number, owner: string, heldSince: number | null, startedAt = 0): PartitionClaim => ({
      memberId,
      partition,
      owner,
      heldSince,
      startedAt,
    });
    // A alone holds 0-3; B joins asking for all four: B takes half, A keeps the rest.
    const a = [0, 1, 2, 3].map((p) => claim(`a${p}`, p, 'A', 10));
    const b = [0, 1, 2, 3].map((p) => claim(`b${p}`, p, 'B', null, 20));
    expect(Object.fromEntries(assignPartitions([...a, ...b]))).toEqual({ a0: 0, a1: 1, b2: 2, b3: 3 });
    // One partition asked for by two: the holder keeps it; with no holder the first to start gets it.
    expect(Object.fromEntries(assignPartitions([claim('late', 0, 'B', null, 5), claim('first', 0, 'A', 100, 9)]))).toEqual({ first: 0 });
    expect(Object.fromEntries(assignPartitions([claim('late', 0, 'B', null, 5), claim('early', 0, 'A', null, 1)]))).toEqual({ early: 0 });
    // Two claim to hold it: the later holder wins (the other is a zombie that missed its take-over).
    expect(Object.fromEntries(assignPartitions([claim('zombie', 0, 'A', 100), claim('heir', 0, 'B', 200)]))).toEqual({ heir: 0 });
    // A partition nobody asks for is given to nobody; everyone asked gets at most one partition each.
    expect(assignPartitions([claim('x', 1, 'A', null)]).get('x')).toBe(1);
  });

  it('refuses identity required on a transport that cannot vouch for senders, telling how to run without', async () => {
    const transport = new KafkaServerTransport({ url: 'kafka://127.0.0.1:1' });
    expect(transport.vouchesForSenders).toBe(false);
    await expect(Coordinator.start({ transport })).rejects.toThrow(/identity: 'required' needs a transport that vouches for senders.*--identity off/);
  });
});

describe.skipIf(!available)('the Kafka transport beyond the contract', () => {
  const closing: { close(): Promise<void> }[] = [];
  const prefixes: string[] = [];
  afterEach(async () => {
    for (const x of closing.splice(0).reverse()) await x.close();
    for (const p of prefixes.splice(0)) await deletePrefix(p);
  });
  async function fresh(): Promise<string> {
    const t = await topology();
    prefixes.push(t.prefix);
    return t.prefix;
  }
  function server(prefix: string, extra: Partial<KafkaServerTransportOptions> = {}): KafkaServerTransport {
    const s = new KafkaServerTransport(serverOptions(prefix, extra));
    closing.push(s);
    return s;
  }
  async function client(prefix: string, workerId: string, onReply: (text: string) => void = () => {}): Promise<ClientTransport> {
    const c = new KafkaClientTransport(clientOptions(prefix, workerId));
    closing.push(c);
    await c.open({ onReply: (body) => onReply(dec(body)) });
    return c;
  }
  const range = (n: number, label: (i: number) => string) => Array.from({ length: n }, (_, i) => label(i));

  it('seeks a rejected batch back to its first request: every try starts there, then all come in order, committed once', async () => {
    const prefix = await fresh();
    const s = server(prefix);
    const tries: string[][] = [];
    const accepted: string[] = [];
    await s.consume(0, async (batch) => {
      const texts = batch.map(dec);
      if (tries.length < 3) {
        tries.push(texts);
        throw new Error('rejected on purpose');
      }
      accepted.push(...texts);
    });
    const c = await client(prefix, 'w1');
    const sent = range(40, (i) => `m${i}`);
    for (const m of sent.slice(0, 20)) await c.send(0, enc(m));
    await waitFor(() => tries.length >= 1, 'the first try');
    await Promise.all(sent.slice(20).map((m) => c.send(0, enc(m))));
    await waitFor(() => accepted.length >= sent.length, 'every request accepted', { timeoutMs: 10_000 });
    await elapse(50);
    expect(tries.map((t) => t[0])).toEqual(['m0', 'm0', 'm0']);
    expect(accepted).toEqual(sent);
    // The group's committed offset is the end of what was accepted: nothing comes again.
    const admin = testKafka.admin();
    await admin.connect();
    const [offsets] = await admin.fetchOffsets({ groupId: coordinatorGroup(prefix), topics: [`${prefix}.requests`] });
    await admin.disconnect();
    expect(offsets?.partitions.find((p) => p.partition === 0)?.offset).toBe('40');
  });

  it('moves partitions to a coordinator that joins the group: onLost for each on the first, batches go on on the second, none decided twice', async () => {
    const prefix = await fresh();
    const first = server(prefix);
    const second = server(prefix);
    const decidedBy = new Map<string, string>();
    const twice: string[] = [];
    const lost: Record<string, number[]> = { first: [], second: [] };
    const handler = (name: string) => async (batch: readonly Uint8Array[]) => {
      for (const text of batch.map(dec)) {
        if (decidedBy.has(text)) twice.push(`${text} by ${decidedBy.get(text)} then ${name}`);
        decidedBy.set(text, name);
      }
    };
    for (let p = 0; p < 4; p++) await first.consume(p, handler('first'), () => lost.first?.push(p));
    await waitFor(() => [0, 1, 2, 3].every((p) => first.holds(p)), 'the first coordinator to hold every partition');
    const c = await client(prefix, 'w1');
    const sent: string[] = [];
    let sending = true;
    const pump = (async () => {
      for (let i = 0; sending; i++) {
        const text = `${i % 4}:${i}`;
        sent.push(text);
        await c.send(i % 4, enc(text));
        await elapse(2);
      }
    })();
    await waitFor(() => decidedBy.size >= 40, 'the first coordinator deciding');
    for (let p = 0; p < 4; p++) await second.consume(p, handler('second'), () => lost.second?.push(p));
    await waitFor(() => (lost.first?.length ?? 0) >= 2, 'the first coordinator to lose two partitions', { timeoutMs: 10_000 });
    const movedAt = sent.length;
    await waitFor(() => [...decidedBy.values()].filter((n) => n === 'second').length >= 40, 'the second coordinator deciding', { timeoutMs: 10_000 });
    sending = false;
    await pump;
    await waitFor(() => sent.every((m) => decidedBy.has(m)), 'every request decided', { timeoutMs: 10_000 });
    await elapse(100);

    expect(twice).toEqual([]);
    expect(lost.second).toEqual([]);
    const moved = [...(lost.first ?? [])].sort();
    expect(moved).toHaveLength(2);
    expect([0, 1, 2, 3].filter((p) => second.holds(p))).toEqual(moved);
    expect([0, 1, 2, 3].filter((p) => first.holds(p))).toEqual([0, 1, 2, 3].filter((p) => !moved.includes(p)));
    // After the move, a moved partition's requests are decided by the second coordinator only.
    const late = sent.slice(movedAt + 8); // past what was in flight at the move
    expect(late.length).toBeGreaterThan(0);
    for (const m of late) expect(decidedBy.get(m), m).toBe(moved.includes(Number(m.split(':')[0])) ? 'second' : 'first');
  }, 30_000);

  it('fences a zombie: a coordinator with the same transactional ids takes the partition; the old one’s replies never reach the worker and its publish rejects', async () => {
    const prefix = await fresh();
    // Two groups, so that both coordinators are given partition 0: the old one plays a coordinator
    // that lost its partition without knowing (stopped past its session), the heir its successor.
    const zombie = server(prefix, { groupId: `${prefix}.zombies` });
    const heir = server(prefix);
    const replies: string[] = [];
    const w = await client(prefix, 'w', (text) => replies.push(text));
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let zombieWrote = false;
    let zombieLost = 0;
    await zombie.consume(
      0,
      async (batch) => {
        for (const text of batch.map(dec)) await zombie.publish([{ to: w.replyAddress, body: enc(`zombie:${text}`) }], 0);
        zombieWrote = true;
        await held; // decided and written, not yet committed
      },
      () => zombieLost++,
    );
    await w.send(0, enc('r1'));
    await waitFor(() => zombieWrote, 'the zombie to write its reply in its transaction', { timeoutMs: 10_000 });

    await heir.consume(0, async (batch) => {
      for (const text of batch.map(dec)) await heir.publish([{ to: w.replyAddress, body: enc(`heir:${text}`) }], 0);
    });
    await waitFor(() => replies.includes('heir:r1'), "the heir's reply", { timeoutMs: 10_000 });
    release(); // the zombie tries to commit
    await waitFor(() => zombieLost >= 1, 'the zombie to learn it was fenced', { timeoutMs: 10_000 });
    await expect(zombie.publish([{ to: w.replyAddress, body: enc('zombie:late') }], 0)).rejects.toMatchObject({ code: 'TRANSPORT_ERROR', fenced: true });
    // A window for anything the zombie wrote to show up, had it not been fenced.
    await elapse(500);
    expect(replies).toEqual(['heir:r1']);
    expect(heir.holds(0)).toBe(true);
  }, 30_000);

  it('publishes an expiry tick’s replies in a transaction of their own while holding the partition; refuses for a partition not held', async () => {
    const prefix = await fresh();
    const s = server(prefix);
    const replies: string[] = [];
    const w = await client(prefix, 'w', (text) => replies.push(text));
    await s.consume(0, async () => {});
    await waitFor(() => s.holds(0), 'the partition to be held');
    await s.publish([{ to: w.replyAddress, body: enc('tick1') }, { to: w.replyAddress, body: enc('tick2') }], 0);
    await expect(s.publish([{ to: w.replyAddress, body: enc('nope') }], 1)).rejects.toThrow(/partition 1 is not held/);
    await waitFor(() => replies.length >= 2, 'the tick replies');
    await elapse(50);
    expect(replies).toEqual(['tick1', 'tick2']);
  });

  it('refuses a request topic with another partition count on either side, and a worker before any coordinator made the topics', async () => {
    const prefix = await fresh(); // 4 partitions
    const wrong = server(prefix, { partitions: 2 });
    await expect(wrong.consume(0, async () => {})).rejects.toThrow(/has 4 partitions, but this coordinator has 2/);
    const c = new KafkaClientTransport({ ...clientOptions(prefix, 'w'), partitions: 8 });
    closing.push(c);
    await expect(c.open({ onReply: () => {} })).rejects.toThrow(/has 4 partitions, but this client is set to 8/);
    const nobody = new KafkaClientTransport(clientOptions(`${prefix}-none`, 'w'));
    closing.push(nobody);
    await expect(nobody.open({ onReply: () => {} })).rejects.toThrow(/start a lockq coordinator with prefix/);
    const ok = await client(prefix, 'w2');
    await expect(ok.send(4, enc('x'))).rejects.toMatchObject({ refused: true });
    expect(replyTopic(prefix)).toBe(`${prefix}.replies`);
  });
});
