/**
 * End to end on RabbitMQ with separate processes, as lockq runs in production: a coordinator
 * started from the built CLI (`lockq coordinator --transport amqp://…`) and workers that are
 * processes of their own (test/fixtures/src/worker.ts), writing through fencing tokens to an
 * HTTP resource in this process (test/support/fenced-resource.ts) that records every write.
 * Workers can therefore be killed, stopped and cut off from the broker for real.
 *
 * Needs `npx tsc -b` first (npm test does it). Every run uses its own topology prefix and
 * deletes its queues afterwards; it closes only its own broker connections.
 */
import { existsSync } from 'node:fs';
import type { LockView } from '@lockq/protocol';
import { deadLetterDestination, requestDestination } from '@lockq/protocol';
import { LockClient, type LockClientOptions, type LockqError } from '@lockq/worker-sdk';
import { AmqpClientTransport, type ClientTransport } from '@lockq/worker-sdk/transport';
import { connect } from 'amqplib';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { WorkerConfig, WorkerEvent } from './fixtures/src/worker-config.js';
import { AMQP_URL, requireRabbit } from './support/brokers.js';
import { FencedResource } from './support/fenced-resource.js';
import { CLI, CoordinatorProcess, killAll, WORKER, WorkerProcess } from './support/processes.js';
import { closeConnections, deleteTopology, listConnections, rabbitmqctlWorks } from './support/rabbitmq.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { RAW_REQUEST, rawReplyQueue } from './support/raw.js';
import { elapse, waitFor } from './support/wait-for.js';

const rabbit = await requireRabbit();
const ctl = rabbit && (await rabbitmqctlWorks());
if (rabbit && !ctl) {
  const message = 'rabbitmqctl cannot reach the broker: the forced-disconnect end-to-end test cannot run';
  if (process.env.CI === 'true') throw new Error(`${message} and CI=true`);
  console.warn(`\n\n*** ${message.toUpperCase()}: SKIPPED ***\n\n`);
}

/** Every queue and exchange this run makes starts with this. */
const RUN = `e2e${Date.now().toString(36)}${process.pid.toString(36)}`;
const prefixes: string[] = [];

/** A fresh topology prefix for one test (its own request, reply and dead-letter queues). */
function topology(): string {
  const prefix = `${RUN}.${prefixes.length + 1}`;
  prefixes.push(prefix);
  return prefix;
}

function coordinator(prefix: string): Promise<CoordinatorProcess> {
  return CoordinatorProcess.start(['--transport', AMQP_URL, '--prefix', prefix]);
}

let resource: FencedResource;

/** A worker process; its id starts with the prefix, so its broker connection can be told apart. */
function worker(prefix: string, id: string, config: Omit<WorkerConfig, 'url' | 'workerId' | 'prefix' | 'resource'>): WorkerProcess {
  return new WorkerProcess({ url: AMQP_URL, prefix, workerId: `${prefix}-${id}`, resource: resource.url, ...config });
}

const acceptedWrites = (key: string) => resource.history.filter((w) => w.key === key && w.accepted);
const rejectedWrites = (key: string) => resource.history.filter((w) => w.key === key && !w.accepted);

/** The checks every counter run must pass: nothing lost, nothing duplicated, no stale write. */
function expectExactCounter(key: string, done: readonly WorkerEvent[]): void {
  const accepted = acceptedWrites(key);
  const reported = done.reduce((n, d) => n + (d.accepted ?? 0), 0);
  // Every accepted write is one increment: none lost, none applied twice.
  expect(resource.read(key)).toBe(accepted.length);
  // What the workers were told matches what the resource recorded.
  expect(reported).toBe(accepted.length);
  expect(done.reduce((n, d) => n + (d.rejected ?? 0), 0)).toBe(rejectedWrites(key).length);
  expect(resource.violations()).toEqual([]);
  // Each increment was a hold of its own: the tokens of accepted writes strictly increase.
  for (let i = 1; i < accepted.length; i++) expect(accepted[i]!.token).toBeGreaterThan(accepted[i - 1]!.token);
}

beforeAll(() => {
  for (const built of [CLI, WORKER]) if (!existsSync(built)) throw new Error(`${built} is missing: build first (npx tsc -b)`);
});
beforeEach(async () => {
  resource = new FencedResource();
  await resource.start();
});
afterEach(async () => {
  await killAll();
  await resource.close();
});
afterAll(async () => {
  if (rabbit && prefixes.length > 0) {
    const known = prefixes.flatMap((p) => [requestDestination(0, p), deadLetterDestination(p), rawReplyQueue(p, 'tester')]);
    await deleteTopology(RUN, prefixes, known);
  }
});

describe.skipIf(!rabbit)('end to end on RabbitMQ: a coordinator process and worker processes', () => {
  it('4 worker processes × 40 increments of one fenced counter: no increment lost, no stale write', async () => {
    const prefix = topology();
    const coord = await coordinator(prefix);
    const N = 40;
    const workers = [0, 1, 2, 3].map((i) => worker(prefix, `inc${i}`, { script: 'increment', lock: 'counter', count: N, ttlMs: 5000 }));
    const done = await Promise.all(workers.map((w) => w.event('done', 60_000)));

    for (const d of done) expect(d).toMatchObject({ accepted: N, rejected: 0, failed: 0 });
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0, 0, 0]);
    expect(resource.read('counter')).toBe(4 * N);
    expect(acceptedWrites('counter')).toHaveLength(4 * N);
    expect(rejectedWrites('counter')).toEqual([]);
    expectExactCounter('counter', done);
    expect(new Set(acceptedWrites('counter').map((w) => w.worker)).size).toBe(4);
    // One grant per increment, all released: by the holder's own release, or (when the successor
    // that took the forwarded grant spoke first, which ends the hold) answered NOT_HOLDER after.
    const metrics = await coord.metrics();
    expect(metrics).toContain(`lockq_grants_total{partition="0"} ${4 * N}`);
    const count = (name: string) => Number(metrics.match(new RegExp(`^${name} (\\d+)$`, 'm'))?.[1] ?? 0);
    const released = count('lockq_releases_total\\{partition="0"\\}');
    const overtaken = count('lockq_errors_total\\{partition="0",code="NOT_HOLDER"\\}');
    expect(released).toBeGreaterThan(0);
    expect(released + overtaken).toBe(4 * N);
    expect(metrics).toMatch(/^lockq_holds\{partition="0"\} 0$/m);
    expect(await coord.stop()).toBe(0);
  }, 60_000);

  it('grants in FIFO order: waiters queued one after another are granted by position, tokens rising', async () => {
    const prefix = topology();
    const coord = await coordinator(prefix);
    const gate = worker(prefix, 'gate', { script: 'gate', lock: 'fifo', ttlMs: 30_000 });
    const gateGrant = await gate.event('granted');

    const K = 6;
    const waiters: WorkerProcess[] = [];
    for (let i = 0; i < K; i++) {
      const w = worker(prefix, `q${i}`, { script: 'queue', lock: 'fifo', ttlMs: 30_000 });
      waiters.push(w);
      // The next one starts only once this one is known to be in the queue.
      expect((await w.event('queued')).position).toBe(i + 1);
    }
    // The coordinator's own view agrees, before anything moves.
    const view = (await (await fetch(`${coord.admin}/v1/locks/fifo`)).json()) as LockView;
    expect(view.holders.map((h) => [h.worker, h.token])).toEqual([[gate.config.workerId, gateGrant.token]]);
    expect(view.waiters.map((w) => [w.worker, w.position])).toEqual(waiters.map((w, i) => [w.config.workerId, i + 1]));
    expect(waiters.some((w) => w.events('granted').length > 0)).toBe(false);

    gate.say('release');
    await gate.event('released');
    const grants = await Promise.all(waiters.map((w) => w.event('granted', 20_000)));
    const positions = waiters.map((w) => w.events('queued')[0]?.position);
    expect(positions).toEqual(Array.from({ length: K }, (_, i) => i + 1));
    let previous = gateGrant;
    for (const g of grants) {
      // In position order: a higher token, and not granted before the one ahead of it.
      expect(g.token).toBeGreaterThan(previous.token!);
      expect(g.at).toBeGreaterThanOrEqual(previous.at);
      previous = g;
    }
    expect(await Promise.all([gate, ...waiters].map((w) => w.exited))).toEqual(Array(K + 1).fill(0));
    expect(await coord.stop()).toBe(0);
  }, 60_000);

  it('a holder killed with SIGKILL loses the lock when its lease runs out; the waiter gets it, token higher', async () => {
    const prefix = topology();
    const coord = await coordinator(prefix);
    const ttlMs = 3000;
    const doomed = worker(prefix, 'doomed', { script: 'hold', lock: 'job', ttlMs, holdMs: 60_000 });
    const held = await doomed.event('granted');
    const heir = worker(prefix, 'heir', { script: 'queue', lock: 'job', ttlMs: 30_000 });
    expect((await heir.event('queued')).position).toBe(1);

    const killedAt = Date.now();
    doomed.signal('SIGKILL');
    expect(await doomed.exited).toBe('SIGKILL');
    const granted = await heir.event('granted', ttlMs + 5000);
    // Liveness: within the lease (counted from the grant) plus a small margin...
    expect(granted.at - held.at).toBeLessThan(ttlMs + 1500);
    expect(granted.at - killedAt).toBeLessThan(ttlMs + 1500);
    // ...and mutual exclusion: not before the lease ran out (a dead connection frees nothing early).
    expect(granted.at - held.at).toBeGreaterThanOrEqual(ttlMs - 300);
    expect(granted.token).toBeGreaterThan(held.token!);
    await heir.event('done');
    expect(await heir.exited).toBe(0);
    expect(await coord.metric('lockq_lease_expiries_total')).toBe(1);
    expect(await coord.stop()).toBe(0);
  }, 30_000);

  it('a holder paused (SIGSTOP) past its lease: the next holder writes; the late write is refused and its signal aborted', async () => {
    const prefix = topology();
    const coord = await coordinator(prefix);
    const ttlMs = 1500;
    const holdMs = 800;
    const sleeper = worker(prefix, 'sleeper', { script: 'hold', lock: 'doc', ttlMs, holdMs });
    const held = await sleeper.event('granted');
    sleeper.signal('SIGSTOP');
    const stoppedAt = Date.now();
    // Otherwise the sleeper may have written already, and the test proves nothing.
    expect(stoppedAt - held.at).toBeLessThan(holdMs);
    let successorToken = 0;
    try {
      await elapse(ttlMs + 200); // the lease runs out while the holder is stopped
      const successor = worker(prefix, 'successor', { script: 'hold', lock: 'doc', ttlMs: 5000, holdMs: 0 });
      const granted = await successor.event('granted', 15_000);
      const wrote = await successor.event('wrote');
      expect(wrote).toMatchObject({ ok: true, token: granted.token, signalAborted: false });
      expect(granted.token).toBeGreaterThan(held.token!);
      expect(granted.at - held.at).toBeGreaterThanOrEqual(ttlMs);
      successorToken = granted.token!;
      await successor.event('done');
      expect(await successor.exited).toBe(0);
      expect(sleeper.events('wrote')).toEqual([]); // still asleep
    } finally {
      sleeper.signal('SIGCONT');
    }
    const late = await sleeper.event('wrote');
    expect(late).toMatchObject({ ok: false, token: held.token, signalAborted: true });
    expect(await sleeper.exited).toBe(0);
    expect(resource.history.map((w) => [w.worker, w.token, w.accepted])).toEqual([
      [`${prefix}-successor`, successorToken, true],
      [`${prefix}-sleeper`, held.token, false],
    ]);
    expect(resource.violations()).toEqual([]);
    expect(await coord.stop()).toBe(0);
  }, 30_000);

  it.skipIf(!ctl)('the broker closes every connection of the run under load: both sides reconnect, nothing confirmed is lost', async () => {
    const prefix = topology();
    const coord = await coordinator(prefix);
    const count = 80;
    const workers = [0, 1, 2].map((i) =>
      worker(prefix, `r${i}`, { script: 'increment', lock: 'counter', count, ttlMs: 5000, thinkMs: 15, logLevel: 'info' }),
    );
    await Promise.all(workers.map((w) => w.event('ready')));
    // Listed ahead (rabbitmqctl is slow to start), so the cut comes while the run is in full swing.
    const coordinatorName = `pid ${coord.child.pid}`;
    const ours = (await listConnections()).filter(
      (c) => (c.name.startsWith('lockq coordinator ') && c.name.endsWith(coordinatorName)) || c.name.startsWith(`lockq worker ${prefix}-`),
    );
    expect(ours).toHaveLength(4);
    await waitFor(() => acceptedWrites('counter').length >= 10, 'the run to get going', { timeoutMs: 20_000 });
    await closeConnections(ours, 'lockq e2e test: forced disconnect');
    const closedAt = Date.now();
    expect(workers.every((w) => w.events('done').length === 0)).toBe(true); // it was under load

    const done = await Promise.all(workers.map((w) => w.event('done', 60_000)));
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0, 0]);
    // An acquire may fail during the outage, but only with a retriable error.
    const errors = workers.flatMap((w) => w.events('error'));
    for (const e of errors) expect(e).toMatchObject({ retriable: true });
    expect(done.reduce((n, d) => n + (d.failed ?? 0), 0)).toBe(errors.length);
    for (const d of done) expect((d.accepted ?? 0) + (d.rejected ?? 0) + (d.failed ?? 0)).toBe(count);
    expectExactCounter('counter', done);
    // The run went on after the disconnect, on new connections.
    expect(acceptedWrites('counter').filter((w) => w.at > closedAt).length).toBeGreaterThan(0);

    // Both sides saw the loss and reconnected.
    await coord.line((l) => l.msg === 'reconnected' && l.component === 'amqp-server-transport', 'coordinator reconnect log');
    expect(await coord.metric('lockq_transport_reconnects_total')).toBe(1);
    for (const w of workers) {
      expect(w.errLines.some((l) => l.msg === 'lost the broker connection; reconnecting')).toBe(true);
      expect(w.errLines.some((l) => l.msg === 'reconnected')).toBe(true);
    }
    expect(await coord.stop()).toBe(0);
  }, 90_000);

  it('poison and bad input on the request queue: answered or dead-lettered, the run unaffected', async () => {
    const prefix = topology();
    const coord = await coordinator(prefix);
    const count = 60;
    const workers = [0, 1].map((i) => worker(prefix, `p${i}`, { script: 'increment', lock: 'counter', count, ttlMs: 5000, thinkMs: 5 }));
    await waitFor(() => acceptedWrites('counter').length >= 10, 'the run to get going', { timeoutMs: 20_000 });

    const conn = await connect(AMQP_URL);
    try {
      const ch = await conn.createConfirmChannel();
      const replyTo = rawReplyQueue(prefix, 'tester');
      await ch.assertQueue(replyTo, { exclusive: true });
      const replies: Record<string, unknown>[] = [];
      await ch.consume(replyTo, (msg) => msg !== null && replies.push(JSON.parse(msg.content.toString('utf8'))), { noAck: true });

      const envelope = { v: 1, worker: 'e2e-tester', session: 'e2e-tester.s.0', replyTo };
      const notJson = Buffer.from('{"v":1,"op":"acquire", this is not JSON');
      const oversized = Buffer.from(
        JSON.stringify({ ...envelope, id: 'big', op: 'acquire', lock: 'x', ttlMs: 60_000, waitMs: 0, pad: 'x'.repeat(5000) }),
      );
      const unknownOp = Buffer.from(JSON.stringify({ ...envelope, id: 'poison-op', op: 'frobnicate' }));
      const badName = Buffer.from(JSON.stringify({ ...envelope, id: 'poison-name', op: 'acquire', lock: 'bad name', ttlMs: 1000, waitMs: 0 }));
      // A bad lock name and no usable reply address: nobody to answer, so it is parked.
      const badNameNoReply = Buffer.from(
        JSON.stringify({ ...envelope, replyTo: 'not a queue', id: 'poison-name-2', op: 'acquire', lock: '', ttlMs: 1000, waitMs: 0 }),
      );
      expect(oversized.byteLength).toBeGreaterThan(4096);
      const queue = requestDestination(0, prefix);
      for (const body of [notJson, oversized, unknownOp, badName, badNameNoReply]) ch.sendToQueue(queue, body, RAW_REQUEST);
      await ch.waitForConfirms();
      expect(workers.every((w) => w.events('done').length === 0)).toBe(true); // in the middle of the run

      await waitFor(() => replies.length >= 2, 'the two error replies', { timeoutMs: 15_000 });
      const byId = new Map(replies.map((r) => [r.re, r]));
      expect(byId.get('poison-op')).toMatchObject({ type: 'error', code: 'UNKNOWN_OP', field: 'op', partition: 0 });
      expect(byId.get('poison-name')).toMatchObject({ type: 'error', code: 'NAME_INVALID', field: 'lock', partition: 0 });

      const parked: { body: Buffer; code: unknown; partition: unknown; originalBytes: unknown }[] = [];
      await waitFor(
        async () => {
          for (let msg = await ch.get(deadLetterDestination(prefix), { noAck: true }); msg !== false; msg = await ch.get(deadLetterDestination(prefix), { noAck: true })) {
            const h = msg.properties.headers ?? {};
            parked.push({ body: msg.content, code: h['x-lockq-code'], partition: h['x-lockq-partition'], originalBytes: h['x-lockq-original-bytes'] });
          }
          return parked.length >= 3;
        },
        'three dead letters',
        { timeoutMs: 15_000, intervalMs: 20 },
      );
      expect(parked.map((p) => p.code).sort()).toEqual(['INVALID_FIELD', 'MALFORMED', 'MESSAGE_TOO_LARGE']);
      // A parked body is the message's first 1,024 bytes at most, with its length in a header.
      const parkedAs = (body: Buffer) => parked.find((p) => p.body.equals(body.subarray(0, 1024)));
      expect(parkedAs(notJson)?.code).toBe('MALFORMED');
      expect(parkedAs(oversized)).toMatchObject({ code: 'MESSAGE_TOO_LARGE', originalBytes: oversized.byteLength });
      expect(parkedAs(badNameNoReply)?.code).toBe('INVALID_FIELD');
      for (const p of parked) expect(p.partition).toBe(0);
      expect(replies).toHaveLength(2);
    } finally {
      await conn.close();
    }

    const done = await Promise.all(workers.map((w) => w.event('done', 60_000)));
    for (const d of done) expect(d).toMatchObject({ accepted: count, rejected: 0, failed: 0 });
    expect(resource.read('counter')).toBe(2 * count);
    expectExactCounter('counter', done);
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0]);
    expect(await coord.metric('lockq_rejected_total')).toBe(5);
    expect(await coord.metric('lockq_dead_lettered_total')).toBe(3);
    // Nothing the poison said reached the state: no lock "x", and the coordinator still serves.
    const locks = (await (await fetch(`${coord.admin}/v1/locks`)).json()) as { locks: LockView[] };
    expect(locks.locks.map((l) => l.lock)).toEqual([]);
    expect(coord.running).toBe(true);
    expect(await coord.stop()).toBe(0);
  }, 60_000);
});

/** The broker's URL with its host and port replaced by the proxy's. */
function viaProxy(proxy: string): string {
  const u = new URL(AMQP_URL);
  u.host = proxy;
  return u.toString();
}

function brokerAddress(): { host: string; port: number } {
  const u = new URL(AMQP_URL);
  return { host: u.hostname, port: u.port === '' ? 5672 : Number(u.port) };
}

async function lockView(coord: CoordinatorProcess, lock: string): Promise<LockView | null> {
  const res = await fetch(`${coord.admin}/v1/locks/${encodeURIComponent(lock)}`);
  return res.status === 404 ? null : ((await res.json()) as LockView);
}


/**
 * Product bugs the runs above found (as rare lost increments and stalls of the disconnect test),
 * each fixed and pinned by a deterministic test that failed before its fix. They drive an in-process
 * LockClient where the fault must be injected exactly: a TCP proxy that holds bytes back and then
 * cuts the connection, or a transport that hands over a reply twice.
 */
describe.skipIf(!rabbit)('bugs found end to end, each pinned by a test that failed before its fix', () => {
  const clients: LockClient[] = [];
  const proxies: TcpProxy[] = [];
  afterEach(async () => {
    // Closing sends each session's close; after the test stopped its coordinator nobody answers,
    // so all at once, and on a short request timeout.
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
    for (const p of proxies.splice(0)) await p.close();
  });
  async function client(url: string, options: LockClientOptions): Promise<LockClient> {
    const c = await LockClient.connect(url, { requestTimeoutMs: 3000, ...options });
    clients.push(c);
    return c;
  }
  async function proxy(): Promise<TcpProxy> {
    const p = new TcpProxy(brokerAddress());
    proxies.push(p);
    await p.start();
    return p;
  }

  it('SDK: a request whose confirm is lost with the connection is re-sent after the reconnect, not failed as "refused"', async () => {
    const prefix = topology();
    const coord = await coordinator(prefix);
    const p = await proxy();
    const worker = await client(viaProxy(`127.0.0.1:${p.port}`), { prefix, workerId: `${prefix}-unlucky` });
    await (await worker.acquire('warm-up', { ttlMs: 5000 })).release(); // the session is open
    p.holdDownstream(); // the broker's confirm and reply never reach the worker
    const outcome = worker.acquire('pinned', { ttlMs: 30_000 }).then(
      (lease) => ({ token: lease.token }),
      (err: LockqError) => ({ code: err.code, message: err.message }),
    );
    // The request did reach the broker: the coordinator granted it.
    const holder = await waitFor(async () => (await lockView(coord, 'pinned'))?.holders[0], 'the grant', { timeoutMs: 10_000 });
    p.cut();
    // Before the fix: { code: 'TRANSPORT_ERROR', message: 'the broker refused a request for … (queue full?)' } at once.
    expect(await outcome).toEqual({ token: holder.token });
    expect(await coord.stop()).toBe(0);
  });

  it('SDK: a repeated "granted" reply (at-least-once replies) does not make the worker release the hold it was just given', async () => {
    const prefix = topology();
    const coord = await coordinator(prefix);
    const workerId = `${prefix}-twice`;
    const inner = new AmqpClientTransport({ url: AMQP_URL, workerId, instance: 'dup', prefix });
    // The broker redelivers a reply after a reconnect; two copies can arrive in one socket read.
    const repeating: ClientTransport = {
      get replyAddress() {
        return inner.replyAddress;
      },
      open: (handlers) =>
        inner.open({
          ...handlers,
          onReply: (body) => {
            handlers.onReply(body);
            if (Buffer.from(body).toString('utf8').includes('"type":"granted"')) handlers.onReply(body);
          },
        }),
      send: (partition, body) => inner.send(partition, body),
      forward: (address, body) => inner.forward(address, body),
      close: () => inner.close(),
    };
    const holder = await client(AMQP_URL, { prefix, workerId, transport: repeating });
    const other = await client(AMQP_URL, { prefix, workerId: `${prefix}-other` });
    const lease = await holder.acquire('pinned', { ttlMs: 30_000 });
    await elapse(300); // a window for the duplicate grant to do harm
    expect(lease.signal.aborted).toBe(false); // the worker believes it holds the lock...
    // ...so the coordinator must still think so too. Before the fix, the duplicate made the SDK send a
    // release for the token ("a grant nobody waits for"), and the next worker gets the lock.
    expect((await lockView(coord, 'pinned'))?.holders.map((h) => h.token)).toEqual([lease.token]);
    expect(await other.tryAcquire('pinned', { ttlMs: 1000 })).toBeNull();
    expect(await coord.stop()).toBe(0);
  });

  it('SDK: a waiter granted after waiting longer than its ttl gets a live lease, and its release frees the lock', async () => {
    const prefix = topology();
    const coord = await coordinator(prefix);
    const holder = await client(AMQP_URL, { prefix, workerId: `${prefix}-holder` });
    const waiter = await client(AMQP_URL, { prefix, workerId: `${prefix}-waiter` });
    const third = await client(AMQP_URL, { prefix, workerId: `${prefix}-third` });
    const held = await holder.acquire('pinned', { ttlMs: 10_000 });
    const waiting = waiter.acquire('pinned', { ttlMs: 1000, waitMs: 10_000 });
    // Longer than the waiter's ttl, shorter than its heartbeat period (5 s): it sends nothing meanwhile.
    await elapse(1500);
    await held.release();
    const lease = await waiting;
    // The coordinator has just granted a fresh 1 s lease. The SDK counts it from the send of
    // the acquire (the grant's basis), 1.5 s ago; before the fix the lease was "lost" on arrival...
    expect.soft(lease.signal.aborted).toBe(false);
    expect.soft(String(lease.lostReason)).toBe('undefined');
    await lease.release();
    // ...and release() of a lost lease sends nothing, so the hold sits out its whole lease: under
    // contention every hand-off then waits a full ttl (the slow-down seen in the disconnect test).
    expect(await lockView(coord, 'pinned')).toBeNull();
    expect(await third.tryAcquire('pinned', { ttlMs: 1000 })).not.toBeNull();
    expect(await coord.stop()).toBe(0);
  });

  it('coordinator (no --store): a dropped broker connection, with nothing in flight, does not wipe every hold', async () => {
    const prefix = topology();
    const p = await proxy();
    const coord = await CoordinatorProcess.start(['--transport', viaProxy(`127.0.0.1:${p.port}`), '--prefix', prefix]);
    const a = await client(AMQP_URL, { prefix, workerId: `${prefix}-a` });
    const lease = await a.acquire('pinned', { ttlMs: 30_000 });
    p.cut();
    await coord.line((l) => l.msg === 'reconnected', 'the coordinator to reconnect');
    const c = await client(AMQP_URL, { prefix, workerId: `${prefix}-c` });
    const stolen = await c.tryAcquire('pinned', { ttlMs: 1000 });
    // Before the fix: "lost the broker consumer; dropping state until the next delivery", then a claim
    // from a store that keeps no journal: the hold with 30 s to run is gone, and c gets the lock.
    expect(stolen?.token).toBeUndefined();
    expect((await lockView(coord, 'pinned'))?.holders.map((h) => h.token)).toEqual([lease.token]);
    expect(await coord.stop()).toBe(0);
  });

  it('coordinator (no --store): a reply publish lost with the broker connection does not wipe every hold', async () => {
    const prefix = topology();
    const p = await proxy();
    const coord = await CoordinatorProcess.start(['--transport', viaProxy(`127.0.0.1:${p.port}`), '--prefix', prefix]);
    const a = await client(AMQP_URL, { prefix, workerId: `${prefix}-a` });
    const lease = await a.acquire('pinned', { ttlMs: 30_000 });
    p.holdUpstream(); // the coordinator's publishes (and their confirms) go nowhere
    const b = await client(AMQP_URL, { prefix, workerId: `${prefix}-b` });
    const bAcquire = b.acquire('other', { ttlMs: 5000 }).catch(() => undefined);
    // b's session is opened in the coordinator's memory; its answer is stuck unconfirmed.
    await waitFor(async () => {
      const all = (await (await fetch(`${coord.admin}/v1/locks`)).json()) as { partitions: Record<string, { sessions: number }> };
      return all.partitions['0']?.sessions === 2;
    }, "b's session", { timeoutMs: 10_000 });
    p.cut();
    await coord.line((l) => l.msg === 'reconnected', 'the coordinator to reconnect');
    await bAcquire;
    // a's lease has 30 s to run and was never released: nobody else may hold the lock.
    const c = await client(AMQP_URL, { prefix, workerId: `${prefix}-c` });
    const stolen = await c.tryAcquire('pinned', { ttlMs: 1000 });
    // Before the fix: the failed publish made the coordinator drop its state ("commit failed; dropping
    // state to reload it") and reload from a store that keeps no journal: every hold is gone.
    expect(stolen?.token).toBeUndefined();
    expect((await lockView(coord, 'pinned'))?.holders.map((h) => h.token)).toEqual([lease.token]);
    expect(coord.lines.filter((l) => l.msg === 'commit failed; dropping state to reload it')).toEqual([]);
    expect(await coord.stop()).toBe(0);
  });
});
