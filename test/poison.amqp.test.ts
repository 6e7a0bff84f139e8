/**
 * The poison message that once stopped a partition for good: a request whose `replyTo` is 256
 * characters. AMQP routing keys are at most 255 bytes, so its error answer could not be
 * published; the coordinator kept the failed reply and put it first in every later publish, so
 * every later batch failed too, while /readyz still said 200 and nothing was dead-lettered.
 *
 * Over the real RabbitMQ, against a `lockq coordinator` process (needs `npx tsc -b` first): the
 * raw bytes go on partition 0's request queue between a well-behaved SDK worker's requests, with
 * the default memory store and with the Redis store.
 */
import { deadLetterDestination, requestDestination } from '@lockq/protocol';
import { LockClient } from '@lockq/worker-sdk';
import { Redis } from 'ioredis';
import { connect } from 'amqplib';
import { afterAll, describe, expect, it } from 'vitest';
import { AMQP_URL, REDIS_URL, requireRabbit, requireRedis } from './support/brokers.js';
import { CoordinatorProcess } from './support/processes.js';
import { amqpRun } from './support/amqp-run.js';
import { RAW_REQUEST } from './support/raw.js';
import { waitFor } from './support/wait-for.js';

const rabbit = await requireRabbit();
const redis = rabbit && (await requireRedis());

const run = amqpRun('poison', { rabbit });

/** The 286 bytes, exactly as measured. */
const POISON = Buffer.from(`{"v":2,"id":"p1","replyTo":"${'x'.repeat(256)}"}`, 'utf8');

afterAll(async () => {
  if (!redis) return;
  const r = new Redis(REDIS_URL);
  try {
    for (const p of run.prefixes) {
      const keys = await r.keys(`{${p}:*`);
      if (keys.length > 0) await r.del(...keys);
    }
  } finally {
    await r.quit();
  }
});

/** What the dead-letter queue holds now: each message's body and its `x-lockq-code` header. */
async function drainDeadLetters(prefix: string): Promise<{ body: Buffer; code: unknown }[]> {
  const conn = await connect(AMQP_URL);
  try {
    const ch = await conn.createChannel();
    const parked: { body: Buffer; code: unknown }[] = [];
    for (;;) {
      const msg = await ch.get(deadLetterDestination(prefix), { noAck: true });
      if (msg === false) return parked;
      parked.push({ body: msg.content, code: msg.properties.headers?.['x-lockq-code'] });
    }
  } finally {
    await conn.close();
  }
}

async function publishRaw(prefix: string, body: Buffer): Promise<void> {
  const conn = await connect(AMQP_URL);
  try {
    const ch = await conn.createConfirmChannel();
    ch.sendToQueue(requestDestination(0, prefix), body, RAW_REQUEST);
    await ch.waitForConfirms();
  } finally {
    await conn.close();
  }
}

const stores = [
  { name: 'the default memory store', args: [] as string[], skip: false },
  { name: 'the Redis store', args: ['--store', REDIS_URL], skip: !redis },
];

describe.skipIf(!rabbit)('a 286-byte poison message on the request queue', () => {
  for (const store of stores) {
    it.skipIf(store.skip)(`with ${store.name}: parked, counted, and the partition keeps answering`, async () => {
      const prefix = run.prefix();
      const coord = await CoordinatorProcess.start(['--transport', AMQP_URL, '--prefix', prefix, ...store.args]);
      // Short enough that a partition that stopped answering fails the test, not its timeout.
      const worker = await LockClient.connect(AMQP_URL, { prefix, workerId: `${prefix}-good`, requestTimeoutMs: 5000 });
      run.clients.push(worker);
      await (await worker.acquire('job', { ttlMs: 10_000 })).release(); // the partition is claimed and answering

      await publishRaw(prefix, POISON);
      // The same partition still answers the well-behaved worker, again and again.
      for (let i = 0; i < 3; i++) {
        const lease = await worker.acquire('job', { ttlMs: 10_000 });
        expect(lease.token).toBeGreaterThan(0);
        await lease.release();
      }
      await waitFor(async () => (await coord.metric('lockq_dead_lettered_total')) === 1, 'the poison to be dead-lettered', {
        timeoutMs: 10_000,
      });
      const parked = await drainDeadLetters(prefix);
      expect(parked.map((p) => p.body.equals(POISON))).toEqual([true]);
      expect(typeof parked[0]?.code).toBe('string');
      expect(await coord.metric('lockq_rejected_total')).toBe(1);
      const ready = await fetch(`${coord.admin}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ status: 'ready' });
      expect(coord.lines.filter((l) => (l.level ?? 0) >= 50)).toEqual([]); // nothing logged at error level
      expect(await coord.stop()).toBe(0);
    }, 60_000);
  }
});
