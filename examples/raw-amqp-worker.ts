/**
 * A lockq worker written from docs/protocol.md alone (the wire protocol and its RabbitMQ
 * binding, §16), with amqplib and Node built-ins and no @lockq package: it opens a session in
 * each partition it uses, acquires mutexes (waiting in their queues), heartbeats, releases, and
 * forwards a contended mutex to the successor the coordinator named (§4.3). It publishes as the
 * user it connects as (`user_id`, §16.3), with its reply queue in that user's namespace (§16.4).
 * test/raw-worker.amqp.test.ts runs it beside SDK workers on one lock against a real
 * coordinator, so the document cannot drift from what the coordinator does.
 *
 * Left out to stay small (a production worker needs them, §16.6): reconnecting and re-sending,
 * extending leases, `seq`/`settled`, `cancel`.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { type ChannelModel, type ConfirmChannel, type ConsumeMessage, connect } from 'amqplib';

export interface RawWorkerOptions {
  readonly url: string;
  readonly workerId: string;
  /** N, the deployment's partition count (§2.2). */
  readonly partitions: number;
  readonly prefix?: string;
  readonly sessionTtlMs?: number;
  /** Forward the named successor's grant on release (§4.3); false relies on the coordinator's own grant. */
  readonly forward?: boolean;
  readonly requestTimeoutMs?: number;
}

/** A reply or event (§4); fields beyond the envelope are read by type. */
interface Reply {
  readonly v: number;
  readonly type: string;
  readonly re: string;
  readonly epoch: number;
  readonly partition: number;
  readonly [field: string]: unknown;
}

interface Next {
  readonly to: string;
  readonly grant: Record<string, unknown>;
}

export interface RawHold {
  readonly lock: string;
  readonly token: number;
  readonly partition: number;
  /** performance.now() until which the lease may be trusted (§9). */
  readonly localDeadline: number;
  lost: boolean;
  /** The latest `successor` event's `next`, with that event's epoch (§4.3). */
  next: (Next & { readonly epoch: number }) | undefined;
  /** Taken from a forwarded grant: its `proof`, sent as `handoff` until the coordinator's own copy comes (§4.3). */
  proof: string | undefined;
}

interface Pending {
  readonly op: string;
  readonly resolve: (reply: Reply) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
  readonly onQueued?: ((position: number) => void) | undefined;
}

/** §2.2: FNV-1a of the name, or of the text inside its first non-empty `{...}`. */
export function partitionOf(name: string, partitions: number): number {
  if (partitions <= 1) return 0;
  let key = name;
  const open = name.indexOf('{');
  const close = open >= 0 ? name.indexOf('}', open + 1) : -1;
  if (close > open + 1) key = name.slice(open + 1, close);
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h >>> 0) % partitions;
}

const driftMs = (ms: number) => ms * 0.01 + 5; // the margin of §9

/** Keeps the 8192 newest entries (send times and taken tokens matter only while recent). */
function trim(m: Map<string, unknown> | Set<string>): void {
  if (m.size > 8192) m.delete(m.keys().next().value as string);
}

/** The user the URL logs in as: the worker's principal (§16.3); amqplib logs in as guest without one. */
function userOf(url: string): string {
  return decodeURIComponent(new URL(url).username) || 'guest';
}

/**
 * Connects, makes sure the two exchanges exist (§16.1), declares the reply queue, binds it to the
 * forwards and starts consuming it (§16.4).
 */
export async function connectRawWorker(o: RawWorkerOptions): Promise<RawWorker> {
  const conn = await connect(o.url);
  conn.on('error', () => {}); // 'close' follows; an 'error' without a listener would crash the process
  const ch = await conn.createConfirmChannel();
  const w = new RawWorker(o, userOf(o.url), conn, ch);
  // A worker that comes before every coordinator may declare them, alike (guest may; a worker
  // user of `lockq setup-broker` may not, and waits for a coordinator instead).
  for (const exchange of [w.requests, w.forwards]) await ch.assertExchange(exchange, 'direct', { durable: true });
  await ch.assertQueue(w.replyTo, { durable: true, exclusive: false, autoDelete: false, arguments: { 'x-expires': 60_000 } });
  await ch.bindQueue(w.replyTo, w.forwards, w.replyTo);
  await ch.consume(w.replyTo, (msg) => w.onMessage(msg), { noAck: false });
  return w;
}

export class RawWorker {
  readonly replyTo: string;
  /** The exchanges requests and forwards are published through (§16.1). */
  readonly requests: string;
  readonly forwards: string;
  /** The principal: `user_id` of every request, and the reply queue's namespace. */
  readonly user: string;
  /** Counters the test reads: forwards sent, and second copies of grants already taken. */
  readonly stats = { forwarded: 0, duplicateGrants: 0, givenBack: 0, dropped: 0 };
  readonly #o: Required<RawWorkerOptions>;
  readonly #instance = randomBytes(4).toString('hex');
  readonly #session: string;
  #ids = 0;
  readonly #firstSent = new Map<string, number>(); // request id -> first send time (§9)
  readonly #pending = new Map<string, Pending>(); // request id -> its caller
  readonly #holds = new Map<string, RawHold>(); // `${partition}:${token}` -> live hold
  readonly #taken = new Set<string>(); // tokens this worker took, to tell duplicates from give-backs
  readonly #returned = new Set<string>();
  readonly #epochs = new Map<number, number>();
  /** Per partition: the session key from the latest `opened` (§4.2). */
  readonly #keys = new Map<number, Buffer>();
  readonly #sessions = new Map<number, Promise<void>>();
  readonly #sessionDeadlines = new Map<number, number>();
  readonly #heartbeat: NodeJS.Timeout;
  readonly conn: ChannelModel;
  readonly ch: ConfirmChannel;

  constructor(o: RawWorkerOptions, user: string, conn: ChannelModel, ch: ConfirmChannel) {
    this.#o = { prefix: 'lockq', sessionTtlMs: 15_000, forward: true, requestTimeoutMs: 10_000, ...o };
    this.conn = conn;
    this.ch = ch;
    this.user = user;
    this.requests = `${this.#o.prefix}.requests`;
    this.forwards = `${this.#o.prefix}.forwards`;
    this.replyTo = `${this.#o.prefix}.replies.${user}.${o.workerId}.${this.#instance}`;
    this.#session = `${o.workerId}.${this.#instance}`;
    ch.on('return', (msg: ConsumeMessage) => this.#returned.add(String(msg.properties.messageId)));
    ch.on('error', () => {}); // 'close' follows
    ch.on('close', () => this.#failAll(new Error('channel closed')));
    this.#heartbeat = setInterval(() => {
      for (const p of this.#sessions.keys()) this.#request(p, 'heartbeat', {}).catch(() => {});
    }, this.#o.sessionTtlMs / 3);
  }

  /** Takes `lock`, waiting up to `waitMs` in its queue; `onQueued` hears each `queued` answer. */
  async acquire(lock: string, o: { ttlMs: number; waitMs: number; onQueued?: (position: number) => void }): Promise<RawHold> {
    const p = partitionOf(lock, this.#o.partitions);
    await this.#open(p);
    const r = await this.#request(p, 'acquire', { lock, ttlMs: o.ttlMs, waitMs: o.waitMs }, o.onQueued, o.waitMs);
    const hold = r.type === 'granted' ? this.#holds.get(`${p}:${r.token}`) : undefined;
    if (hold === undefined) throw new Error(`acquire ${lock}: ${String(r.code ?? r.type)}`);
    return hold;
  }

  /** §4.3: forward the named successor's grant while the lease is trusted, then release. */
  async release(hold: RawHold): Promise<void> {
    this.#holds.delete(`${hold.partition}:${hold.token}`);
    const next = hold.next;
    const forward = this.#o.forward && next !== undefined && this.#trusted(hold);
    if (forward) {
      // Same channel as the release, published first: the forward leaves first (§16.5).
      const grant = { v: 1, epoch: next.epoch, partition: hold.partition, ...next.grant };
      this.ch.publish(this.forwards, next.to, Buffer.from(JSON.stringify(grant)), {}, () => {});
      this.stats.forwarded++;
    }
    const handoff = hold.proof === undefined ? {} : { handoff: hold.proof };
    const r = await this.#request(hold.partition, 'release', { lock: hold.lock, token: hold.token, ...handoff });
    // NOT_HOLDER after a forward: the successor spoke first, which ended this hold (§4.3).
    if (r.type === 'released' || (forward && r.code === 'NOT_HOLDER')) return;
    throw new Error(`release ${hold.lock}: ${String(r.code ?? r.type)}`);
  }

  /** Closes every session (releasing its holds), deletes the reply queue and disconnects. */
  async close(): Promise<void> {
    clearInterval(this.#heartbeat);
    await Promise.all([...this.#sessions.keys()].map((p) => this.#request(p, 'close', {}).catch(() => {})));
    await this.ch.deleteQueue(this.replyTo).catch(() => {});
    await this.conn.close().catch(() => {});
  }

  #trusted(hold: RawHold): boolean {
    const now = performance.now();
    return !hold.lost && now < hold.localDeadline && now < (this.#sessionDeadlines.get(hold.partition) ?? 0);
  }

  #open(p: number): Promise<void> {
    let opening = this.#sessions.get(p);
    if (opening === undefined) {
      opening = this.#request(p, 'open', { sessionTtlMs: this.#o.sessionTtlMs, partitions: this.#o.partitions }).then((r) => {
        if (r.type !== 'opened') throw new Error(`open: ${String(r.code ?? r.type)}`);
        // §4.2: the session key, by which a forwarded grant is told from a forgery (§4.3).
        if (typeof r.key === 'string') this.#keys.set(p, Buffer.from(r.key, 'base64url'));
      });
      opening.catch(() => this.#sessions.delete(p));
      this.#sessions.set(p, opening);
    }
    return opening;
  }

  /** Sends one request (§3) and resolves with its final answer; `waitMs` extends an acquire's timeout. */
  #request(p: number, op: string, fields: object, onQueued?: (position: number) => void, waitMs = 0): Promise<Reply> {
    const id = `${this.#instance}-${++this.#ids}`;
    const body = { v: 1, id, op, worker: this.#o.workerId, session: this.#session, replyTo: this.replyTo, ...fields };
    const answer = new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => this.#settle(id)?.reject(new Error(`${op} ${id}: no answer`)), waitMs + this.#o.requestTimeoutMs);
      this.#pending.set(id, { op, resolve, reject, timer, onQueued });
    });
    this.#firstSent.set(id, performance.now());
    trim(this.#firstSent);
    const queue = `${this.#o.prefix}.requests.${p}`;
    // §16.3: through the request exchange, key p, as this user; mandatory, so a request no
    // coordinator's queue is bound for comes back.
    const properties = { persistent: true, mandatory: true, messageId: id, userId: this.user };
    this.ch.publish(this.requests, String(p), Buffer.from(JSON.stringify(body)), properties, (err) => {
      if (err != null) this.#settle(id)?.reject(new Error(`the broker refused ${op} for ${queue} (nack)`));
      else if (this.#returned.delete(id)) this.#settle(id)?.reject(new Error(`no queue ${queue}: no coordinator has declared it`));
    });
    return answer;
  }

  #settle(id: string): Pending | undefined {
    const p = this.#pending.get(id);
    if (p !== undefined) clearTimeout(p.timer);
    this.#pending.delete(id);
    return p;
  }

  #failAll(err: Error): void {
    clearInterval(this.#heartbeat);
    for (const id of [...this.#pending.keys()]) this.#settle(id)?.reject(err);
  }


  /** A reply or event arrived on the reply queue (§16.4: acked after handling). */
  onMessage(msg: ConsumeMessage | null): void {
    if (msg === null) {
      this.#failAll(new Error('the broker cancelled the reply consumer'));
      return;
    }
    let r: Reply | undefined;
    try {
      r = JSON.parse(msg.content.toString('utf8')) as Reply;
    } catch {}
    this.ch.ack(msg);
    // §16.4: the exchange says who published it: "" a coordinator, the forwards another worker,
    // whose word counts only for a grant, and never for an epoch.
    const fromCoordinator = msg.fields.exchange === '';
    if (!fromCoordinator && (msg.fields.exchange !== this.forwards || r?.type !== 'granted')) {
      this.stats.dropped++;
      return;
    }
    if (r?.v !== 1 || typeof r.re !== 'string' || !Number.isSafeInteger(r.epoch) || !Number.isSafeInteger(r.partition)) return;
    // §4.3: a forward counts only with the coordinator's MAC under this session's key, and in the
    // current term (it never raises the epoch).
    if (!fromCoordinator && (r.epoch !== this.#epochs.get(r.partition) || !this.#macHolds(r))) {
      this.stats.dropped++;
      return;
    }
    if (r.epoch < (this.#epochs.get(r.partition) ?? 0)) return; // a replaced coordinator (§10)
    if (fromCoordinator) this.#epochs.set(r.partition, r.epoch);
    const key = `${r.partition}:${String(r.token)}`;
    const pending = this.#pending.get(r.re);
    switch (r.type) {
      case 'queued':
        pending?.onQueued?.(r.position as number);
        return;
      case 'lost': {
        const hold = this.#holds.get(key);
        if (hold !== undefined) hold.lost = true;
        return;
      }
      case 'successor': {
        const hold = this.#holds.get(key);
        if (hold !== undefined) hold.next = r.next === undefined ? undefined : { ...(r.next as Next), epoch: r.epoch };
        return;
      }
      case 'granted':
        if (pending?.op !== 'acquire') {
          this.#duplicateOrGiveBack(r, key);
          return;
        }
        // Registered here, not in acquire(): the second copy may be in the same socket read.
        trim(this.#taken.add(key));
        this.#holds.set(key, {
          lock: r.lock as string,
          token: r.token as number,
          partition: r.partition,
          localDeadline: (this.#firstSent.get(r.basis as string) ?? this.#firstSent.get(r.re) ?? Number.NEGATIVE_INFINITY) + (r.ttlMs as number) - driftMs(r.ttlMs as number),
          lost: false,
          next: undefined,
          proof: typeof r.proof === 'string' ? r.proof : undefined,
        });
    }
    if (pending === undefined) return; // a duplicate, or an answer no longer waited for
    if (r.type !== 'error') {
      // §9: the session lives at least until the first send of an answered request + its ttl.
      const ttl = this.#o.sessionTtlMs;
      const until = (this.#firstSent.get(r.re) ?? Number.NEGATIVE_INFINITY) + ttl - driftMs(ttl);
      this.#sessionDeadlines.set(r.partition, Math.max(until, this.#sessionDeadlines.get(r.partition) ?? 0));
    }
    this.#settle(r.re)?.resolve(r);
  }

  /** §4.3: HMAC-SHA256 under the session key over the grant's fields, first 16 bytes, base64url. */
  #macHolds(r: Reply): boolean {
    const key = this.#keys.get(r.partition);
    if (key === undefined || typeof r.mac !== 'string') return false;
    const fields = ['lockq/grant/v1', r.partition, r.epoch, r.re, r.lock, r.token, r.ttlMs, r.basis, r.proof ?? null];
    const mac = createHmac('sha256', key).update(JSON.stringify(fields), 'utf8').digest().subarray(0, 16).toString('base64url');
    return mac.length === r.mac.length && timingSafeEqual(Buffer.from(mac), Buffer.from(r.mac));
  }

  /** §4.3: the second copy of a grant taken is ignored; a grant nobody waits for is given back. */
  #duplicateOrGiveBack(r: Reply, key: string): void {
    if (this.#taken.has(key)) {
      this.stats.duplicateGrants++;
      // The coordinator's own copy (a forward has a proof): the hold needs no proof any more.
      const hold = this.#holds.get(key);
      if (hold !== undefined && r.proof === undefined) hold.proof = undefined;
      return;
    }
    this.stats.givenBack++;
    const handoff = typeof r.proof === 'string' ? { handoff: r.proof } : {};
    this.#request(r.partition, 'release', { lock: r.lock, token: r.token, ...handoff }).catch(() => {});
  }
}
