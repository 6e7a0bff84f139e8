/**
 * End to end on a real Kafka broker with separate processes, as lockq runs in production: a
 * coordinator started from the built CLI (`lockq coordinator --transport kafka://… --identity
 * off`) and workers that are processes of their own (test/fixtures/src/worker.ts), writing
 * through fencing tokens to an HTTP resource in this process (test/support/fenced-resource.ts).
 * The hand-off test drives two in-process clients over Kafka, so it can hold a release back and
 * see the successor granted by the holder's forward alone.
 *
 * Needs `npx tsc -b` first and a broker (`npm run kafka`). Every test has its own prefix; the
 * run's topics and consumer groups are deleted at the end.
 */
import { existsSync } from 'node:fs';
import { decodeReply, type GrantedReply, type LockView } from '@lockq/protocol';
import { LockClient } from '@lockq/worker-sdk';
import { type ClientTransport, KafkaClientTransport } from '@lockq/worker-sdk/transport';
import kafkajs from 'kafkajs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { WorkerConfig, WorkerEvent } from './fixtures/src/worker-config.js';
import { KAFKA_BROKERS, requireKafka } from './support/brokers.js';
import { FencedResource } from './support/fenced-resource.js';
import { CLI, CoordinatorProcess, killAll, WORKER, WorkerProcess } from './support/processes.js';
import { elapse, waitFor } from './support/wait-for.js';

const available = await requireKafka();

/** Short group timings (the test broker allows sessions down to 1 s), for both sides. */
const TIMINGS = 'sessionTimeoutMs=3000&heartbeatIntervalMs=200&maxWaitMs=100';
const URL = `kafka://${KAFKA_BROKERS}?${TIMINGS}`;
/** Every topic and group this run makes starts with this. */
const RUN = `ek${Date.now().toString(36)}${process.pid.toString(36)}`;
const prefixes: string[] = [];

function topology(): string {
  const prefix = `${RUN}.${prefixes.length + 1}`;
  prefixes.push(prefix);
  return prefix;
}

function coordinator(prefix: string): Promise<CoordinatorProcess> {
  return CoordinatorProcess.start(['--transport', URL, '--identity', 'off', '--prefix', prefix]);
}

let resource: FencedResource;

function worker(prefix: string, id: string, config: Omit<WorkerConfig, 'url' | 'workerId' | 'prefix' | 'resource'>): WorkerProcess {
  return new WorkerProcess({ url: URL, prefix, workerId: `${prefix}-${id}`, resource: resource.url, ...config });
}

const acceptedWrites = (key: string) => resource.history.filter((w) => w.key === key && w.accepted);
const rejectedWrites = (key: string) => resource.history.filter((w) => w.key === key && !w.accepted);

/** Nothing lost, nothing duplicated, no stale write, one hold per increment with rising tokens. */
function expectExactCounter(key: string, done: readonly WorkerEvent[]): void {
  const accepted = acceptedWrites(key);
  expect(resource.read(key)).toBe(accepted.length);
  expect(done.reduce((n, d) => n + (d.accepted ?? 0), 0)).toBe(accepted.length);
  expect(done.reduce((n, d) => n + (d.rejected ?? 0), 0)).toBe(rejectedWrites(key).length);
  expect(resource.violations()).toEqual([]);
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
  if (!available || prefixes.length === 0) return;
  const admin = new kafkajs.Kafka({ brokers: KAFKA_BROKERS.split(','), clientId: 'lockq-test', logLevel: kafkajs.logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const ours = (name: string) => name.startsWith(`${RUN}.`);
    const topics = (await admin.listTopics()).filter(ours);
    if (topics.length > 0) await admin.deleteTopics({ topics });
    const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter(ours);
    if (groups.length > 0) await admin.deleteGroups(groups).catch(() => undefined);
  } finally {
    await admin.disconnect();
  }
});

describe.skipIf(!available)('end to end on Kafka: a coordinator process and worker processes', () => {
  it('4 worker processes × 40 increments of one fenced counter: no increment lost or duplicated, tokens rising', async () => {
    const prefix = topology();
    const coord = await coordinator(prefix);
    const N = 40;
    const workers = [0, 1, 2, 3].map((i) => worker(prefix, `inc${i}`, { script: 'increment', lock: 'counter', count: N, ttlMs: 5000 }));
    const done = await Promise.all(workers.map((w) => w.event('done', 90_000)));

    for (const d of done) expect(d).toMatchObject({ accepted: N, rejected: 0, failed: 0 });
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0, 0, 0]);
    expect(resource.read('counter')).toBe(4 * N);
    expect(acceptedWrites('counter')).toHaveLength(4 * N);
    expectExactCounter('counter', done);
    expect(new Set(acceptedWrites('counter').map((w) => w.worker)).size).toBe(4);
    const metrics = await coord.metrics();
    expect(metrics).toContain(`lockq_grants_total{partition="0"} ${4 * N}`);
    expect(metrics).toMatch(/^lockq_holds\{partition="0"\} 0$/m);
    expect(await coord.stop()).toBe(0);
  }, 120_000);

  it('grants in FIFO order: waiters queued one after another are granted by position, tokens rising', async () => {
    const prefix = topology();
    const coord = await coordinator(prefix);
    const gate = worker(prefix, 'gate', { script: 'gate', lock: 'fifo', ttlMs: 30_000 });
    const gateGrant = await gate.event('granted', 30_000);
    const K = 5;
    const waiters: WorkerProcess[] = [];
    for (let i = 0; i < K; i++) {
      const w = worker(prefix, `q${i}`, { script: 'queue', lock: 'fifo', ttlMs: 30_000 });
      waiters.push(w);
      expect((await w.event('queued', 30_000)).position).toBe(i + 1);
    }
    const view = (await (await fetch(`${coord.admin}/v1/locks/fifo`)).json()) as LockView;
    expect(view.holders.map((h) => [h.worker, h.token])).toEqual([[gate.config.workerId, gateGrant.token]]);
    expect(view.waiters.map((w) => [w.worker, w.position])).toEqual(waiters.map((w, i) => [w.config.workerId, i + 1]));

    gate.say('release');
    await gate.event('released');
    const grants = await Promise.all(waiters.map((w) => w.event('granted', 30_000)));
    let previous = gateGrant;
    for (const g of grants) {
      expect(g.token).toBeGreaterThan(previous.token!);
      expect(g.at).toBeGreaterThanOrEqual(previous.at);
      previous = g;
    }
    expect(await Promise.all([gate, ...waiters].map((w) => w.exited))).toEqual(Array(K + 1).fill(0));
    expect(await coord.stop()).toBe(0);
  }, 120_000);
});

describe.skipIf(!available)('a take-over on Kafka: the group moves a dead coordinator’s partition to another', () => {
  it('a coordinator killed with SIGKILL: the standby takes the partition over after the session timeout; the counter stays exact, tokens keep rising', async () => {
    const prefix = topology();
    const first = await coordinator(prefix);
    await first.line((l) => l.msg === 'partition claimed', 'the first coordinator to hold the partition');
    const second = await coordinator(prefix); // joins the group; the partition stays with the first
    const count = 30;
    const workers = [0, 1, 2].map((i) => worker(prefix, `t${i}`, { script: 'increment', lock: 'counter', count, ttlMs: 5000, thinkMs: 10 }));
    await waitFor(() => acceptedWrites('counter').length >= 10, 'the run to get going', { timeoutMs: 30_000 });
    expect(second.lines.some((l) => l.msg === 'partition claimed')).toBe(false);

    const killedAt = Date.now();
    first.signal('SIGKILL');
    expect(await first.exited).toBe('SIGKILL');
    const claimed = await second.line((l) => l.msg === 'partition claimed', 'the second coordinator to claim the partition', 30_000);
    const done = await Promise.all(workers.map((w) => w.event('done', 90_000)));
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0, 0]);

    // A hold taken over may end in a refused (stale) write or a failed acquire, never a lost or doubled increment.
    for (const e of workers.flatMap((w) => w.events('error'))) expect(e).toMatchObject({ retriable: true });
    for (const d of done) expect((d.accepted ?? 0) + (d.rejected ?? 0) + (d.failed ?? 0)).toBe(count);
    expectExactCounter('counter', done);
    // The partition waited about one session timeout (3 s here) for the group to drop the dead
    // member; the new owner's holds then wrote on.
    const claimedAt = Number(claimed.time);
    const after = acceptedWrites('counter').filter((w) => w.at > claimedAt);
    expect(after.length).toBeGreaterThan(0);
    const firstAfter = Math.min(...after.map((w) => w.at));
    console.info(`take-over: claimed ${claimedAt - killedAt} ms after SIGKILL, first write ${firstAfter - killedAt} ms after`);
    expect(claimedAt - killedAt).toBeGreaterThanOrEqual(2000);
    expect(claimedAt - killedAt).toBeLessThan(3000 + 5000);
    expect(await second.stop()).toBe(0);
  }, 120_000);
});

describe.skipIf(!available)('the hand-off forward on Kafka', () => {
  const clients: LockClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  });

  /** A Kafka client transport that records forwards and can hold its releases back. */
  function recording(prefix: string, workerId: string) {
    const inner = new KafkaClientTransport({ url: URL, prefix, workerId, instance: 'i' });
    const forwarded: GrantedReply[] = [];
    const granted: GrantedReply[] = [];
    const held: (() => void)[] = [];
    let holdReleases = false;
    const transport: ClientTransport = {
      get replyAddress() {
        return inner.replyAddress;
      },
      open: (handlers) =>
        inner.open({
          ...handlers,
          onReply: (body, origin) => {
            const reply = decodeReply(body);
            if (reply?.type === 'granted') granted.push(reply as GrantedReply);
            handlers.onReply(body, origin);
          },
        }),
      send: async (partition, body) => {
        const op = (JSON.parse(Buffer.from(body).toString('utf8')) as { op: string }).op;
        if (holdReleases && op === 'release') await new Promise<void>((resolve) => held.push(resolve));
        return inner.send(partition, body);
      },
      forward: (address, body) => {
        forwarded.push(decodeReply(body) as GrantedReply);
        return inner.forward(address, body);
      },
      close: () => inner.close(),
    };
    return {
      transport,
      forwarded,
      granted,
      held,
      hold: (on: boolean) => {
        holdReleases = on;
      },
    };
  }

  it('a contended mutex moves holder → successor through the holder’s forward, before the coordinator sees the release', async () => {
    const prefix = topology();
    const coord = await coordinator(prefix);
    const h = recording(prefix, `${prefix}-h`);
    const w = recording(prefix, `${prefix}-w`);
    const connect = async (r: ReturnType<typeof recording>, workerId: string) => {
      const c = await LockClient.connect(URL, { prefix, workerId, transport: r.transport, localHandOff: false, requestTimeoutMs: 10_000 });
      clients.push(c);
      return c;
    };
    const holder = await connect(h, `${prefix}-h`);
    const waiter = await connect(w, `${prefix}-w`);
    const lease = await holder.acquire('hot', { ttlMs: 30_000 });
    const waiting = waiter.acquire('hot', { ttlMs: 30_000, waitMs: 20_000 });
    await waitFor(() => lease.successor?.next !== undefined, 'the holder to be told who is next', { timeoutMs: 10_000 });
    const named = lease.successor?.next;
    expect(named?.to).toBe(w.transport.replyAddress);

    // The release waits on its way to the broker: only the forwarded copy can grant the waiter now.
    h.hold(true);
    const releasing = lease.release();
    const next = await waiting;
    expect(h.held).toHaveLength(1);
    expect(h.forwarded.map((g) => g.token)).toEqual([named?.grant.token]);
    expect(next.token).toBe(named?.grant.token);
    expect(next.token).toBeGreaterThan(lease.token);
    // The coordinator still has the holder: the grant came through Kafka from the holder.
    const before = (await (await fetch(`${coord.admin}/v1/locks/hot`)).json()) as LockView;
    expect(before.holders.map((x) => x.token)).toEqual([lease.token]);

    h.hold(false);
    for (const go of h.held.splice(0)) go();
    await releasing;
    // The coordinator's own grant for the same request follows, with the same token.
    await waitFor(() => w.granted.filter((g) => g.token === next.token).length >= 2, "the coordinator's own grant", { timeoutMs: 10_000 });
    await elapse(50);
    const after = (await (await fetch(`${coord.admin}/v1/locks/hot`)).json()) as LockView;
    expect(after.holders.map((x) => [x.worker, x.token])).toEqual([[`${prefix}-w`, next.token]]);
    expect(next.expired).toBe(false);
    await next.release();
    // Closed while the coordinator still answers their sessions' close.
    await Promise.all(clients.splice(0).map((c) => c.close()));
    expect(await coord.stop()).toBe(0);
  }, 60_000);
});
