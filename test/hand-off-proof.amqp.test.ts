/**
 * The successor forgery of docs/security.md §2 with raw bytes over the real RabbitMQ, against a
 * `lockq coordinator` process (needs `npx tsc -b` first): a worker queued behind an SDK worker's
 * mutex, named next, sends `extend` and `release` from its own session with every token from the
 * holder's to the partition's latest. Before §6.1 the reserved one took the mutex from the live
 * holder, who was not told; now each is NOT_HOLDER, and the holder keeps the lock.
 */
import { requestDestination } from '@lockq/protocol';
import { LockClient } from '@lockq/worker-sdk';
import { connect } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { AMQP_URL, requireRabbit } from './support/brokers.js';
import { CoordinatorProcess } from './support/processes.js';
import { amqpRun } from './support/amqp-run.js';
import { RAW_REQUEST, rawReplyQueue } from './support/raw.js';
import { waitFor } from './support/wait-for.js';

const rabbit = await requireRabbit();

const run = amqpRun('handoff', { rabbit, extraQueues: (prefix) => [rawReplyQueue(prefix, 'forger')] });

describe.skipIf(!rabbit)('the head waiter cannot take a live holder’s mutex over RabbitMQ (security §2, §6.1)', () => {
  it('raw extend and release with every token from the holder’s to the latest, from the named waiter’s own session: all NOT_HOLDER, the holder keeps the lock', async () => {
    const prefix = run.prefix();
    const replyTo = rawReplyQueue(prefix, 'forger');
    const coord = await CoordinatorProcess.start(['--transport', AMQP_URL, '--prefix', prefix]);
    const conn = await connect(AMQP_URL);
    try {
      const holder = await LockClient.connect(AMQP_URL, { prefix, workerId: `${prefix}-h`, requestTimeoutMs: 5000 });
      run.clients.push(holder);
      const held = await holder.acquire('hot', { ttlMs: 30_000 });

      const ch = await conn.createConfirmChannel();
      await ch.assertQueue(replyTo, { exclusive: true, autoDelete: true });
      /** The first answer to each request id; `all` keeps every reply (an acquire has two). */
      const replies = new Map<string, Record<string, unknown>>();
      const all: Record<string, unknown>[] = [];
      await ch.consume(
        replyTo,
        (msg) => {
          if (msg === null) return;
          const r = JSON.parse(msg.content.toString('utf8')) as Record<string, unknown>;
          all.push(r);
          if (!replies.has(r.re as string)) replies.set(r.re as string, r);
        },
        { noAck: true },
      );
      const envelope = { v: 1, worker: `${prefix}-f`, session: `${prefix}-f.0`, replyTo };
      const send = async (fields: Record<string, unknown>): Promise<void> => {
        ch.sendToQueue(requestDestination(0, prefix), Buffer.from(JSON.stringify({ ...envelope, ...fields }), 'utf8'), RAW_REQUEST);
        await ch.waitForConfirms();
      };
      const answered = (ids: readonly string[], what: string) => waitFor(() => ids.every((id) => replies.has(id)), what, { timeoutMs: 10_000 });

      await send({ id: 'f-open', op: 'open', sessionTtlMs: 30_000, partitions: 1 });
      await send({ id: 'f-acq', op: 'acquire', lock: 'hot', ttlMs: 30_000, waitMs: 60_000 });
      await answered(['f-open', 'f-acq'], 'the forger’s open and acquire');
      expect(replies.get('f-acq')).toMatchObject({ type: 'queued', position: 1 });
      await waitFor(() => held.successor?.next !== undefined, 'the holder to be told the forger is next');
      const lastToken = await coord.metric('lockq_last_token');
      expect(lastToken).toBe(held.successor?.next?.grant.token); // the reserved token is the latest

      const forged: string[] = [];
      for (let token = held.token; token <= lastToken; token++) {
        forged.push(`f-ext-${token}`, `f-rel-${token}`);
        await send({ id: `f-ext-${token}`, op: 'extend', lock: 'hot', token, ttlMs: 30_000 });
        await send({ id: `f-rel-${token}`, op: 'release', lock: 'hot', token });
      }
      // The new `handoff` field, as a hostile or buggy client may send it: the wire form `true`
      // (only the coordinator's checked form), a malformed proof, and a well-formed made-up one.
      const reserved = lastToken;
      await send({ id: 'f-true', op: 'extend', lock: 'hot', token: reserved, ttlMs: 30_000, handoff: true });
      await send({ id: 'f-short', op: 'release', lock: 'hot', token: reserved, handoff: 'short' });
      await send({ id: 'f-made-up', op: 'release', lock: 'hot', token: reserved, handoff: 'A'.repeat(22) });
      // And the other new wire field: WRONG_PARTITION names the coordinator's partition count.
      await send({ id: 'f-parts', op: 'open', sessionTtlMs: 30_000, partitions: 4 });
      // And the changed view: a raw inspect shows no other session's ids and no lastToken.
      await send({ id: 'f-inspect', op: 'inspect', lock: 'hot' });
      await answered([...forged, 'f-true', 'f-short', 'f-made-up', 'f-parts', 'f-inspect'], 'an answer to every forged request');
      const inspected = JSON.stringify(replies.get('f-inspect'));
      expect(replies.get('f-inspect')).toMatchObject({ type: 'inspected', lock: { holders: [{ worker: `${prefix}-h`, token: held.token }] } });
      expect(inspected).not.toContain(`${prefix}-h.`); // the holder's session id starts with its worker id
      expect(inspected).not.toMatch(/"(session|request|replyTo|lastToken)"/);
      for (const id of forged) expect(replies.get(id), id).toMatchObject({ type: 'error', code: 'NOT_HOLDER' });
      expect(replies.get('f-true')).toMatchObject({ type: 'error', code: 'INVALID_FIELD', field: 'handoff' });
      expect(replies.get('f-short')).toMatchObject({ type: 'error', code: 'INVALID_FIELD', field: 'handoff' });
      expect(replies.get('f-made-up')).toMatchObject({ type: 'error', code: 'NOT_HOLDER' });
      expect(replies.get('f-parts')).toMatchObject({ type: 'error', code: 'WRONG_PARTITION', field: 'partitions', partitions: 1 });

      const view = await holder.inspect('hot');
      expect(view.lock?.holders.map((x) => [x.worker, x.token])).toEqual([[`${prefix}-h`, held.token]]);
      expect(held.expired).toBe(false);
      expect(held.signal.aborted).toBe(false);
      // The holder's release hands the lock on, by the forward (with its proof) or the coordinator.
      await held.release();
      await waitFor(() => all.some((r) => r.type === 'granted' && r.re === 'f-acq'), 'the forger’s grant after the release');
      // Nothing was parked, and the partition never stopped answering.
      expect(await coord.metric('lockq_dead_lettered_total')).toBe(0);
      expect((await fetch(`${coord.admin}/readyz`)).status).toBe(200);
    } finally {
      await conn.close().catch(() => {});
    }
  }, 60_000);
});
