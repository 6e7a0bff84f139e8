/**
 * Bounded queues over the real RabbitMQ, through `lockq coordinator` (needs `npx tsc -b` first):
 * `--max-queue-length` bounds each request queue so the broker pushes back on a flood, and the
 * SDK's caller hears it at once as a retriable TRANSPORT_ERROR; `--dead-letter-max-length` bounds
 * the dead-letter queue, which keeps only a prefix of each poison body. Every run uses fresh
 * prefixes: the broker refuses to re-declare a queue with other arguments.
 */
import { deadLetterDestination, requestDestination } from '@lockq/protocol';
import { LockClient, LockqError } from '@lockq/worker-sdk';
import { MemoryBroker } from '@lockq/worker-sdk/transport';
import { MemoryServerTransport } from '@lockq/coordinator';
import { connect } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { coordinatorSettings } from '../cli/src/settings.js';
import { AMQP_URL, requireRabbit } from './support/brokers.js';
import { CoordinatorProcess } from './support/processes.js';
import { amqpRun } from './support/amqp-run.js';
import { RAW_REQUEST } from './support/raw.js';
import { waitFor } from './support/wait-for.js';

const rabbit = await requireRabbit();

const run = amqpRun('bounds', { rabbit });
const fresh = run.prefix;

/** Publishes raw bodies to partition 0's request queue; the broker's answer to each. */
async function publishRaw(prefix: string, bodies: readonly Buffer[]): Promise<('ack' | 'nack')[]> {
  const conn = await connect(AMQP_URL);
  try {
    const ch = await conn.createConfirmChannel();
    const outcomes = bodies.map(
      (body) =>
        new Promise<'ack' | 'nack'>((resolve) => {
          ch.sendToQueue(requestDestination(0, prefix), body, RAW_REQUEST, (err) => resolve(err == null ? 'ack' : 'nack'));
        }),
    );
    return await Promise.all(outcomes);
  } finally {
    await conn.close();
  }
}

/** Takes every message off the dead-letter queue: body and headers. */
async function drainDeadLetters(prefix: string): Promise<{ body: Buffer; headers: Record<string, unknown> }[]> {
  const conn = await connect(AMQP_URL);
  try {
    const ch = await conn.createChannel();
    const parked: { body: Buffer; headers: Record<string, unknown> }[] = [];
    for (;;) {
      const msg = await ch.get(deadLetterDestination(prefix), { noAck: true });
      if (msg === false) return parked;
      parked.push({ body: msg.content, headers: { ...msg.properties.headers } });
    }
  } finally {
    await conn.close();
  }
}

/** Whether a declaration of `queue` with `args` is accepted (it is only when they equal the queue's own). */
async function declares(queue: string, args: Record<string, unknown>): Promise<boolean> {
  const conn = await connect(AMQP_URL);
  conn.on('error', () => {});
  try {
    const ch = await conn.createChannel();
    ch.on('error', () => {});
    return await ch.assertQueue(queue, { durable: true, arguments: args }).then(
      () => true,
      () => false,
    );
  } finally {
    await conn.close().catch(() => undefined);
  }
}

describe('bounds in the coordinator settings', () => {
  it('--max-queue-length and --dead-letter-max-length, or their variables, are whole numbers from 1', () => {
    const base = { transport: 'amqp://localhost' };
    const defaults = coordinatorSettings(base, {});
    expect([defaults.maxQueueLength, defaults.deadLetterMaxLength]).toEqual([undefined, undefined]);
    const flags = coordinatorSettings({ ...base, 'max-queue-length': '5000', 'dead-letter-max-length': '20' }, {});
    expect([flags.maxQueueLength, flags.deadLetterMaxLength]).toEqual([5000, 20]);
    const env = coordinatorSettings(base, { LOCKQ_MAX_QUEUE_LENGTH: '7', LOCKQ_DEAD_LETTER_MAX_LENGTH: '8' });
    expect([env.maxQueueLength, env.deadLetterMaxLength]).toEqual([7, 8]);
    expect(() => coordinatorSettings({ ...base, 'max-queue-length': '0' }, {})).toThrow(/^--max-queue-length: expected an integer from 1 /);
    expect(() => coordinatorSettings(base, { LOCKQ_DEAD_LETTER_MAX_LENGTH: 'many' })).toThrow(
      /^LOCKQ_DEAD_LETTER_MAX_LENGTH \(--dead-letter-max-length\): expected an integer from 1 /,
    );
  });
});

describe('dead letters on the memory transport', () => {
  it('are bounded as on RabbitMQ: the newest deadLetterMaxLength, each cut to deadLetterBodyBytes', async () => {
    const broker = new MemoryBroker();
    const t = new MemoryServerTransport(broker, { deadLetterMaxLength: 2, deadLetterBodyBytes: 4 });
    const enc = (text: string) => Buffer.from(text);
    for (const text of ['aaaaaa', 'bb', 'cccccc']) await t.deadLetter(0, enc(text), 'MALFORMED');
    expect(broker.deadLetters.map((d) => Buffer.from(d.body).toString())).toEqual(['bb', 'cccc']);
    // A copy: the parked prefix does not keep the whole poison body alive.
    const poison = Buffer.alloc(1024 * 1024);
    await t.deadLetter(0, poison, 'MESSAGE_TOO_LARGE');
    expect(broker.deadLetters.at(-1)?.body.buffer.byteLength).toBeLessThan(poison.byteLength);
    expect(() => new MemoryServerTransport(broker, { deadLetterMaxLength: 0 })).toThrow(/^deadLetterMaxLength: /);
  });
});

describe.skipIf(!rabbit)('bounded queues on RabbitMQ', () => {
  it('--max-queue-length bounds the request queue; once full, an SDK acquire fails at once with a retriable, refused TRANSPORT_ERROR', async () => {
    const prefix = fresh();
    const flags = ['--transport', AMQP_URL, '--prefix', prefix, '--max-queue-length', '3'];
    let coord = await CoordinatorProcess.start(flags);
    const queue = requestDestination(0, prefix);
    const documented = {
      'x-queue-type': 'quorum',
      'x-single-active-consumer': true,
      'x-overflow': 'reject-publish',
      'x-delivery-limit': 20,
      'x-dead-letter-exchange': deadLetterDestination(prefix),
    };
    expect(await declares(queue, { ...documented, 'x-max-length': 3 })).toBe(true);
    expect(await declares(queue, { ...documented, 'x-max-length': 4 })).toBe(false);

    const worker = await LockClient.connect(AMQP_URL, { prefix, workerId: `${prefix}-w`, requestTimeoutMs: 20_000 });
    run.clients.push(worker);
    await (await worker.acquire('job', { ttlMs: 10_000 })).release();

    // Nobody consumes now: the queue fills up (the worker's heartbeats may help).
    expect(await coord.stop()).toBe(0);
    const junk = Buffer.from('{"junk":true}');
    await waitFor(async () => (await publishRaw(prefix, [junk])).includes('nack'), 'the request queue to refuse a publish', {
      intervalMs: 10,
    });

    const startedAt = performance.now();
    const err = await worker.acquire('job', { ttlMs: 10_000, waitMs: 0 }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(LockqError);
    expect(err).toMatchObject({ code: 'TRANSPORT_ERROR', retriable: true, refused: true });
    expect((err as Error).message).toMatch(/refused a request/);
    // At once, not when the request would have timed out.
    expect(performance.now() - startedAt).toBeLessThan(5000);

    // A coordinator with the same bound drains the queue, and the worker is answered again.
    coord = await CoordinatorProcess.start(flags);
    await waitFor(
      () =>
        worker.acquire('job', { ttlMs: 10_000, waitMs: 0 }).then(
          async (lease) => {
            await lease.release();
            return true;
          },
          () => false,
        ),
      'an acquire answered once the queue drained',
      { timeoutMs: 20_000 },
    );
    await worker.close(); // while its coordinator still answers the close
    expect(await coord.stop()).toBe(0);
  }, 90_000);

  it('--dead-letter-max-length bounds the dead-letter queue (oldest dropped), and a 1 MB poison body is parked as its first 1024 bytes', async () => {
    const prefix = fresh();
    const coord = await CoordinatorProcess.start(['--transport', AMQP_URL, '--prefix', prefix, '--dead-letter-max-length', '3']);
    const dl = deadLetterDestination(prefix);
    expect(await declares(dl, { 'x-max-length': 3, 'x-overflow': 'drop-head' })).toBe(true);

    const big = Buffer.alloc(1024 * 1024, 'x');
    expect(await publishRaw(prefix, [big])).toEqual(['ack']);
    await waitFor(async () => (await coord.metric('lockq_dead_lettered_total')) === 1, 'the 1 MB poison to be parked', { timeoutMs: 15_000 });
    const [parked, ...others] = await drainDeadLetters(prefix);
    expect(others).toEqual([]);
    expect(parked?.body.equals(big.subarray(0, 1024))).toBe(true);
    expect(parked?.headers).toMatchObject({ 'x-lockq-code': 'MESSAGE_TOO_LARGE', 'x-lockq-partition': 0, 'x-lockq-original-bytes': 1024 * 1024 });

    const poison = Array.from({ length: 6 }, (_, i) => Buffer.from(`not json ${i}`));
    expect(await publishRaw(prefix, poison)).toEqual(poison.map(() => 'ack'));
    await waitFor(async () => (await coord.metric('lockq_dead_lettered_total')) === 7, 'six more poison messages to be parked', { timeoutMs: 15_000 });
    // The broker keeps the newest three.
    expect((await drainDeadLetters(prefix)).map((p) => p.body.toString())).toEqual(['not json 3', 'not json 4', 'not json 5']);
    expect(coord.lines.filter((l) => (l.level ?? 0) >= 50)).toEqual([]);
    expect(await coord.stop()).toBe(0);
  }, 60_000);

  it('a coordinator meeting an unbounded dead-letter queue (declared by an older lockq) refuses to start and says what to do', async () => {
    const prefix = fresh();
    expect(await declares(deadLetterDestination(prefix), {})).toBe(true);
    await expect(CoordinatorProcess.start(['--transport', AMQP_URL, '--prefix', prefix])).rejects.toThrow(
      /dead-letter queue .* exists with other arguments .* delete it/,
    );
  }, 60_000);
});
