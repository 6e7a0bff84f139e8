import { Buffer } from 'node:buffer';
import type { Logger } from 'pino';
import { LockqError } from './errors.js';
import { isHmac16, type Reply } from '@lockq/protocol';
import type { RequestFields, Watch } from './request-table.js';
import { newSession, type PartitionSession } from './session.js';

/** How the session table sends a request (the request table does). */
export interface RequestSender {
  send(s: PartitionSession, fields: RequestFields, watch?: Watch): Promise<Reply>;
}

/** What the session table does to the leases of a session the coordinator no longer knows. */
export interface SessionLeases {
  loseAll(reason: string, partition: number): void;
}

export interface SessionsOptions {
  readonly workerId: string;
  readonly instance: string;
  readonly replyAddress: string;
  readonly partitions: number;
  readonly sessionTtlMs: number;
  readonly heartbeatMs: number;
  readonly driftFactor: number;
  readonly driftMarginMs: number;
  readonly logger: Logger;
}

/** How a reply's coordinator term compares with the latest one seen on its partition. */
export type Term = 'stale' | 'current' | 'new';

/**
 * The client's sessions, one per partition it talks to: opens them (and re-opens them after a
 * reconnect, resuming them with their holds), keeps them alive with heartbeats, knows until when
 * each provably lives at the coordinator, and which coordinator term it believes.
 */
export class Sessions {
  readonly #requests: RequestSender;
  readonly #leases: SessionLeases;
  readonly #o: SessionsOptions;
  readonly #byPartition = new Map<number, PartitionSession>();
  readonly #heartbeat: NodeJS.Timeout;

  constructor(requests: RequestSender, leases: SessionLeases, options: SessionsOptions) {
    this.#requests = requests;
    this.#leases = leases;
    this.#o = options;
    this.#heartbeat = setInterval(() => this.#beat(), Math.max(5, Math.floor(options.heartbeatMs / 2))).unref();
  }

  /** The session on `partition` (not necessarily open). */
  get(partition: number): PartitionSession {
    let s = this.#byPartition.get(partition);
    if (s === undefined) {
      s = newSession(partition, this.#o);
      this.#byPartition.set(partition, s);
    }
    return s;
  }

  /** The session on `partition` if this client ever used that partition (a reply for any other is not for it). */
  find(partition: number): PartitionSession | undefined {
    return this.#byPartition.get(partition);
  }

  /** Sends a request in an open session (opening one first), retrying once if the session was lost. */
  async call(partition: number, fields: RequestFields, watch?: Watch): Promise<Reply> {
    const s = this.get(partition);
    for (let attempt = 0; ; attempt++) {
      // Awaited only while the session is (re-)opening: most requests go out in this same turn.
      if (fields.op !== 'inspect' && (s.opened === undefined || s.ready !== s.opened)) await this.#ensureOpen(s);
      try {
        return await this.#requests.send(s, fields, watch);
      } catch (err) {
        if (!(err instanceof LockqError) || err.code !== 'NO_SESSION' || attempt >= 2) throw err;
        this.#lost(s);
        // A release or extend of a hold in the lost session has nothing to act on any more.
        if (fields.op === 'release' || fields.op === 'extend') throw err;
      }
    }
  }

  /** Until when the coordinator provably keeps the session on `partition`. */
  deadline(partition: number): number {
    return this.#byPartition.get(partition)?.aliveUntil ?? Number.NEGATIVE_INFINITY;
  }

  /** The coordinator processed a request of `s` first sent at `sentAt`, which refreshed the session then. */
  proven(s: PartitionSession, sentAt: number | undefined): void {
    if (sentAt === undefined) return;
    const ttl = this.#o.sessionTtlMs;
    const until = sentAt + ttl - (ttl * this.#o.driftFactor + this.#o.driftMarginMs);
    if (until > s.aliveUntil) s.aliveUntil = until;
  }

  /** Compares a reply's coordinator term with the latest seen on `s`, and adopts it unless it is stale. */
  term(s: PartitionSession, epoch: number): Term {
    if (epoch === s.epoch) return 'current';
    if (epoch < s.epoch) return 'stale'; // from a coordinator that has been replaced
    const first = s.epoch === 0;
    s.epoch = epoch;
    return first ? 'current' : 'new';
  }

  /** The partitions whose session has been opened (or is opening). */
  openPartitions(): number[] {
    return [...this.#byPartition.values()].filter((s) => s.opened !== undefined).map((s) => s.partition);
  }

  /**
   * After a reconnect: re-opens every session with the same id; one still within its ttl is
   * resumed with its holds, one that expired meanwhile loses them.
   */
  reopenAll(): void {
    for (const s of this.#byPartition.values()) {
      if (s.opened !== undefined) this.#startOpening(s, () => this.#lost(s));
    }
  }

  /** Stops the heartbeats. */
  close(): void {
    clearInterval(this.#heartbeat);
  }

  #ensureOpen(s: PartitionSession): Promise<void> {
    return (
      s.opened ??
      this.#startOpening(s, (err) => {
        s.opened = undefined;
        throw err;
      })
    );
  }

  /** Opens (or re-opens) the session as `s.opened`, which becomes `s.ready` once it succeeded. */
  #startOpening(s: PartitionSession, onFailure: (err: unknown) => void): Promise<void> {
    const opening: Promise<void> = this.#open(s).then(() => {
      if (s.opened === opening) s.ready = opening;
    }, onFailure);
    s.opened = opening;
    return opening;
  }

  async #open(s: PartitionSession): Promise<void> {
    const reply = await this.#requests.send(s, {
      op: 'open',
      sessionTtlMs: this.#o.sessionTtlMs,
      partitions: this.#o.partitions,
    });
    if (reply.type !== 'opened') return;
    // The key comes with every open, so a re-open after a take-over learns the new term's.
    s.key = isHmac16(reply.key) ? Buffer.from(reply.key, 'base64url') : undefined;
    if (!reply.resumed) this.#leases.loseAll('NO_SESSION', s.partition);
  }

  /** The coordinator no longer knows the session: every lease in it is gone. */
  #lost(s: PartitionSession): void {
    s.opened = undefined;
    this.#leases.loseAll('NO_SESSION', s.partition);
  }

  #beat(): void {
    const now = performance.now();
    for (const s of this.#byPartition.values()) {
      if (s.opened === undefined || now - s.lastSentAt < this.#o.heartbeatMs) continue;
      this.call(s.partition, { op: 'heartbeat' }).catch((err: unknown) =>
        this.#o.logger.warn({ err, partition: s.partition }, 'heartbeat failed'),
      );
    }
  }
}
