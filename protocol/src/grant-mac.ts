import { Buffer } from 'node:buffer';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { isHandOffProof } from './limits.js';
import type { GrantedReply } from './messages.js';

/** Bound into every grant MAC, so a MAC made for anything else under a session key is never one. */
const LABEL = 'lockq/grant/v1';

/**
 * True for 16 bytes of HMAC-SHA256 in base64url without padding (22 characters): a session key
 * (`opened`'s `key`), a grant's `mac`, or a hand-off proof; they all have this one form.
 */
export function isHmac16(value: unknown): value is string {
  return isHandOffProof(value);
}

/** What a grant's `mac` covers besides the envelope's partition and epoch: every field but `type` and `mac`. */
export type MacedGrant = Pick<GrantedReply, 're' | 'lock' | 'token' | 'ttlMs' | 'basis' | 'proof'>;

/**
 * The `mac` of a successor's grant (docs/security.md §6.2): the first 16 bytes of
 * HMAC-SHA256(session key, label, partition, epoch, re, lock, token, ttlMs, basis, proof),
 * base64url. The coordinator makes it when it names the successor; the successor, which got the
 * key in its `opened` reply, checks the holder's forward with it. `basis` and `proof` are covered
 * too: a copy read off the forwards exchange and sent on ahead with a later basis (a longer lease)
 * or a spoilt proof (an early request refused) is not the coordinator's grant.
 */
export function grantMac(sessionKey: Uint8Array, partition: number, epoch: number, grant: MacedGrant): string {
  // A JSON array: unambiguous for any values and types, so no field can shift into another.
  const text = JSON.stringify([LABEL, partition, epoch, grant.re, grant.lock, grant.token, grant.ttlMs, grant.basis, grant.proof ?? null]);
  return createHmac('sha256', sessionKey).update(text, 'utf8').digest().subarray(0, 16).toString('base64url');
}

/** True when `grant` carries a `mac` that `sessionKey` made for exactly its fields and envelope. */
export function verifyGrantMac(sessionKey: Uint8Array, grant: GrantedReply): boolean {
  if (!isHmac16(grant.mac)) return false;
  const expected = grantMac(sessionKey, grant.partition, grant.epoch, grant);
  return timingSafeEqual(Buffer.from(grant.mac), Buffer.from(expected));
}
