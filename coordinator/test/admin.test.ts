import { AdminServer, Coordinator, CoordinatorMetrics, DEFAULT_ADMIN_HOST, type LocksResponse, MemoryServerTransport, MemoryStore, type Outbound } from '@lockq/coordinator';
import { type Lease, LockClient } from '@lockq/worker-sdk';
import { encode, type LockView } from '@lockq/protocol';
import { MemoryBroker, MemoryClientTransport } from '@lockq/worker-sdk/transport';
import { runInspect } from '../../cli/src/inspect-command.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { elapse, waitFor } from '../../test/support/wait-for.js';

let broker: MemoryBroker;
let coordinator: Coordinator;
let metrics: CoordinatorMetrics;
let admin: AdminServer;
const clients: LockClient[] = [];

async function client(workerId: string): Promise<LockClient> {
  const transport = new MemoryClientTransport(broker, { workerId, instance: 'x' });
  const c = await LockClient.connect('memory:', { workerId, transport });
  clients.push(c);
  return c;
}

function get(path: string, init?: RequestInit): Promise<Response> {
  return fetch(`${admin.url}${path}`, init);
}

async function json<T>(path: string): Promise<T> {
  const res = await get(path);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  return (await res.json()) as T;
}

/** The value of one sample in Prometheus text, e.g. sample(text, 'lockq_grants_total', 'partition="0"'). */
function sample(text: string, name: string, labels: string): number | undefined {
  const prefix = `${name}{${labels}} `;
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line === undefined ? undefined : Number(line.slice(prefix.length));
}

async function scrape(): Promise<string> {
  const res = await get('/metrics');
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  return res.text();
}

const waitersOf = async (lock: string): Promise<number> => {
  const res = await get(`/v1/locks/${encodeURIComponent(lock)}`);
  return res.status === 200 ? ((await res.json()) as LockView).waiterCount : 0;
};

beforeEach(async () => {
  broker = new MemoryBroker();
  metrics = new CoordinatorMetrics();
  coordinator = await Coordinator.start({ transport: new MemoryServerTransport(broker), observer: metrics });
  metrics.attach(coordinator);
  admin = await AdminServer.listen({ port: 0, coordinator, metrics });
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await coordinator.stop();
  await admin.close();
});

describe('admin server: health', () => {
  it('binds an ephemeral port on 127.0.0.1 and says where', () => {
    // Loopback unless asked: the views are for the host's operator (docs/security.md).
    expect(DEFAULT_ADMIN_HOST).toBe('127.0.0.1');
    expect(admin.host).toBe('127.0.0.1');
    expect(admin.port).toBeGreaterThan(0);
    expect(admin.url).toBe(`http://127.0.0.1:${admin.port}`);
  });

  it('is live at once, ready only once serving, and not ready while the coordinator stops', async () => {
    const early = await AdminServer.listen({ port: 0 });
    try {
      expect((await fetch(`${early.url}/healthz`)).status).toBe(200);
      const starting = await fetch(`${early.url}/readyz`);
      expect(starting.status).toBe(503);
      expect(await starting.json()).toEqual({ status: 'starting' });
      expect((await fetch(`${early.url}/v1/locks`)).status).toBe(503);
      early.serve(coordinator);
      expect((await fetch(`${early.url}/readyz`)).status).toBe(200);
    } finally {
      await early.close();
    }

    expect((await get('/healthz')).status).toBe(200);
    expect((await get('/readyz')).status).toBe(200);
    admin.drain();
    const stopping = coordinator.stop();
    const res = await get('/readyz');
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ status: 'draining' });
    expect((await get('/healthz')).status).toBe(200); // draining is not dead
    await stopping;
    await admin.close();
    await expect(get('/healthz')).rejects.toThrow(); // no longer listening
  });
});

describe('admin server: readiness follows the partitions', () => {
  it('/readyz turns 503 naming a partition whose batches keep failing, and 200 once it answers again', async () => {
    const broker = new MemoryBroker();
    let reachable = false;
    class Unreachable extends MemoryServerTransport {
      override async publish(replies: readonly Outbound[]): Promise<void> {
        if (!reachable) throw new Error('broker unreachable');
        await super.publish(replies);
      }
    }
    const stalling = await Coordinator.start({ transport: new Unreachable(broker), stallMs: 100 });
    const ready = await AdminServer.listen({ port: 0, coordinator: stalling });
    const readyz = async () => {
      const res = await fetch(`${ready.url}/readyz`);
      return { status: res.status, body: (await res.json()) as { status: string; stalled?: { partition: number; unansweredMs: number; failures: number }[] } };
    };
    try {
      expect(await readyz()).toEqual({ status: 200, body: { status: 'ready' } });
      const answers: string[] = [];
      broker.subscribeReplies('lockq.replies.t.x', (body) => answers.push(Buffer.from(body).toString('utf8')));
      const open = { v: 1, op: 'open', id: 'o-1', worker: 't', session: 't-s', replyTo: 'lockq.replies.t.x', sessionTtlMs: 10_000, partitions: 1 } as const;
      broker.publishRequest(0, encode(open), 't');
      await waitFor(async () => (await readyz()).status === 503, 'readyz to turn 503', { timeoutMs: 3000 });
      const { body } = await readyz();
      expect(body).toMatchObject({ status: 'stalled', stalled: [{ partition: 0 }] });
      expect(body.stalled?.[0]?.unansweredMs).toBeGreaterThanOrEqual(100);
      expect(body.stalled?.[0]?.failures).toBeGreaterThan(0);
      expect(stalling.stalled().map((s) => s.partition)).toEqual([0]);
      expect((await fetch(`${ready.url}/healthz`)).status).toBe(200); // stalled is not dead: a store outage heals

      reachable = true;
      await waitFor(async () => (await readyz()).status === 200, 'readyz to turn 200 again', { timeoutMs: 3000 });
      expect(answers.some((a) => a.includes('"type":"opened"'))).toBe(true);
      expect(stalling.stalled()).toEqual([]);
    } finally {
      await ready.close();
      await stalling.stop();
    }
  });
});

describe('admin server: after a take-over', () => {
  it('reads lease and wait times on the partition clock, not on the process clock', async () => {
    const shared = new MemoryBroker();
    const store = new MemoryStore({ journal: true });
    const connect = async (workerId: string) => {
      const c = await LockClient.connect('memory:', { workerId, transport: new MemoryClientTransport(shared, { workerId, instance: 'x' }) });
      clients.push(c);
      return c;
    };
    // The first term ran in a process whose clock was an hour ahead of this one's.
    const transportA = new MemoryServerTransport(shared);
    const a = await Coordinator.start({ transport: transportA, store, clock: () => performance.now() + 3_600_000 });
    const holder = await connect('holder');
    const waiter = await connect('waiter');
    const lease = await holder.acquire('job', { ttlMs: 30_000 });
    const waiting = waiter.acquire('job', { ttlMs: 30_000, waitMs: 30_000 });
    await waitFor(() => a.inspect('job')?.waiterCount === 1, 'the waiter');
    await transportA.stopConsuming(0); // A crashes

    const b = await Coordinator.start({ transport: new MemoryServerTransport(shared), store });
    const bAdmin = await AdminServer.listen({ port: 0, coordinator: b });
    try {
      // B claims on this delivery; the protocol's view was always on the partition clock.
      const viaProtocol = (await holder.inspect('job')).lock;
      expect(viaProtocol?.holders[0]?.ttlMs).toBeLessThanOrEqual(30_000);
      const inspected = b.inspect('job');
      const listed = ((await (await fetch(`${bAdmin.url}/v1/locks`)).json()) as LocksResponse).locks[0];
      const one = (await (await fetch(`${bAdmin.url}/v1/locks/job`)).json()) as LockView;
      for (const view of [inspected, listed, one]) {
        expect(view?.holders.map((h) => h.token)).toEqual([lease.token]);
        // Before the fix: about 3,630,000 ms left on a 30 s lease.
        expect(view?.holders[0]?.ttlMs).toBeLessThanOrEqual(30_000);
        expect(view?.holders[0]?.ttlMs).toBeGreaterThan(20_000);
        expect(view?.waiters[0]?.waitMs).toBeLessThanOrEqual(30_000);
        expect(view?.waiters[0]?.waitMs).toBeGreaterThan(20_000);
      }
      let out = '';
      const print = (t: string) => {
        out += t;
      };
      expect(await runInspect({ admin: bAdmin.url, lock: 'job', json: false, timeoutMs: 2000, out: print, err: print })).toBe(0);
      const ttlLeftS = Number(/^ {2}holder\s+\d+\s+([\d.]+)s\s/m.exec(out)?.[1]);
      expect(ttlLeftS).toBeGreaterThan(20);
      expect(ttlLeftS).toBeLessThanOrEqual(30);

      await lease.release();
      await (await waiting).release();
    } finally {
      await Promise.all(clients.splice(0).map((c) => c.close()));
      await bAdmin.close();
      await b.stop();
      await a.stop();
    }
  });
});

describe('admin server: metrics', () => {
  it('counts grants, waits, queue depth, releases and denials by code', async () => {
    const a = await client('a');
    const b = await client('b');
    const leases: Lease[] = [];
    for (const name of ['m:1', 'm:2', 'm:3']) leases.push(await a.acquire(name, { ttlMs: 5000 }));
    let text = await scrape();
    expect(sample(text, 'lockq_grants_total', 'partition="0"')).toBe(3);
    // Immediate grants observe a wait of 0.
    expect(sample(text, 'lockq_wait_seconds_bucket', 'le="0.001",partition="0"')).toBe(3);
    expect(sample(text, 'lockq_holds', 'partition="0"')).toBe(3);
    expect(sample(text, 'lockq_last_token', 'partition="0"')).toBe(leases[2]!.token); // the highest issued
    expect(sample(text, 'lockq_sessions', 'partition="0"')).toBe(1);

    // A try-lock on a held lock is denied with LOCK_BUSY.
    expect(await b.tryAcquire('m:1')).toBeNull();
    text = await scrape();
    expect(sample(text, 'lockq_errors_total', 'partition="0",code="LOCK_BUSY"')).toBe(1);

    // A waiter shows in the queue-depth gauge, then as a grant that waited.
    const waited = b.acquire('m:1', { ttlMs: 5000, waitMs: 5000 });
    await waitFor(async () => (await waitersOf('m:1')) === 1, 'a waiter on m:1');
    text = await scrape();
    expect(sample(text, 'lockq_waiters', 'partition="0"')).toBe(1);
    expect(sample(text, 'lockq_queued_total', 'partition="0"')).toBe(1);
    await elapse(30); // a wait long enough to land in a later bucket
    await leases[0]!.release();
    const second = await waited;
    text = await scrape();
    expect(sample(text, 'lockq_grants_total', 'partition="0"')).toBe(4);
    expect(sample(text, 'lockq_waiters', 'partition="0"')).toBe(0);
    expect(sample(text, 'lockq_wait_seconds_count', 'partition="0"')).toBe(4);
    expect(sample(text, 'lockq_wait_seconds_bucket', 'le="0.001",partition="0"')).toBe(3);
    expect(sample(text, 'lockq_wait_seconds_bucket', 'le="+Inf",partition="0"')).toBe(4);
    expect(sample(text, 'lockq_wait_seconds_sum', 'partition="0"')).toBeGreaterThanOrEqual(0.025);
    expect(sample(text, 'lockq_releases_total', 'partition="0"')).toBe(1);
    expect(sample(text, 'lockq_hold_seconds_count', 'partition="0"')).toBe(1);
    expect(sample(text, 'lockq_requests_total', 'partition="0"')).toBeGreaterThanOrEqual(7);
    expect(sample(text, 'lockq_batches_total', 'partition="0"')).toBeGreaterThan(0);
    await second.release();

    // Totals from coordinator.stats and the reconnect counter are there from the start.
    expect(text).toMatch(/^lockq_dead_lettered_total\{partition="0"\} 0$/m);
    expect(text).toMatch(/^lockq_rejected_total\{partition="0"\} 0$/m);
    expect(text).toMatch(/^lockq_transport_reconnects_total 0$/m);
    metrics.reconnected();
    expect(await scrape()).toMatch(/^lockq_transport_reconnects_total 1$/m);
  });

  it('keeps each coordinator in its own registry', async () => {
    const other = new CoordinatorMetrics();
    other.batch(0, 1, []);
    expect(sample(await other.metrics(), 'lockq_batch_size_count', 'partition="0"')).toBe(1);
    expect(sample(await scrape(), 'lockq_batch_size_count', 'partition="0"')).toBe(0);
  });
});

describe('admin server: locks', () => {
  it('lists holders with tokens and waiters with positions', async () => {
    const holder = await client('holder');
    const lease = await holder.acquire('job/1?x', { ttlMs: 5000 });
    const w1 = await client('w1');
    const w2 = await client('w2');
    const first = w1.acquire('job/1?x', { ttlMs: 5000, waitMs: 5000 });
    await waitFor(async () => (await waitersOf('job/1?x')) === 1, 'the first waiter');
    const second = w2.acquire('job/1?x', { ttlMs: 5000, waitMs: 5000 });
    await waitFor(async () => (await waitersOf('job/1?x')) === 2, 'the second waiter');

    const all = await json<LocksResponse>('/v1/locks');
    expect(all.truncated).toBe(false);
    expect(all.owned).toEqual([0]);
    expect(all.partitions['0']).toMatchObject({ locks: 1, holds: 1, waiters: 2, sessions: 3 });
    expect(all.locks.map((l) => l.lock)).toEqual(['job/1?x']);

    const view = await json<LockView>(`/v1/locks/${encodeURIComponent('job/1?x')}`);
    expect(view).toMatchObject({ lock: 'job/1?x', kind: 'mutex', limit: 1, holderCount: 1, waiterCount: 2 });
    expect(view.holders).toEqual([expect.objectContaining({ worker: 'holder', token: lease.token, mode: 'exclusive', permits: 1 })]);
    expect(view.holders[0]!.ttlMs).toBeGreaterThan(4000);
    expect(view.waiters.map((w) => [w.position, w.worker])).toEqual([
      [1, 'w1'],
      [2, 'w2'],
    ]);
    expect(view.waiters[0]!.waitMs).toBeGreaterThan(4000);
    // No session or request ids (before: every holder's session, every waiter's session and
    // request); the partition counts keep the token counter for the operator.
    for (const shown of [view, ...all.locks]) {
      for (const h of shown.holders) expect(Object.keys(h).sort()).toEqual(['mode', 'permits', 'token', 'ttlMs', 'worker']);
      for (const w of shown.waiters) expect(Object.keys(w).sort()).toEqual(['mode', 'permits', 'position', 'waitMs', 'worker']);
    }
    expect(all.partitions['0']?.lastToken).toBeGreaterThanOrEqual(lease.token);

    // `lockq inspect` renders the same view as tables.
    let out = '';
    const code = await runInspect({ admin: admin.url, lock: 'job/1?x', json: false, timeoutMs: 2000, out: (t) => (out += t), err: (t) => (out += t) });
    expect(code).toBe(0);
    const lines = out.split('\n');
    expect(lines[0]).toBe('job/1?x  (mutex; 1 holding, 2 waiting)');
    expect(lines[1]).toMatch(/^ {2}HOLDER\s+TOKEN\s+TTL LEFT\s+MODE\s+PERMITS$/);
    expect(lines[2]).toMatch(new RegExp(`^ {2}holder\\s+${lease.token}\\s+[\\d.]+s\\s+exclusive\\s+1$`));
    expect(lines[3]).toMatch(/^ {2}POS\s+WAITER\s+WAIT LEFT\s+MODE\s+PERMITS$/);
    expect(lines[4]).toMatch(/^ {2}1\s+w1\s+[\d.]+s\s+exclusive\s+1$/);
    expect(lines[5]).toMatch(/^ {2}2\s+w2\s+[\d.]+s\s+exclusive\s+1$/);
    out = '';
    expect(await runInspect({ admin: admin.url, lock: undefined, json: false, timeoutMs: 2000, out: (t) => (out += t), err: (t) => (out += t) })).toBe(0);
    expect(out).toMatch(/^0\s+active\s+1\s+1\s+2\s+3\s+\d+$/m);
    expect(out).toContain('job/1?x  (mutex; 1 holding, 2 waiting)');

    await lease.release();
    await (await first).release();
    await (await second).release();
    const gone = await get(`/v1/locks/${encodeURIComponent('job/1?x')}`);
    expect(gone.status).toBe(404);
    expect(await gone.json()).toEqual({ error: 'NOT_FOUND', lock: 'job/1?x' });
  });

  it('caps the list and says it did', async () => {
    const small = await AdminServer.listen({ port: 0, coordinator, maxLocks: 2 });
    try {
      const c = await client('c');
      for (const name of ['a', 'b', 'c']) await c.acquire(name, { ttlMs: 5000 });
      const res = await fetch(`${small.url}/v1/locks`);
      const body = (await res.json()) as LocksResponse;
      expect(body.truncated).toBe(true);
      expect(body.locks).toHaveLength(2);
      expect(body.partitions['0']?.locks).toBe(3);
    } finally {
      await small.close();
    }
  });

  it('answers 500 when a source fails, and stays up', async () => {
    const broken = await AdminServer.listen({
      port: 0,
      coordinator: {
        counts: () => new Map(),
        locks: () => {
          throw new Error('boom');
        },
        inspect: () => null,
        options: { ownPartitions: [0] },
      },
      metrics: { contentType: 'text/plain', metrics: () => Promise.reject(new Error('scrape failed')) },
    });
    try {
      const locks = await fetch(`${broken.url}/v1/locks`);
      expect(locks.status).toBe(500);
      expect(await locks.json()).toEqual({ error: 'INTERNAL' });
      expect((await fetch(`${broken.url}/metrics`)).status).toBe(500);
      expect((await fetch(`${broken.url}/healthz`)).status).toBe(200);
      const head = await fetch(`${broken.url}/healthz`, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(await head.text()).toBe('');
    } finally {
      await broken.close();
    }
  });

  it('answers unknown routes with 404, other methods with 405, bad escapes with 400', async () => {
    const unknown = await get('/nope');
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ error: 'NOT_FOUND' });
    expect((await get('/v1/locks/never-held')).status).toBe(404);
    const post = await get('/v1/locks', { method: 'POST', body: '{}' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    expect(await post.json()).toEqual({ error: 'METHOD_NOT_ALLOWED' });
    expect((await get('/metrics', { method: 'DELETE' })).status).toBe(405);
    // Nothing changes state here: every method but GET (and HEAD) is refused on every route, known or not.
    const routes = ['/healthz', '/readyz', '/metrics', '/v1/locks', '/v1/locks/job', '/nope'];
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
      for (const route of routes) {
        const res = await get(route, { method });
        expect(res.status, `${method} ${route}`).toBe(405);
        expect(res.headers.get('allow')).toBe('GET, HEAD');
      }
    }
    expect((await get('/v1/locks/%E0%A4%A')).status).toBe(400);
    expect((await get('/healthz')).status).toBe(200); // and still up
  });
});
