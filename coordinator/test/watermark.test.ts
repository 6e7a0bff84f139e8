import { describe, expect, it } from 'vitest';
import type { AcquireRequest, ReplyBody, Request } from '@lockq/protocol';
import { type CoreOptions, DEFAULT_CORE_LIMITS, type Decision, LockCore } from '../src/core/index.js';

/** The `seq`/`settled` watermark: answers are forgotten once the worker says it has them. */

const OPTIONS: CoreOptions = {
  partition: 0,
  partitions: 1,
  epoch: 1,
  tokenFloor: 0,
  tokenBlockSize: 100,
  limits: { ...DEFAULT_CORE_LIMITS, maxUnsettledPerSession: 3 },
};

function setup() {
  const core = new LockCore(OPTIONS);
  let seq = 0;
  const env = (session: string, id: string, settled?: number) => ({
    v: 1 as const,
    id,
    worker: `w-${session}`,
    session,
    replyTo: `to-${session}`,
    seq: ++seq,
    ...(settled === undefined ? {} : { settled }),
  });
  const send = (r: Request, now = 0): ReplyBody[] => {
    const out: Decision[] = [];
    core.handle(r, now, out);
    return out.flatMap((d) => (d.type === 'reply' ? [d.body] : []));
  };
  const acquire = (session: string, id: string, settled?: number, waitMs = 1000): AcquireRequest => ({
    ...env(session, id, settled),
    op: 'acquire',
    lock: 'L',
    kind: 'mutex',
    mode: 'exclusive',
    limit: 1,
    permits: 1,
    ttlMs: 500,
    waitMs,
  });
  send({ ...env('a', 'open-a'), op: 'open', sessionTtlMs: 10_000, partitions: 1 });
  send({ ...env('b', 'open-b'), op: 'open', sessionTtlMs: 10_000, partitions: 1 });
  return { core, env, send, acquire };
}

describe('the settled watermark', () => {
  it('replays an unsettled duplicate, and drops a settled one without an answer or a change', () => {
    const { core, send, acquire } = setup();
    const first = acquire('a', 'x1');
    expect(send(first)).toMatchObject([{ type: 'granted', token: 1 }]);
    expect(send(first)).toMatchObject([{ type: 'granted', token: 1 }]); // not settled yet: same answer
    const seq = (first.seq ?? 0) + 10;
    const release: Request = { v: 1, id: 'x2', worker: 'w-a', session: 'a', replyTo: 'to-a', op: 'release', lock: 'L', token: 1, seq };
    // Settling everything below the release's own number forgets the acquire's answer.
    expect(send({ ...release, settled: seq - 1 })).toMatchObject([{ type: 'released', token: 1 }]);
    const before = core.counts();
    expect(send({ ...release, settled: seq })).toEqual([]); // stale: dropped
    expect(send(first)).toEqual([]); // stale acquire with no wait and no hold: dropped, not re-acquired
    expect(core.counts()).toEqual(before);
    expect(core.inspect('L', 0)).toBeNull();
  });

  it('answers a stale re-sent acquire with its current state: still queued, or granted meanwhile', () => {
    const { send, acquire } = setup();
    const held = acquire('a', 'h1');
    expect(send(held)).toMatchObject([{ type: 'granted' }]);
    const waiting = acquire('b', 'w1');
    expect(send(waiting)).toMatchObject([{ type: 'successor', re: 'h1' }, { type: 'queued', position: 1 }]);
    // b settles past its queued acquire (its first answer arrived), then re-sends it after a reconnect.
    const beat = { v: 1 as const, id: 'hb', worker: 'w-b', session: 'b', replyTo: 'to-b', seq: 100, settled: 99, op: 'heartbeat' as const };
    expect(send(beat)).toMatchObject([{ type: 'ok' }]);
    expect(send(waiting)).toMatchObject([{ type: 'queued', re: 'w1', position: 1 }]);
    const token = 1;
    const out = send({ v: 1, id: 'r1', worker: 'w-a', session: 'a', replyTo: 'to-a', op: 'release', lock: 'L', token });
    expect(out).toMatchObject([{ type: 'granted', re: 'w1', token: 2 }, { type: 'released' }]);
    expect(send(waiting)).toMatchObject([{ type: 'granted', re: 'w1', token: 2 }]);
  });

  it('keeps at most maxUnsettledPerSession answers of a worker that never settles', () => {
    const { core, send, acquire } = setup();
    const sent = ['n1', 'n2', 'n3', 'n4', 'n5'].map((id) => acquire('a', id, undefined, 0));
    for (const r of sent) send({ ...r, lock: `L-${r.id}` });
    // The oldest answers were forgotten: their duplicates now run again (and find the lock held).
    expect(send({ ...(sent[0] as AcquireRequest), lock: 'L-n1' })).toMatchObject([{ type: 'error', code: 'LOCK_BUSY' }]);
    expect(send({ ...(sent[4] as AcquireRequest), lock: 'L-n5' })).toMatchObject([{ type: 'granted' }]);
    expect(core.counts().holds).toBe(5);
  });

  it('lets unnumbered requests (workers that do not number) keep the time-window memory', () => {
    const { send } = setup();
    const r: Request = { v: 1, id: 'u1', worker: 'w-a', session: 'a', replyTo: 'to-a', op: 'acquire', lock: 'U', kind: 'mutex', mode: 'exclusive', limit: 1, permits: 1, ttlMs: 500, waitMs: 0 };
    expect(send(r)).toMatchObject([{ type: 'granted', token: 1 }]);
    expect(send(r, 100)).toMatchObject([{ type: 'granted', token: 1 }]);
  });
});
