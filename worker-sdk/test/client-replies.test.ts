import { afterEach, describe, expect, it } from 'vitest';
import { LockClient, type LockClientOptions } from '../src/index.js';
import { decodeRequest, encodeReply, type ReplyBody, type Request } from '../src/protocol/index.js';
import type { ClientTransport, ClientTransportHandlers } from '../src/transport/types.js';

/**
 * How the client treats replies that no request waits for: a second copy of a final answer
 * (replies come at least once) and a grant that arrives after its request gave up. A scripted
 * coordinator stands in for the real one, so each case is exact.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Opens sessions, answers each other request as `answer` says, and keeps every request it got in `requests`. */
class ScriptedTransport implements ClientTransport {
  readonly replyAddress = 'lockq.replies.w.scripted';
  readonly requests: Request[] = [];
  #handlers: ClientTransportHandlers | undefined;
  #token = 0;

  constructor(readonly answer: (request: Request, reply: (body: ReplyBody) => void) => void = () => {}) {}

  async open(handlers: ClientTransportHandlers): Promise<void> {
    this.#handlers = handlers;
  }

  async send(_partition: number, body: Uint8Array): Promise<void> {
    const decoded = decodeRequest(body);
    if (!decoded.ok) throw new Error(`the client sent a bad request: ${decoded.message}`);
    const request = decoded.request;
    this.requests.push(request);
    const reply = (b: ReplyBody) => this.deliver(b);
    if (request.op === 'open') reply({ type: 'opened', re: request.id, session: request.session, resumed: false, sessionTtlMs: request.sessionTtlMs });
    else if (request.op === 'close' || request.op === 'heartbeat') reply({ type: 'ok', re: request.id });
    else this.answer(request, reply);
  }

  async forward(_address: string, _body: Uint8Array): Promise<void> {
    throw new Error('these tests name no successor, so nothing is forwarded');
  }

  /** Hands the client a reply, as the broker would. */
  deliver(body: ReplyBody): void {
    this.#handlers?.onReply(encodeReply(body, 1, 0));
  }

  /** A grant of `request` as the core writes it. */
  grant(request: Request & { op: 'acquire' }): ReplyBody {
    return { type: 'granted', re: request.id, lock: request.lock, token: ++this.#token, ttlMs: request.ttlMs, basis: request.id };
  }

  async close(): Promise<void> {}
}

const clients: LockClient[] = [];
async function client(transport: ScriptedTransport, options: LockClientOptions = {}): Promise<LockClient> {
  const c = await LockClient.connect('memory:', { workerId: 'w', transport, requestTimeoutMs: 1000, ...options });
  clients.push(c);
  return c;
}
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

const releases = (t: ScriptedTransport) => t.requests.filter((r) => r.op === 'release');

describe('replies nobody waits for', () => {
  it('a repeated "granted" is recognised as a copy: the hold it just gave is kept', async () => {
    const transport: ScriptedTransport = new ScriptedTransport((request, reply) => {
      if (request.op !== 'acquire') return;
      const granted = transport.grant(request);
      reply(granted);
      reply(granted);
    });
    const c = await client(transport);
    const lease = await c.acquire('job', { ttlMs: 30_000 });
    await sleep(20);
    expect(releases(transport)).toEqual([]);
    expect(lease.signal.aborted).toBe(false);
  });

  it('copies are recognised for many requests back, even once their leases are released', async () => {
    const granted: ReplyBody[] = [];
    const transport: ScriptedTransport = new ScriptedTransport((request, reply) => {
      if (request.op === 'acquire') {
        granted.push(transport.grant(request));
        reply(granted.at(-1) as ReplyBody);
      }
      if (request.op === 'release') reply({ type: 'released', re: request.id, lock: request.lock, token: request.token });
    });
    const c = await client(transport);
    for (let i = 0; i < 50; i++) await (await c.acquire(`job:${i}`, { ttlMs: 30_000 })).release();
    // Every grant again, as a broker may redeliver after a reconnect: none is taken for an orphan.
    for (const body of granted) transport.deliver(body);
    await sleep(20);
    expect(releases(transport)).toHaveLength(50);
  });

  it('a grant that comes after its request timed out is given back at once', async () => {
    const transport: ScriptedTransport = new ScriptedTransport((request, reply) => {
      if (request.op === 'acquire') setTimeout(() => reply(transport.grant(request)), 150);
      if (request.op === 'release') reply({ type: 'released', re: request.id, lock: request.lock, token: request.token });
    });
    const c = await client(transport, { requestTimeoutMs: 30 });
    await expect(c.acquire('job', { ttlMs: 30_000 })).rejects.toMatchObject({ code: 'TIMEOUT' });
    await sleep(250);
    expect(releases(transport).map((r) => ({ lock: r.op === 'release' && r.lock, token: r.op === 'release' && r.token }))).toEqual([
      { lock: 'job', token: 1 },
    ]);
  });
});
