import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { connect, type Channel, type ChannelModel } from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deadLetterDestination, forwardExchange, requestDestination, requestExchange } from '@lockq/protocol';
import type { RetryPolicy } from '@lockq/worker-sdk';
import { AmqpClientTransport, type AmqpClientTransportOptions, AmqpTransportError } from '@lockq/worker-sdk/transport';
import { AmqpServerTransport, type AmqpServerTransportOptions, publishRefusal } from '@lockq/coordinator';
import { AMQP_URL, requireRabbit } from './support/brokers.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { elapse, waitFor } from './support/wait-for.js';
import { collect, dec, defineTransportContract, enc, type TransportUnderTest } from './transport-contract.js';

const execFileP = promisify(execFile);
const rabbit = await requireRabbit();

/** Every name this run creates starts with this, so parallel runs never meet. */
const RUN = `lockq-test-${process.pid}-${Date.now().toString(36)}`;
/** Short delays so tests recover quickly. */
const FAST: Partial<RetryPolicy> = { initialMs: 20, maxMs: 250 };

let adminConnection: ChannelModel | undefined;
/** A channel on a connection of the test's own, for inspecting and deleting queues. */
async function adminChannel(): Promise<Channel> {
  adminConnection ??= await connect(AMQP_URL);
  return adminConnection.createChannel();
}
afterAll(async () => {
  await adminConnection?.close();
});

interface AmqpTopology extends TransportUnderTest {
  readonly prefix: string;
  client(workerId: string, options?: Partial<AmqpClientTransportOptions>): AmqpClientTransport;
  server(options?: Partial<AmqpServerTransportOptions>): AmqpServerTransport;
  /** Takes every message off the dead-letter queue. */
  drainDeadLetterQueue(): Promise<{ text: string; headers: Record<string, unknown> }[]>;
}

let topologies = 0;
function amqpTopology(): AmqpTopology {
  const prefix = `${RUN}.${++topologies}`;
  const replyQueues = new Set<string>();
  const deadLetters = deadLetterDestination(prefix);
  const drainDeadLetterQueue = async () => {
    const ch = await adminChannel();
    const out: { text: string; headers: Record<string, unknown> }[] = [];
    for (;;) {
      const msg = await ch.get(deadLetters, { noAck: true });
      if (msg === false) break;
      out.push({ text: dec(msg.content), headers: { ...msg.properties.headers } });
    }
    await ch.close();
    return out;
  };
  return {
    prefix,
    principal: 'guest',
    client(workerId, options = {}) {
      const c = new AmqpClientTransport({
        url: AMQP_URL,
        workerId,
        instance: 'i',
        prefix,
        reconnect: FAST,
        connectionName: `${prefix} client ${workerId}`,
        ...options,
      });
      replyQueues.add(c.replyAddress);
      return c;
    },
    server(options = {}) {
      return new AmqpServerTransport({ url: AMQP_URL, prefix, reconnect: FAST, connectionName: `${prefix} server`, ...options });
    },
    drainDeadLetterQueue,
    async deadLetters() {
      const parked = await drainDeadLetterQueue();
      return parked.map(({ text, headers }) => ({ body: enc(text), code: String(headers['x-lockq-code']) }));
    },
    async cleanup() {
      const ch = await adminChannel();
      for (const p of [0, 1]) await ch.deleteQueue(requestDestination(p, prefix));
      for (const q of replyQueues) await ch.deleteQueue(q);
      await ch.deleteQueue(deadLetters);
      for (const x of [deadLetters, requestExchange(prefix), forwardExchange(prefix)]) await ch.deleteExchange(x);
      await ch.close();
    },
  };
}

/**
 * Has the broker close (CONNECTION_FORCED) the connections whose name contains `marker`. Only
 * this test's connections, unlike `close_all_connections`, so suites running in parallel
 * against the same broker are not disturbed.
 */
async function closeConnections(marker: string): Promise<number> {
  const { stdout } = await execFileP('rabbitmqctl', ['-q', 'list_connections', '--no-table-headers', 'pid', 'client_properties']);
  const pids = stdout
    .split('\n')
    .filter((line) => line.includes(marker))
    .map((line) => line.split('\t')[0]?.trim() ?? '')
    .filter((pid) => pid.startsWith('<'));
  await Promise.all(pids.map((pid) => execFileP('rabbitmqctl', ['-q', 'close_connection', pid, 'lockq transport test'])));
  return pids.length;
}

const rabbitmqctl =
  rabbit &&
  (await execFileP('rabbitmqctl', ['-q', 'list_connections', '--no-table-headers', 'pid']).then(
    () => true,
    () => {
      console.warn('rabbitmqctl cannot reach the broker: the forced-disconnect test is skipped');
      return false;
    },
  ));

/**
 * Publishes like a hand-written worker on a confirm channel of the test's own connection, and
 * says how it ended: `confirmed`, or the error the broker closed the channel with.
 */
async function rawPublish(exchange: string, routingKey: string, text: string, properties: Record<string, unknown> = {}): Promise<unknown> {
  adminConnection ??= await connect(AMQP_URL);
  const ch = await adminConnection.createConfirmChannel();
  let closedWith: unknown = null;
  ch.on('error', (err: unknown) => {
    closedWith = err;
  });
  const confirmed = await new Promise<boolean>((resolve) => {
    ch.publish(exchange, routingKey, Buffer.from(text), properties, (err: unknown) => resolve(err == null));
  });
  if (confirmed) {
    await ch.close();
    return 'confirmed';
  }
  await waitFor(() => closedWith !== null, 'the channel error');
  return closedWith;
}

/** Waits until `op` resolves, trying it again while it rejects (as it does while a transport reconnects). */
async function eventually(op: () => Promise<unknown>, what: string): Promise<void> {
  await waitFor(() => op().then(() => true, () => false), what, { intervalMs: 20 });
}

defineTransportContract('amqp', amqpTopology, { skip: !rabbit });

describe.skipIf(!rabbit)('amqp transport', () => {
  let t: AmqpTopology;
  const made: { close(): Promise<void> }[] = [];
  const track = <T extends { close(): Promise<void> }>(x: T): T => {
    made.push(x);
    return x;
  };
  const setup = () => {
    t = amqpTopology();
    return t;
  };
  afterEach(async () => {
    for (const x of made.splice(0).reverse()) await x.close();
    await t.cleanup();
  });

  it.skipIf(!rabbitmqctl)('reconnects both sides after the broker closes their connections', async () => {
    setup();
    let serverReconnects = 0;
    const s = track(t.server({ onReconnect: () => serverReconnects++ }));
    const c = track(t.client('w1'));
    const replies: string[] = [];
    let reconnects = 0;
    const got = await collect(s, 0, async (batch) => {
      await s.publish(batch.map((text) => ({ to: c.replyAddress, body: enc(`re:${text}`) })));
    });
    await c.open({ onReply: (body) => replies.push(dec(body)), onReconnect: () => reconnects++ });
    await c.send(0, enc('before'));
    await waitFor(() => replies.includes('re:before'), 'the first reply');

    expect(await closeConnections(t.prefix)).toBe(2);
    await waitFor(() => reconnects === 1, 'the client to reconnect');
    await eventually(() => c.send(0, enc('after')), 'a request after the client reconnected');
    await waitFor(() => replies.includes('re:after'), 'a reply after both reconnected');
    expect(got.messages).toContain('after');
    expect(reconnects).toBe(1);
    expect(serverReconnects).toBe(1);
  });

  it('recovers when its queues are deleted under it (consumers cancelled by the broker)', async () => {
    setup();
    const s = track(t.server());
    const c = track(t.client('w1'));
    const replies: string[] = [];
    let reconnects = 0;
    await collect(s, 0, async (batch) => {
      await s.publish(batch.map((text) => ({ to: c.replyAddress, body: enc(`re:${text}`) })));
    });
    await c.open({ onReply: (body) => replies.push(dec(body)), onReconnect: () => reconnects++ });
    await c.send(0, enc('one'));
    await waitFor(() => replies.includes('re:one'), 'the first reply');

    const ch = await adminChannel();
    await ch.deleteQueue(requestDestination(0, t.prefix));
    await ch.deleteQueue(c.replyAddress);
    await ch.close();
    await waitFor(() => reconnects === 1, 'the client to declare its queue again');
    // Refused (returned) until the server has declared its queue again.
    await eventually(() => c.send(0, enc('two')), 'a request once the request queue is back');
    await waitFor(() => replies.includes('re:two'), 'a reply after both recovered');
  });

  it('dead-letters a request that keeps failing once the delivery limit is reached', async () => {
    setup();
    const s = track(t.server({ deliveryLimit: 1 }));
    const seen: string[] = [];
    await s.consume(0, async (batch) => {
      for (const body of batch) {
        seen.push(dec(body));
        if (dec(body) === 'bad') throw new Error('this request always fails');
      }
    });
    const c = track(t.client('w1'));
    await c.open({ onReply: () => {} });
    await c.send(0, enc('bad'));
    let parked: { text: string; headers: Record<string, unknown> }[] = [];
    await waitFor(
      async () => {
        parked = await t.drainDeadLetterQueue();
        return parked.length > 0;
      },
      'the request to be dead-lettered',
      { intervalMs: 20 },
    );
    expect(parked.map((p) => p.text)).toEqual(['bad']);
    expect(parked[0]?.headers['x-first-death-reason']).toBe('delivery_limit');
    await c.send(0, enc('good'));
    await waitFor(() => seen.includes('good'), 'the next request');
    expect(seen.filter((x) => x === 'bad').length).toBeGreaterThanOrEqual(2);
  });

  it('parks a dead letter with its code and partition', async () => {
    setup();
    const s = track(t.server());
    await s.deadLetter(1, enc('junk'), 'MALFORMED');
    const parked = await t.drainDeadLetterQueue();
    expect(parked).toHaveLength(1);
    expect(parked[0]?.text).toBe('junk');
    expect(parked[0]?.headers).toMatchObject({ 'x-lockq-code': 'MALFORMED', 'x-lockq-partition': 1 });
    expect(parked[0]?.headers).not.toHaveProperty('x-lockq-original-bytes');
  });

  it('parks only the first deadLetterBodyBytes of a poison body, with its original length', async () => {
    setup();
    const s = track(t.server({ deadLetterBodyBytes: 16 }));
    const body = enc('0123456789abcdef and the rest of a long poison body');
    await s.deadLetter(0, body, 'MESSAGE_TOO_LARGE');
    const parked = await t.drainDeadLetterQueue();
    expect(parked.map((p) => p.text)).toEqual(['0123456789abcdef']);
    expect(parked[0]?.headers).toMatchObject({ 'x-lockq-code': 'MESSAGE_TOO_LARGE', 'x-lockq-original-bytes': body.byteLength });
  });

  it('keeps the newest deadLetterMaxLength dead letters, dropping the oldest', async () => {
    setup();
    const s = track(t.server({ deadLetterMaxLength: 2 }));
    for (const text of ['d1', 'd2', 'd3', 'd4']) await s.deadLetter(0, enc(text), 'MALFORMED');
    expect((await t.drainDeadLetterQueue()).map((p) => p.text)).toEqual(['d3', 'd4']);
  });

  it('refuses to start on a dead-letter queue declared with other arguments, and says what to do', async () => {
    setup();
    track(t.server()); // declares nothing until used
    const ch = await adminChannel();
    await ch.assertQueue(deadLetterDestination(t.prefix), { durable: true }); // as lockq did before it was bounded
    await ch.close();
    const s = track(t.server());
    await expect(s.consume(0, async () => {})).rejects.toThrow(/dead-letter queue .* exists with other arguments .* delete it/);
  });

  it('checks the dead-letter bounds, naming the bad field', () => {
    setup();
    expect(() => t.server({ deadLetterMaxLength: 0 })).toThrow(/^deadLetterMaxLength: expected an integer from 1 /);
    expect(() => t.server({ deadLetterBodyBytes: -1 })).toThrow(/^deadLetterBodyBytes: expected an integer from 0 /);
  });

  it('resolves stopConsuming only after the batch in progress is done', async () => {
    setup();
    const s = track(t.server());
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let started = false;
    let finished = false;
    await s.consume(0, async () => {
      started = true;
      await held;
      finished = true;
    });
    const c = track(t.client('w1'));
    await c.open({ onReply: () => {} });
    await c.send(0, enc('x'));
    await waitFor(() => started, 'the batch');
    let stopped = false;
    const stopping = s.stopConsuming(0).then(() => {
      stopped = true;
    });
    await elapse(30);
    expect(stopped).toBe(false);
    release();
    await stopping;
    expect(finished).toBe(true);
  });

  it('rejects a request for a partition nobody has declared', async () => {
    setup();
    const c = track(t.client('w1'));
    await c.open({ onReply: () => {} });
    const err = await c.send(0, enc('x')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AmqpTransportError);
    expect(String((err as Error).message)).toMatch(/coordinator/);
    await c.send(0, enc('y')).catch(() => {}); // the link survives a returned message
    await expect(c.send(-1, enc('z'))).rejects.toThrow(RangeError);
  });

  it('declares the request and forward exchanges a worker publishes through, when a worker comes first', async () => {
    setup();
    const c = track(t.client('w1'));
    await c.open({ onReply: () => {} });
    const ch = await adminChannel();
    await ch.checkExchange(requestExchange(t.prefix));
    await ch.checkExchange(forwardExchange(t.prefix));
    await ch.close();
  });

  it('gives the coordinator the user_id of each request: the worker’s principal, or none for a raw publish without one', async () => {
    setup();
    const got = await collect(track(t.server()), 0);
    const c = track(t.client('w1'));
    await c.open({ onReply: () => {} });
    expect(c.principal).toBe('guest');
    await c.send(0, enc('sdk'));
    expect(await rawPublish(requestExchange(t.prefix), '0', 'raw, no user_id')).toBe('confirmed');
    expect(await rawPublish(requestExchange(t.prefix), '0', 'raw, own user_id', { userId: 'guest' })).toBe('confirmed');
    await waitFor(() => got.messages.length >= 3, 'the three requests');
    expect(got.messages).toEqual(['sdk', 'raw, no user_id', 'raw, own user_id']);
    expect(got.principals).toEqual(['guest', undefined, 'guest']);
  });

  it('never lets a request with another user’s user_id reach the coordinator: the broker closes the publishing channel', async () => {
    setup();
    const got = await collect(track(t.server()), 0);
    const err = await rawPublish(requestExchange(t.prefix), '0', 'forged', { userId: 'victim' });
    expect(err).toMatchObject({ code: 406 });
    expect(String((err as Error).message)).toMatch(/user_id property set to 'victim' but authenticated user was 'guest'/);
    const c = track(t.client('w1'));
    await c.open({ onReply: () => {} });
    await c.send(0, enc('after'));
    await waitFor(() => got.messages.includes('after'), 'a request after the forged one');
    expect(got.messages).toEqual(['after']);
  });

  it('refuses to open as a principal the broker will not take as user_id, naming it and the connection’s user', async () => {
    setup();
    const c = track(t.client('w1', { principal: 'someone-else' }));
    expect(c.replyAddress).toBe(`${t.prefix}.replies.someone-else.w1.i`);
    const err = await c.open({ onReply: () => {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AmqpTransportError);
    expect(String((err as Error).message)).toMatch(/principal "someone-else" .* logged in as "guest"/);
    // Checked on a channel of its own: no request was published, so nothing reached a coordinator.
  });

  it('drops a delivery on the reply queue that came through neither the default exchange nor the forwards, counting it', async () => {
    setup();
    const s = track(t.server());
    const c = track(t.client('w1'));
    const got: string[] = [];
    await c.open({ onReply: (body) => got.push(dec(body)) });
    const ch = await adminChannel();
    await ch.bindQueue(c.replyAddress, 'amq.direct', c.replyAddress);
    await ch.close();
    expect(await rawPublish('amq.direct', c.replyAddress, 'stray')).toBe('confirmed');
    await waitFor(() => c.strayReplies === 1, 'the stray delivery');
    await s.publish([{ to: c.replyAddress, body: enc('r1') }]);
    await waitFor(() => got.length >= 1, 'a reply after it');
    expect(got).toEqual(['r1']);
  });

  it('refuses requests once a partition’s queue is over its bound', async () => {
    setup();
    const s = track(t.server({ maxLength: 2 }));
    await s.consume(0, async () => {});
    await s.stopConsuming(0); // the queue exists and nobody drains it
    const c = track(t.client('w1'));
    await c.open({ onReply: () => {} });
    const outcomes: string[] = [];
    for (let i = 0; i < 6; i++) {
      outcomes.push(await c.send(0, enc(`m${i}`)).then(() => 'ok', (e: unknown) => (e as Error).name));
    }
    expect(outcomes.slice(0, 2)).toEqual(['ok', 'ok']);
    expect(outcomes.slice(-2)).toEqual(['AmqpTransportError', 'AmqpTransportError']);
  });

  it('confirms a reply to a queue that does not exist (the broker drops it)', async () => {
    setup();
    const s = track(t.server());
    await expect(s.publish([{ to: `${t.prefix}.replies.nobody.i`, body: enc('lost') }])).resolves.toBeUndefined();
  });

  it('confirms a forward to a reply queue that does not exist (the broker drops it)', async () => {
    setup();
    const c = track(t.client('w1'));
    await c.open({ onReply: () => {} });
    await expect(c.forward(`${t.prefix}.replies.nobody.i`, enc('lost'))).resolves.toBeUndefined();
    // The link survives it: requests still go out.
    const got = await collect(track(t.server()), 0);
    await c.send(0, enc('after'));
    await waitFor(() => got.messages.includes('after'), 'a request after the dropped forward');
  });

  it('refuses to consume a queue declared with other settings', async () => {
    setup();
    const s1 = track(t.server({ deliveryLimit: 5 }));
    await s1.consume(0, async () => {});
    const s2 = track(t.server({ deliveryLimit: 6 }));
    await expect(s2.consume(0, async () => {})).rejects.toThrow(AmqpTransportError);
  });

  it('closes idempotently and refuses work afterwards', async () => {
    setup();
    const c = track(t.client('w1'));
    const s = track(t.server());
    await s.consume(0, async () => {});
    await c.open({ onReply: () => {} });
    await Promise.all([c.close(), c.close()]);
    await Promise.all([s.close(), s.close()]);
    await expect(c.send(0, enc('x'))).rejects.toThrow(AmqpTransportError);
    await expect(c.forward(c.replyAddress, enc('x'))).rejects.toThrow(AmqpTransportError);
    await expect(c.open({ onReply: () => {} })).rejects.toThrow();
    await expect(s.publish([{ to: c.replyAddress, body: enc('x') }])).rejects.toThrow(AmqpTransportError);
    await expect(s.consume(1, async () => {})).rejects.toThrow(AmqpTransportError);
  });

  it('fails open and consume when the broker is unreachable', async () => {
    setup();
    const c = track(t.client('w1', { url: 'amqp://guest:guest@127.0.0.1:1', connectTimeoutMs: 1000 }));
    await expect(c.open({ onReply: () => {} })).rejects.toThrow(AmqpTransportError);
    const s = track(t.server({ url: 'amqp://guest:guest@127.0.0.1:1', connectTimeoutMs: 1000 }));
    await expect(s.consume(0, async () => {})).rejects.toThrow(AmqpTransportError);
  });
  it('publishes the rest of a batch when one reply’s address is over 255 bytes, names that one, and keeps its channel', async () => {
    setup();
    const s = track(t.server());
    const c = track(t.client('w1'));
    const replies: string[] = [];
    await c.open({ onReply: (body) => replies.push(dec(body)) });
    // The request that stopped a partition: a replyTo of 256 characters, one over what AMQP carries.
    const tooLong = 'x'.repeat(256);
    const to = (address: string, text: string) => ({ to: address, body: enc(text) });
    const err = await s.publish([to(c.replyAddress, 'r1'), to(tooLong, 'never'), to(c.replyAddress, 'r2')]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AmqpTransportError);
    expect(err).toMatchObject({ code: 'TRANSPORT_ERROR', refused: true, refusedIndexes: [1] });
    expect(publishRefusal(err)).toEqual({ refused: true, refusedIndexes: [1] });
    await waitFor(() => replies.length >= 2, 'the two replies around the refused one');
    // The channel survived: the next batch, a dead letter and consuming all work.
    await expect(s.publish([to(c.replyAddress, 'r3')])).resolves.toBeUndefined();
    await s.deadLetter(0, enc('junk'), 'MALFORMED');
    const got = await collect(s, 0);
    await c.send(0, enc('after'));
    await waitFor(() => replies.length >= 3 && got.messages.includes('after'), 'a reply and a request after the refusal');
    expect(replies).toEqual(['r1', 'r2', 'r3']);
    expect((await t.drainDeadLetterQueue()).map((d) => d.text)).toEqual(['junk']);
  });

  it('refuses a forward to an address over 255 bytes without losing its link', async () => {
    setup();
    const c = track(t.client('w1'));
    await c.open({ onReply: () => {} });
    const err = await c.forward('x'.repeat(256), enc('never')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AmqpTransportError);
    expect(err).toMatchObject({ refused: true });
    const got = await collect(track(t.server()), 0);
    await c.send(0, enc('after'));
    await waitFor(() => got.messages.includes('after'), 'a request after the refused forward');
  });

  it('gives up reconnecting after reconnect.attempts on both sides, says so once, and fails work from then on', async () => {
    setup();
    const proxy = new TcpProxy({ host: new URL(AMQP_URL).hostname, port: Number(new URL(AMQP_URL).port || 5672) });
    const via = new URL(AMQP_URL);
    via.host = await proxy.start();
    const policy = { initialMs: 10, maxMs: 20, attempts: 2 };
    const serverErrors: Error[] = [];
    const clientErrors: Error[] = [];
    let lostPartitions = 0;
    const s = track(t.server({ url: via.toString(), reconnect: policy, onError: (e) => serverErrors.push(e) }));
    await s.consume(0, async () => {}, () => lostPartitions++);
    const c = track(t.client('w1', { url: via.toString(), reconnect: policy }));
    await c.open({ onReply: () => {}, onError: (e) => clientErrors.push(e) });

    await proxy.close(); // cuts both connections, and nothing listens there any more
    await waitFor(() => serverErrors.length > 0 && clientErrors.length > 0, 'both sides to give up');
    expect(lostPartitions).toBe(1);
    for (const e of [...serverErrors, ...clientErrors]) {
      expect(e).toBeInstanceOf(AmqpTransportError);
      expect(e.message).toMatch(/gave up reconnecting .* after 2 attempts/);
    }
    await expect(s.publish([{ to: c.replyAddress, body: enc('x') }])).rejects.toThrow(/not connected/);
    await expect(s.deadLetter(0, enc('x'), 'MALFORMED')).rejects.toThrow(AmqpTransportError);
    await expect(c.send(0, enc('x'))).rejects.toThrow(/not connected/);
    await elapse(50);
    expect([serverErrors.length, clientErrors.length]).toEqual([1, 1]);
  });
});

/**
 * A worker user with exactly the rights `lockq setup-broker` gives one (docs/security.md §5.4), on
 * a prefix of its own: it may not declare the exchanges, so a worker that comes before any
 * coordinator must be told to start one, and must recover by itself once one has.
 */
describe.skipIf(!rabbitmqctl)('amqp transport as a worker user without configure rights on the exchanges', () => {
  const user = `h2w${process.pid}${Date.now().toString(36)}`;
  const password = `pw-${Date.now().toString(36)}`;
  let t: AmqpTopology;
  let url = '';
  const made: { close(): Promise<void> }[] = [];
  const track = <T extends { close(): Promise<void> }>(x: T): T => {
    made.push(x);
    return x;
  };

  beforeAll(async () => {
    t = amqpTopology();
    const p = t.prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const u = new URL(AMQP_URL);
    u.username = user;
    u.password = password;
    url = u.toString();
    await execFileP('rabbitmqctl', ['-q', 'add_user', user, password]);
    await execFileP('rabbitmqctl', [
      '-q',
      'set_permissions',
      '-p',
      decodeURIComponent(new URL(AMQP_URL).pathname.slice(1)) || '/',
      user,
      `^${p}\\.replies\\.${user}\\.`,
      `^(${p}\\.requests|${p}\\.forwards|${p}\\.replies\\.${user}\\..*)$`,
      `^(${p}\\.forwards|${p}\\.replies\\.${user}\\..*)$`,
    ]);
  }, 30_000);
  afterAll(async () => {
    for (const x of made.splice(0).reverse()) await x.close();
    await t.cleanup();
    await execFileP('rabbitmqctl', ['-q', 'delete_user', user]);
  }, 30_000);

  it('refuses sends until a coordinator declared the exchanges, then sends as its own principal and gets forwards', async () => {
    const replies: [string, string | undefined][] = [];
    const w = track(t.client('w1', { url }));
    expect(w.principal).toBe(user);
    expect(w.replyAddress).toBe(`${t.prefix}.replies.${user}.w1.i`);
    await w.open({ onReply: (body, origin) => replies.push([dec(body), origin]) });
    const early = await w.send(0, enc('early')).catch((e: unknown) => e);
    expect(early).toBeInstanceOf(AmqpTransportError);
    expect(early).toMatchObject({ refused: true });
    expect(String((early as Error).message)).toMatch(/exchanges .*\.requests and .*\.forwards do not exist .* start a coordinator, or run `lockq setup-broker`, first/);
    await expect(w.forward(w.replyAddress, enc('x'))).rejects.toThrow(/start a coordinator/);

    const s = track(t.server()); // as guest, who may declare them
    const got = await collect(s, 0);
    await eventually(() => w.send(0, enc('after')), 'a send once the exchanges exist');
    await waitFor(() => got.messages.includes('after'), 'the request');
    expect(got.principals[got.messages.indexOf('after')]).toBe(user);

    // Its reply queue is bound to the forwards now: a forward from another worker reaches it.
    const other = track(t.client('w2'));
    await other.open({ onReply: () => {} });
    await other.forward(w.replyAddress, enc('forwarded'));
    await s.publish([{ to: w.replyAddress, body: enc('reply') }]);
    await waitFor(() => replies.length >= 2, 'the forward and the reply');
    expect(replies).toEqual([
      ['forwarded', 'forward'],
      ['reply', 'coordinator'],
    ]);
  });

  it('is told it may not send as another principal before it declares a reply queue in that one’s namespace', async () => {
    // Runs after the test above: the exchanges exist. A reply queue under guest's namespace is
    // outside this user's rights (403), so the principal must be checked first to say what is wrong.
    const w = track(t.client('w3', { url, principal: 'guest' }));
    const err = await w.open({ onReply: () => {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AmqpTransportError);
    expect(String((err as Error).message)).toMatch(new RegExp(`principal "guest" .* logged in as "${user}"`));
  });
});

describe('amqp transport options', () => {
  const url = AMQP_URL;
  const client = (o: Partial<AmqpClientTransportOptions>) => new AmqpClientTransport({ url, workerId: 'w', instance: 'i', ...o });
  const server = (o: Partial<AmqpServerTransportOptions>) => new AmqpServerTransport({ url, ...o });

  it('checks the shared connection settings the same way on both sides, naming the bad field', () => {
    const bad: [string, number, RegExp][] = [
      ['heartbeatMs', -1, /^heartbeatMs: expected an integer from 0 /],
      ['heartbeatMs', 1.5, /^heartbeatMs: expected an integer from 0 /],
      ['connectTimeoutMs', 0, /^connectTimeoutMs: expected an integer from 1 /],
      ['prefetch', 0, /^prefetch: expected an integer from 1 to 65535/],
      ['prefetch', 65_536, /^prefetch: expected an integer from 1 to 65535/],
    ];
    for (const [field, value, message] of bad) {
      expect(() => client({ [field]: value }), field).toThrow(message);
      expect(() => server({ [field]: value }), field).toThrow(message);
    }
    for (const make of [client, server]) {
      expect(() => make({ reconnect: { factor: 0.5 } })).toThrow(/^reconnect\.factor: out of range/);
      expect(() => make({ url: 'http://localhost' })).toThrow(/^url: expected amqp:\/\/ or amqps:\/\//);
    }
  });

  it('takes the principal from the URL’s user (guest without one), or from principal', () => {
    expect(client({ url: 'amqp://127.0.0.1' }).principal).toBe('guest');
    expect(client({ url: 'amqp://billing-7:secret@127.0.0.1' }).principal).toBe('billing-7');
    expect(client({ url: 'amqp://billing%5F7:secret@127.0.0.1', prefix: 'p' }).replyAddress).toBe('p.replies.billing_7.w.i');
    expect(client({ url: 'amqp://guest:guest@127.0.0.1', principal: 'cert-user' }).principal).toBe('cert-user');
    expect(() => client({ url: 'amqp://ops%40example.com:x@127.0.0.1' })).toThrow(/^principal: "ops@example.com" \(the URL's user\) is not a principal/);
  });

  it('checks each side’s own settings, naming the bad field', () => {
    expect(() => client({ replyExpiresMs: 0 })).toThrow(/^replyExpiresMs: expected an integer from 1 /);
    expect(() => client({ workerId: '' })).toThrow(RangeError);
    expect(() => server({ deliveryLimit: -1 })).toThrow(/^deliveryLimit: expected an integer from 0 /);
    expect(() => server({ maxLength: 0 })).toThrow(/^maxLength: expected an integer from 1 /);
  });
});
