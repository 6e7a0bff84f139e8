import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ClientTransport, ReplyOrigin } from '@lockq/worker-sdk/transport';
import { publishRefusal, type ServerTransport } from '../coordinator/src/transport/index.js';
import { elapse, waitFor } from './support/wait-for.js';

/** A fresh, isolated topology on one adapter: what the contract needs to drive it. */
export interface TransportUnderTest {
  /** The topology prefix of the clients' and servers' names. */
  readonly prefix: string;
  /** The principal the broker vouches for in the clients' requests (RabbitMQ: the connection's user). */
  readonly principal: string;
  /**
   * `false` for a broker that cannot say who sent a request (Kafka): its batches carry no
   * principals, and its servers say so (`vouchesForSenders`). @defaultValue it vouches
   */
  readonly vouchesForSenders?: false;
  /** A client; the same `workerId` always gives the same reply address (same instance). */
  client(workerId: string): ClientTransport;
  /** A server on the same topology; several may exist (a standby, a successor). */
  server(): ServerTransport;
  /** What `deadLetter` parked, oldest first, when the adapter can show it. */
  deadLetters?(): Promise<readonly { readonly body: Uint8Array; readonly code: string }[]>;
  /** Removes the topology. Transports made by the contract are closed before this is called. */
  cleanup(): Promise<void>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
export const enc = (text: string): Uint8Array => encoder.encode(text);
export const dec = (body: Uint8Array): string => decoder.decode(body);

export interface Collected {
  readonly messages: string[];
  readonly batches: string[][];
  /** Beside `messages`: the principal the transport gave for each. */
  readonly principals: (string | undefined)[];
}

/** Consumes `partition` on `server`, recording every batch as text. */
export async function collect(
  server: ServerTransport,
  partition: number,
  each?: (batch: readonly string[]) => Promise<void> | void,
): Promise<Collected> {
  const got: Collected = { messages: [], batches: [], principals: [] };
  await server.consume(partition, async (batch, principals) => {
    const texts = batch.map(dec);
    await each?.(texts);
    got.batches.push(texts);
    got.messages.push(...texts);
    got.principals.push(...texts.map((_, i) => principals?.[i]));
  });
  return got;
}

const range = (n: number, label: (i: number) => string) => Array.from({ length: n }, (_, i) => label(i));

function gate(): { promise: Promise<void>; open: () => void } {
  let open = () => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/**
 * The behaviour every transport adapter must show, run against each of them with a factory that
 * makes a fresh isolated topology per test.
 */
export function defineTransportContract(
  name: string,
  factory: () => TransportUnderTest | Promise<TransportUnderTest>,
  options: { readonly skip?: boolean } = {},
): void {
  describe.skipIf(options.skip === true)(`transport contract: ${name}`, () => {
    let t: TransportUnderTest;
    const made: { close(): Promise<void> }[] = [];
    const client = (workerId: string) => {
      const c = t.client(workerId);
      made.push(c);
      return c;
    };
    const server = () => {
      const s = t.server();
      made.push(s);
      return s;
    };
    const opened = async (workerId: string, onReply: (text: string) => void = () => {}) => {
      const c = client(workerId);
      await c.open({ onReply: (body) => onReply(dec(body)) });
      return c;
    };

    beforeEach(async () => {
      t = await factory();
    });
    afterEach(async () => {
      for (const x of made.splice(0).reverse()) await x.close();
      await t.cleanup();
    });

    it('delivers one client’s requests on partition 0 in send order', async () => {
      const got = await collect(server(), 0);
      const c = await opened('w1');
      const sent = range(50, (i) => `w1:${i}`);
      await Promise.all(sent.map((m) => c.send(0, enc(m))));
      await waitFor(() => got.messages.length >= sent.length, 'all requests');
      expect(got.messages).toEqual(sent);
    });

    it('delivers every client’s requests, each client’s in its own order', async () => {
      const got = await collect(server(), 0);
      const clients = await Promise.all(['a', 'b', 'c'].map((id) => opened(id)));
      const sends: Promise<void>[] = [];
      for (let i = 0; i < 20; i++) {
        for (const [k, c] of clients.entries()) sends.push(c.send(0, enc(`${'abc'[k]}:${i}`)));
      }
      await Promise.all(sends);
      await waitFor(() => got.messages.length >= 60, 'all requests');
      expect(got.messages).toHaveLength(60);
      for (const id of ['a', 'b', 'c']) {
        expect(got.messages.filter((m) => m.startsWith(`${id}:`))).toEqual(range(20, (i) => `${id}:${i}`));
      }
    });

    it('batches a burst, one batch at a time', async () => {
      let active = 0;
      let maxActive = 0;
      const got = await collect(server(), 0, async () => {
        maxActive = Math.max(maxActive, ++active);
        await elapse(5); // a handler that takes a while, so deliveries pile up behind it
        active--;
      });
      const c = await opened('w1');
      const sent = range(200, (i) => `m${i}`);
      await Promise.all(sent.map((m) => c.send(0, enc(m))));
      await waitFor(() => got.messages.length >= sent.length, 'all requests');
      expect(got.messages).toEqual(sent);
      expect(got.batches.length).toBeLessThan(sent.length);
      expect(maxActive).toBe(1);
    });

    it('hands the coordinator, beside each request, the principal it was sent as (none where the broker cannot tell)', async () => {
      const s = server();
      const got = await collect(s, 0);
      const clients = await Promise.all(['pa', 'pb'].map((id) => opened(id)));
      for (const [k, c] of clients.entries()) await Promise.all([0, 1, 2].map((i) => c.send(0, enc(`${k}:${i}`))));
      await waitFor(() => got.messages.length >= 6, 'all requests');
      // A broker that cannot vouch passes no principal at all, and its server says so.
      const vouched = t.vouchesForSenders === false ? undefined : t.principal;
      expect(s.vouchesForSenders).toBe(t.vouchesForSenders);
      expect(got.principals).toEqual(got.messages.map(() => vouched));
      for (const c of clients) expect(c.replyAddress.startsWith(`${t.prefix}.replies.${t.principal}.`)).toBe(true);
    });

    it('says who published each reply: a coordinator, or another client’s forward', async () => {
      const got: [string, ReplyOrigin | undefined][] = [];
      const a = await opened('oa');
      const b = client('ob');
      await b.open({ onReply: (body, origin) => got.push([dec(body), origin]) });
      const s = server();
      await s.publish([{ to: b.replyAddress, body: enc('r1') }]);
      await a.forward(b.replyAddress, enc('f1'));
      await s.publish([{ to: b.replyAddress, body: enc('r2') }]);
      await waitFor(() => got.length >= 3, 'the replies and the forward');
      expect(got).toEqual([
        ['r1', 'coordinator'],
        ['f1', 'forward'],
        ['r2', 'coordinator'],
      ]);
    });

    it('routes replies to the right client, in order', async () => {
      const ra: string[] = [];
      const rb: string[] = [];
      const a = await opened('wa', (x) => ra.push(x));
      const b = await opened('wb', (x) => rb.push(x));
      expect(a.replyAddress).not.toBe(b.replyAddress);
      const s = server();
      const to = (c: ClientTransport, text: string) => ({ to: c.replyAddress, body: enc(text) });
      await s.publish([to(a, 'a1'), to(b, 'b1'), to(a, 'a2'), to(a, 'a3'), to(b, 'b2')]);
      await s.publish([to(a, 'a4')]);
      await s.publish([]);
      await waitFor(() => ra.length >= 4 && rb.length >= 2, 'all replies');
      await elapse(20);
      expect(ra).toEqual(['a1', 'a2', 'a3', 'a4']);
      expect(rb).toEqual(['b1', 'b2']);
    });

    it('publishes the other replies of a batch when one reply’s address cannot be carried, and names only that one', async () => {
      const got: string[] = [];
      const a = await opened('wx', (x) => got.push(x));
      const s = server();
      // Longer than any broker name (AMQP routing keys end at 255 bytes).
      const tooLong = `${a.replyAddress}.${'x'.repeat(300)}`;
      const replies = [
        { to: a.replyAddress, body: enc('r1') },
        { to: tooLong, body: enc('lost') },
        { to: a.replyAddress, body: enc('r2') },
      ];
      const outcome = await s.publish(replies).then(
        () => null,
        (err: unknown) => err,
      );
      // An adapter whose broker carries any address resolves; one that cannot refuses that reply alone.
      if (outcome !== null) expect(publishRefusal(outcome)).toEqual({ refused: true, refusedIndexes: [1] });
      await s.publish([{ to: a.replyAddress, body: enc('r3') }]);
      await waitFor(() => got.length >= 3, 'the replies around the refused one');
      await elapse(20);
      expect(got).toEqual(['r1', 'r2', 'r3']);
    });

    it('forwards bytes from one client to another’s reply address, intact and in order with its replies', async () => {
      const rb: string[] = [];
      const raw: Uint8Array[] = [];
      const a = await opened('fa');
      const b = client('fb');
      await b.open({
        onReply: (body) => {
          raw.push(body);
          rb.push(dec(body));
        },
      });
      const s = server();
      // Every byte value, so nothing on the way treats the body as text.
      const binary = Uint8Array.from({ length: 256 }, (_, i) => i);
      await s.publish([{ to: b.replyAddress, body: enc('r1') }]);
      await a.forward(b.replyAddress, enc('f1'));
      await a.forward(b.replyAddress, binary);
      await s.publish([{ to: b.replyAddress, body: enc('r2') }]);
      await a.forward(b.replyAddress, enc('f2 {"type":"granted"} ünïcødé'));
      await waitFor(() => rb.length >= 5, 'the replies and forwards');
      await elapse(20);
      expect(rb.filter((_, i) => i !== 2)).toEqual(['r1', 'f1', 'r2', 'f2 {"type":"granted"} ünïcødé']);
      expect([...(raw[2] as Uint8Array)]).toEqual([...binary]);
    });

    it('redelivers a rejected batch, in order, ahead of later requests', async () => {
      let failed: string[] | null = null;
      const accepted: string[] = [];
      await server().consume(0, async (batch) => {
        const texts = batch.map(dec);
        if (failed === null) {
          failed = texts;
          throw new Error('rejected on purpose');
        }
        accepted.push(...texts);
      });
      const c = await opened('w1');
      const sent = range(30, (i) => `m${i}`);
      await Promise.all(sent.map((m) => c.send(0, enc(m))));
      await waitFor(() => accepted.length >= sent.length, 'all requests accepted');
      await elapse(30);
      expect(accepted).toEqual(sent);
      expect(failed).not.toBeNull();
      expect(accepted.slice(0, failed!.length)).toEqual(failed);
    });

    it('keeps a dead-lettered request out of further batches', async () => {
      const s = server();
      const seen: string[] = [];
      await s.consume(0, async (batch) => {
        for (const body of batch) {
          const text = dec(body);
          seen.push(text);
          if (text === 'poison') await s.deadLetter(0, body, 'MALFORMED');
        }
      });
      const c = await opened('w1');
      for (const m of ['a', 'poison', 'b']) await c.send(0, enc(m));
      await waitFor(() => seen.includes('b'), 'b');
      await c.send(0, enc('c'));
      await waitFor(() => seen.includes('c'), 'c');
      await elapse(30);
      expect(seen).toEqual(['a', 'poison', 'b', 'c']);
      if (t.deadLetters !== undefined) {
        const parked = await t.deadLetters();
        expect(parked.map((d) => [dec(d.body), d.code])).toEqual([['poison', 'MALFORMED']]);
      }
    });

    it('stops delivering after stopConsuming; the next consumer picks up the rest', async () => {
      const s1 = server();
      const first = await collect(s1, 0);
      const c = await opened('w1');
      const sent = range(15, (i) => `m${i}`);
      await Promise.all(sent.slice(0, 5).map((m) => c.send(0, enc(m))));
      await waitFor(() => first.messages.length >= 5, 'the first five');
      await s1.stopConsuming(0);
      await s1.stopConsuming(0); // idempotent

      await Promise.all(sent.slice(5, 10).map((m) => c.send(0, enc(m))));
      await elapse(50);
      expect(first.messages).toEqual(sent.slice(0, 5));

      const s2 = server();
      const second = await collect(s2, 0);
      await waitFor(() => second.messages.length >= 5, 'the next five on a new server');
      await s2.stopConsuming(0);

      await Promise.all(sent.slice(10).map((m) => c.send(0, enc(m))));
      const third = await collect(s1, 0); // the first server, consuming again
      await waitFor(() => third.messages.length >= 5, 'the last five on the first server again');
      await elapse(20);
      expect(second.messages).toEqual(sent.slice(5, 10));
      expect(third.messages).toEqual(sent.slice(10));
      expect(first.messages).toEqual(sent.slice(0, 5));
    });

    it('finishes a batch in progress across stopConsuming and does not redeliver it', async () => {
      const s = server();
      const hold = gate();
      const done: string[] = [];
      let started = false;
      await s.consume(0, async (batch) => {
        started = true;
        await hold.promise;
        done.push(...batch.map(dec));
      });
      const c = await opened('w1');
      await c.send(0, enc('x'));
      await waitFor(() => started, 'the batch to start');
      const stopping = s.stopConsuming(0);
      hold.open();
      await stopping;
      await waitFor(() => done.length >= 1, 'the batch to finish');
      expect(done).toEqual(['x']);

      const next = await collect(server(), 0);
      await c.send(0, enc('y'));
      await waitFor(() => next.messages.length >= 1, 'y');
      await elapse(20);
      expect(next.messages).toEqual(['y']);
    });

    it('makes a second server on a partition a standby that takes over when the first closes', async () => {
      const active = server();
      const standby = server();
      const a = await collect(active, 0);
      const b = await collect(standby, 0);
      const c = await opened('w1');
      const sent = range(10, (i) => `m${i}`);
      await Promise.all(sent.slice(0, 5).map((m) => c.send(0, enc(m))));
      await waitFor(() => a.messages.length >= 5, 'the active server');
      expect(b.messages).toEqual([]);

      await active.close();
      await Promise.all(sent.slice(5).map((m) => c.send(0, enc(m))));
      await waitFor(() => b.messages.length >= 5, 'the standby');
      await elapse(20);
      expect(a.messages).toEqual(sent.slice(0, 5));
      expect(b.messages).toEqual(sent.slice(5));
    });

    it('refuses a second consumer of one partition on one transport', async () => {
      const s = server();
      await s.consume(0, async () => {});
      await expect(s.consume(0, async () => {})).rejects.toThrow();
    });

    it('keeps replies for a client that closes and reopens with the same identity', async () => {
      const a = await opened('wr');
      const address = a.replyAddress;
      await a.close();
      const s = server();
      await s.publish(['r1', 'r2', 'r3'].map((text) => ({ to: address, body: enc(text) })));
      const replies: string[] = [];
      const again = client('wr');
      expect(again.replyAddress).toBe(address);
      await again.open({ onReply: (body) => replies.push(dec(body)) });
      await waitFor(() => replies.length >= 3, 'the buffered replies');
      await elapse(20);
      expect(replies).toEqual(['r1', 'r2', 'r3']);
    });

    it('keeps partitions independent', async () => {
      const s = server();
      const hold = gate();
      let gated = false;
      const p0: string[] = [];
      const p1: string[] = [];
      await s.consume(0, async (batch) => {
        if (gated) await hold.promise;
        p0.push(...batch.map(dec));
      });
      await s.consume(1, async (batch) => {
        p1.push(...batch.map(dec));
      });
      const c = await opened('w1');
      // Both consumers settled first: on Kafka a member joining the group rebalances it, and a
      // rebalance waits for every batch in progress (docs/kafka.md, Limits), the held one too.
      await Promise.all([c.send(0, enc('warm')), c.send(1, enc('warm'))]);
      await waitFor(() => p0.length === 1 && p1.length === 1, 'both partitions to flow');
      p0.length = 0;
      p1.length = 0;
      gated = true;
      const sends: Promise<void>[] = [];
      for (let i = 0; i < 10; i++) sends.push(c.send(0, enc(`p0:${i}`)), c.send(1, enc(`p1:${i}`)));
      await Promise.all(sends);
      // Partition 1 flows while partition 0's handler is stuck.
      await waitFor(() => p1.length >= 10, 'partition 1');
      expect(p0).toEqual([]);
      hold.open();
      await waitFor(() => p0.length >= 10, 'partition 0');
      expect(p0).toEqual(range(10, (i) => `p0:${i}`));
      expect(p1).toEqual(range(10, (i) => `p1:${i}`));
    });
  });
}
