/**
 * Issue 9's forgeries (docs/security.md §2), sent as raw bytes by one worker user against another,
 * on the layout `lockq setup-broker` makes (§5.4) and a `lockq coordinator` that requires
 * identity (§5.1, §5.3). Needs `npx tsc -b` and a working `rabbitmqctl`.
 *
 * W1 and W2 are broker users of their own; W1 runs the SDK and holds locks. W2 knows everything a
 * forger could learn: W1's worker id, its session id (`<workerId>.<instance>.<partition>`, the
 * instance read off W1's reply queue's name) and its tokens. It publishes, with amqplib, what the
 * issue found to work against `guest`: release, extend, heartbeat (`settled: 2^53-1`), close and
 * acquire naming W1's session; an `open` of W1's session id with a 100 ms ttl; answers redirected
 * into W1's namespace; requests without `user_id`; and direct use of the queues. Each is refused,
 * W1 keeps what it holds, and the partition keeps answering everyone.
 */
import { deadLetterDestination, replyNamespace, requestDestination, requestExchange } from '@lockq/protocol';
import { type Lease, LockClient } from '@lockq/worker-sdk';
import { type Channel, type ChannelModel, type ConfirmChannel, connect } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireCommand, requireRabbit } from './support/brokers.js';
import { BROKER_HOST, closeCode, dropVhostAndUsers, rabbitmqctl, setUpUsers } from './support/broker-users.js';
import { CoordinatorProcess, killAll } from './support/processes.js';
import { elapse, waitFor } from './support/wait-for.js';

const rabbit = (await requireRabbit()) && (await requireCommand('rabbitmqctl', ['-q', 'list_vhosts'], 'the identity suites'));

const run = `id${Date.now().toString(36)}${process.pid.toString(36)}`;
const vhost = `${run}-vhost`;
/** The default prefix: the vhost keeps this run apart. */
const prefix = 'lockq';
const C = `${run}-coord`;
const W1 = `${run}-w1`;
const W2 = `${run}-w2`;
/** W1's SDK worker id, which the forger puts in its messages too. */
const W1_WORKER = 'app-1';
/** Long enough that nothing a test waits for could be the lease running out. */
const TTL_MS = 60_000;
/** How long an answer that must not come is given to come anyway. */
const QUIET_MS = 750;

type Reply = Record<string, unknown>;

const clients: LockClient[] = [];
const connections: ChannelModel[] = [];

async function sdk(url: string | undefined, workerId: string): Promise<LockClient> {
  if (url === undefined) throw new Error('setup-broker printed no URL for that user');
  const c = await LockClient.connect(url, { workerId, partitions: 1, requestTimeoutMs: 5000 });
  clients.push(c);
  return c;
}

async function amqp(url: string | undefined): Promise<ChannelModel> {
  if (url === undefined) throw new Error('setup-broker printed no URL for that user');
  const conn = await connect(url);
  conn.on('error', () => undefined);
  connections.push(conn);
  return conn;
}

/** Every message on `queue`, consumed with `channel`, kept in arrival order. */
async function collect(channel: Channel, queue: string): Promise<Reply[]> {
  const got: Reply[] = [];
  await channel.assertQueue(queue, { exclusive: true });
  await channel.consume(queue, (m) => m !== null && got.push(JSON.parse(m.content.toString('utf8')) as Reply), { noAck: true });
  return got;
}

describe.skipIf(!rabbit)('a worker user cannot act as another (issue 9, security §2, §5)', () => {
  let urls: Map<string, string>;
  let coordinator: CoordinatorProcess;
  let w1: LockClient;
  let w2: LockClient;
  /** W1's session on partition 0, as the forger learns it. */
  let w1Session = '';
  let w1ReplyQueue = '';
  /** W2's raw channel and what comes back to its own reply queue. */
  let forger: ConfirmChannel;
  let forgerConn: ChannelModel;
  const forgerQueue = `${replyNamespace(W2, prefix)}forger`;
  let toForger: Reply[] = [];
  let n = 0;

  /**
   * Publishes a request as W2 naming W1's worker and session: with W2's `user_id` unless `userId`
   * says otherwise (`null`: none), wanting answers at W2's own queue unless `replyTo` says otherwise.
   */
  async function forge(fields: Reply, { userId = W2, replyTo = forgerQueue }: { userId?: string | null; replyTo?: string } = {}): Promise<string> {
    const id = `forged-${++n}`;
    const body = { v: 1, id, worker: W1_WORKER, session: w1Session, replyTo, ...fields };
    forger.publish(requestExchange(prefix), '0', Buffer.from(JSON.stringify(body), 'utf8'), userId === null ? { persistent: true } : { persistent: true, userId });
    await forger.waitForConfirms();
    return id;
  }

  const answer = (id: string) => waitFor(() => toForger.find((r) => r.re === id), `the answer to ${id}`, { timeoutMs: 10_000 });

  async function holders(lock: string): Promise<{ worker: string; token: number }[]> {
    const res = await fetch(`${coordinator.admin}/v1/locks/${encodeURIComponent(lock)}`);
    if (res.status === 404) return [];
    const view = (await res.json()) as { holders: { worker: string; token: number }[] };
    return view.holders.map((h) => ({ worker: h.worker, token: h.token }));
  }

  /** W1 holds `lock` with `lease`, and the coordinator says so. */
  async function expectHeld(lock: string, lease: Lease): Promise<void> {
    expect(await holders(lock)).toEqual([{ worker: W1_WORKER, token: lease.token }]);
    expect(lease.expired).toBe(false);
    expect(lease.lostReason).toBeUndefined();
  }

  /** W1's next acquire is granted at once: its session's watermark and liveness are its own. */
  async function expectPromptAcquire(lock: string): Promise<void> {
    const started = performance.now();
    const lease = await w1.acquire(lock, { ttlMs: TTL_MS, waitMs: 0 });
    expect(performance.now() - started).toBeLessThan(2000);
    await lease.release();
  }

  async function forbiddenCount(reason: string): Promise<number> {
    const m = new RegExp(`^lockq_forbidden_total\\{[^}]*reason="${reason}"[^}]*\\} (\\S+)$`, 'm').exec(await coordinator.metrics());
    return m === null ? 0 : Number(m[1]);
  }

  /** The dead letters parked so far, taken off the queue (as the coordinator user, who may read it). */
  const deadLetters: { body: string; code: unknown }[] = [];
  async function takeDeadLetters(): Promise<typeof deadLetters> {
    const ch = await (await amqp(urls.get(C))).createChannel();
    for (;;) {
      const m = await ch.get(deadLetterDestination(prefix), { noAck: true });
      if (m === false) break;
      deadLetters.push({ body: m.content.toString('utf8'), code: m.properties.headers?.['x-lockq-code'] });
    }
    await ch.close();
    return deadLetters;
  }

  beforeAll(async () => {
    urls = await setUpUsers(['--vhost', vhost, '--host', BROKER_HOST, '--coordinator', C, '--worker', W1, '--worker', W2]);
    const coordinatorUrl = urls.get(C);
    if (coordinatorUrl === undefined) throw new Error('no coordinator URL');
    coordinator = await CoordinatorProcess.start(['--transport', coordinatorUrl, '--partitions', '1', '--prefix', prefix]);
    w1 = await sdk(urls.get(W1), W1_WORKER);
    w2 = await sdk(urls.get(W2), 'app-2');
    await (await w1.acquire('warm-up', { ttlMs: TTL_MS })).release(); // opens W1's session on partition 0

    const queues = (await rabbitmqctl('list_queues', '-p', vhost, '--no-table-headers', 'name')).split('\n').map((l) => l.trim());
    w1ReplyQueue = queues.find((q) => q.startsWith(`${replyNamespace(W1, prefix)}${W1_WORKER}.`)) ?? '';
    const instance = w1ReplyQueue.slice(w1ReplyQueue.lastIndexOf('.') + 1);
    expect(instance).toMatch(/^[0-9a-f]{8}$/);
    w1Session = `${W1_WORKER}.${instance}.0`;

    forgerConn = await amqp(urls.get(W2));
    forger = await forgerConn.createConfirmChannel();
    toForger = await collect(forger, forgerQueue);
  });

  afterAll(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
    await Promise.all(connections.splice(0).map((c) => c.close().catch(() => undefined)));
    await killAll();
    if (rabbit) await dropVhostAndUsers(vhost, [C, W1, W2]);
  });

  it('release, extend, heartbeat (settled 2^53-1), close and acquire naming W1’s session and token: each FORBIDDEN to W2, and W1 keeps its hold', async () => {
    const held = await w1.acquire('job', { ttlMs: TTL_MS });
    const ids = [
      await forge({ op: 'release', lock: 'job', token: held.token }),
      await forge({ op: 'extend', lock: 'job', token: held.token, ttlMs: 10 }),
      await forge({ op: 'heartbeat', settled: Number.MAX_SAFE_INTEGER }),
      await forge({ op: 'close' }),
      await forge({ op: 'acquire', lock: 'job', ttlMs: TTL_MS, waitMs: 0 }),
    ];
    for (const id of ids) expect(await answer(id)).toMatchObject({ type: 'error', code: 'FORBIDDEN' });

    await expectHeld('job', held);
    // A raised watermark would have made W1's next requests stale duplicates (timed out, 8 s in the issue).
    await expectPromptAcquire('after-forgeries');
    await held.extend(TTL_MS);
    await held.release();
    expect(await holders('job')).toEqual([]);
  });

  it('an open of W1’s session id with sessionTtlMs 100 opens a session of W2’s own; W1’s holds outlive it by far', async () => {
    const held = await w1.acquire('job-open', { ttlMs: TTL_MS });
    const id = await forge({ op: 'open', sessionTtlMs: 100, partitions: 1 });
    expect(await answer(id)).toMatchObject({ type: 'opened', resumed: false });
    await elapse(10 * 100); // ten of the forged session's ttls

    await expectHeld('job-open', held);
    // Nor did W1's events go to the forger.
    expect(toForger.filter((r) => r.type === 'lost' || r.type === 'granted')).toEqual([]);
    await held.release();
    await expectPromptAcquire('after-open');
  });

  it('a request wanting its answers in W1’s namespace is answered nowhere and dead-lettered FORBIDDEN', async () => {
    const w1Raw = await (await amqp(urls.get(W1))).createChannel();
    const trap = `${replyNamespace(W1, prefix)}trap`;
    const trapped = await collect(w1Raw, trap);
    const before = await forbiddenCount('reply-address');
    const held = await w1.acquire('job-redirect', { ttlMs: TTL_MS });

    const id = await forge({ op: 'inspect' }, { replyTo: trap });
    const sent = await forge({ op: 'release', lock: 'job-redirect', token: held.token }, { replyTo: w1ReplyQueue });
    await waitFor(async () => (await forbiddenCount('reply-address')) >= before + 2, 'both counted as reply-address refusals');
    await elapse(QUIET_MS);
    expect(trapped).toEqual([]);
    expect(toForger.filter((r) => r.re === id || r.re === sent)).toEqual([]);
    const parked = await waitFor(async () => {
      const all = await takeDeadLetters();
      const mine = all.filter((d) => d.body.includes(`"${id}"`) || d.body.includes(`"${sent}"`));
      return mine.length === 2 && mine;
    }, 'both dead letters');
    for (const d of parked) expect(d.code).toBe('FORBIDDEN');
    await expectHeld('job-redirect', held);
    await held.release();
  });

  it('a request without user_id is dead-lettered FORBIDDEN, unanswered, and changes nothing', async () => {
    const held = await w1.acquire('job-anonymous', { ttlMs: TTL_MS });
    const before = await forbiddenCount('principal');
    const id = await forge({ op: 'release', lock: 'job-anonymous', token: held.token }, { userId: null });
    await waitFor(async () => (await forbiddenCount('principal')) >= before + 1, 'a principal refusal counted');
    const parked = await waitFor(async () => (await takeDeadLetters()).find((d) => d.body.includes(`"${id}"`)), 'the dead letter');
    expect(parked.code).toBe('FORBIDDEN');
    await elapse(QUIET_MS);
    expect(toForger.filter((r) => r.re === id)).toEqual([]);
    await expectHeld('job-anonymous', held);
    await held.release();
  });

  it('W2 can neither consume the request queue nor write into or read W1’s reply queue (403), and the forged bytes reach nobody', async () => {
    expect(await closeCode(forgerConn, (ch) => ch.consume(requestDestination(0, prefix), () => undefined))).toBe(403);
    const grant = { v: 1, type: 'granted', re: 'x', epoch: Number.MAX_SAFE_INTEGER, partition: 0, lock: 'job', token: Number.MAX_SAFE_INTEGER };
    expect(await closeCode(forgerConn, (ch) => ch.publish('', w1ReplyQueue, Buffer.from(JSON.stringify(grant))))).toBe(403);
    expect(await closeCode(forgerConn, (ch) => ch.consume(w1ReplyQueue, () => undefined))).toBe(403);
    expect(await closeCode(forgerConn, (ch) => ch.get(w1ReplyQueue))).toBe(403);
    // Nor W1's identity: the broker closes the channel of a user_id that is not the connection's.
    expect(await closeCode(forgerConn, (ch) => ch.publish(requestExchange(prefix), '0', Buffer.from('{}'), { userId: W1 }))).toBe(406);
    await expectPromptAcquire('after-queues');
  });

  it('the partition still answers everyone: /readyz 200, W2 and W1 contend on one lock through the SDK, first come first served', async () => {
    expect((await fetch(`${coordinator.admin}/readyz`)).status).toBe(200);
    const first = await w2.acquire('shared', { ttlMs: TTL_MS });
    const second = w1.acquire('shared', { ttlMs: TTL_MS, waitMs: 10_000 });
    await waitFor(async () => {
      const res = await fetch(`${coordinator.admin}/v1/locks/shared`);
      return res.ok && ((await res.json()) as { waiterCount: number }).waiterCount === 1;
    }, 'W1 waiting');
    await first.release();
    const lease = await second;
    expect(lease.token).toBeGreaterThan(first.token);
    await lease.release();
    expect(coordinator.lines.filter((l) => (l.level ?? 0) >= 50)).toEqual([]);
  });
});
