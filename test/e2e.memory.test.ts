import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Coordinator, MemoryServerTransport } from '@lockq/coordinator';
import { LeaseLostError, LockClient, type LockClientOptions, LockqError } from '@lockq/worker-sdk';
import { encode } from '@lockq/protocol';
import { type ClientTransportHandlers, MemoryBroker, MemoryClientTransport } from '@lockq/worker-sdk/transport';
import { FencedResource } from './support/fenced-resource.js';
import { RecordingTransport } from './support/recording-transport.js';
import { elapse, waitFor } from './support/wait-for.js';


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
    const acquired: Promise<void>[] = [];
    for (const [i, c] of waiters.entries()) {
      acquired.push(
        (async () => {
          const lease = await c.acquire('job:1', { ttlMs: 5000, onQueued: (p) => positions.push(p) });
          order.push(c.options.workerId);
          expect(lease.token).toBeGreaterThan(first.token);
          await lease.release();
        })(),
      );
      await waitFor(() => positions.length === i + 1, `waiter ${i + 1} to be queued`); // a known order
    }
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
    // The coordinator's expiry comes just after the local deadline.
    await waitFor(async () => ((await a.inspect('x')).lock?.holders.length ?? 0) === 0, 'the coordinator to expire the lease');
    await expect(lease.extend()).rejects.toMatchObject({ code: 'LEASE_LOST' });
    const b = await client('b');
    expect(await b.tryAcquire('x')).not.toBeNull();
  });

  it('withLock renews past the ttl and releases after', async () => {
    const a = await client('a');
    const b = await client('b');
    const result = await a.withLock('renewed', { ttlMs: 120 }, async ({ signal, token }) => {
      await elapse(400); // past the ttl three times over
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
    let queued = false;
    const waiting = c.acquire('busy', { signal: controller.signal, onQueued: () => (queued = true) });
    await waitFor(() => queued, 'the acquire to be queued');
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'ABORTED' });
    await waitFor(async () => (await a.inspect('busy')).lock?.waiters.length === 0, 'the cancel to reach the coordinator');
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
            await elapse(5);
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

  it('a worker cut off from the coordinator stops trusting its lease before its session can expire there, however long the lease', async () => {
    /** A network partition: nothing goes out, nothing comes in. */
    class Partitionable extends MemoryClientTransport {
      cut = false;
      override send(partition: number, body: Uint8Array): Promise<void> {
        return this.cut ? Promise.resolve() : super.send(partition, body);
      }
      override open(handlers: ClientTransportHandlers): Promise<void> {
        return super.open({ ...handlers, onReply: (body) => this.cut || handlers.onReply(body) });
      }
    }
    const transport = new Partitionable(broker, { workerId: 'cut', instance: 'i' });
    const cut = await LockClient.connect('memory:', { workerId: 'cut', transport, sessionTtlMs: 300, requestTimeoutMs: 100 });
    const held = await cut.acquire('cut-off', { ttlMs: 60_000 });
    let untrustedAt = Number.POSITIVE_INFINITY;
    held.signal.addEventListener('abort', () => (untrustedAt = performance.now()));
    // Cut off: no heartbeat reaches the coordinator and no `lost` event reaches the worker.
    transport.cut = true;
    const other = await client('other');
    const lease = await other.acquire('cut-off', { ttlMs: 5000, waitMs: 5000 });
    const grantedAt = performance.now();
    // The 60 s lease ended here with the session's proof, before the coordinator moved the lock on.
    expect(untrustedAt).toBeLessThanOrEqual(grantedAt);
    expect(held.expired).toBe(true);
    expect(lease.token).toBeGreaterThan(held.token);
    await cut.close().catch(() => undefined);
  });

  it('never lets a stale token write: many workers increment a fenced counter', async () => {
    const counter = new FencedResource(); // used in process: no HTTP needed
    const ws = await Promise.all(Array.from({ length: 8 }, (_, i) => client(`inc${i}`)));
    await Promise.all(
      ws.map(async (c) => {
        for (let i = 0; i < 25; i++) {
          await c.withLock('counter', { ttlMs: 1000 }, async ({ token }) => {
            const read = counter.read('k');
            await elapse(0); // let another worker run between the read and the write
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
    const raw = 'lockq.replies.local.raw';
    broker.subscribeReplies(raw, (body) => replies.push(JSON.parse(Buffer.from(body).toString())));
    broker.publishRequest(0, Buffer.from('{not json'), 'local');
    broker.publishRequest(0, Buffer.from(JSON.stringify({ v: 1, op: 'explode', id: 'x1', replyTo: raw })), 'local');
    broker.publishRequest(0, Buffer.from('x'.repeat(10_000)), 'local');
    broker.publishRequest(0, encode({ v: 1, op: 'acquire', id: 'x2', worker: 'w', session: 's', replyTo: raw, lock: 'a b', ttlMs: 10, waitMs: 0 } as never), 'local');
    const a = await client('a');
    const lease = await a.acquire('still-works');
    expect(lease.token).toBeGreaterThan(0);
    await waitFor(() => replies.length === 2, 'the two error replies');
    expect(replies).toMatchObject([
      { type: 'error', re: 'x1', code: 'UNKNOWN_OP' },
      { type: 'error', re: 'x2', code: 'NAME_INVALID', field: 'lock' },
    ]);
    expect(broker.deadLetters.map((d) => d.code)).toEqual(['MALFORMED', 'MESSAGE_TOO_LARGE']);
    expect(coordinator.counts().get(0)).toMatchObject({ holds: 1, waiters: 0 });
  });

  it('refuses a request with no principal, or wanting answers outside its principal, unanswered and changing nothing', async () => {
    const replies: unknown[] = [];
    for (const address of ['lockq.replies.local.mine', 'lockq.replies.other.theirs']) {
      broker.subscribeReplies(address, (body) => replies.push(JSON.parse(Buffer.from(body).toString())));
    }
    const acquire = (id: string, replyTo: string) =>
      encode({ v: 1, op: 'open', id, worker: 'w', session: `s-${id}`, replyTo, sessionTtlMs: 10_000, partitions: 1 } as never);
    broker.publishRequest(0, acquire('anonymous', 'lockq.replies.local.mine'));
    broker.publishRequest(0, acquire('elsewhere', 'lockq.replies.other.theirs'), 'local');
    // Bad input wanting its error elsewhere is refused the same way: the error would be the redirection.
    broker.publishRequest(0, Buffer.from(JSON.stringify({ v: 1, op: 'explode', id: 'x3', replyTo: 'lockq.replies.other.theirs' })), 'local');
    broker.publishRequest(0, acquire('not-a-principal', 'lockq.replies.a.b.mine'), 'a.b');
    broker.publishRequest(0, acquire('mine', 'lockq.replies.local.mine'), 'local');
    await waitFor(() => replies.length === 1, 'the one answer');
    expect(replies).toMatchObject([{ type: 'opened', re: 'mine' }]);
    expect(broker.deadLetters.map((d) => d.code)).toEqual(['FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN']);
    expect(coordinator.counts().get(0)).toMatchObject({ sessions: 1 });
    expect(coordinator.stats.partition(0).forbidden).toEqual(
      new Map([
        ['principal', 2],
        ['reply-address', 2],
      ]),
    );
  });

  it('a coordinator without a durable store tells holders and waiters when it stops', async () => {
    const a = await client('a', { requestTimeoutMs: 200 });
    const b = await client('b', { requestTimeoutMs: 200 });
    const lease = await a.acquire('going', { ttlMs: 60_000 });
    const signal = lease.signal;
    let queued = false;
    const waiting = b.acquire('going', { waitMs: 60_000, onQueued: () => (queued = true) });
    await waitFor(() => queued, 'the acquire to be queued');
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
    let queued = false;
    const waiting = b.acquire('lossy', { ttlMs: 60_000, waitMs: 10_000, onQueued: () => (queued = true) });
    await waitFor(() => queued, 'the acquire to be queued');
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

  it('a release the broker refuses (a full request queue) is sent again, so the hold does not outlive it', async () => {
    class Refusing extends MemoryClientTransport {
      refuseReleases = 2;
      override send(partition: number, body: Uint8Array): Promise<void> {
        if (this.refuseReleases > 0 && Buffer.from(body).toString().includes('"op":"release"')) {
          this.refuseReleases--;
          return Promise.reject(Object.assign(new Error('queue full'), { refused: true }));
        }
        return super.send(partition, body);
      }
    }
    const transport = new Refusing(broker, { workerId: 'full', instance: 'i' });
    const a = await LockClient.connect('memory:', { workerId: 'full', transport });
    clients.push(a);
    const lease = await a.acquire('crowded', { ttlMs: 60_000 });
    await lease.release();
    expect(transport.refuseReleases).toBe(0);
    // Released at the coordinator, not left to its 60 s lease.
    const b = await client('b');
    expect(await b.tryAcquire('crowded')).not.toBeNull();
  });

  it('tells a worker set to another partition count what the coordinator has', async () => {
    const wrong = await client('wrong', { partitions: 4 });
    // Every lock of a 4-partition client whose partition is 0 reaches this 1-partition coordinator.
    const err = await wrong.acquire('{a}').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'WRONG_PARTITION', field: 'partitions', retriable: false });
    expect((err as Error).message).toContain('this client is set to 4 partitions, the coordinator has 1');
  });
});

/** By default through the transport's forward, as between processes (`localHandOff: false`). */
async function handOffClient(workerId: string, options: LockClientOptions = {}): Promise<{ client: LockClient; transport: RecordingTransport }> {
  const transport = new RecordingTransport(broker, { workerId, instance: 'i' });
  const c = await LockClient.connect('memory:', { workerId, transport, localHandOff: false, ...options });
  clients.push(c);
  return { client: c, transport };
}

/** `promise`, or a failure naming `what` after `timeoutMs` (rather than the test's own long timeout). */
function within<T>(promise: Promise<T>, what: string, timeoutMs = 3000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}


describe('hand-off of a contended mutex over the memory transport', () => {
  it('hands a successor in the same process the grant directly, without the transport, before the coordinator sees the release', async () => {
    const h = await handOffClient('h-local', { localHandOff: true });
    const w = await handOffClient('w-local', { localHandOff: true });
    const held = await h.client.acquire('hot-local', { ttlMs: 30_000 });
    const waiting = w.client.acquire('hot-local', { ttlMs: 30_000, waitMs: 10_000 });
    await waitFor(() => held.successor?.next !== undefined, 'the holder to be told who is next');
    const token = held.successor?.next?.grant.token;
    h.transport.holdReleases = true;
    const releasing = held.release();
    const lease = await within(waiting, 'the successor to be granted in process');
    expect(lease.token).toBe(token);
    expect(h.transport.forwarded).toEqual([]);
    expect(w.transport.replies.filter((r) => r.type === 'granted' && r.token === token)).toEqual([]); // nothing through its transport yet
    expect((await h.client.inspect('hot-local')).lock?.holders.map((x) => x.worker)).toEqual(['h-local']);
    for (const resume of h.transport.heldReleases) resume();
    h.transport.holdReleases = false;
    await releasing;
    await waitFor(() => w.transport.replies.some((r) => r.type === 'granted' && r.token === token), "the coordinator's own copy");
    expect((await w.client.inspect('hot-local')).lock?.holders.map((x) => [x.worker, x.token])).toEqual([['w-local', token]]);
    await lease.release();
  });

  it('grants the successor by the holder’s forwarded copy, before the coordinator sees the release; the coordinator’s copy is a duplicate', async () => {
    const h = await handOffClient('h');
    const w = await handOffClient('w');
    const held = await h.client.acquire('hot', { ttlMs: 30_000 });
    const waiting = w.client.acquire('hot', { ttlMs: 30_000, waitMs: 10_000 });
    await waitFor(() => held.successor?.next !== undefined, 'the holder to be told who is next');
    const named = held.successor?.next;
    expect(named?.to).toBe(w.transport.replyAddress);
    const acquireId = w.transport.sent.find((r) => r.op === 'acquire')?.id as string;
    expect(named?.grant).toMatchObject({ type: 'granted', re: acquireId, lock: 'hot' });

    // The release is held back on its way to the broker: only the forwarded copy can grant W now.
    h.transport.holdReleases = true;
    const releasing = held.release();
    const lease = await within(waiting, 'the forwarded grant', 1000);
    expect(h.transport.heldReleases).toHaveLength(1);
    expect(h.transport.forwarded).toEqual([{ v: 1, epoch: expect.any(Number), partition: 0, ...named?.grant }]);
    expect(lease.token).toBe(named?.grant.token);
    expect(lease.token).toBeGreaterThan(held.token);
    const before = await w.client.inspect('hot');
    expect(before.lock?.holders.map((x) => [x.worker, x.token])).toEqual([['h', held.token]]);

    // The release reaches the coordinator, which grants W itself: same request, same token.
    h.transport.holdReleases = false;
    for (const go of h.transport.heldReleases.splice(0)) go();
    await releasing;
    await waitFor(() => w.transport.grantsFor(acquireId).length === 2, 'the coordinator’s own grant');
    expect(w.transport.grantsFor(acquireId).map((g) => g.token)).toEqual([lease.token, lease.token]);
    await elapse(20); // time for a wrong give-back to show
    expect(w.transport.releases()).toEqual([]); // the second copy was not taken for an orphan
    expect(lease.expired).toBe(false);
    const after = await w.client.inspect('hot');
    expect(after.lock?.holders.map((x) => [x.worker, x.token])).toEqual([['w', lease.token]]);
    await lease.release();
    expect(await h.client.tryAcquire('hot')).not.toBeNull();
  });

  it('hands a hot lock along a long chain: holders that know their successor forward, tokens strictly increase, never two holders', async () => {
    const counter = new FencedResource();
    const ws = await Promise.all(Array.from({ length: 6 }, (_, i) => handOffClient(`chain${i}`)));
    const rounds = 30;
    let inside = 0;
    let overlaps = 0;
    let named = 0;
    const tokens: number[] = [];
    await Promise.all(
      ws.map(async ({ client: c }) => {
        for (let i = 0; i < rounds; i++) {
          await c.withLock('chain', { ttlMs: 10_000, waitMs: 10_000 }, async ({ token, signal, lease }) => {
            if (++inside > 1) overlaps++;
            tokens.push(token);
            const read = counter.read('k');
            // Some holds end at once (the successor is done before the coordinator's copy of its
            // grant arrives), some after a timer (the copy arrives while it holds).
            if (i % 3 !== 0) await elapse(i % 3 - 1);
            expect(signal.aborted).toBe(false);
            expect(counter.write('k', token, read + 1, c.options.workerId)).toBe(true);
            if (lease.successor?.next !== undefined) named++;
            inside--;
          });
        }
      }),
    );
    const total = ws.length * rounds;
    expect(overlaps).toBe(0);
    expect(counter.read('k')).toBe(total);
    expect(counter.violations()).toEqual([]);
    // Granted in token order, every token once.
    expect(tokens).toEqual([...tokens].sort((a, b) => a - b));
    expect(new Set(tokens).size).toBe(total);
    // Every holder that knew its successor by the time it released handed the lock over directly.
    // A hold that ends before the coordinator has even processed the release before it cannot know
    // (the successor is named to a holder once the coordinator has granted it), so it goes the
    // usual way; each forwarded grant was the token its successor then used.
    const forwarded = ws.flatMap(({ transport }) => transport.forwarded);
    expect(named).toBeGreaterThan(total / 3);
    expect(forwarded.length).toBeGreaterThanOrEqual(named);
    expect(forwarded.length).toBeLessThan(total);
    for (const g of forwarded) expect(tokens).toContain(g.token);
    // Nothing was given back: every duplicate copy was recognised as one.
    expect(ws.flatMap(({ transport }) => transport.releases()).sort((a, b) => a - b)).toEqual([...tokens].sort((a, b) => a - b));
  });

  it('a holder whose lease was lost does not forward; the coordinator grants the named successor itself', async () => {
    const h = await handOffClient('h');
    const w = await handOffClient('w');
    const held = await h.client.acquire('lapsed', { ttlMs: 100 });
    const signal = held.signal;
    const waiting = w.client.acquire('lapsed', { ttlMs: 30_000, waitMs: 10_000 });
    await waitFor(() => held.successor?.next !== undefined, 'the holder to be told who is next');
    const reserved = held.successor?.next?.grant.token;
    await waitFor(() => signal.aborted, 'the lease to run out');
    const lease = await waiting;
    await held.release();
    expect(h.transport.forwarded).toEqual([]);
    expect(lease.token).toBe(reserved);
    await elapse(20); // time for a wrong give-back to show
    expect(w.transport.releases()).toEqual([]);
    expect((await w.client.inspect('lapsed')).lock?.holders.map((x) => x.token)).toEqual([lease.token]);
  });

  it('a successor whose wait ran out gives a late grant back, and the lock moves on to the next waiter', async () => {
    const h = await handOffClient('h');
    const late = await handOffClient('late');
    const next = await handOffClient('next');
    const held = await h.client.acquire('moving', { ttlMs: 30_000 });
    const timingOut = late.client.acquire('moving', { ttlMs: 30_000, waitMs: 50 });
    await waitFor(() => held.successor?.next !== undefined, 'the holder to be told who is next');
    expect(held.successor?.next?.to).toBe(late.transport.replyAddress);
    const reserved = held.successor?.next?.grant.token as number;
    await expect(timingOut).rejects.toMatchObject({ code: 'WAIT_TIMEOUT' });
    let queued = false;
    const waiting = next.client.acquire('moving', { ttlMs: 30_000, waitMs: 10_000, onQueued: () => (queued = true) });
    await waitFor(() => queued, 'the next waiter to be queued');
    const started = performance.now();
    await held.release();
    // The holder still forwards to the waiter it was told of: the coordinator keeps a successor
    // named after its wait ran out, since it may already hold the lock by a forwarded copy.
    expect(h.transport.forwarded.map((g) => g.token)).toEqual([reserved]);
    const lease = await within(waiting, 'the next waiter’s grant', 1000);
    // Long before the 30 s lease of a grant nobody gave back would have run out.
    expect(performance.now() - started).toBeLessThan(1000);
    expect(lease.token).toBeGreaterThan(reserved);
    expect(late.transport.releases()).toContain(reserved);
    expect((await next.client.inspect('moving')).lock?.holders.map((x) => [x.worker, x.token])).toEqual([['next', lease.token]]);
  });
});
