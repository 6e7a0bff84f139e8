import type { Logger } from 'pino';
import { encodeReply, type GrantedReply, isHandOffProof, type Reply, type SuccessorEvent } from '@lockq/protocol';
import type { HeldLeases } from './held-leases.js';
import type { Lease } from './lease.js';
import type { RequestFields } from './request-table.js';
import type { ClientTransport } from './transport/types.js';

/** What the hand-off needs from the rest of the client. */
export interface HandOffContext {
  /** Where a successor's grant is forwarded: the transport (which delivers in process when it can). */
  readonly transport: Pick<ClientTransport, 'forward'>;
  readonly leases: Pick<HeldLeases, 'get'>;
  /** Whether request `id` was answered with a grant this client took. */
  readonly requests: { tookGrant(id: string): boolean };
  /** Sends a request in an open session (a give-back is a release). */
  readonly sessions: { call(partition: number, fields: RequestFields): Promise<Reply> };
  readonly logger: Logger;
}

/** Holds refused early kept for giving back; beyond this the oldest is dropped (it then runs out). */
const MAX_GIVE_BACKS = 1024;

/**
 * Both sides of the direct hand-off of a contended mutex. As the holder: keeps the coordinator's
 * latest word on who is next, and forwards that waiter its grant as the lease is released. As the
 * successor: gives back a grant that came for a request nobody waits for any more, or for a hold
 * the coordinator refused to hand over early.
 */
export class HandOff {
  readonly #c: HandOffContext;
  /** `partition:token` of forwarded holds whose early request was refused: released when granted. */
  readonly #giveBacks = new Set<string>();

  constructor(context: HandOffContext) {
    this.#c = context;
  }

  /** The coordinator named (or stopped naming) the next holder of one of this client's holds. */
  successorNamed(event: SuccessorEvent): void {
    this.#c.leases.get(event.partition, event.token)?.setSuccessor(event);
  }

  /**
   * Passes the lock straight to the waiter the coordinator named (a contended mutex), one hop
   * ahead of the release: the forwarded grant is the one the coordinator reserved and grants
   * itself on the release, so the successor gets the same token either way. Only while this
   * worker may still trust the lease: a lease that is lost, or past its local deadline, may have
   * gone to someone else already, and its successor event may be stale.
   */
  releasing(lease: Lease): void {
    const event = lease.successor;
    if (event?.next === undefined || lease.lostReason !== undefined || performance.now() >= lease.deadline) return;
    const { to, grant } = event.next;
    // The same bytes the coordinator would send, so the successor reads them as its own grant.
    const body = encodeReply(grant, event.epoch, event.partition);
    // Best effort: if it is lost, the coordinator's own grant follows the release.
    this.#c.transport.forward(to, body).catch((err: unknown) => this.#c.logger.debug({ err, to }, 'forwarding a grant failed'));
  }

  /**
   * A grant for a request nobody waits for. A copy of a grant this client holds or held (a
   * hand-off sends two; replies come at least once) is dropped. Any other came for a request
   * whose wait ended (answered with an error, timed out here, aborted): nobody wants it, but the
   * coordinator may hold it for this client, since a named successor is granted even after its
   * wait ran out (it may have taken the holder's forwarded copy). It is given back at once.
   */
  unclaimed(grant: GrantedReply): void {
    const key = `${grant.partition}:${grant.token}`;
    if (this.#giveBacks.delete(key)) {
      this.#giveBack(grant);
      return;
    }
    const lease = this.#c.leases.get(grant.partition, grant.token);
    if (lease !== undefined) {
      // The coordinator's own copy (a forward carries a proof): the hand-off is complete there,
      // so the hold's requests need no proof from now on.
      if (grant.proof === undefined) lease.handOffProof = undefined;
      return;
    }
    if (this.#c.requests.tookGrant(grant.re)) return;
    this.#giveBack(grant);
  }

  /**
   * The coordinator refused (NOT_HOLDER) an early request of a hold taken from a forwarded grant:
   * its proof did not hold (a new coordinator term checks with another key) and the previous
   * holder had not released yet. The lease is gone here, but the coordinator still grants the
   * hold once the previous holder's ends: it is given back when that grant comes.
   */
  refusedEarly(lease: Pick<Lease, 'partition' | 'token'>): void {
    if (this.#giveBacks.size >= MAX_GIVE_BACKS) {
      const oldest = this.#giveBacks.values().next().value;
      if (oldest !== undefined) this.#giveBacks.delete(oldest);
    }
    this.#giveBacks.add(`${lease.partition}:${lease.token}`);
  }

  /** Releases a hold this client does not want; a forwarded one with its proof, so it ends at once. */
  #giveBack(grant: GrantedReply): void {
    const fields = { op: 'release', lock: grant.lock, token: grant.token } as const;
    const handoff = isHandOffProof(grant.proof) ? { handoff: grant.proof } : {};
    this.#c.sessions.call(grant.partition, { ...fields, ...handoff }).catch(() => undefined);
  }
}
