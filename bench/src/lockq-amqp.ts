import { randomUUID } from 'node:crypto';
import type { Channel } from 'amqplib';
import { AmqpServerTransport, type BatchHandler, Coordinator, type Outbound, type ServerTransport, type StateStore } from '@lockq/coordinator';
import { LockClient } from '@lockq/worker-sdk';
import { deadLetterDestination, requestDestination, TOPOLOGY_PREFIX } from '@lockq/protocol';
import { AmqpClientTransport, type ClientTransport, type ClientTransportHandlers } from '@lockq/worker-sdk/transport';
import type { Contender, LockSystem } from './workload.js';

/** The broker every AMQP bench uses. */
export const AMQP_URL = process.env.LOCKQ_BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/** A fresh topology prefix, so a run never meets queues (or state) left by another. */
export function uniquePrefix(kind: string): string {
  return `lockq-bench-${kind}-${Date.now().toString(36)}-${randomUUID().slice(0, 6)}`;
}

/** Counts every message a worker publishes: its requests and the grants it forwards. */
class CountingClientTransport implements ClientTransport {
  readonly #inner: ClientTransport;
  readonly #count: { n: number };
  constructor(inner: ClientTransport, count: { n: number }) {
    this.#inner = inner;
    this.#count = count;
  }
  get replyAddress(): string {
    return this.#inner.replyAddress;
  }
  open(handlers: ClientTransportHandlers): Promise<void> {
    return this.#inner.open(handlers);
  }
  send(partition: number, body: Uint8Array): Promise<void> {
    this.#count.n++;
    return this.#inner.send(partition, body);
  }
  forward(address: string, body: Uint8Array): Promise<void> {
    this.#count.n++;
    return this.#inner.forward(address, body);
  }
  close(): Promise<void> {
    return this.#inner.close();
  }
}

/** Counts every reply (and dead letter) the coordinator publishes. */
class CountingServerTransport implements ServerTransport {
  readonly #inner: ServerTransport;
  readonly #count: { n: number };
  constructor(inner: ServerTransport, count: { n: number }) {
    this.#inner = inner;
    this.#count = count;
  }
  get prefix(): string {
    return this.#inner.prefix ?? TOPOLOGY_PREFIX;
  }
  consume(partition: number, onBatch: BatchHandler, onLost?: () => void): Promise<void> {
    return this.#inner.consume(partition, onBatch, onLost);
  }
  publish(replies: readonly Outbound[], partition?: number): Promise<void> {
    this.#count.n += replies.length;
    return this.#inner.publish(replies, partition);
  }
  deadLetter(partition: number, body: Uint8Array, code: string): Promise<void> {
    this.#count.n++;
    return this.#inner.deadLetter(partition, body, code);
  }
  stopConsuming(partition: number): Promise<void> {
    return this.#inner.stopConsuming(partition);
  }
  close(): Promise<void> {
    return this.#inner.close();
  }
}

export interface LockqAmqpSystem extends LockSystem {
  readonly prefix: string;
  readonly coordinator: Coordinator;
  /** Closes the clients, stops the coordinator and deletes every queue and exchange it used. */
  close(): Promise<void>;
}

/** Opens `count` things at most `width` at a time (a burst of 64 connections is unkind to a shared broker). */
export async function inBatches<T>(count: number, width: number, open: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < count; i += width) {
    out.push(...(await Promise.all(Array.from({ length: Math.min(width, count - i) }, (_, j) => open(i + j)))));
  }
  return out;
}

/**
 * lockq over RabbitMQ: a coordinator in this process on {@link AmqpServerTransport}, and
 * `workers` LockClients, each on its own {@link AmqpClientTransport} (its own connection and
 * reply queue). Both sides count what they publish: requests and forwarded grants plus replies.
 */
export async function openLockqAmqp(options: {
  readonly workers: number;
  readonly store?: StateStore;
  readonly label?: string;
  /** False: every hand-off crosses the broker, as between workers in separate processes. @defaultValue true */
  readonly localHandOff?: boolean;
}): Promise<LockqAmqpSystem> {
  const prefix = uniquePrefix('q');
  const published = { n: 0 };
  const transport = new CountingServerTransport(new AmqpServerTransport({ url: AMQP_URL, prefix, connectionName: 'lockq bench coordinator' }), published);
  const replyQueues: string[] = [];
  let coordinator: Coordinator | undefined;
  let clients: LockClient[] = [];
  const close = async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await coordinator?.stop().catch(() => undefined);
    await transport.close().catch(() => undefined);
    await deleteTopology([requestDestination(0, prefix), deadLetterDestination(prefix), ...replyQueues], [deadLetterDestination(prefix)]);
  };
  try {
    coordinator = await Coordinator.start(options.store === undefined ? { transport } : { transport, store: options.store });
    clients = await inBatches(options.workers, 16, async (i) => {
      const workerId = `bench-w${i}`;
      const inner = new AmqpClientTransport({ url: AMQP_URL, workerId, instance: randomUUID().slice(0, 8), prefix });
      replyQueues.push(inner.replyAddress);
      const localHandOff = options.localHandOff ?? true;
      return LockClient.connect(AMQP_URL, { workerId, prefix, localHandOff, transport: new CountingClientTransport(inner, published) });
    });
  } catch (err) {
    await close();
    throw err;
  }
  const workers: Contender[] = clients.map((c) => ({
    async acquire(name) {
      const lease = await c.acquire(name, { ttlMs: 10_000, waitMs: 60_000 });
      return () => lease.release();
    },
  }));
  // Open each worker's session and let the JIT settle before anything is measured.
  await Promise.all(clients.map(async (c, i) => (await c.acquire(`warm-up:${i}`, { ttlMs: 10_000 })).release()));
  return { label: options.label ?? 'lockq', prefix, coordinator, workers, messages: () => published.n, close };
}

/** Deletes queues and exchanges (each on its own channel, so one failure does not stop the rest). */
export async function deleteTopology(queues: readonly string[], exchanges: readonly string[]): Promise<void> {
  const amqp = await import('amqplib');
  const conn = await amqp.connect(AMQP_URL);
  conn.on('error', () => {});
  try {
    const run = async (op: (ch: Channel) => Promise<unknown>) => {
      const ch = await conn.createChannel();
      ch.on('error', () => {});
      await op(ch).catch(() => undefined);
      await ch.close().catch(() => undefined);
    };
    for (let i = 0; i < queues.length; i += 32) {
      await Promise.all(queues.slice(i, i + 32).map((q) => run((ch) => ch.deleteQueue(q))));
    }
    for (const e of exchanges) await run((ch) => ch.deleteExchange(e));
  } finally {
    await conn.close().catch(() => undefined);
  }
}
