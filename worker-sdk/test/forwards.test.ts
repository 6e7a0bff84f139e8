/**
 * Which replies the client believes, by who published them (docs/security.md §6.2), against a
 * scripted coordinator on the memory broker, whose replies come with origin `'coordinator'` and
 * whose `forward` publishes as another worker would (origin `'forward'`): a forward is believed
 * only as a grant with the coordinator's MAC under this session's key, of the current term; a new
 * term comes only from the coordinator. What fails is dropped, counted in `droppedReplies`, and
 * changes nothing.
 */
import { Buffer } from 'node:buffer';
import { afterEach, describe, expect, it } from 'vitest';
import { LockClient } from '../src/client.js';
import type { Lease } from '../src/lease.js';
import type { AcquireOptions } from '../src/lock-api.js';
import { MemoryClientTransport } from '../src/transport/memory.js';
import type { ClientTransportHandlers } from '../src/transport/types.js';
import { encodeReply, grantMac, MemoryBroker } from '@lockq/protocol';
import { elapse, waitFor } from '../../test/support/wait-for.js';
import { type Body, EPOCH, RecordingTransport, type Request, ScriptedCoordinator, sealed } from './support/scripted-coordinator.js';

let broker: MemoryBroker;
let coordinator: ScriptedCoordinator;
const clients: LockClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

/** A client `w` whose acquire of L the coordinator has queued, and that acquire's request. */
async function queuedAcquire(options: AcquireOptions = {}, transport?: MemoryClientTransport) {
  broker = new MemoryBroker();
  coordinator = new ScriptedCoordinator(broker);
  return queuedOn(options, transport);
}

async function queuedOn(options: AcquireOptions = {}, given?: MemoryClientTransport) {
  coordinator.onAcquire = (req) => coordinator.reply(req.replyTo, { type: 'queued', re: req.id, lock: req.lock as string, position: 1 });
  const transport = given ?? new RecordingTransport(broker, { workerId: 'w', instance: 'i' });
  const client = await LockClient.connect('memory:', { workerId: 'w', transport, requestTimeoutMs: 5000 });
  clients.push(client);
  const waiting = client.acquire('L', { ttlMs: 10_000, ...options });
  const state = { lease: undefined as Lease | undefined, error: undefined as unknown };
  waiting.then(
    (lease) => {
      state.lease = lease;
    },
    (err: unknown) => {
      state.error = err;
    },
  );
  const req = await waitFor(() => coordinator.acquires().at(-1), 'the acquire to reach the coordinator');
  return { client, waiting, state, req };
}

/** The grant for `req`, as the coordinator reserves it for a named successor. */
const grantFor = (req: Request, token: number) => ({ type: 'granted' as const, re: req.id, lock: 'L', token, ttlMs: 10_000, basis: req.id });

const nothingDropped = {
  unreadable: 0,
  'unknown-partition': 0,
  mismatch: 0,
  'forward-not-grant': 0,
  'forward-mac': 0,
  'forward-epoch': 0,
};

describe('forwards', () => {
  it('a grant with the coordinator’s MAC for this session completes the acquire at once (the hand-off)', async () => {
    const { client, waiting, req } = await queuedAcquire();
    coordinator.forward(req.replyTo, sealed({ ...grantFor(req, 41), proof: 'P'.repeat(22) }));
    const lease = await waiting;
    expect(lease).toMatchObject({ lock: 'L', token: 41, handOffProof: 'P'.repeat(22) });
    expect(client.droppedReplies).toEqual(nothingDropped);
  });

  it('a grant without a MAC, with a made-up one, with one under another key, or with a covered field changed is dropped and counted; the coordinator’s own grant still counts', async () => {
    const { client, state, req } = await queuedAcquire();
    const good = sealed(grantFor(req, 41));
    const otherKey = Buffer.alloc(16, 8); // another session's: what a forger holds of its own
    const forged: Body[] = [
      grantFor(req, 41),
      { ...grantFor(req, 41), mac: 'A'.repeat(22) },
      { ...grantFor(req, 41), mac: grantMac(otherKey, 0, EPOCH, grantFor(req, 41)) },
      { ...good, token: 2 ** 53 - 1 },
      { ...good, ttlMs: 86_400_000 },
      { ...good, basis: 'later' },
      { ...good, proof: 'B'.repeat(22) },
      { ...good, re: `${req.id}x` },
    ];
    for (const body of forged) coordinator.forward(req.replyTo, body);
    await waitFor(() => client.droppedReplies['forward-mac'] === forged.length, 'every forgery dropped');
    await elapse(20); // nothing else happens: no lease, no give-back
    expect(state.lease).toBeUndefined();
    expect(state.error).toBeUndefined();
    expect(coordinator.releases()).toEqual([]);

    coordinator.reply(req.replyTo, grantFor(req, 41));
    await waitFor(() => state.lease, 'the coordinator’s grant');
    expect(state.lease).toMatchObject({ token: 41, handOffProof: undefined });
    expect(client.droppedReplies).toEqual({ ...nothingDropped, 'forward-mac': forged.length });
  });

  it('a session opened without a key believes no forward, and takes the coordinator’s grant', async () => {
    broker = new MemoryBroker();
    coordinator = new ScriptedCoordinator(broker);
    coordinator.keyless = true;
    const { client, state, req } = await queuedOn();
    coordinator.forward(req.replyTo, sealed(grantFor(req, 41)));
    await waitFor(() => client.droppedReplies['forward-mac'] === 1, 'the forward dropped');
    expect(state.lease).toBeUndefined();
    coordinator.reply(req.replyTo, grantFor(req, 41));
    await waitFor(() => state.lease, 'the coordinator’s grant');
  });

  it('only a grant is believed from a forward: an error, queued, lost or successor is dropped, signed or not', async () => {
    const { client, state, req } = await queuedAcquire();
    coordinator.forward(req.replyTo, { type: 'error', re: req.id, code: 'WAIT_TIMEOUT', message: 'm' });
    coordinator.forward(req.replyTo, { type: 'queued', re: req.id, lock: 'L', position: 9 });
    coordinator.reply(req.replyTo, grantFor(req, 41));
    const lease = await waitFor(() => state.lease, 'the coordinator’s grant');
    coordinator.forward(req.replyTo, { type: 'lost', re: req.id, lock: 'L', token: 41, reason: 'LEASE_EXPIRED' });
    coordinator.forward(req.replyTo, {
      type: 'successor',
      re: req.id,
      lock: 'L',
      token: 41,
      next: { to: 'somewhere', grant: sealed(grantFor(req, 42)) },
    });
    await waitFor(() => client.droppedReplies['forward-not-grant'] === 4, 'four forwards dropped');
    expect(state.error).toBeUndefined();
    expect(lease.lostReason).toBeUndefined();
    expect(lease.signal.aborted).toBe(false);
    expect(lease.successor).toBeUndefined();
  });

  it('a forward never moves the session to another term: one of a later or earlier epoch is dropped even with a valid MAC, and nothing is asked again', async () => {
    const { client, state, req } = await queuedAcquire();
    coordinator.forward(req.replyTo, sealed(grantFor(req, 41), EPOCH + 1), EPOCH + 1);
    coordinator.forward(req.replyTo, sealed(grantFor(req, 41), EPOCH - 1), EPOCH - 1);
    await waitFor(() => client.droppedReplies['forward-epoch'] === 2, 'both forwards dropped');
    expect(state.lease).toBeUndefined();
    expect(coordinator.acquires()).toHaveLength(1); // a new term would have had the acquire sent again
    // The current term's replies still count (after a rise they would be stale).
    coordinator.reply(req.replyTo, grantFor(req, 41));
    await waitFor(() => state.lease, 'the coordinator’s grant of the current term');
  });

  it('forwards with epoch 2^53-1, of any type, change nothing: the worker’s next acquire and release succeed', async () => {
    const { client, waiting, req } = await queuedAcquire();
    const top = Number.MAX_SAFE_INTEGER;
    coordinator.forward(req.replyTo, { type: 'ok', re: req.id }, top);
    coordinator.forward(req.replyTo, { type: 'released', re: 'x', lock: 'L', token: 1 }, top);
    coordinator.forward(req.replyTo, grantFor(req, 41), top);
    coordinator.forward(req.replyTo, sealed(grantFor(req, 41)), top); // signed for the current epoch, sent under another
    await waitFor(() => Object.values(client.droppedReplies).reduce((a, b) => a + b) === 4, 'all four dropped');
    expect(client.droppedReplies).toMatchObject({ 'forward-not-grant': 2, 'forward-mac': 2 });
    coordinator.reply(req.replyTo, grantFor(req, 41));
    const lease = await waiting;
    await lease.release();
    coordinator.onAcquire = (r) => coordinator.reply(r.replyTo, { type: 'granted', re: r.id, lock: r.lock as string, token: 50, ttlMs: 10_000, basis: r.id });
    const next = await client.acquire('M', { ttlMs: 10_000 });
    await next.release();
    expect(coordinator.releases().map((r) => r.token)).toEqual([41, 50]);
  });
});

describe('coordinator replies', () => {
  it('a new term comes from the coordinator: believed, requests in flight are asked again, and the old term’s replies are ignored after it', async () => {
    const { client, state, req } = await queuedAcquire();
    const other = client.acquire('M', { ttlMs: 10_000 });
    await waitFor(() => coordinator.acquires().length === 2, 'the second acquire');
    coordinator.reply(req.replyTo, { type: 'queued', re: req.id, lock: 'L', position: 1 }, EPOCH + 1);
    await waitFor(() => coordinator.acquires().length === 3, 'the other acquire asked again in the new term');
    expect(coordinator.acquires()[2]?.lock).toBe('M');
    coordinator.reply(req.replyTo, grantFor(req, 41)); // the old term's: stale
    await elapse(20);
    expect(state.lease).toBeUndefined();
    coordinator.epoch = EPOCH + 1;
    coordinator.reply(req.replyTo, grantFor(req, 42));
    await waitFor(() => state.lease, 'the new term’s grant');
    expect(state.lease?.token).toBe(42);
    other.catch(() => undefined);
    expect(client.droppedReplies).toEqual(nothingDropped);
  });

  it('a reply for a partition this client never spoke to is dropped and counted', async () => {
    const { client, state, req } = await queuedAcquire();
    broker.publishReply(req.replyTo, encodeReply(grantFor(req, 41), EPOCH, 7));
    await waitFor(() => client.droppedReplies['unknown-partition'] === 1, 'the reply dropped');
    expect(state.lease).toBeUndefined();
  });
});

/** A transport that cannot say who published a reply (the seam allows it). */
class OriginBlind extends MemoryClientTransport {
  override open(handlers: ClientTransportHandlers): Promise<void> {
    return super.open({ ...handlers, onReply: (body) => handlers.onReply(body) });
  }
}

describe('a transport that cannot tell origins', () => {
  it('is trusted as before: a grant without a MAC is believed (docs/security.md §6.2: only where nobody else can publish)', async () => {
    broker = new MemoryBroker();
    coordinator = new ScriptedCoordinator(broker);
    const { waiting, req } = await queuedOn({}, new OriginBlind(broker, { workerId: 'w', instance: 'i' }));
    coordinator.forward(req.replyTo, grantFor(req, 41));
    expect((await waiting).token).toBe(41);
  });
});
