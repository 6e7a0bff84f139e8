/**
 * The request table on its own, with a transport that only records: the watermark each request
 * carries, and that a request's answer is settled once however many answers it gets.
 */
import { Buffer } from 'node:buffer';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Reply } from '@lockq/protocol';
import { RequestTable } from '../src/request-table.js';
import { newSession, type PartitionSession } from '../src/session.js';
import { waitFor } from '../../test/support/wait-for.js';

type Sent = { id: string; op: string; seq: number; settled: number };

const tables: RequestTable[] = [];

function table(options: { requestTimeoutMs?: number } = {}): { requests: RequestTable; s: PartitionSession; sent: Sent[] } {
  const sent: Sent[] = [];
  const transport = {
    send: async (_partition: number, body: Uint8Array) => {
      sent.push(JSON.parse(Buffer.from(body).toString()) as Sent);
    },
  };
  const requests = new RequestTable(transport, {
    instance: 'i',
    requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
    sessionTtlMs: 15_000,
    heartbeatMs: 5000,
    partitions: 1,
    logger: pino({ level: 'silent' }),
  });
  tables.push(requests);
  return { requests, s: newSession(0, { workerId: 'w', instance: 'i', replyAddress: 'r' }), sent };
}

const reply = (re: string, body: Record<string, unknown>) => ({ v: 1, epoch: 1, partition: 0, re, ...body }) as Reply;
const acquire = { op: 'acquire', lock: 'L', ttlMs: 1000, waitMs: 60_000 } as const;

/** Answers the request with id `id` as the coordinator would. */
function answer(requests: RequestTable, id: string, body: Record<string, unknown>): void {
  const p = requests.waiting(id);
  if (p === undefined) throw new Error(`no request ${id} waits`);
  requests.answer(p, reply(id, body));
}

afterEach(() => {
  for (const t of tables.splice(0)) t.close();
});

describe('the watermark', () => {
  it('each request carries the last seq below which every answer has come, whatever the order of the answers', async () => {
    const { requests, s, sent } = table();
    const ok = () => requests.send(s, { op: 'heartbeat' }).catch(() => undefined); // the last ones are never answered
    const answered = [ok(), ok(), ok()];
    answer(requests, sent[1]?.id as string, { type: 'ok' });
    void ok();
    answer(requests, sent[0]?.id as string, { type: 'ok' });
    void ok();
    answer(requests, sent[2]?.id as string, { type: 'ok' });
    void ok();
    await Promise.all(answered);
    expect(sent.map((r) => [r.seq, r.settled])).toEqual([[1, 0], [2, 0], [3, 0], [4, 0], [5, 2], [6, 3]]);
  });

  it('settles a queued acquire once, whatever ends it (grant, abort, timeout): nothing is left in the session’s books', async () => {
    const { requests, s, sent } = table({ requestTimeoutMs: 50 });
    const granted = requests.send(s, acquire);
    answer(requests, sent[0]?.id as string, { type: 'queued', lock: 'L', position: 1 });
    answer(requests, sent[0]?.id as string, { type: 'granted', lock: 'L', token: 1, ttlMs: 1000, basis: sent[0]?.id });
    await granted;

    const controller = new AbortController();
    const aborted = requests.send(s, acquire, { signal: controller.signal });
    answer(requests, sent[1]?.id as string, { type: 'queued', lock: 'L', position: 1 });
    controller.abort();
    await expect(aborted).rejects.toMatchObject({ code: 'ABORTED' });
    expect(sent[2]?.op).toBe('cancel');
    answer(requests, sent[2]?.id as string, { type: 'cancelled', lock: 'L' });

    const timedOut = requests.send(s, { ...acquire, waitMs: 0 });
    answer(requests, sent[3]?.id as string, { type: 'queued', lock: 'L', position: 1 });
    await expect(timedOut).rejects.toMatchObject({ code: 'TIMEOUT' });

    await waitFor(() => requests.size === 0, 'every request to be settled');
    expect(s.settledEarly.size).toBe(0);
    expect(s.unsettled.length - s.unsettledHead).toBe(0);
  });
});
