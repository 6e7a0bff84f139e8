/**
 * The client's side of a hand-off, against a scripted coordinator on the memory broker: what a
 * holder forwards (and when it must not), and how a successor treats the two copies of its grant;
 * and, with the same script, replies nobody waits for (copies of grants, late grants).
 * The real coordinator's side is tested end to end in test/e2e.memory.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { LockClient } from '../src/client.js';
import type { Lease } from '../src/lease.js';
import type { AcquireOptions } from '../src/lock-api.js';
import type { LockClientOptions } from '../src/options.js';
import { decodeReply, type GrantedReply, MemoryBroker } from '@lockq/protocol';
import { elapse, waitFor } from '../../test/support/wait-for.js';
import { type Body, EPOCH, RecordingTransport, type Request, ScriptedCoordinator, sealed } from './support/scripted-coordinator.js';

let broker: MemoryBroker;
let coordinator: ScriptedCoordinator;
const clients: LockClient[] = [];

async function client(workerId: string, options: LockClientOptions = {}): Promise<{ client: LockClient; transport: RecordingTransport }> {
  broker ??= new MemoryBroker();
  const transport = new RecordingTransport(broker, { workerId, instance: 'i' });
  const c = await LockClient.connect('memory:', { workerId, transport, requestTimeoutMs: 2000, ...options });
  clients.push(c);
  return { client: c, transport };
}

function fresh(): void {
  broker = new MemoryBroker();
  coordinator = new ScriptedCoordinator(broker);
}

/** The grant the coordinator would reserve for a successor. */
function reservedGrant(re: string, token: number): Omit<GrantedReply, 'v' | 'epoch' | 'partition'> {
  return { type: 'granted', re, lock: 'L', token, ttlMs: 10_000, basis: re };
}

/** Grants every acquire at once with the next token (from 100). */
function grantEveryAcquire(): void {
  let token = 100;
  coordinator.onAcquire = (req) =>
    coordinator.reply(req.replyTo, { type: 'granted', re: req.id, lock: req.lock, token: ++token, ttlMs: req.ttlMs, basis: req.id });
}

afterEach(async () => {
  coordinator.onAcquire = () => {};
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

describe('hand-off: the holder', () => {
  it('forwards the named successor’s grant, with the event’s envelope, before it sends its release', async () => {
    fresh();
    grantEveryAcquire();
    const { client: h, transport } = await client('h');
    const forwarded: Uint8Array[] = [];
    broker.subscribeReplies('succ', (body) => forwarded.push(body));
    const lease = await h.acquire('L', { ttlMs: 10_000 });
    const held = coordinator.acquires()[0] as Request;
    const grant = reservedGrant('s-1', lease.token + 1);
    coordinator.reply(held.replyTo, { type: 'successor', re: held.id, lock: 'L', token: lease.token, next: { to: 'succ', grant } });
    await waitFor(() => lease.successor !== undefined, 'the holder to be told who is next');
    await lease.release();

    const after = transport.calls.slice(transport.calls.findIndex((c) => c.kind === 'forward'));
    expect(after.map((c) => (c.kind === 'send' ? c.body.op : 'forward'))).toEqual(['forward', 'release']);
    expect(transport.forwards()[0]?.to).toBe('succ');
    await waitFor(() => forwarded.length > 0, 'the forwarded grant');
    expect(forwarded).toHaveLength(1);
    // It decodes exactly as the coordinator's own grant would.
    expect(decodeReply(forwarded[0] as Uint8Array)).toEqual({ v: 1, epoch: EPOCH, partition: 0, ...grant });
  });

  it('forwards the latest event only, and nothing once an event says nobody is next', async () => {
    fresh();
    grantEveryAcquire();
    const { client: h, transport } = await client('h');
    const tell = async (lease: Lease, next?: { to: string; grant: object }) => {
      const held = coordinator.acquires().at(-1) as Request;
      coordinator.reply(held.replyTo, { type: 'successor', re: held.id, lock: 'L', token: lease.token, ...(next ? { next } : {}) });
      await waitFor(() => lease.successor?.next?.to === next?.to, `the holder to be told ${next?.to ?? 'nobody'} is next`);
    };
    const first = await h.acquire('L');
    await tell(first, { to: 'a', grant: reservedGrant('a-1', 500) });
    await tell(first, { to: 'b', grant: reservedGrant('b-1', 501) });
    await first.release();
    expect(transport.forwards().map((f) => [f.to, decodeReply(f.body)?.re])).toEqual([['b', 'b-1']]);

    const second = await h.acquire('L');
    await tell(second, { to: 'c', grant: reservedGrant('c-1', 502) });
    await tell(second); // the named waiter left
    await second.release();
    // An event about another hold (here: the first, long released) changes nothing either.
    expect(transport.forwards()).toHaveLength(1);
    expect(coordinator.releases()).toHaveLength(2);
  });

  it('does not forward for a lease the coordinator said is lost', async () => {
    fresh();
    grantEveryAcquire();
    const { client: h, transport } = await client('h');
    const lease = await h.acquire('L', { ttlMs: 10_000 });
    const held = coordinator.acquires()[0] as Request;
    coordinator.reply(held.replyTo, { type: 'successor', re: held.id, lock: 'L', token: lease.token, next: { to: 'succ', grant: reservedGrant('s-1', 999) } });
    coordinator.reply(held.replyTo, { type: 'lost', re: held.id, lock: 'L', token: lease.token, reason: 'LEASE_EXPIRED' });
    await waitFor(() => lease.lostReason !== undefined, 'the lease to be lost');
    expect(lease.signal.aborted).toBe(true);
    await lease.release();
    expect(transport.forwards()).toEqual([]);
  });

  it('does not forward once the lease is past its local deadline, whether or not its timer noticed', async () => {
    fresh();
    let token = 6;
    coordinator.onAcquire = (req) => coordinator.reply(req.replyTo, { type: 'granted', re: req.id, lock: req.lock, token: ++token, ttlMs: 60, basis: req.id });
    const { client: h, transport } = await client('h');
    const tell = (lease: { token: number }) => {
      const held = coordinator.acquires().at(-1) as Request;
      coordinator.reply(held.replyTo, { type: 'successor', re: held.id, lock: 'L', token: lease.token, next: { to: 'succ', grant: reservedGrant('s-1', 50) } });
    };
    // Its signal read: the deadline timer marks it lost (locally) when the lease runs out.
    const watched = await h.acquire('L', { ttlMs: 60 });
    tell(watched);
    const signal = watched.signal;
    await waitFor(() => watched.successor !== undefined && signal.aborted, 'the successor event, then the local deadline');
    expect(signal.aborted).toBe(true);
    expect(watched.lostReason?.local).toBe(true);
    await watched.release();
    // Never renewed and its signal never read: no timer runs, only the clock says it is over.
    const unwatched = await h.acquire('L', { ttlMs: 60 });
    tell(unwatched);
    await waitFor(
      () => unwatched.successor !== undefined && performance.now() >= unwatched.deadline,
      'the successor event, then the local deadline',
    );
    expect(unwatched.lostReason).toBeUndefined();
    await unwatched.release();

    expect(transport.forwards()).toEqual([]);
    // Both are still released: the coordinator may hold them a little longer than the worker trusts them.
    expect(coordinator.releases().map((r) => r.token)).toEqual([watched.token, unwatched.token]);
  });

  it('keeps a successor event that comes in the same delivery as the grant (and a lost event likewise)', async () => {
    fresh();
    let token = 20;
    let then: 'successor' | 'lost' = 'successor';
    coordinator.onAcquire = (req) => {
      const t = ++token;
      coordinator.reply(req.replyTo, { type: 'granted', re: req.id, lock: req.lock, token: t, ttlMs: req.ttlMs, basis: req.id });
      if (then === 'successor') {
        coordinator.reply(req.replyTo, { type: 'successor', re: req.id, lock: 'L', token: t, next: { to: 'succ', grant: reservedGrant('s-1', t + 100) } });
      } else {
        coordinator.reply(req.replyTo, { type: 'lost', re: req.id, lock: 'L', token: t, reason: 'NO_SESSION' });
      }
    };
    const { client: h, transport } = await client('h');
    const lease = await h.acquire('L', { ttlMs: 10_000 });
    await lease.release();
    expect(transport.forwards().map((f) => decodeReply(f.body)?.re)).toEqual(['s-1']);

    then = 'lost';
    const gone = await h.acquire('L', { ttlMs: 10_000 });
    expect(gone.lostReason?.reason).toBe('NO_SESSION');
  });
});

describe('hand-off: the successor', () => {
  /** Queues every acquire (position 1). */
  function queueEveryAcquire(): void {
    coordinator.onAcquire = (req) => coordinator.reply(req.replyTo, { type: 'queued', re: req.id, lock: req.lock, position: 1 });
  }
  /** A client `w` whose acquire of L (with `options`) the coordinator has queued: the client, its acquire, and that request. */
  async function queuedAcquire(options: AcquireOptions = {}) {
    fresh();
    queueEveryAcquire();
    const { client: w, transport } = await client('w');
    const waiting = w.acquire('L', { ttlMs: 10_000, ...options });
    await waitFor(() => coordinator.acquires().length > 0, 'the acquire to reach the coordinator');
    return { transport, waiting, req: coordinator.acquires()[0] as Request };
  }
  /** The grant for `req`, as a holder forwards it and as the coordinator sends it. */
  const grantFor = (req: Request, token: number) => ({ type: 'granted' as const, re: req.id, lock: 'L', token, ttlMs: 10_000, basis: req.id });

  it('takes the first copy of its grant and treats the coordinator’s as a duplicate', async () => {
    const { waiting, req } = await queuedAcquire();
    // The holder's forwarded copy: published into the reply queue by another client, with the MAC the coordinator made.
    coordinator.forward(req.replyTo, sealed(grantFor(req, 41)));
    const lease = await waiting;
    expect(lease.token).toBe(41);
    coordinator.reply(req.replyTo, grantFor(req, 41)); // the coordinator's own, after the release
    await elapse(20); // nothing is given back
    expect(coordinator.releases()).toEqual([]);
    expect(lease.expired).toBe(false);
    await lease.release();
    expect(coordinator.releases().map((r) => r.token)).toEqual([41]);
    // The usual order on a hot lock: the coordinator's copy comes after the successor is done. It
    // is a copy of a grant this client took, not a new one: nothing more is sent.
    coordinator.reply(req.replyTo, grantFor(req, 41));
    await elapse(20); // nothing is given back
    expect(coordinator.releases().map((r) => r.token)).toEqual([41]);
  });

  it('takes two copies delivered together once, without giving either back', async () => {
    const { waiting, req } = await queuedAcquire();
    coordinator.forward(req.replyTo, sealed(grantFor(req, 42)));
    coordinator.reply(req.replyTo, grantFor(req, 42));
    const lease = await waiting;
    await elapse(20); // nothing is given back
    expect(lease.token).toBe(42);
    expect(coordinator.releases()).toEqual([]);
  });

  it('gives back a grant for a request whose wait ended with WAIT_TIMEOUT, and the coordinator’s copy too', async () => {
    const { waiting, req } = await queuedAcquire({ waitMs: 50 });
    coordinator.reply(req.replyTo, { type: 'error', re: req.id, code: 'WAIT_TIMEOUT', message: 'not granted before waitMs elapsed' });
    await expect(waiting).rejects.toMatchObject({ code: 'WAIT_TIMEOUT' });
    coordinator.forward(req.replyTo, sealed(grantFor(req, 43))); // forwarded, late
    await waitFor(() => coordinator.releases().length > 0, 'the grant to be given back');
    expect(coordinator.releases().map((r) => [r.lock, r.token])).toEqual([['L', 43]]);
    coordinator.reply(req.replyTo, grantFor(req, 43)); // the coordinator's, which may come after the give-back
    await waitFor(() => coordinator.releases().length > 1, 'the copy to be given back too');
    expect(coordinator.releases().map((r) => r.token)).toEqual([43, 43]);
  });

  it('gives back a grant for an acquire it aborted', async () => {
    const controller = new AbortController();
    const { waiting, req } = await queuedAcquire({ signal: controller.signal });
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'ABORTED' });
    coordinator.forward(req.replyTo, sealed(grantFor(req, 44)));
    await waitFor(() => coordinator.releases().length > 0, 'the grant to be given back');
    expect(coordinator.releases().map((r) => r.token)).toEqual([44]);
  });

  it('never forwards when giving a grant back', async () => {
    const { transport, waiting, req } = await queuedAcquire({ waitMs: 50 });
    coordinator.reply(req.replyTo, { type: 'error', re: req.id, code: 'WAIT_TIMEOUT', message: 'not granted before waitMs elapsed' });
    await expect(waiting).rejects.toMatchObject({ code: 'WAIT_TIMEOUT' });
    // A successor event for the unwanted hold, then the grant itself.
    coordinator.reply(req.replyTo, { type: 'successor', re: req.id, lock: 'L', token: 45, next: { to: 'succ', grant: reservedGrant('s-1', 46) } });
    coordinator.reply(req.replyTo, grantFor(req, 45));
    await waitFor(() => coordinator.releases().length > 0, 'the grant to be given back');
    expect(coordinator.releases().map((r) => r.token)).toEqual([45]);
    expect(transport.forwards()).toEqual([]);
  });
});

describe('replies nobody waits for', () => {
  const grantOf = (req: Request, token: number): Body => ({ type: 'granted', re: req.id, lock: req.lock, token, ttlMs: req.ttlMs, basis: req.id });

  it('a repeated "granted" is recognised as a copy: the hold it just gave is kept', async () => {
    fresh();
    coordinator.onAcquire = (req) => {
      coordinator.reply(req.replyTo, grantOf(req, 1));
      coordinator.reply(req.replyTo, grantOf(req, 1));
    };
    const { client: c } = await client('w');
    const lease = await c.acquire('job', { ttlMs: 30_000 });
    await elapse(20); // nothing is given back
    expect(coordinator.releases()).toEqual([]);
    expect(lease.signal.aborted).toBe(false);
  });

  it('copies are recognised for many requests back, even once their leases are released', async () => {
    fresh();
    const granted: { to: string; body: Body }[] = [];
    coordinator.onAcquire = (req) => {
      granted.push({ to: req.replyTo, body: grantOf(req, granted.length + 1) });
      coordinator.reply(req.replyTo, grantOf(req, granted.length));
    };
    const { client: c } = await client('w');
    for (let i = 0; i < 50; i++) await (await c.acquire(`job:${i}`, { ttlMs: 30_000 })).release();
    // Every grant again, as a broker may redeliver after a reconnect: none is taken for an orphan.
    for (const g of granted) coordinator.reply(g.to, g.body);
    await elapse(20); // nothing is given back
    expect(coordinator.releases()).toHaveLength(50);
  });

  it('a grant that comes after its request timed out is given back at once', async () => {
    fresh();
    coordinator.onAcquire = (req) => setTimeout(() => coordinator.reply(req.replyTo, grantOf(req, 1)), 150);
    const { client: c } = await client('w', { requestTimeoutMs: 30 });
    await expect(c.acquire('job', { ttlMs: 30_000 })).rejects.toMatchObject({ code: 'TIMEOUT' });
    await waitFor(() => coordinator.releases().length > 0, 'the late grant to be given back');
    expect(coordinator.releases().map((r) => ({ lock: r.lock, token: r.token }))).toEqual([{ lock: 'job', token: 1 }]);
  });
});
