import { Buffer } from 'node:buffer';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { isHandOffProof, type Request } from '@lockq/protocol';

/** Bound into every proof, so a MAC made for anything else under the same key is never one. */
const LABEL = 'lockq/handoff/v1';
/** Until sessions are bound to principals (docs/security.md §5), every session's principal is this. */
const NO_PRINCIPAL = '';

/**
 * The hand-off proof of docs/security.md §6.1: a MAC only the coordinator can make, sent to a
 * mutex's holder inside the successor's grant, which the successor presents (`handoff`) when it
 * speaks before the coordinator's own copy of the grant. The reserved token alone is no proof:
 * it is the partition's counter when the waiter was named, so anyone can guess it.
 *
 * The core never sees a key: requests reach it with `handoff: true` when the proof held, and
 * without the field otherwise, so the journal replays the same way under any key.
 */
export class HandOffProofs {
  readonly #key: Buffer;

  /** `secret` as given (`--secret-file`); without one a random key, good for this process only. */
  constructor(secret: Uint8Array | string | undefined) {
    this.#key = secret === undefined ? randomBytes(32) : Buffer.from(secret);
  }

  /** First 16 bytes of HMAC-SHA256 over the label and the hold's identity, base64url: 22 characters. */
  proof(partition: number, lock: string, token: number, session: string): string {
    // Lock names and session ids are printable ASCII, so NUL separates the fields unambiguously.
    const text = `${LABEL}\0${partition}\0${lock}\0${token}\0${NO_PRINCIPAL}\0${session}`;
    return createHmac('sha256', this.#key).update(text, 'utf8').digest().subarray(0, 16).toString('base64url');
  }

  /**
   * The request as the core is to see it: a `handoff` proof that holds for the request's own
   * partition, lock, token and session becomes `true`; one that does not is removed.
   */
  check(partition: number, request: Request): Request {
    if ((request.op !== 'release' && request.op !== 'extend') || request.handoff === undefined) return request;
    const { handoff, ...rest } = request;
    const expected = this.proof(partition, request.lock, request.token, request.session);
    return isHandOffProof(handoff) && timingSafeEqual(Buffer.from(handoff), Buffer.from(expected)) ? { ...rest, handoff: true } : rest;
  }
}
