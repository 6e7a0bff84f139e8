/**
 * A scripted coordinator for the client's tests: partition 0 of a coordinator on the memory
 * broker that answers sessions, heartbeats, releases, extends and cancels itself and leaves
 * acquires to the test (`onAcquire`), which answers through `reply` (or `forward`, as a holder
 * would). Its sessions' key is `SESSION_KEY`. And a client transport that records every call the
 * client makes on it.
 */
import { Buffer } from 'node:buffer';
import { encodeReply, type GrantedReply, grantMac, type MemoryBroker, type Reply } from '@lockq/protocol';
import { MemoryClientTransport } from '../../src/transport/memory.js';

export const EPOCH = 3;
/** The session key every `opened` of the script carries: forwards are checked with it. */
export const SESSION_KEY = Buffer.alloc(16, 7);

/** `grant` as the coordinator puts it in a successor event: with the MAC under `key` (the successor's). */
export function sealed(grant: Omit<GrantedReply, 'v' | 'epoch' | 'partition' | 'mac'>, epoch = EPOCH, key: Uint8Array = SESSION_KEY): Body {
  return { ...grant, mac: grantMac(key, 0, epoch, grant) };
}

export const text = (body: Uint8Array) => Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');

export type Request = { id: string; op: string; replyTo: string; lock?: string; token?: number; ttlMs?: number } & Record<string, unknown>;
export type Body = Record<string, unknown> & { type: Reply['type']; re: string };

export class ScriptedCoordinator {
  readonly requests: Request[] = [];
  onAcquire: (req: Request) => void = () => {};
  /** Opens sessions without a key, as a coordinator that signs no forwards. */
  keyless = false;
  /** The term its replies carry unless a call says otherwise. */
  epoch = EPOCH;
  readonly #broker: MemoryBroker;

  constructor(broker: MemoryBroker) {
    this.#broker = broker;
    broker.consumeRequests(0, async (batch) => {
      for (const body of batch) this.#handle(JSON.parse(text(body)) as Request);
    });
  }

  reply(to: string, body: Body, epoch = this.epoch): void {
    this.#broker.publishReply(to, encodeReply(body as never, epoch, 0));
  }

  /** Publishes `body` into `to` as another worker's forward would come (origin `'forward'`). */
  forward(to: string, body: Body, epoch = this.epoch): void {
    this.#broker.publishReply(to, encodeReply(body as never, epoch, 0), 'forward');
  }

  /** The requests of operation `op` so far, oldest first. */
  sent(op: string): Request[] {
    return this.requests.filter((r) => r.op === op);
  }

  /** The acquires so far, oldest first. */
  acquires(): Request[] {
    return this.sent('acquire');
  }

  releases(): Request[] {
    return this.sent('release');
  }

  #handle(req: Request): void {
    this.requests.push(req);
    switch (req.op) {
      case 'open':
        this.reply(req.replyTo, {
          type: 'opened',
          re: req.id,
          session: req.session,
          resumed: false,
          sessionTtlMs: req.sessionTtlMs,
          ...(this.keyless ? {} : { key: SESSION_KEY.toString('base64url') }),
        });
        return;
      case 'heartbeat':
      case 'close':
        this.reply(req.replyTo, { type: 'ok', re: req.id });
        return;
      case 'release':
        this.reply(req.replyTo, { type: 'released', re: req.id, lock: req.lock, token: req.token });
        return;
      case 'extend':
        this.reply(req.replyTo, { type: 'extended', re: req.id, lock: req.lock, token: req.token, ttlMs: req.ttlMs, basis: req.id });
        return;
      case 'cancel':
        this.reply(req.replyTo, { type: 'cancelled', re: req.id, lock: req.lock });
        return;
      case 'acquire':
        this.onAcquire(req);
        return;
    }
  }
}

/** Every call a client makes on its transport, in order. */
export type Call = { kind: 'send'; body: Request } | { kind: 'forward'; to: string; body: Uint8Array };

export class RecordingTransport extends MemoryClientTransport {
  readonly calls: Call[] = [];
  override send(partition: number, body: Uint8Array): Promise<void> {
    this.calls.push({ kind: 'send', body: JSON.parse(text(body)) as Request });
    return super.send(partition, body);
  }
  override forward(address: string, body: Uint8Array): Promise<void> {
    this.calls.push({ kind: 'forward', to: address, body });
    return super.forward(address, body);
  }
  forwards(): Extract<Call, { kind: 'forward' }>[] {
    return this.calls.filter((c) => c.kind === 'forward');
  }
}
