import { isPrincipal, replyNamespace } from '@lockq/protocol';

/**
 * Whether the coordinator holds requests to a broker-vouched sender (docs/security.md §5):
 * `required` refuses a request that carries no valid principal or that wants its answers outside
 * that principal's reply namespace; `off` takes every request as the principal `""` (one trust
 * domain: everyone who can publish is trusted).
 */
export type Identity = 'required' | 'off';

/** A per-principal rate: `perSecond` tokens a second, at most `burst` saved up. */
export interface PrincipalRate {
  readonly perSecond: number;
  readonly burst: number;
}

/** Why a request was refused before the core saw it, as `lockq_forbidden_total{reason}` counts it. */
export type ForbiddenReason = 'principal' | 'reply-address';

/** What {@link Admission.sender} says of a message before its body is read. */
export type SenderVerdict =
  /** Go on and decode it, for this principal (`undefined`: identity is off). */
  | { readonly admit: true; readonly principal: string | undefined }
  /** Refuse it without reading it: dead-letter it FORBIDDEN. */
  | { readonly admit: false; readonly forbidden: ForbiddenReason }
  /**
   * Over its principal's rate: drop it. `reply` says whether this one may be answered
   * `RATE_LIMITED` (at most one a principal per {@link RATE_LIMITED_REPLY_GAP_MS}), so a flood
   * never turns into a flood of replies.
   */
  | { readonly admit: false; readonly limited: true; readonly reply: boolean; readonly retryAfterMs: number };

/** A rate-limited principal gets at most one `RATE_LIMITED` reply this often; the rest are only counted. */
export const RATE_LIMITED_REPLY_GAP_MS = 100;
/** Buckets kept before full (idle) ones are forgotten: a full bucket is the same as none. */
const MAX_BUCKETS = 10_000;

interface Bucket {
  tokens: number;
  at: number;
  lastReplyAt: number;
}

/**
 * The door in front of one partition's core, in the runtime because it needs the clock and the
 * broker's word, which the core must not see: who sent a message (before its body is read, so a
 * flood costs a map lookup each), whether that sender is within its rate, and whether the
 * address it wants answers at is its own. What passes goes to the core with its principal set.
 */
export class Admission {
  readonly #identity: Identity;
  readonly #prefix: string;
  readonly #rate: PrincipalRate | null;
  readonly #buckets = new Map<string, Bucket>();
  /** The last principal's namespace: requests come in runs from one sender. */
  #lastPrincipal = '';
  #lastNamespace = '';

  /** Dead letters this partition may still park (see {@link Admission.mayDeadLetter}). */
  readonly #parking: Bucket = { tokens: DEAD_LETTER_RATE.burst, at: 0, lastReplyAt: 0 };

  constructor(identity: Identity, prefix: string, rate: PrincipalRate | null) {
    this.#identity = identity;
    this.#prefix = prefix;
    this.#rate = rate;
  }

  /**
   * Whether one more refused message may be parked on the dead-letter destination now: at most
   * {@link DEAD_LETTER_RATE} a partition, so a flood of poison or of unattributed messages costs
   * the broker a bounded trickle of publishes; the rest are acked and only counted. The
   * dead-letter queue is a sample for operators, the counters are the record.
   */
  mayDeadLetter(now: number): boolean {
    return refill(this.#parking, DEAD_LETTER_RATE, now);
  }

  get identity(): Identity {
    return this.#identity;
  }

  /** Principals whose rate is being tracked (bounded: full buckets are forgotten past 10,000). */
  get ratedPrincipals(): number {
    return this.#buckets.size;
  }

  /** The sender check, before decoding: `vouched` is what the transport says sent the message. */
  sender(vouched: string | undefined, now: number): SenderVerdict {
    if (this.#identity === 'off') return ADMIT_ANONYMOUS;
    if (!isPrincipal(vouched)) return FORBIDDEN_PRINCIPAL;
    if (this.#rate !== null) {
      const limited = this.#take(vouched, this.#rate, now);
      if (limited !== null) return limited;
    }
    return { admit: true, principal: vouched };
  }

  /** True when `replyTo` is `principal`'s to be answered at (always, with identity off). */
  mayAnswer(principal: string | undefined, replyTo: string): boolean {
    if (principal === undefined) return this.#identity === 'off';
    if (principal !== this.#lastPrincipal) {
      this.#lastPrincipal = principal;
      this.#lastNamespace = replyNamespace(principal, this.#prefix);
    }
    return replyTo.startsWith(this.#lastNamespace);
  }

  /** Token bucket: null when a token was there to take. */
  #take(principal: string, rate: PrincipalRate, now: number): SenderVerdict | null {
    let b = this.#buckets.get(principal);
    if (b === undefined) {
      if (this.#buckets.size >= MAX_BUCKETS) this.#forgetFull(rate, now);
      b = { tokens: rate.burst, at: now, lastReplyAt: Number.NEGATIVE_INFINITY };
      this.#buckets.set(principal, b);
    }
    if (refill(b, rate, now)) return null;
    const reply = now - b.lastReplyAt >= RATE_LIMITED_REPLY_GAP_MS;
    if (reply) b.lastReplyAt = now;
    return { admit: false, limited: true, reply, retryAfterMs: Math.max(1, Math.ceil(((1 - b.tokens) * 1000) / rate.perSecond)) };
  }

  /** Forgets buckets that have refilled: they hold nothing a new bucket would not. */
  #forgetFull(rate: PrincipalRate, now: number): void {
    for (const [principal, b] of this.#buckets) {
      if (b.tokens + ((now - b.at) * rate.perSecond) / 1000 >= rate.burst) this.#buckets.delete(principal);
    }
  }
}

/** Takes a token from `b` after refilling it for the time since it was last looked at. */
function refill(b: Bucket, rate: PrincipalRate, now: number): boolean {
  if (now > b.at) {
    b.tokens = Math.min(rate.burst, b.tokens + ((now - b.at) * rate.perSecond) / 1000);
    b.at = now;
  }
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

/** Dead letters a partition parks: 100 a second, 200 at once. */
const DEAD_LETTER_RATE: PrincipalRate = Object.freeze({ perSecond: 100, burst: 200 });

const ADMIT_ANONYMOUS: SenderVerdict = Object.freeze({ admit: true, principal: undefined });
const FORBIDDEN_PRINCIPAL: SenderVerdict = Object.freeze({ admit: false, forbidden: 'principal' });
