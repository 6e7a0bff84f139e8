/**
 * The successor forgery of docs/security.md §2, and its fix (§6.1), end to end over the memory
 * transport: the token the coordinator reserves for a mutex's named successor is no secret (it is
 * the partition's counter when the waiter was named), so presenting it must not end the holder's
 * hold; only the proof the coordinator put in the holder's `successor` event, forwarded with the
 * grant, lets the successor complete the hand-off before the holder's release arrives.
 */
import { Buffer } from 'node:buffer';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Coordinator, MemoryServerTransport } from '@lockq/coordinator';
import { LockClient, type LockClientOptions } from '@lockq/worker-sdk';
import { encode, grantMac, type OpenedReply, type Request } from '@lockq/protocol';
import { MemoryBroker } from '@lockq/worker-sdk/transport';
import { RecordingTransport } from './support/recording-transport.js';
import { waitFor } from './support/wait-for.js';

let broker: MemoryBroker;
let coordinator: Coordinator;
const clients: LockClient[] = [];

/** Forwards go through the transport, as between processes. */
async function client(workerId: string, options: LockClientOptions = {}): Promise<{ client: LockClient; transport: RecordingTransport }> {
  const transport = new RecordingTransport(broker, { workerId, instance: 'i' });
  const c = await LockClient.connect('memory:', { workerId, transport, localHandOff: false, ...options });
  clients.push(c);
  return { client: c, transport };
}

beforeEach(async () => {
  broker = new MemoryBroker();
  coordinator = await Coordinator.start({ transport: new MemoryServerTransport(broker) });
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await coordinator.stop();
});

/** A holder of `hot`, and a worker queued behind it that the holder has been told is next. */
async function contended() {
  const h = await client('h');
  const w = await client('w');
  const held = await h.client.acquire('hot', { ttlMs: 30_000 });
  const waiting = w.client.acquire('hot', { ttlMs: 30_000, waitMs: 10_000 });
  await waitFor(() => held.successor?.next !== undefined, 'the holder to be told who is next');
  const acquire = w.transport.sent.find((r) => r.op === 'acquire') as Record<string, unknown>;
  return { h, w, held, waiting, acquire };
}

describe('the head waiter cannot take a live holder’s mutex (security §2, §6.1)', () => {
  it('extend and release with every token from the holder’s to the partition’s latest, from its own session: all NOT_HOLDER, the holder keeps the lock and hears nothing', async () => {
    const { h, w, held, waiting, acquire } = await contended();
    const lastToken = coordinator.counts().get(0)?.lastToken as number;
    expect(lastToken).toBeGreaterThan(held.token); // the reserved token is among those tried
    const envelope = { v: 1, worker: acquire.worker, session: acquire.session, replyTo: acquire.replyTo };
    const forged: string[] = [];
    const send = async (id: string, fields: Record<string, unknown>) => {
      forged.push(id);
      await w.transport.send(0, encode({ ...envelope, id, ...fields } as unknown as Request));
    };
    for (let token = held.token; token <= lastToken; token++) {
      await send(`x-ext-${token}`, { op: 'extend', lock: 'hot', token, ttlMs: 30_000 });
      await send(`x-rel-${token}`, { op: 'release', lock: 'hot', token });
      // A made-up proof is no better than none.
      await send(`x-prf-${token}`, { op: 'release', lock: 'hot', token, handoff: 'AAAAAAAAAAAAAAAAAAAAAA' });
    }
    await waitFor(() => forged.every((id) => w.transport.answerTo(id) !== undefined), 'an answer to every forged request');
    for (const id of forged) expect(w.transport.answerTo(id), id).toMatchObject({ type: 'error', code: 'NOT_HOLDER' });
    // The wire takes a proof string only: `true` is what the coordinator passes its core, never a client's to send.
    await send('x-true', { op: 'release', lock: 'hot', token: lastToken, handoff: true });
    await waitFor(() => w.transport.answerTo('x-true') !== undefined, 'an answer to handoff: true');
    expect(w.transport.answerTo('x-true')).toMatchObject({ type: 'error', code: 'INVALID_FIELD', field: 'handoff' });

    const view = await h.client.inspect('hot');
    expect(view.lock?.holders.map((x) => [x.worker, x.token])).toEqual([['h', held.token]]);
    expect(view.lock?.waiters.map((x) => x.worker)).toEqual(['w']);
    expect(h.transport.replies.filter((r) => r.type === 'lost')).toEqual([]);
    expect(held.expired).toBe(false);
    // The holder's own release still hands the lock on.
    await held.release();
    const lease = await waiting;
    expect(lease.token).toBe(held.successor?.next?.grant.token);
  });

  it('a successor that took the forwarded grant completes the hand-off early with its proof, and speaks without it once the coordinator’s copy came', async () => {
    const { h, w, held, waiting, acquire } = await contended();
    const proof = held.successor?.next?.grant.proof;
    expect(proof).toMatch(/^[A-Za-z0-9_-]{22}$/);
    h.transport.holdReleases = true;
    const releasing = held.release();
    const lease = await waiting; // by the forwarded copy: the holder's release is held back
    expect(h.transport.heldReleases).toHaveLength(1);
    expect(w.transport.replies.filter((r) => r.type === 'granted' && r.re === acquire.id)).toEqual([
      expect.objectContaining({ token: lease.token, proof, mac: held.successor?.next?.grant.mac }),
    ]);
    // It came as a forward (origin 'forward') and its MAC held under w's session key.
    expect(Object.values(w.client.droppedReplies).every((n) => n === 0)).toBe(true);

    await lease.extend(30_000); // before the holder's release reached the coordinator
    expect(w.transport.sent.filter((r) => r.op === 'extend')).toEqual([expect.objectContaining({ token: lease.token, handoff: proof })]);
    const during = await w.client.inspect('hot');
    expect(during.lock?.holders.map((x) => [x.worker, x.token])).toEqual([['w', lease.token]]);
    expect(h.transport.heldReleases).toHaveLength(1);

    // The coordinator's own grant went out as the hand-off completed; then the late release is a no-op.
    await waitFor(() => w.transport.replies.filter((r) => r.type === 'granted' && r.re === acquire.id).length === 2, 'the coordinator’s own grant');
    h.transport.holdReleases = false;
    for (const go of h.transport.heldReleases.splice(0)) go();
    await releasing;
    await lease.release();
    const release = w.transport.sent.filter((r) => r.op === 'release');
    expect(release).toHaveLength(1);
    expect(release[0]).not.toHaveProperty('handoff');
    expect(await h.client.tryAcquire('hot')).not.toBeNull();
  });

  it('a forwarded proof the coordinator does not accept (as after a take-over) fails safe: the early request is refused, the lease dropped, and the hold given back once granted', async () => {
    const { h, w, held, waiting } = await contended();
    // As after a take-over without a shared secret: the old term made the proof and the MAC, and
    // the successor's session key is still the old term's, so the MAC holds but the new term
    // refuses the proof. Here: another proof, MAC'd under the successor's key.
    const key = Buffer.from((w.transport.replies.find((r) => r.type === 'opened') as OpenedReply).key as string, 'base64url');
    h.transport.rewriteForward = (grant) => {
      const spoilt = { ...grant, proof: 'BBBBBBBBBBBBBBBBBBBBBB' };
      return { ...spoilt, mac: grantMac(key, grant.partition, grant.epoch, spoilt) };
    };
    h.transport.holdReleases = true;
    const releasing = held.release();
    const lease = await waiting;
    await expect(lease.extend(30_000)).rejects.toMatchObject({ code: 'NOT_HOLDER' });
    expect(lease.signal.aborted).toBe(true);
    const during = await h.client.inspect('hot');
    expect(during.lock?.holders.map((x) => [x.worker, x.token])).toEqual([['h', held.token]]);

    h.transport.holdReleases = false;
    for (const go of h.transport.heldReleases.splice(0)) go();
    await releasing;
    // The coordinator grants w the hold on h's release; w no longer wants it and gives it back.
    await waitFor(() => w.transport.sent.some((r) => r.op === 'release' && r.token === lease.token), 'w to give the hold back');
    const again = await h.client.acquire('hot', { ttlMs: 30_000, waitMs: 5000 });
    expect(again.token).toBeGreaterThan(lease.token);
  });
});
