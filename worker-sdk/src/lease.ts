import { LeaseLostError, type LockqError } from './errors.js';
import type { LockMode, SuccessorEvent } from '@lockq/protocol';

/** What a lease needs from its client; kept narrow so the lease never sees the wire. */
export interface LeaseOwner {
  releaseLease(lease: Lease): Promise<void>;
  /** Resolves with the new local deadline. */
  extendLease(lease: Lease, ttlMs: number): Promise<number>;
  readonly renewAt: number;
  readonly logger: { warn(obj: object, msg: string): void };
  /**
   * Until when the coordinator provably still keeps this worker's session on `partition` (its
   * holds end with it). Moves forward as the session's requests are answered.
   */
  sessionDeadline(partition: number): number;
}

/**
 * A granted hold. `token` is the fencing token: pass it to the resource you protect and have it
 * refuse tokens lower than the highest it has seen. `signal` aborts the moment the lease can no
 * longer be trusted (its local deadline passed, the coordinator said it is gone, or a renewal
 * failed); after that, stop writing.
 */
export class Lease {
  readonly lock: string;
  readonly token: number;
  readonly mode: LockMode;
  readonly permits: number;
  readonly partition: number;
  /** The lease length asked for; renewals ask for it again. */
  readonly ttlMs: number;
  readonly #owner: LeaseOwner;
  /** The lease's own local deadline, from its grant or latest extend. */
  #deadline: number;
  #controller: AbortController | undefined;
  #deadlineTimer: NodeJS.Timeout | undefined;
  #renewTimer: NodeJS.Timeout | undefined;
  #renewing = false;
  #lost: LeaseLostError | undefined;
  #released = false;
  #successor: SuccessorEvent | undefined;
  /**
   * @internal The proof of a grant forwarded by the previous holder, sent as `handoff` with this
   * hold's requests until the coordinator's own copy of the grant comes (docs/protocol.md §4.3).
   */
  handOffProof: string | undefined;

  /** @internal Created by the client on a grant. */
  constructor(
    owner: LeaseOwner,
    fields: { lock: string; token: number; mode: LockMode; permits: number; partition: number; ttlMs: number },
    deadline: number,
  ) {
    this.#owner = owner;
    this.lock = fields.lock;
    this.token = fields.token;
    this.mode = fields.mode;
    this.permits = fields.permits;
    this.partition = fields.partition;
    this.ttlMs = fields.ttlMs;
    this.#deadline = deadline;
  }

  /**
   * Until when (on `performance.now()`'s clock) this worker may trust the lease: its own local
   * deadline, but never past the moment its session may have expired at the coordinator (which
   * ends every hold of the session), however long the lease.
   */
  get deadline(): number {
    return Math.min(this.#deadline, this.#owner.sessionDeadline(this.partition));
  }

  /** @internal The lease's own local deadline, leaving its session aside (heartbeats keep that going). */
  get leaseDeadline(): number {
    return this.#deadline;
  }

  /** True once the lease can no longer be trusted or has been released. */
  get expired(): boolean {
    return this.#lost !== undefined || this.#released || performance.now() >= this.deadline;
  }

  /** Why the lease was lost, if it was. */
  get lostReason(): LeaseLostError | undefined {
    return this.#lost;
  }

  /**
   * @internal The coordinator's latest word on who is next for this hold (a contended mutex): the
   * grant the client forwards to that waiter when it releases. Undefined while nobody is named.
   */
  get successor(): SuccessorEvent | undefined {
    return this.#successor;
  }

  /** @internal A later event replaces an earlier one; one without `next` means nobody is named any more. */
  setSuccessor(event: SuccessorEvent): void {
    this.#successor = event.next === undefined ? undefined : event;
  }

  /** Aborts (with a {@link LeaseLostError}) the moment the lease can no longer be trusted. */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#lost !== undefined) this.#controller.abort(this.#lost);
      else if (!this.#released) this.#armDeadline();
    }
    return this.#controller.signal;
  }

  /**
   * Releases the hold. Releasing twice is a no-op, and so is releasing a lease the coordinator
   * said is gone; a lease lost only locally (its deadline passed here) may still be held there,
   * so it is released all the same, rather than left to block others until it runs out.
   */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    this.#clearTimers();
    if (this.#lost !== undefined && !this.#lost.local) return;
    await this.#owner.releaseLease(this);
  }

  /**
   * Extends the lease to `ttlMs` from now. Fails with LEASE_EXPIRED (and the lease is lost) when
   * it had already run out: it never re-acquires.
   */
  async extend(ttlMs: number = this.ttlMs): Promise<void> {
    if (this.#lost !== undefined) throw this.#lost;
    try {
      this.#setDeadline(await this.#owner.extendLease(this, ttlMs));
    } catch (err) {
      const code = (err as LockqError).code;
      if (code === 'LEASE_EXPIRED' || code === 'NOT_HOLDER' || code === 'NO_SESSION') this.lose(code, err);
      throw err;
    }
  }

  /** Keeps the lease alive, extending at `renewAt` of the remaining local lease, until release or loss. */
  startRenewing(): void {
    this.#renewing = true;
    this.#armDeadline();
    this.#scheduleRenewal();
  }

  /** @internal The lease is gone (or, with `local`, can no longer be trusted here); abort the signal. */
  lose(reason: string, cause?: unknown, local = false): void {
    if (this.#lost !== undefined || this.#released) return;
    this.#lost = new LeaseLostError(this.lock, reason, cause === undefined ? { local } : { cause, local });
    this.#clearTimers();
    this.#controller?.abort(this.#lost);
  }

  #setDeadline(deadline: number): void {
    this.#deadline = deadline;
    if (this.#deadlineTimer !== undefined || this.#renewing) this.#armDeadline();
    if (this.#renewing) this.#scheduleRenewal();
  }

  #armDeadline(): void {
    if (this.#deadlineTimer !== undefined) clearTimeout(this.#deadlineTimer);
    const left = this.deadline - performance.now();
    if (left <= 0) {
      this.lose('local deadline passed', undefined, true);
      return;
    }
    // The session's part of the deadline may have moved on meanwhile (an answered heartbeat).
    this.#deadlineTimer = setTimeout(() => {
      if (this.deadline > performance.now()) this.#armDeadline();
      else this.lose('local deadline passed without renewal', undefined, true);
    }, Math.ceil(left));
  }

  #scheduleRenewal(): void {
    if (this.#renewTimer !== undefined) clearTimeout(this.#renewTimer);
    // By the lease's own deadline: the session's part is kept going by heartbeats, not renewals.
    const left = this.#deadline - performance.now();
    this.#renewTimer = setTimeout(() => this.#renew(), Math.max(0, Math.floor(left * this.#owner.renewAt)));
  }

  #renew(): void {
    this.#renewTimer = undefined;
    if (this.#lost !== undefined || this.#released) return;
    this.extend().catch((err: unknown) => {
      if (this.#lost !== undefined || this.#released) return;
      // Transient (timeout, broker down): try again while the lease still holds.
      this.#owner.logger.warn({ err, lock: this.lock }, 'lease renewal failed; retrying');
      this.#renewTimer = setTimeout(() => this.#renew(), Math.max(1, Math.floor((this.deadline - performance.now()) / 4)));
    });
  }

  #clearTimers(): void {
    if (this.#deadlineTimer !== undefined) clearTimeout(this.#deadlineTimer);
    if (this.#renewTimer !== undefined) clearTimeout(this.#renewTimer);
    this.#deadlineTimer = undefined;
    this.#renewTimer = undefined;
    this.#renewing = false;
  }
}
