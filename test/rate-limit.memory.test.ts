/**
 * The per-principal rate (docs/security.md §7) end to end on the memory transport: a flood from
 * one principal is dropped unread past its bucket, answered `RATE_LIMITED` at most once per
 * 100 ms, and costs another principal on the same partition nothing.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Coordinator, MemoryServerTransport } from '@lockq/coordinator';
import { encode } from '@lockq/protocol';
import { LockClient, LockqError } from '@lockq/worker-sdk';
import { MemoryBroker, MemoryClientTransport } from '@lockq/worker-sdk/transport';
import { waitFor } from './support/wait-for.js';

let broker: MemoryBroker;
let coordinator: Coordinator;
const clients: LockClient[] = [];

beforeEach(async () => {
  broker = new MemoryBroker();
  coordinator = await Coordinator.start({ transport: new MemoryServerTransport(broker), principalRate: { perSecond: 5, burst: 5 } });
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await coordinator.stop();
});

async function client(workerId: string, principal: string): Promise<LockClient> {
  const transport = new MemoryClientTransport(broker, { workerId, instance: 'i', principal });
  const c = await LockClient.connect('memory:', { workerId, transport, requestTimeoutMs: 2000 });
  clients.push(c);
  return c;
}

describe('a rate per principal', () => {
  it('drops a flood past its bucket unread, answers it RATE_LIMITED once per gap, and leaves another principal alone', async () => {
    const replies: { re: string; type: string; code?: string; retryAfterMs?: number }[] = [];
    const address = 'lockq.replies.flood.raw';
    broker.subscribeReplies(address, (body) => replies.push(JSON.parse(Buffer.from(body).toString())));
    const open = (i: number) =>
      encode({ v: 1, op: 'open', id: `f${i}`, worker: 'flood', session: `flood.${i}`, replyTo: address, sessionTtlMs: 60_000, partitions: 1 } as never);
    // One batch: one instant for the bucket, so exactly the burst gets in.
    for (let i = 0; i < 50; i++) broker.publishRequest(0, open(i), 'flood');

    const good = await client('good', 'local');
    const lease = await good.acquire('job', { ttlMs: 5000 });
    await lease.release();

    await waitFor(() => replies.length >= 6, 'the burst answered and one RATE_LIMITED');
    expect(replies.filter((r) => r.type === 'opened').map((r) => r.re)).toEqual(['f0', 'f1', 'f2', 'f3', 'f4']);
    const limited = replies.filter((r) => r.type === 'error');
    expect(limited).toEqual([expect.objectContaining({ re: 'f5', code: 'RATE_LIMITED', retryAfterMs: expect.any(Number) })]);
    expect(limited[0]?.retryAfterMs).toBeGreaterThan(0);
    expect(coordinator.stats.partition(0).rateLimited).toBe(45);
    expect(coordinator.counts().get(0)?.sessions).toBe(6); // the burst's five, and the good worker's
  });

  it("an SDK client over its principal's rate gets a retriable RATE_LIMITED", async () => {
    const c = await client('busy', 'busy');
    // The open took one token; four acquires take the rest; the next ones are over the rate.
    const outcomes = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => c.tryAcquire(`k${i}`, { ttlMs: 5000 })));
    const errors = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason] : []));
    expect(errors.length).toBeGreaterThan(0);
    const limited = errors.find((e) => e instanceof LockqError && e.code === 'RATE_LIMITED');
    expect(limited).toMatchObject({ retriable: true });
  });

  it('a release over the rate is sent again after retryAfterMs, so the lock moves on long before its lease ends', async () => {
    const busy = await client('busy', 'busy');
    const other = await client('other', 'other');
    // busy's open took one token, this acquire one, the three try-locks the last three.
    const lease = await busy.acquire('job', { ttlMs: 30_000 });
    for (const k of ['k1', 'k2', 'k3']) expect(await busy.tryAcquire(k, { ttlMs: 30_000 })).not.toBeNull();
    const waiting = other.acquire('job', { ttlMs: 5000, waitMs: 20_000 });
    const started = performance.now();
    await lease.release();
    const next = await waiting;
    expect(next.token).toBeGreaterThan(lease.token);
    expect(performance.now() - started).toBeLessThan(5000);
    expect(coordinator.stats.partition(0).rateLimited).toBeGreaterThan(0);
  });
});
