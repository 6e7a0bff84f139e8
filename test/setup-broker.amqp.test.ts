/**
 * `lockq setup-broker` against the real RabbitMQ (docs/security.md §5.4; needs `npx tsc -b` and a
 * working `rabbitmqctl`): a fresh vhost and users per run, created by the built CLI, then every
 * permission of the layout tried with amqplib as the users it made. Worker W1 publishes requests
 * and owns its reply queues, and nothing else: not the request queues, not W2's reply queue, not
 * the default exchange, not W2's name in `user_id`. The coordinator does its job. Re-runs keep
 * passwords unless asked; `--dry-run` and a taken `--password-file` change nothing.
 */
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requestDestination, requestExchange, forwardExchange, deadLetterDestination, replyNamespace } from '@lockq/protocol';
import { type ChannelModel, connect, type ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AMQP_URL, requireCommand, requireRabbit } from './support/brokers.js';
import {
  BROKER_HOST,
  closeCode,
  dropVhostAndUsers,
  printedUrls,
  rabbitmqctl,
  rabbitmqctlWithInput,
  setupBroker,
  setUpUsers,
  vhostsAndUsers,
} from './support/broker-users.js';
import { waitFor } from './support/wait-for.js';

const rabbit = (await requireRabbit()) && (await requireCommand('rabbitmqctl', ['-q', 'list_vhosts'], 'the setup-broker suites'));

const run = `sb${Date.now().toString(36)}${process.pid.toString(36)}`;
const vhost = `${run}-vhost`;
/** A prefix with a dot of its own, so a pattern that did not escape it would be caught. */
const prefix = 'lq.t';
const C = `${run}-c`;
const W1 = `${run}-w1`;
const W2 = `${run}-w2`;
/** Users made by the re-run and password-file tests. */
const W3 = `${run}-w3`;
const W4 = `${run}-w4`;
/** Users that must never be made (refused or dry runs); deleted too, should a test fail. */
const W5 = `${run}-w5`;
const W6 = `${run}-w6`;
const D = `${run}-dry-w`;
const layout = ['--vhost', vhost, '--prefix', prefix, '--host', BROKER_HOST, '--coordinator', C, '--worker', W1, '--worker', W2];

const connections: ChannelModel[] = [];
async function as(url: string | undefined): Promise<ChannelModel> {
  if (url === undefined) throw new Error('setup-broker printed no URL for that user');
  const conn = await connect(url);
  conn.on('error', () => undefined);
  connections.push(conn);
  return conn;
}

/** The quorum request queue as `lockq coordinator` declares it (only its permissions matter here). */
const REQUEST_QUEUE = {
  durable: true,
  arguments: { 'x-queue-type': 'quorum', 'x-single-active-consumer': true, 'x-dead-letter-exchange': deadLetterDestination(prefix) },
};

describe.skipIf(!rabbit)('lockq setup-broker on the real RabbitMQ (security §5.4)', () => {
  let urls: Map<string, string>;
  let coordinator: ChannelModel;
  let w1: ChannelModel;
  let w2: ChannelModel;
  const w1Queue = `${replyNamespace(W1, prefix)}app.a1`;
  const w2Queue = `${replyNamespace(W2, prefix)}app.b2`;
  /** What the coordinator's consumer of request queue 0 received. */
  const requests: ConsumeMessage[] = [];
  /** What W1's reply queue received. */
  const w1Got: ConsumeMessage[] = [];

  beforeAll(async () => {
    urls = await setUpUsers(layout);
    expect([...urls.keys()].sort()).toEqual([C, W1, W2].sort());
    coordinator = await as(urls.get(C));
    w1 = await as(urls.get(W1));
    w2 = await as(urls.get(W2));
    // Each side sets up what it owns, with the rights it was given (asserted in the tests below).
    const c = await coordinator.createChannel();
    await c.assertQueue(requestDestination(0, prefix), REQUEST_QUEUE);
    await c.bindQueue(requestDestination(0, prefix), requestExchange(prefix), '0');
    await c.consume(requestDestination(0, prefix), (m) => m !== null && requests.push(m), { noAck: true });
    const own1 = await w1.createChannel();
    await own1.assertQueue(w1Queue, { exclusive: true });
    await own1.bindQueue(w1Queue, forwardExchange(prefix), w1Queue);
    await own1.consume(w1Queue, (m) => m !== null && w1Got.push(m), { noAck: true });
    const own2 = await w2.createChannel();
    await own2.assertQueue(w2Queue, { exclusive: false, autoDelete: true });
  });

  afterAll(async () => {
    await Promise.all(connections.splice(0).map((c) => c.close().catch(() => undefined)));
    if (rabbit) await dropVhostAndUsers(vhost, [C, W1, W2, W3, W4, W5, W6, D]);
  });

  it('creates the vhost, the users with no tags, and the exchanges; guest has no access to the vhost', async () => {
    const users = JSON.parse(await rabbitmqctl('list_users', '--formatter', 'json')) as { user: string; tags: string[] }[];
    for (const name of [C, W1, W2]) expect(users.find((u) => u.user === name)?.tags).toEqual([]);
    const exchanges = JSON.parse(await rabbitmqctl('list_exchanges', '-p', vhost, 'name', 'type', 'durable', '--formatter', 'json')) as {
      name: string;
      type: string;
      durable: boolean;
    }[];
    expect(exchanges).toEqual(
      expect.arrayContaining([
        { name: requestExchange(prefix), type: 'direct', durable: true },
        { name: forwardExchange(prefix), type: 'direct', durable: true },
        { name: deadLetterDestination(prefix), type: 'fanout', durable: true },
      ]),
    );
    const guestUrl = new URL(AMQP_URL);
    guestUrl.pathname = `/${encodeURIComponent(vhost)}`;
    const permissions = JSON.parse(await rabbitmqctl('list_permissions', '-p', vhost, '--formatter', 'json')) as { user: string }[];
    expect(permissions.map((p) => p.user).sort()).toEqual([C, W1, W2].sort());
    // The broker closes the connection (530 NOT_ALLOWED) before it opens.
    await expect(connect(guestUrl.toString())).rejects.toThrow(/ConnectionClose/);
  });

  it('worker W1 publishes requests through the request exchange, with its own user_id, and they reach the coordinator', async () => {
    const body = Buffer.from('{"hello":"from W1"}');
    expect(await closeCode(w1, (ch) => ch.publish(requestExchange(prefix), '0', body, { userId: W1, persistent: true }))).toBe('open');
    const got = await waitFor(() => requests.find((m) => m.content.equals(body)), 'the request at the coordinator');
    expect(got.properties.userId).toBe(W1);
    expect(got.fields.exchange).toBe(requestExchange(prefix));
  });

  it('worker W1 cannot consume, declare or purge a request queue (403): no take-over of a partition', async () => {
    expect(await closeCode(w1, (ch) => ch.consume(requestDestination(0, prefix), () => undefined))).toBe(403);
    expect(await closeCode(w1, (ch) => ch.get(requestDestination(0, prefix)))).toBe(403);
    expect(await closeCode(w1, (ch) => ch.assertQueue(requestDestination(1, prefix), REQUEST_QUEUE))).toBe(403);
    expect(await closeCode(w1, (ch) => ch.purgeQueue(requestDestination(0, prefix)))).toBe(403);
    // Nor bind a queue of its own to the request exchange to read copies of every request.
    expect(await closeCode(w1, (ch) => ch.bindQueue(w1Queue, requestExchange(prefix), '0'))).toBe(403);
  });

  it('worker W1 cannot consume, declare, bind or write into W2’s reply queue (403)', async () => {
    expect(await closeCode(w1, (ch) => ch.consume(w2Queue, () => undefined))).toBe(403);
    expect(await closeCode(w1, (ch) => ch.get(w2Queue))).toBe(403);
    expect(await closeCode(w1, (ch) => ch.assertQueue(`${replyNamespace(W2, prefix)}squat.x`, { exclusive: true }))).toBe(403);
    expect(await closeCode(w1, (ch) => ch.bindQueue(w2Queue, forwardExchange(prefix), 'anything'))).toBe(403);
    expect(await closeCode(w1, (ch) => ch.publish('', w2Queue, Buffer.from('{"forged":true}')))).toBe(403);
  });

  it('worker W1 cannot publish to the default exchange at all (403), not even into its own reply queue', async () => {
    expect(await closeCode(w1, (ch) => ch.publish('', requestDestination(0, prefix), Buffer.from('{}')))).toBe(403);
    expect(await closeCode(w1, (ch) => ch.publish('', w1Queue, Buffer.from('{}')))).toBe(403);
  });

  it('worker W1 publishing with user_id W2 has its channel closed (406) and the message never arrives', async () => {
    const body = Buffer.from('{"hello":"as W2"}');
    expect(await closeCode(w1, (ch) => ch.publish(requestExchange(prefix), '0', body, { userId: W2, persistent: true }))).toBe(406);
    // A later request from W1 arrives; the forged one before it never does.
    const later = Buffer.from('{"hello":"after the forgery"}');
    expect(await closeCode(w1, (ch) => ch.publish(requestExchange(prefix), '0', later, { userId: W1 }))).toBe('open');
    await waitFor(() => requests.some((m) => m.content.equals(later)), 'the later request');
    expect(requests.some((m) => m.content.equals(body))).toBe(false);
  });

  it('worker W1 declares, binds and consumes reply queues in its own namespace only; the prefix is matched literally', async () => {
    expect(await closeCode(w1, (ch) => ch.assertQueue(`${replyNamespace(W1, prefix)}other.x`, { exclusive: true }))).toBe('open');
    expect(await closeCode(w1, (ch) => ch.bindQueue(w1Queue, forwardExchange(prefix), w1Queue))).toBe('open');
    // Outside it, nothing: another worker name that W1's name starts, and the dots of the prefix.
    expect(await closeCode(w1, (ch) => ch.assertQueue(`${replyNamespace(`${W1}x`, prefix)}q`, { exclusive: true }))).toBe(403);
    expect(await closeCode(w1, (ch) => ch.assertQueue(`lqXt.replies.${W1}.q`, { exclusive: true }))).toBe(403);
    expect(await closeCode(w1, (ch) => ch.assertQueue(`${run}-anything`, { exclusive: true }))).toBe(403);
    // Nor declare the shared exchanges (a worker checks them; setup-broker or a coordinator makes them).
    expect(await closeCode(w1, (ch) => ch.assertExchange(requestExchange(prefix), 'direct', { durable: true }))).toBe(403);
    expect(await closeCode(w1, (ch) => ch.checkExchange(requestExchange(prefix)))).toBe('open');
  });

  it('worker W2 forwards a grant to W1 through the forward exchange; W1 sees where it came from', async () => {
    const body = Buffer.from('{"forwarded":true}');
    expect(await closeCode(w2, (ch) => ch.publish(forwardExchange(prefix), w1Queue, body))).toBe('open');
    const got = await waitFor(() => w1Got.find((m) => m.content.equals(body)), 'the forward at W1');
    expect(got.fields.exchange).toBe(forwardExchange(prefix));
  });

  it('the coordinator declares and consumes request queues, publishes replies through the default exchange and dead-letters', async () => {
    // Consuming and binding were done in beforeAll with the coordinator's rights; more of the same:
    expect(await closeCode(coordinator, (ch) => ch.assertQueue(requestDestination(7, prefix), REQUEST_QUEUE))).toBe('open');
    expect(await closeCode(coordinator, (ch) => ch.bindQueue(requestDestination(7, prefix), requestExchange(prefix), '7'))).toBe('open');
    expect(await closeCode(coordinator, (ch) => ch.assertExchange(forwardExchange(prefix), 'direct', { durable: true }))).toBe('open');
    const dl = deadLetterDestination(prefix);
    expect(
      await closeCode(coordinator, async (ch) => {
        await ch.assertExchange(dl, 'fanout', { durable: true });
        await ch.assertQueue(dl, { durable: true, arguments: { 'x-max-length': 10, 'x-overflow': 'drop-head' } });
        await ch.bindQueue(dl, dl, '');
        ch.publish(dl, requestDestination(0, prefix), Buffer.from('poison'), { persistent: true });
      }),
    ).toBe('open');
    const reply = Buffer.from('{"type":"granted"}');
    expect(await closeCode(coordinator, (ch) => ch.publish('', w1Queue, reply))).toBe('open');
    const got = await waitFor(() => w1Got.find((m) => m.content.equals(reply)), 'the reply at W1');
    expect(got.fields.exchange).toBe('');
    // But it reads no worker's replies, and declares nothing in their namespaces.
    expect(await closeCode(coordinator, (ch) => ch.get(w2Queue))).toBe(403);
    expect(await closeCode(coordinator, (ch) => ch.assertQueue(`${replyNamespace(W1, prefix)}c.x`, { exclusive: true }))).toBe(403);
  });

  it('a re-run says what exists and keeps every password; --reset-passwords replaces one', async () => {
    const again = await setupBroker([...layout, '--worker', W3]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(new RegExp(`worker ${W1}: exists \\(no tags\\); password kept`));
    expect(again.stdout).toMatch(new RegExp(`worker ${W3}: created`));
    expect([...printedUrls(again.stdout).keys()]).toEqual([W3]);
    // W1's old password still works; W3's new one does too.
    await (await as(urls.get(W1))).close();
    await (await as(printedUrls(again.stdout).get(W3))).close();

    const reset = await setupBroker(['--vhost', vhost, '--prefix', prefix, '--host', BROKER_HOST, '--coordinator', C, '--reset-passwords']);
    expect(reset.code).toBe(0);
    expect(reset.stdout).toMatch(new RegExp(`coordinator ${C}: exists \\(no tags\\); password and tags replaced`));
    const fresh = printedUrls(reset.stdout).get(C);
    expect(fresh).not.toBe(urls.get(C));
    await (await as(fresh)).close();
    await expect(connect(urls.get(C) ?? '')).rejects.toThrow(/ACCESS_REFUSED|403|auth/i);
    urls.set(C, fresh ?? '');
  });

  it('--password-file writes "user password" lines with mode 0600, and never overwrites a file', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'lockq-sb-')), 'passwords');
    const first = await setupBroker(['--vhost', vhost, '--prefix', prefix, '--coordinator', C, '--worker', W4, '--password-file', file]);
    expect(first.code).toBe(0);
    expect(first.stdout).not.toMatch(/amqp:\/\//);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(1); // C existed: only W4 got a password
    const [user, password] = (lines[0] ?? '').split(' ');
    expect(user).toBe(W4);
    const u = new URL(AMQP_URL);
    await (await as(`amqp://${W4}:${password}@${u.host}/${encodeURIComponent(vhost)}`)).close();

    const taken = await setupBroker(['--vhost', vhost, '--prefix', prefix, '--coordinator', C, '--worker', W5, '--password-file', file]);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toMatch(/exists; setup-broker never overwrites one\. Nothing was changed/);
    expect((await vhostsAndUsers()).users).not.toContain(W5);
  });

  it('--dry-run prints the plan and changes nothing', async () => {
    const otherVhost = `${run}-dry`;
    const dry = await setupBroker(['--vhost', otherVhost, '--coordinator', C, '--worker', D, '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain(`vhost ${otherVhost}: would be created`);
    expect(dry.stdout).toContain(`worker ${D}: would be created`);
    expect(dry.stdout).toContain(`coordinator ${C}: exists (no tags); password kept`);
    expect(dry.stdout).toContain(`^(lockq\\.requests|lockq\\.forwards|lockq\\.replies\\.${D}\\..*)$`);
    expect(dry.stdout).not.toMatch(/amqp:\/\//);
    const after = await vhostsAndUsers();
    expect(after.vhosts).not.toContain(otherVhost);
    expect(after.users).not.toContain(D);
    // C's password was not touched either.
    await (await as(urls.get(C))).close();
  });

  it('refuses guest, a name with a dot, and a taken exchange of another type, changing nothing', async () => {
    const guest = await setupBroker(['--vhost', vhost, '--coordinator', 'guest']);
    expect(guest.code).toBe(2);
    expect(guest.stderr).toMatch(/never touches guest/);
    const dotted = await setupBroker(['--vhost', vhost, '--coordinator', C, '--worker', 'a.b']);
    expect(dotted.code).toBe(2);
    // An exchange of lockq's name but another type (the import alone would skip it silently).
    const fanout = { name: 'other.requests', vhost, type: 'fanout', durable: true, auto_delete: false, internal: false, arguments: {} };
    await rabbitmqctlWithInput(JSON.stringify({ exchanges: [fanout] }), 'import_definitions');
    const taken = await setupBroker(['--vhost', vhost, '--prefix', 'other', '--coordinator', C, '--worker', W6]);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toContain('exchange other.requests exists on vhost');
    expect(taken.stderr).toContain('as fanout, durable; lockq needs a durable direct exchange');
    expect((await vhostsAndUsers()).users).not.toContain(W6);
  });
});
