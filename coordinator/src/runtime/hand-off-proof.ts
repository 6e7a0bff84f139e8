import { Buffer } from 'node:buffer';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { isHandOffProof, type Request } from '@lockq/protocol';

/** Bound into every proof, so a MAC made for anything else under the same key is never one. */
const HAND_OFF_LABEL = 'lockq/handoff/v1';
/** Bound into every session key, likewise. */
const SESSION_LABEL = 'lockq/session/v1';

/**
 * The coordinator's keys for docs/security.md §6, all derived from one secret (`handOffSecret`,
 * `--secret-file`), so there is no key table to store or replicate:
 *
 * - the **hand-off proof** (§6.1): a MAC only the coordinator can make, sent to a mutex's holder
 *   inside the successor's grant, which the successor presents (`handoff`) when it speaks before
 *   the coordinator's own copy of the grant. The reserved token alone is no proof: it is the
 *   partition's counter when the waiter was named, so anyone can guess it. Bound to the
 *   successor's principal and session, so a copy is of no use to anyone else.
 * - the **session key** (§6.2): sent to the worker in its `opened` reply (to its own reply address
 *   only); the coordinator MACs a successor's grant with it, so the successor can tell the
 *   holder's forward from a forgery. The worker never learns the secret or another session's key.
 *
 * The core never sees a key: requests reach it with `handoff: true` when the proof held, and
 * without the field otherwise, so the journal replays the same way under any key. Without a
 * secret the key is random per process: after a take-over proofs and forwards fail their checks,
 * which fails safe (the coordinator's own grant still comes).
 */
export class HandOffProofs {
  readonly #key: Buffer;

  /** `secret` as given (`--secret-file`); without one a random key, good for this process only. */
  constructor(secret: Uint8Array | string | undefined) {
    this.#key = secret === undefined ? randomBytes(32) : Buffer.from(secret);
  }

  /**
   * First 16 bytes of HMAC-SHA256 over the label and the hold's identity, base64url: 22
   * characters. `principal` and `session` are the successor's (principal `""` with identity off).
   */
  proof(partition: number, lock: string, token: number, principal: string, session: string): string {
    // Lock names and session ids are printable ASCII and principals `[A-Za-z0-9_-]`, so NUL
    // separates the fields unambiguously.
    const text = `${HAND_OFF_LABEL}\0${partition}\0${lock}\0${token}\0${principal}\0${session}`;
    return this.#mac(text).toString('base64url');
  }

  /**
   * The key of `principal`'s session `session` on `partition`: the first 16 bytes of
   * HMAC-SHA256(secret, label, partition, principal, session). The same for every coordinator
   * with the same secret, so a session keeps its key across a take-over when one is configured.
   */
  sessionKey(partition: number, principal: string, session: string): Buffer {
    return this.#mac(`${SESSION_LABEL}\0${partition}\0${principal}\0${session}`);
  }

  /**
   * The request as the core is to see it: a `handoff` proof that holds for the request's own
   * partition, lock, token, principal and session becomes `true`; one that does not is removed.
   */
  check(partition: number, request: Request): Request {
    if ((request.op !== 'release' && request.op !== 'extend') || request.handoff === undefined) return request;
    const { handoff, ...rest } = request;
    const expected = this.proof(partition, request.lock, request.token, request.principal ?? '', request.session);
    return isHandOffProof(handoff) && timingSafeEqual(Buffer.from(handoff), Buffer.from(expected)) ? { ...rest, handoff: true } : rest;
  }

  #mac(text: string): Buffer {
    return createHmac('sha256', this.#key).update(text, 'utf8').digest().subarray(0, 16);
  }
}
