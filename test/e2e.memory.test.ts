import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Coordinator, MemoryServerTransport } from '@lockq/coordinator';
import { LeaseLostError, LockClient, type LockClientOptions, LockqError } from '@lockq/worker-sdk';
import { encode } from '@lockq/worker-sdk/protocol';
import { MemoryBroker, MemoryClientTransport } from '@lockq/worker-sdk/transport';
import { FencedResource } from './support/fenced-resource.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let broker: MemoryBroker;
let coordinator: Coordinator;
const clients: LockClient[] = [];

async function client(workerId: string, options: LockClientOptions = {}): Promise<LockClient> {
  const transport = new MemoryClientTransport(broker, { workerId, instance: 'i' });
  const c = await LockClient.connect('memory:', { workerId, transport, ...options });
  clients.push(c);
  return c;
}

beforeEach(async () => {
  broker = new MemoryBroker();
  coordinator = await Coordinator.start({ transport: new MemoryServerTransport(broker) });
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await coordinator.stop();
});

describe('end to end over the memory transport', () => {
  it('grants, releases and hands over in FIFO order', async () => {
    const holder = await client('w0');
    const first = await holder.acquire('job:1', { ttlMs: 5000 });
    const order: string[] = [];
    const positions: number[] = [];
    const waiters = await Promise.all(['w1', 'w2', 'w3'].map((id) => client(id)));
    const acquired = waiters.map(async (c, i) => {
      await sleep(i * 5); // enqueue in a known order
      const lease = await c.acquire('job:1', { ttlMs: 5000, onQueued: (p) => positions.push(p) });
      order.push(c.options.workerId);
      expect(lease.token).toBeGreaterThan(first.token);
      await lease.release();
    });
    await sleep(40);
    const view = await holder.inspect('job:1');
    expect(view.lock?.waiters.map((w) => [w.worker, w.position])).toEqual([['w1', 1], ['w2', 2], ['w3', 3]]);
    expect(positions).toEqual([1, 2, 3]);
    await first.release();
    await Promise.all(acquired);
    expect(order).toEqual(['w1', 'w2', 'w3']);
  });

  it('tryAcquire returns null when held or when others wait', async () => {
    const a = await client('a');
    const b = await client('b');
    const lease = await a.acquire('t');
    expect(await b.tryAcquire('t')).toBeNull();
    await lease.release();
    expect(await b.tryAcquire('t')).not.toBeNull();
  });

  it('fires the signal and refuses extend when the lease expires', async () => {
    const a = await client('a');
    const lease = await a.acquire('x', { ttlMs: 100 });
    const signal = lease.signal;
    const aborted = new Promise((resolve) => signal.addEventListener('abort', resolve));
    await aborted;
    expect(signal.reason).toBeInstanceOf(LeaseLostError);
    await sleep(30); // the coordinator's expiry comes just after the local deadline
    await expect(lease.extend()).rejects.toMatchObject({ code: 'LEASE_LOST' });
    const b = await client('b');
    expect(await b.tryAcquire('x')).not.toBeNull();
  });

  it('withLock renews past the ttl and releases after', async () => {
    const a = await client('a');
    const b = await client('b');
    const result = await a.withLock('renewed', { ttlMs: 120 }, async ({ signal, token }) => {
      await sleep(400);
      expect(signal.aborted).toBe(false);
      return token;
    });
    expect(result).toBeGreaterThan(0);
    expect(await b.tryAcquire('renewed')).not.toBeNull();
  });

  it('answers WAIT_TIMEOUT at the wait deadline and cancels on abort', async () => {
    const a = await client('a');
    const b = await client('b');
    const c = await client('c');
    await a.acquire('busy');
    await expect(b.acquire('busy', { waitMs: 50 })).rejects.toMatchObject({ code: 'WAIT_TIMEOUT', retriable: true });
    const controller = new AbortController();
    const waiting = c.acquire('busy', { signal: controller.signal });
    await sleep(20);
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'ABORTED' });
    await sleep(20);
    expect((await a.inspect('busy')).lock?.waiters).toEqual([]);
  });

  it('semaphores cap concurrency and read-write locks share reads', async () => {
    const ws = await Promise.all([0, 1, 2, 3].map((i) => client(`s${i}`)));
    let running = 0;
    let peak = 0;
    await Promise.all(
      ws.flatMap((c) =>
        [0, 1, 2].map(() =>
          c.semaphore('render', { limit: 2 }).withPermit(async () => {
            peak = Math.max(peak, ++running);
            await sleep(5);
            running--;
          }),
        ),
      ),
    );
    expect(peak).toBe(2);
    const [r1, r2, w] = ws;
    const read1 = await r1!.rwlock('doc').read();
    const read2 = await r2!.rwlock('doc').read();
    expect(await w!.rwlock('doc').tryWrite()).toBeNull();
    await read1.release();
    await read2.release();
    expect(await w!.rwlock('doc').tryWrite()).not.toBeNull();
  });

  it('a worker that goes silent loses its holds after its session ttl', async () => {
    const transport = new MemoryClientTransport(broker, { workerId: 'dies', instance: 'i' });
    const dying = await LockClient.connect('memory:', { workerId: 'dies', transport, sessionTtlMs: 200, requestTimeoutMs: 100 });
    await dying.acquire('orphan', { ttlMs: 60_000 });
    // Simulate death: nothing more leaves this worker (no heartbeats, no release).
    transport.send = async () => {};
    const b = await client('b');
    const started = performance.now();
    const lease = await b.acquire('orphan', { waitMs: 5000 });
    expect(performance.now() - started).toBeLessThan(1000);
    expect(lease.token).toBeGreaterThan(0);
    await dying.close().catch(() => undefined);
  });

  it('never lets a stale token write: many workers increment a fenced counter', async () => {
    const counter = new FencedResource(); // used in process: no HTTP needed
    const ws = await Promise.all(Array.from({ length: 8 }, (_, i) => client(`inc${i}`)));
    await Promise.all(
      ws.map(async (c) => {
        for (let i = 0; i < 25; i++) {
          await c.withLock('counter', { ttlMs: 1000 }, async ({ token }) => {
            const read = counter.read('k');
            await sleep(0);
            expect(counter.write('k', token, read + 1, c.options.workerId)).toBe(true);
          });
        }
      }),
    );
    expect(counter.read('k')).toBe(200);
    expect(counter.history.filter((w) => !w.accepted)).toEqual([]);
    expect(counter.violations()).toEqual([]);
  });

  it('answers bad input with a code, dead-letters what it cannot answer, and keeps serving', async () => {
    const replies: unknown[] = [];
    broker.subscribeReplies('raw', (body) => replies.push(JSON.parse(Buffer.from(body).toString())));
    broker.publishRequest(0, Buffer.from('{not json'));
    broker.publishRequest(0, Buffer.from(JSON.stringify({ v: 1, op: 'explode', id: 'x1', replyTo: 'raw' })));
    broker.publishRequest(0, Buffer.from('x'.repeat(10_000)));
    broker.publishRequest(0, encode({ v: 1, op: 'acquire', id: 'x2', worker: 'w', session: 's', replyTo: 'raw', lock: 'a b', ttlMs: 10, waitMs: 0 } as never));
    const a = await client('a');
    const lease = await a.acquire('still-works');
    expect(lease.token).toBeGreaterThan(0);
    await sleep(10);
    expect(replies).toMatchObject([
      { type: 'error', re: 'x1', code: 'UNKNOWN_OP' },
      { type: 'error', re: 'x2', code: 'NAME_INVALID', field: 'lock' },
    ]);
    expect(broker.deadLetters.map((d) => d.code)).toEqual(['MALFORMED', 'MESSAGE_TOO_LARGE']);
    expect(coordinator.counts().get(0)).toMatchObject({ holds: 1, waiters: 0 });
  });

  it('a coordinator without a durable store tells holders and waiters when it stops', async () => {
    const a = await client('a', { requestTimeoutMs: 200 });
    const b = await client('b', { requestTimeoutMs: 200 });
    const lease = await a.acquire('going', { ttlMs: 60_000 });
    const signal = lease.signal;
    const waiting = b.acquire('going', { waitMs: 60_000 });
    await sleep(20);
    await coordinator.stop();
    await expect(waiting).rejects.toMatchObject({ code: 'SHUTTING_DOWN', retriable: true });
    expect(signal.aborted).toBe(true);
    expect(lease.lostReason?.reason).toBe('SHUTTING_DOWN');
  });

  it('a waiter whose grant reply was lost learns of the grant by re-asking', async () => {
    const a = await client('a');
    const held = await a.acquire('lossy', { ttlMs: 60_000 });
    const transport = new MemoryClientTransport(broker, { workerId: 'lossy', instance: 'i' });
    const open = transport.open.bind(transport);
    let dropped = 0;
    transport.open = (handlers) =>
      open({
        ...handlers,
        onReply: (body) => {
          if (dropped === 0 && Buffer.from(body).toString().includes('"type":"granted"')) {
            dropped++; // the broker lost this one
            return;
          }
          handlers.onReply(body);
        },
      });
    const b = await LockClient.connect('memory:', { workerId: 'lossy', transport, sessionTtlMs: 300 });
    clients.push(b);
    const waiting = b.acquire('lossy', { ttlMs: 60_000, waitMs: 10_000 });
    await sleep(30);
    await held.release();
    const started = performance.now();
    const lease = await waiting;
    expect(dropped).toBe(1);
    expect(lease.token).toBeGreaterThan(held.token);
    expect(performance.now() - started).toBeLessThan(1500);
  });

  it('raises typed errors with stable codes', async () => {
    const a = await client('a');
    await a.acquire('kind');
    const err = await a.semaphore('kind', { limit: 3 }).acquire().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockqError);
    expect(err).toMatchObject({ code: 'KIND_MISMATCH', retriable: false });
    // One client shared by several tasks: a second acquire of a held mutex waits its turn.
    await expect(a.acquire('kind', { waitMs: 30 })).rejects.toMatchObject({ code: 'WAIT_TIMEOUT' });
  });
});
