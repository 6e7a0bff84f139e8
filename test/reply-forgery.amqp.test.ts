/**
 * Forged replies over the real RabbitMQ (docs/security.md §2, §6.2), against a `lockq coordinator`
 * process (needs `npx tsc -b` first) and SDK workers, all as the `guest` user. A forger that reads
 * every request (its own queue bound to the request exchange, as guest may) learns a waiting
 * acquire's id and its worker's reply queue, and publishes into that queue through the forwards
 * exchange, as a holder forwards a hand-off:
 * (a) a `granted` without a `mac`, with a made-up one, or with one under its own session key is
 *     not believed: the acquire resolves only with the real grant, after the holder let go, and a
 *     fenced counter sees no overlap;
 * (b) replies with `epoch: 2^53-1` change nothing: the worker's next acquires and releases succeed.
 * Under this guest layout the default exchange is open to everyone, so a reply injected there
 * would pass as the coordinator's: that is what `lockq setup-broker`'s permissions close (§5.4).
 */
import { forwardExchange, grantMac, type OpenedReply, requestExchange } from '@lockq/protocol';
import { LockClient } from '@lockq/worker-sdk';
import { connect } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { AMQP_URL, requireRabbit } from './support/brokers.js';
import { FencedResource } from './support/fenced-resource.js';
import { CoordinatorProcess } from './support/processes.js';
import { amqpRun } from './support/amqp-run.js';
import { RAW_REQUEST, rawReplyQueue } from './support/raw.js';
import { elapse, waitFor } from './support/wait-for.js';

const rabbit = await requireRabbit();

const run = amqpRun('forgery', { rabbit, extraQueues: (prefix) => [rawReplyQueue(prefix, 'forger')] });

const NONE_DROPPED = { unreadable: 0, 'unknown-partition': 0, mismatch: 0, 'forward-not-grant': 0, 'forward-mac': 0, 'forward-epoch': 0 };

describe.skipIf(!rabbit)('forged replies through the forwards exchange over RabbitMQ (security §6.2)', () => {
  it('a forged grant for a waiting acquire (no mac, a made-up one, one under the forger’s own key) and replies with epoch 2^53-1 are dropped; the real hand-off still comes and the worker keeps working', async () => {
    const prefix = run.prefix();
    await CoordinatorProcess.start(['--transport', AMQP_URL, '--prefix', prefix]);
    const options = { prefix, requestTimeoutMs: 10_000 };
    const h = await LockClient.connect(AMQP_URL, { ...options, workerId: `${prefix}-h` });
    const w = await LockClient.connect(AMQP_URL, { ...options, workerId: `${prefix}-w` });
    run.clients.push(h, w);
    const conn = await connect(AMQP_URL);
    try {
      const ch = await conn.createConfirmChannel();
      // The forger reads every request of partition 0: a copy comes to its own queue.
      const spy = await ch.assertQueue('', { exclusive: true });
      await ch.bindQueue(spy.queue, requestExchange(prefix), '0');
      const seen: Record<string, unknown>[] = [];
      await ch.consume(spy.queue, (msg) => msg !== null && seen.push(JSON.parse(msg.content.toString('utf8'))), { noAck: true });
      // And has a session of its own, so a session key of its own.
      const replyTo = rawReplyQueue(prefix, 'forger');
      await ch.assertQueue(replyTo, { exclusive: true });
      const answers: Record<string, unknown>[] = [];
      await ch.consume(replyTo, (msg) => msg !== null && answers.push(JSON.parse(msg.content.toString('utf8'))), { noAck: true });
      const open = { v: 1, id: 'f-open', worker: 'forger', session: 'forger.0', replyTo, op: 'open', sessionTtlMs: 30_000, partitions: 1 };
      ch.publish(requestExchange(prefix), '0', Buffer.from(JSON.stringify(open)), RAW_REQUEST);
      await ch.waitForConfirms();
      const opened = (await waitFor(() => answers.find((r) => r.re === 'f-open'), 'the forger’s session')) as unknown as OpenedReply;
      expect(opened.key).toMatch(/^[A-Za-z0-9_-]{22}$/);
      const forgerKey = Buffer.from(opened.key as string, 'base64url');
      const epoch = opened.epoch;

      const fenced = new FencedResource();
      let holding: string | null = null;
      const held = await h.acquire('hot', { ttlMs: 30_000 });
      holding = 'h';
      expect(fenced.write('hot', held.token, 1, 'h')).toBe(true);
      const overlaps: string[] = [];
      const waiting = w.acquire('hot', { ttlMs: 30_000, waitMs: 30_000 }).then((lease) => {
        if (holding !== null) overlaps.push(`w granted while ${holding} holds`);
        holding = 'w';
        return lease;
      });
      const acquire = await waitFor(() => seen.find((r) => r.op === 'acquire' && r.worker === `${prefix}-w`), 'w’s acquire, read off the request exchange');
      await waitFor(() => held.successor?.next !== undefined, 'the holder to be told w is next');
      const reserved = held.successor?.next?.grant.token as number;

      const forward = async (body: Record<string, unknown>): Promise<void> => {
        ch.publish(forwardExchange(prefix), acquire.replyTo as string, Buffer.from(JSON.stringify(body)), { persistent: false });
        await ch.waitForConfirms();
      };
      const fields = { type: 'granted', re: acquire.id as string, lock: 'hot', token: reserved, ttlMs: 30_000, basis: acquire.id as string };
      // (a) grants w would take for its own, but for the MAC.
      await forward({ v: 1, epoch, partition: 0, ...fields, token: 2 ** 53 - 1 });
      await forward({ v: 1, epoch, partition: 0, ...fields, mac: 'A'.repeat(22) });
      await forward({ v: 1, epoch, partition: 0, ...fields, mac: grantMac(forgerKey, 0, epoch, fields) });
      // (b) a far-future term, as an answer and as a grant signed for that term under the forger's key.
      const top = Number.MAX_SAFE_INTEGER;
      await forward({ v: 1, epoch: top, partition: 0, type: 'ok', re: acquire.id });
      await forward({ v: 1, epoch: top, partition: 0, ...fields, mac: grantMac(forgerKey, 0, top, fields) });
      await waitFor(
        () => w.droppedReplies['forward-mac'] === 4 && w.droppedReplies['forward-not-grant'] === 1,
        () => `the forgeries dropped: ${JSON.stringify(w.droppedReplies)}`,
        { timeoutMs: 10_000 },
      );
      await elapse(50); // nothing else happens: w does not hold, h still does
      expect(holding).toBe('h');
      const view = await h.inspect('hot');
      expect(view.lock?.holders.map((x) => [x.worker, x.token])).toEqual([[`${prefix}-h`, held.token]]);
      expect(view.lock?.waiters.map((x) => x.worker)).toEqual([`${prefix}-w`]);
      expect(fenced.write('hot', held.token, 2, 'h')).toBe(true);
      expect(held.signal.aborted).toBe(false);

      // The real hand-off: h lets go, then w gets the reserved token (forwarded, signed, or the coordinator's).
      holding = null;
      await held.release();
      const lease = await waiting;
      expect(lease.token).toBe(reserved);
      expect(overlaps).toEqual([]);
      expect(fenced.write('hot', lease.token, 3, 'w')).toBe(true);
      expect(fenced.write('hot', held.token, 4, 'h')).toBe(false); // the old holder is fenced off
      expect(fenced.violations()).toEqual([]);

      // w keeps working on its partition: the forged term was never adopted.
      await lease.release();
      holding = null;
      for (const name of ['hot', 'cold']) {
        const again = await w.acquire(name, { ttlMs: 10_000, waitMs: 5000 });
        expect(again.token).toBeGreaterThan(reserved);
        await again.release();
      }
      expect(w.droppedReplies).toEqual({ ...NONE_DROPPED, 'forward-mac': 4, 'forward-not-grant': 1 });
      expect(h.droppedReplies).toEqual(NONE_DROPPED);
    } finally {
      await conn.close().catch(() => {});
    }
  }, 60_000);
});
