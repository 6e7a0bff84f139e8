/**
 * Fencing tokens and epochs keep rising without a durable store, on RabbitMQ, with `lockq
 * coordinator` processes that have no `--store` (issue 9, item 4): a standby takes the partition
 * over from a killed coordinator through the request queue's single active consumer, then a
 * restarted coordinator takes it over from the standby. Before the memory store seeded its claims
 * from the wall clock, each of those terms started again at epoch 1 and token 1.
 *
 * Needs `npx tsc -b` first (npm test does it). The run uses its own topology prefix and deletes
 * its queues afterwards.
 */
import { LockClient } from '@lockq/worker-sdk';
import { describe, expect, it } from 'vitest';
import { AMQP_URL, requireRabbit } from './support/brokers.js';
import { CoordinatorProcess, type LogLine } from './support/processes.js';
import { amqpRun } from './support/amqp-run.js';

const rabbit = await requireRabbit();
const run = amqpRun('tok', { rabbit, end: 'all' });
const prefix = run.prefix();

const coordinator = (): Promise<CoordinatorProcess> => CoordinatorProcess.start(['--transport', AMQP_URL, '--prefix', prefix]);

/** The epoch of the term `c` claimed, once it has claimed the partition. */
async function claimedEpoch(c: CoordinatorProcess): Promise<number> {
  const line = await c.line((l: LogLine) => l.msg === 'partition claimed', 'partition claimed line');
  return Number(line.epoch);
}

/** Takes and gives back `lock`; the token it was granted. */
async function grant(w: LockClient, lock: string): Promise<number> {
  const lease = await w.acquire(lock, { ttlMs: 10_000 });
  await lease.release();
  return lease.token;
}

describe.skipIf(!rabbit)('fencing tokens without a durable store, on RabbitMQ', () => {
  it('a standby takes over from a killed coordinator, a restarted one from the standby: tokens and epochs keep rising, the worker keeps being answered', async () => {
    const a = await coordinator(); // the first consumer: active
    const b = await coordinator(); // stands by on the single-active-consumer queue
    const w = await LockClient.connect(AMQP_URL, { prefix, workerId: `${prefix}-w` });
    run.clients.push(w);
    const tokens = [await grant(w, 'job'), await grant(w, 'other'), await grant(w, 'job')];
    const epochs = [await claimedEpoch(a)];
    expect((await w.inspect('job')).epoch).toBe(epochs[0]);

    // A crashes; the broker makes B the consumer, and B claims on its first delivery.
    a.signal('SIGKILL');
    await a.exited;
    tokens.push(await grant(w, 'job'), await grant(w, 'other'));
    epochs.push(await claimedEpoch(b));
    expect((await w.inspect('job')).epoch).toBe(epochs[1]);

    // A is restarted (no store, as before) and stands by; B stops; A' takes over.
    const a2 = await coordinator();
    expect(await b.stop()).toBe(0);
    tokens.push(await grant(w, 'other'), await grant(w, 'job'));
    epochs.push(await claimedEpoch(a2));
    expect((await w.inspect('job')).epoch).toBe(epochs[2]);

    for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1] as number);
    expect(epochs[1]).toBeGreaterThan(epochs[0] as number);
    expect(epochs[2]).toBeGreaterThan(epochs[1] as number);
  });
});
