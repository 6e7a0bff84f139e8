/**
 * The protocol document, tried as a worker author would: examples/raw-amqp-worker.ts is a
 * worker written from docs/protocol.md alone (amqplib, no @lockq import). Here it contends on
 * one lock with SDK workers against a real coordinator process (`lockq coordinator --transport
 * amqp://…`) on the real RabbitMQ, and the request queue arguments that §16.2 lists are
 * re-declared against the broker, which refuses any difference. If the worker needs a fact the
 * document does not give, the fact belongs in the document.
 *
 * Needs `npx tsc -b` first (npm test does it). Every run uses its own topology prefix and
 * deletes its queues afterwards.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as pause } from 'node:timers/promises';
import { deadLetterDestination, forwardExchange, partitionOf, requestDestination, requestExchange } from '@lockq/protocol';
import { LockClient } from '@lockq/worker-sdk';
import { connect } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectRawWorker, partitionOf as rawPartitionOf, type RawWorker } from '../examples/raw-amqp-worker.js';
import { AMQP_URL, requireRabbit } from './support/brokers.js';
import { CoordinatorProcess } from './support/processes.js';
import { amqpRun } from './support/amqp-run.js';
import { waitFor } from './support/wait-for.js';

const rabbit = await requireRabbit();

const PARTITIONS = 4;
const run = amqpRun('raw', { rabbit, partitions: PARTITIONS, end: 'all' });
/** Not in partition 0, so a worker that got partitionOf wrong would be told WRONG_PARTITION. */
const LOCK = 'counter:2';
const raws: RawWorker[] = [];
const sdks: LockClient[] = [];

const topology = run.prefix;

async function raw(prefix: string, id: string): Promise<RawWorker> {
  const w = await connectRawWorker({ url: AMQP_URL, prefix, partitions: PARTITIONS, workerId: `${prefix}-${id}`, sessionTtlMs: 5000 });
  raws.push(w);
  return w;
}

async function sdk(prefix: string, id: string): Promise<LockClient> {
  const c = await LockClient.connect(AMQP_URL, { prefix, partitions: PARTITIONS, workerId: `${prefix}-${id}`, sessionTtlMs: 5000 });
  sdks.push(c);
  return c;
}

/**
 * The fenced counter: every holder enters, stays across a turn of the event loop (so a second
 * holder, were there one, would be caught inside), and leaves; tokens must strictly increase.
 */
class FencedCounter {
  readonly grants: { readonly who: string; readonly token: number }[] = [];
  overlaps = 0;
  #inside: string | null = null;

  async hold(who: string, token: number): Promise<void> {
    if (this.#inside !== null) this.overlaps++;
    this.#inside = who;
    this.grants.push({ who, token });
    await pause(1); // work under the lock
    if (this.#inside !== who) this.overlaps++;
    this.#inside = null;
  }

  expectFenced(): void {
    expect(this.overlaps).toBe(0);
    const tokens = this.grants.map((g) => g.token);
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1]!);
  }
}

/** The rows of §16.2's table whose value is one literal: the arguments every request queue has. */
function documentedRequestQueueArguments(prefix: string): Record<string, string | number | boolean> {
  const doc = readFileSync(new URL('../docs/protocol.md', import.meta.url), 'utf8');
  const section = /^### 16\.2 Request queues$([\s\S]*?)^###? /m.exec(doc)?.[1];
  if (section === undefined) throw new Error('docs/protocol.md has no "### 16.2 Request queues" section');
  const args: Record<string, string | number | boolean> = {};
  for (const [, name, text] of section.matchAll(/^\| `(x-[a-z-]+)` \| `([^`]+)` \|/gm)) {
    const value = text!.replaceAll('<prefix>', prefix);
    args[name!] = value === 'true' ? true : value === 'false' ? false : /^\d+$/.test(value) ? Number(value) : value;
  }
  return args;
}

// Runs before the run's own clean-up (after-all hooks run last registered, first).
afterAll(async () => {
  await Promise.all([...raws.splice(0).map((w) => w.close()), ...sdks.splice(0).map((c) => c.close())]);
});

describe('the raw worker', () => {
  it('computes partitionOf as the protocol package does (§2.2)', () => {
    for (const name of [LOCK, 'a', 'invoice:42', '{order-7}:lines', '{}x', 'x{}{a}', '{{a}}', '{abc', 'pdf-render']) {
      for (const n of [1, 4, 7, 16, 4096]) expect(rawPartitionOf(name, n)).toBe(partitionOf(name, n));
    }
    expect(partitionOf(LOCK, PARTITIONS)).not.toBe(0);
  });
});

describe.skipIf(!rabbit)('a worker written from docs/protocol.md, beside SDK workers, against a coordinator on RabbitMQ', () => {
  it('a request sent before any coordinator declared its queue comes back to the worker instead of vanishing (§16.3)', async () => {
    const w = await raw(topology(), 'early');
    await expect(w.acquire(LOCK, { ttlMs: 5000, waitMs: 0 })).rejects.toThrow(/no queue .*requests\.\d: no coordinator has declared it/);
  });

  describe('with a coordinator', () => {
    let prefix = '';

    beforeAll(async () => {
      prefix = topology();
      await CoordinatorProcess.start(['--transport', AMQP_URL, '--prefix', prefix, '--partitions', String(PARTITIONS)]);
    });

    it('every request queue has exactly the arguments §16.2 lists, and the exchanges the type §16.1 gives (the broker refuses a re-declaration with any other)', async () => {
      const args = documentedRequestQueueArguments(prefix);
      expect(Object.keys(args).sort()).toEqual(['x-dead-letter-exchange', 'x-delivery-limit', 'x-overflow', 'x-queue-type', 'x-single-active-consumer']);
      const conn = await connect(AMQP_URL);
      conn.on('error', () => {}); // a refused declaration closes its channel; the await below reports it
      try {
        for (let p = 0; p < PARTITIONS; p++) {
          const ch = await conn.createChannel();
          ch.on('error', () => {});
          await ch.assertQueue(requestDestination(p, prefix), { durable: true, exclusive: false, autoDelete: false, arguments: args });
          await ch.close();
        }
        const ch = await conn.createChannel();
        await ch.assertExchange(deadLetterDestination(prefix), 'fanout', { durable: true });
        await ch.assertExchange(requestExchange(prefix), 'direct', { durable: true });
        await ch.assertExchange(forwardExchange(prefix), 'direct', { durable: true });
        await ch.close();
      } finally {
        await conn.close();
      }
    });

    it('the raw worker publishes as its user, with its reply queue in that user’s namespace (§16.3, §16.4)', async () => {
      const w = await raw(prefix, 'who');
      expect(w.user).toBe(decodeURIComponent(new URL(AMQP_URL).username) || 'guest');
      expect(w.replyTo.startsWith(`${prefix}.replies.${w.user}.`)).toBe(true);
      // The coordinator answers it (with identity checked, only a request with its own user_id and
      // a reply queue in its namespace is answered).
      const hold = await w.acquire(LOCK, { ttlMs: 5000, waitMs: 0 });
      await w.release(hold);
      expect(w.stats.dropped).toBe(0);
    });

    it('FIFO: raw and SDK waiters are granted in the order they queued, the mutex handed on by forwards both ways', async () => {
      const counter = new FencedCounter();
      const holder = await raw(prefix, 'fifo-h');
      const rawA = await raw(prefix, 'fifo-ra');
      const rawB = await raw(prefix, 'fifo-rb');
      const sdkA = await sdk(prefix, 'fifo-sa');
      const sdkB = await sdk(prefix, 'fifo-sb');
      const first = await holder.acquire(LOCK, { ttlMs: 10_000, waitMs: 0 });

      // Each waiter holds until its own successor is named (the raw worker sees its event; an SDK
      // worker's inspect is answered after the event, on the same reply queue), so every hand-off
      // but the last can be forwarded. The last waiter has no successor.
      const rawTurn = (w: RawWorker, who: string, last: boolean) => async () => {
        let queued = false;
        const hold = await w.acquire(LOCK, { ttlMs: 10_000, waitMs: 10_000, onQueued: () => (queued = true) });
        if (!queued) throw new Error(`${who} was granted without queueing`);
        await counter.hold(who, hold.token);
        if (!last) await waitFor(() => hold.next !== undefined, `${who}'s successor`);
        await w.release(hold);
      };
      const sdkTurn = (c: LockClient, who: string) => async () => {
        const lease = await c.acquire(LOCK, { ttlMs: 10_000, waitMs: 10_000 });
        await counter.hold(who, lease.token);
        await waitFor(async () => (await c.inspect(LOCK)).lock?.holders[0]?.token === lease.token, `${who} seen as the holder`);
        await lease.release();
      };
      const order = [
        ['sdk-a', sdkTurn(sdkA, 'sdk-a')],
        ['raw-a', rawTurn(rawA, 'raw-a', false)],
        ['sdk-b', sdkTurn(sdkB, 'sdk-b')],
        ['raw-b', rawTurn(rawB, 'raw-b', true)],
      ] as const;
      const turns: Promise<void>[] = [];
      for (const [i, [who, turn]] of order.entries()) {
        turns.push(turn());
        await waitFor(async () => (await sdkA.inspect(LOCK)).lock?.waiterCount === i + 1, `${who} queued`);
      }
      await waitFor(() => first.next !== undefined, 'the holder told its successor');
      await holder.release(first);
      await Promise.all(turns);

      expect(counter.grants.map((g) => g.who)).toEqual(['sdk-a', 'raw-a', 'sdk-b', 'raw-b']);
      expect(counter.grants[0]!.token).toBeGreaterThan(first.token);
      counter.expectFenced();
      // raw -> SDK: the raw holders published the forwarded grants.
      expect(holder.stats.forwarded).toBe(1);
      expect(rawA.stats.forwarded).toBe(1);
      // SDK -> raw: a grant forwarded by an SDK holder, then the coordinator's own copy, a duplicate.
      await waitFor(() => rawA.stats.duplicateGrants === 1 && rawB.stats.duplicateGrants === 1, 'the coordinator copies of forwarded grants');
      expect(rawA.stats.givenBack + rawB.stats.givenBack + holder.stats.givenBack).toBe(0);
      expect((await sdkA.inspect(LOCK)).lock ?? null).toBeNull();
    });

    it('3 raw and 3 SDK workers × 25 contended acquisitions of one lock: all complete, no overlap, tokens strictly rising', async () => {
      const counter = new FencedCounter();
      const N = 25;
      const raw3 = await Promise.all([0, 1, 2].map((i) => raw(prefix, `load-r${i}`)));
      const sdk3 = await Promise.all([0, 1, 2].map((i) => sdk(prefix, `load-s${i}`)));
      const loops = [
        ...raw3.map(async (w, i) => {
          for (let k = 0; k < N; k++) {
            const hold = await w.acquire(LOCK, { ttlMs: 5000, waitMs: 10_000 });
            await counter.hold(`raw-${i}`, hold.token);
            await w.release(hold);
          }
        }),
        ...sdk3.map(async (c, i) => {
          for (let k = 0; k < N; k++) {
            const lease = await c.acquire(LOCK, { ttlMs: 5000, waitMs: 10_000 });
            await counter.hold(`sdk-${i}`, lease.token);
            await lease.release();
          }
        }),
      ];
      await Promise.all(loops);

      expect(counter.grants).toHaveLength(6 * N);
      counter.expectFenced();
      for (const who of ['raw-0', 'raw-1', 'raw-2', 'sdk-0', 'sdk-1', 'sdk-2']) {
        expect(counter.grants.filter((g) => g.who === who)).toHaveLength(N);
      }
      // Hand-offs went both ways through the broker, and no grant had to be given back.
      expect(raw3.reduce((n, w) => n + w.stats.forwarded, 0)).toBeGreaterThan(0);
      expect(raw3.reduce((n, w) => n + w.stats.givenBack, 0)).toBe(0);
      expect((await sdk3[0]!.inspect(LOCK)).lock ?? null).toBeNull();
    }, 20_000);
  });
});
