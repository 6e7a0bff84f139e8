/**
 * The test broker is a real Apache Kafka and usable the way lockq's Kafka transport will use it
 * (issue 10, "A real broker in the tests"), spoken to with node:net alone, before any Kafka
 * client library is in the project: it lists the APIs a transactional request/reply transport and
 * a consumer group need; it advertises itself where clients can reach it; its group and
 * transaction coordinators come up on one broker (the internal topics' replication factor 1);
 * and a second InitProducerId for the same transactional id bumps the producer epoch, which is
 * how Kafka fences a zombie coordinator's transactions.
 *
 * Needs the broker on {@link KAFKA_BROKERS} (`npm run kafka` or `.ci/services.sh`). Leaves behind
 * only a transactional id of its own, which the broker expires.
 */
import { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KAFKA_BROKERS, kafkaBroker, requireKafka } from './support/brokers.js';
import { waitFor } from './support/wait-for.js';

const kafka = await requireKafka();

/** The Kafka APIs (key → name) that lockq's transport will call: producing and fetching, transactions, consumer groups, topics. */
const NEEDED_APIS = {
  0: 'Produce',
  1: 'Fetch',
  22: 'InitProducerId',
  24: 'AddPartitionsToTxn',
  25: 'AddOffsetsToTxn',
  26: 'EndTxn',
  28: 'TxnOffsetCommit',
  2: 'ListOffsets',
  3: 'Metadata',
  8: 'OffsetCommit',
  9: 'OffsetFetch',
  10: 'FindCoordinator',
  11: 'JoinGroup',
  12: 'Heartbeat',
  13: 'LeaveGroup',
  14: 'SyncGroup',
  19: 'CreateTopics',
  20: 'DeleteTopics',
} as const;

const API = { Metadata: 3, FindCoordinator: 10, ApiVersions: 18, InitProducerId: 22 } as const;
/** Error codes a coordinator answers while it is still being set up; asked again. */
const NOT_YET = new Set([14, 15, 16, 51]); // COORDINATOR_LOAD_IN_PROGRESS, _NOT_AVAILABLE, NOT_COORDINATOR, CONCURRENT_TRANSACTIONS

type VersionRange = { readonly min: number; readonly max: number };

/** Builds a request body field by field (Kafka's non-flexible encodings, big-endian). */
class Writer {
  private readonly parts: Buffer[] = [];
  int8(v: number): this {
    return this.push(1, (b) => b.writeInt8(v));
  }
  int32(v: number): this {
    return this.push(4, (b) => b.writeInt32BE(v));
  }
  string(v: string | null): this {
    if (v === null) return this.push(2, (b) => b.writeInt16BE(-1));
    const bytes = Buffer.from(v);
    this.push(2, (b) => b.writeInt16BE(bytes.length));
    this.parts.push(bytes);
    return this;
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
  private push(size: number, write: (b: Buffer) => void): this {
    const b = Buffer.alloc(size);
    write(b);
    this.parts.push(b);
    return this;
  }
}

/** Reads a response body field by field. */
class Reader {
  private at = 0;
  constructor(private readonly b: Buffer) {}
  int16(): number {
    return this.b.readInt16BE(this.take(2));
  }
  int32(): number {
    return this.b.readInt32BE(this.take(4));
  }
  int64(): bigint {
    return this.b.readBigInt64BE(this.take(8));
  }
  string(): string | null {
    const n = this.int16();
    if (n < 0) return null;
    const from = this.take(n);
    return this.b.toString('utf8', from, from + n);
  }
  array<T>(item: () => T): T[] {
    const n = this.int32();
    return Array.from({ length: Math.max(n, 0) }, item);
  }
  /** Moves past `n` bytes; where they start. */
  private take(n: number): number {
    const from = this.at;
    this.at += n;
    return from;
  }
}

/**
 * One connection speaking Kafka's framing: request header v1 (api key, version, correlation id,
 * client id), response header v0 (correlation id). Only non-flexible versions, which is all
 * this test sends.
 */
class KafkaWire {
  private readonly socket = new Socket();
  private buffered = Buffer.alloc(0);
  private nextCorrelationId = 1;
  private readonly pending = new Map<number, { resolve: (body: Buffer) => void; reject: (e: Error) => void }>();

  static async connect(host: string, port: number): Promise<KafkaWire> {
    const wire = new KafkaWire();
    await new Promise<void>((resolve, reject) => {
      wire.socket.once('error', reject);
      wire.socket.connect(port, host, () => {
        wire.socket.off('error', reject);
        resolve();
      });
    });
    wire.socket.on('data', (chunk) => wire.receive(chunk));
    wire.socket.on('error', (e) => wire.failAll(e));
    wire.socket.on('close', () => wire.failAll(new Error('connection closed')));
    return wire;
  }

  /** Sends one request and resolves with its response body (after the correlation id). */
  request(apiKey: number, version: number, body: Buffer): Promise<Buffer> {
    const correlationId = this.nextCorrelationId++;
    const clientId = Buffer.from('lockq-smoke');
    const header = Buffer.alloc(2 + 2 + 4 + 2);
    header.writeInt16BE(apiKey, 0);
    header.writeInt16BE(version, 2);
    header.writeInt32BE(correlationId, 4);
    header.writeInt16BE(clientId.length, 8);
    const size = Buffer.alloc(4);
    size.writeInt32BE(header.length + clientId.length + body.length);
    return new Promise((resolve, reject) => {
      this.pending.set(correlationId, { resolve, reject });
      this.socket.write(Buffer.concat([size, header, clientId, body]));
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private receive(chunk: Buffer): void {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    while (this.buffered.length >= 4 && this.buffered.length >= 4 + this.buffered.readInt32BE(0)) {
      const frame = this.buffered.subarray(4, 4 + this.buffered.readInt32BE(0));
      this.buffered = this.buffered.subarray(4 + frame.length);
      const waiter = this.pending.get(frame.readInt32BE(0));
      this.pending.delete(frame.readInt32BE(0));
      waiter?.resolve(frame.subarray(4));
    }
  }

  private failAll(e: Error): void {
    for (const w of this.pending.values()) w.reject(e);
    this.pending.clear();
  }
}

/** ApiVersions v0: error code and the version range of every API the broker serves. */
async function apiVersions(wire: KafkaWire): Promise<Map<number, VersionRange>> {
  const r = new Reader(await wire.request(API.ApiVersions, 0, Buffer.alloc(0)));
  expect(r.int16()).toBe(0);
  return new Map(r.array(() => [r.int16(), { min: r.int16(), max: r.int16() }] as const));
}

/** `wanted` when the broker serves that version of `apiKey`; fails the test plainly otherwise. */
function version(apis: Map<number, VersionRange>, apiKey: number, wanted: number): number {
  const range = apis.get(apiKey);
  if (range === undefined || wanted < range.min || wanted > range.max) {
    throw new Error(`the broker does not serve version ${wanted} of API ${apiKey} (it serves ${JSON.stringify(range)})`);
  }
  return wanted;
}

describe.skipIf(!kafka)(`the test Kafka broker at ${KAFKA_BROKERS}`, () => {
  let wire: KafkaWire;
  let apis: Map<number, VersionRange>;

  beforeAll(async () => {
    const { host, port } = kafkaBroker();
    wire = await KafkaWire.connect(host, port);
    apis = await apiVersions(wire);
  });
  afterAll(() => wire?.close());

  it('answers ApiVersions listing the produce, fetch, transaction and consumer-group APIs lockq needs', () => {
    const ranges = Object.entries(NEEDED_APIS).map(([key, name]) => ({ name, key: Number(key), range: apis.get(Number(key)) }));
    console.info(
      `Kafka at ${KAFKA_BROKERS} serves ${apis.size} APIs; the ones lockq needs:\n` +
        ranges.map(({ name, key, range }) => `  ${name} (${key}): v${range?.min}-v${range?.max}`).join('\n'),
    );
    for (const { name, range } of ranges) {
      expect(range, name).toBeDefined();
      expect(range!.max, name).toBeGreaterThanOrEqual(range!.min);
    }
  });

  it('advertises itself where a client can reach it, with a KRaft controller', async () => {
    // Metadata v4 (served from Kafka 1.0 to 4.x): no topics, no auto-creation.
    const body = new Writer().int32(0).int8(0).bytes();
    const r = new Reader(await wire.request(API.Metadata, version(apis, API.Metadata, 4), body));
    r.int32(); // throttle time
    const brokers = r.array(() => ({ nodeId: r.int32(), host: r.string(), port: r.int32(), rack: r.string() }));
    const clusterId = r.string();
    const controllerId = r.int32();
    expect(brokers.map((b) => `${b.host}:${b.port}`)).toEqual([`${kafkaBroker().host}:${kafkaBroker().port}`]);
    expect(clusterId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(controllerId).toBeGreaterThanOrEqual(0);
  });

  it('runs a group and a transaction coordinator on one broker, and a second InitProducerId fences the first producer', async () => {
    const transactionalId = `lockq-kafka-smoke-${process.pid}-${Date.now()}`;

    // FindCoordinator v1 (key, key type 0 = group, 1 = transaction). The first ask creates the
    // internal topic, which only works with its replication factor at 1 on a single broker.
    const findCoordinator = async (key: string, keyType: 0 | 1) => {
      const body = new Writer().string(key).int8(keyType).bytes();
      const r = new Reader(await wire.request(API.FindCoordinator, version(apis, API.FindCoordinator, 1), body));
      r.int32(); // throttle time
      const error = r.int16();
      r.string(); // error message
      return { error, nodeId: r.int32(), host: r.string(), port: r.int32() };
    };
    const { host, port } = kafkaBroker();
    for (const keyType of [0, 1] as const) {
      const found = await waitFor(
        async () => {
          const c = await findCoordinator(transactionalId, keyType);
          if (NOT_YET.has(c.error)) return undefined;
          return c;
        },
        `a ${keyType === 0 ? 'group' : 'transaction'} coordinator`,
        { timeoutMs: 20_000, intervalMs: 100 },
      );
      expect(found).toMatchObject({ error: 0, host, port });
    }

    // InitProducerId v0 (transactional id, transaction timeout): the same transactional id gets
    // the same producer id and a higher epoch, so the broker refuses the older producer's writes.
    const initProducerId = async () => {
      const body = new Writer().string(transactionalId).int32(10_000).bytes();
      const r = new Reader(await wire.request(API.InitProducerId, version(apis, API.InitProducerId, 0), body));
      r.int32(); // throttle time
      return { error: r.int16(), producerId: r.int64(), epoch: r.int16() };
    };
    const ready = () => waitFor(async () => {
      const p = await initProducerId();
      return NOT_YET.has(p.error) ? undefined : p;
    }, 'a producer id', { timeoutMs: 20_000, intervalMs: 100 });
    const first = await ready();
    const second = await ready();
    expect(first.error).toBe(0);
    expect(second).toEqual({ error: 0, producerId: first.producerId, epoch: first.epoch + 1 });
  });
});
