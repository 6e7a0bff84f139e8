import { RANGES } from './limits.js';
import type { Reply } from './messages.js';

/**
 * The fast path of the codec, for the messages of a lock's life: the acquire (of a mutex),
 * release, extend and heartbeat requests, and the granted, extended and released replies. Each
 * has one canonical layout, the one the SDK (client.ts `#send`) and the coordinator
 * (`encodeReply`) write. Writing one is a string template instead of JSON.stringify; reading one
 * is a regular expression instead of JSON.parse and the general validation. Anything else,
 * however slightly different (another field order, an extra field, whitespace, an escape, a
 * number written as `1e3`, a value out of range, non-ASCII), is `undefined` here, and the caller
 * takes the general path, which stays the reference: `canonical.test.ts` checks that both paths
 * give the same bytes and the same objects on random and mutated inputs.
 */

// ---- reading ----------------------------------------------------------------------------------

/*
 * Matching the text is sound because every value the patterns accept needs no decoding: a string
 * of printable ASCII other than `"` and `\` is its own JSON value, and so is an integer of at most
 * 15 digits without a sign or leading zero (always a safe integer).
 */

/** A string value that is its own JSON value (the identifier rule minus `"` and `\`), `range` characters long. */
const name = (range: { readonly min: number; readonly max: number }): string =>
  `"([\\x21\\x23-\\x5b\\x5d-\\x7e]{${range.min},${range.max}})"`;
/** A non-negative integer as JSON.stringify writes it, short enough to be safe. */
const INT = '(0|[1-9][0-9]{0,14})';
/** A positive one. */
const POSITIVE = '([1-9][0-9]{0,14})';

/** Every request's envelope, as `#send` splices it in front of the op's fields. Sticky: the op's pattern continues from its end. */
const REQUEST_ENVELOPE = new RegExp(
  `\\{"v":1,"worker":${name(RANGES.id)},"session":${name(RANGES.id)},"replyTo":${name(RANGES.replyTo)},` +
    `"id":${name(RANGES.id)},"seq":${POSITIVE},"settled":${INT},"op":"(acquire|release|extend|heartbeat)"`,
  'y',
);
/** What follows the envelope, by op: the fields in the order `#send` writes them (an acquire of a mutex carries no kind). */
const REQUEST_FIELDS = {
  acquire: new RegExp(`,"lock":${name(RANGES.lockName)},"ttlMs":${INT},"waitMs":${INT}\\}$`, 'y'),
  release: new RegExp(`,"lock":${name(RANGES.lockName)},"token":${POSITIVE}\\}$`, 'y'),
  extend: new RegExp(`,"lock":${name(RANGES.lockName)},"token":${POSITIVE},"ttlMs":${INT}\\}$`, 'y'),
  heartbeat: /\}$/y,
} as const;

const within = (value: number, range: { readonly min: number; readonly max: number }): boolean =>
  value >= range.min && value <= range.max;

/**
 * A request in its canonical layout: what `JSON.parse` gives for `text`, already known to pass
 * every check of `decodeRequest` (an acquire still needs normalising); otherwise undefined.
 */
export function parseCanonicalRequest(text: string): Record<string, unknown> | undefined {
  REQUEST_ENVELOPE.lastIndex = 0;
  const e = REQUEST_ENVELOPE.exec(text);
  if (e === null) return undefined;
  const op = e[7] as keyof typeof REQUEST_FIELDS;
  // Compared, not looked up as REQUEST_FIELDS[op]: a property lookup by a fresh string probes the string table.
  const pattern =
    op === 'acquire' ? REQUEST_FIELDS.acquire : op === 'release' ? REQUEST_FIELDS.release : op === 'extend' ? REQUEST_FIELDS.extend : REQUEST_FIELDS.heartbeat;
  pattern.lastIndex = REQUEST_ENVELOPE.lastIndex;
  const f = pattern.exec(text);
  if (f === null) return undefined;
  const [, worker, session, replyTo, id] = e;
  const seq = Number(e[5]);
  const settled = Number(e[6]);
  // Built as literals in wire order, so each equals JSON.parse's result down to its key order.
  switch (op) {
    case 'acquire': {
      const ttlMs = Number(f[2]);
      const waitMs = Number(f[3]);
      if (!within(ttlMs, RANGES.ttlMs) || !within(waitMs, RANGES.waitMs)) return undefined;
      return { v: 1, worker, session, replyTo, id, seq, settled, op, lock: f[1], ttlMs, waitMs };
    }
    case 'release':
      return { v: 1, worker, session, replyTo, id, seq, settled, op, lock: f[1], token: Number(f[2]) };
    case 'extend': {
      const ttlMs = Number(f[3]);
      if (!within(ttlMs, RANGES.ttlMs)) return undefined;
      return { v: 1, worker, session, replyTo, id, seq, settled, op, lock: f[1], token: Number(f[2]), ttlMs };
    }
    case 'heartbeat':
      return { v: 1, worker, session, replyTo, id, seq, settled, op };
  }
}

/** A string in a reply: any printable ASCII but `"` and `\` (replies are not validated, only read). */
const TEXT = '"([\\x20\\x21\\x23-\\x5b\\x5d-\\x7e]*)"';
/**
 * The answers to the requests above, as `encodeReply` writes the core's bodies: `granted` and
 * `extended` carry a lease (`ttlMs`, `basis`), `released` does not.
 */
const REPLY = new RegExp(
  `^\\{"v":1,"epoch":${INT},"partition":${INT},"type":"(granted|extended|released)","re":${TEXT},"lock":${TEXT},"token":${INT}` +
    `(?:,"ttlMs":${INT},"basis":${TEXT})?\\}$`,
);

/** A reply in its canonical layout: what `JSON.parse` gives for `text`; otherwise undefined. */
export function parseCanonicalReply(text: string): Reply | undefined {
  const m = REPLY.exec(text);
  if (m === null) return undefined;
  const [, epoch, partition, type, re = '', lock = '', token, ttlMs, basis] = m;
  // Literals, not spreads of a shared envelope: this runs for every answer a worker reads.
  if (type === 'released') {
    if (ttlMs !== undefined) return undefined;
    return { v: 1, epoch: Number(epoch), partition: Number(partition), type, re, lock, token: Number(token) };
  }
  if (basis === undefined) return undefined;
  return {
    v: 1,
    epoch: Number(epoch),
    partition: Number(partition),
    type: type as 'granted' | 'extended',
    re,
    lock,
    token: Number(token),
    ttlMs: Number(ttlMs),
    basis,
  };
}

// ---- writing ----------------------------------------------------------------------------------

/** True when JSON.stringify writes `value` as it is, between quotes: no `"`, `\`, control character or surrogate. */
function isVerbatim(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return false;
  }
  return true;
}

/** True when JSON.stringify writes `value` as a template does (`${value}`). */
const isFiniteNumber = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value);

/**
 * True when `value`'s keys are exactly `keys`, in that order: the fields JSON.stringify would
 * write. for...in, not Object.keys: no array is built, and an inherited key is a mismatch too.
 */
function hasLayout(value: object, keys: readonly string[]): boolean {
  let i = 0;
  for (const key in value) if (key !== keys[i++]) return false;
  return i === keys.length;
}

const ACQUIRE_LAYOUT = ['op', 'lock', 'ttlMs', 'waitMs'];
const RELEASE_LAYOUT = ['op', 'lock', 'token'];
const EXTEND_LAYOUT = ['op', 'lock', 'token', 'ttlMs'];
const HEARTBEAT_LAYOUT = ['op'];

/**
 * `head` (a request's envelope, up to its last value) followed by `fields` and the closing brace,
 * exactly as JSON.stringify would write `fields`, when they have a canonical layout; otherwise
 * undefined.
 */
export function writeCanonicalRequest(head: string, fields: { readonly op: string }): string | undefined {
  const f = fields as Readonly<Record<string, unknown>>;
  switch (fields.op) {
    case 'acquire':
      if (!hasLayout(f, ACQUIRE_LAYOUT) || !isVerbatim(f.lock) || !isFiniteNumber(f.ttlMs) || !isFiniteNumber(f.waitMs)) return undefined;
      return `${head},"op":"acquire","lock":"${f.lock}","ttlMs":${f.ttlMs},"waitMs":${f.waitMs}}`;
    case 'release':
      if (!hasLayout(f, RELEASE_LAYOUT) || !isVerbatim(f.lock) || !isFiniteNumber(f.token)) return undefined;
      return `${head},"op":"release","lock":"${f.lock}","token":${f.token}}`;
    case 'extend':
      if (!hasLayout(f, EXTEND_LAYOUT) || !isVerbatim(f.lock) || !isFiniteNumber(f.token) || !isFiniteNumber(f.ttlMs)) return undefined;
      return `${head},"op":"extend","lock":"${f.lock}","token":${f.token},"ttlMs":${f.ttlMs}}`;
    case 'heartbeat':
      return hasLayout(f, HEARTBEAT_LAYOUT) ? `${head},"op":"heartbeat"}` : undefined;
    default:
      return undefined;
  }
}

const LEASE_LAYOUT = ['type', 're', 'lock', 'token', 'ttlMs', 'basis'];
const RELEASED_LAYOUT = ['type', 're', 'lock', 'token'];

/**
 * `head` (a reply's envelope, up to its last value) followed by `body` and the closing brace,
 * exactly as JSON.stringify would write `body`, when it has a canonical layout; otherwise undefined.
 */
export function writeCanonicalReply(head: string, body: { readonly type: string }): string | undefined {
  const b = body as Readonly<Record<string, unknown>>;
  switch (body.type) {
    case 'granted':
    case 'extended':
      if (!hasLayout(b, LEASE_LAYOUT) || !isVerbatim(b.re) || !isVerbatim(b.lock) || !isFiniteNumber(b.token) || !isFiniteNumber(b.ttlMs) || !isVerbatim(b.basis)) {
        return undefined;
      }
      return `${head},"type":"${body.type}","re":"${b.re}","lock":"${b.lock}","token":${b.token},"ttlMs":${b.ttlMs},"basis":"${b.basis}"}`;
    case 'released':
      if (!hasLayout(b, RELEASED_LAYOUT) || !isVerbatim(b.re) || !isVerbatim(b.lock) || !isFiniteNumber(b.token)) return undefined;
      return `${head},"type":"released","re":"${b.re}","lock":"${b.lock}","token":${b.token}}`;
    default:
      return undefined;
  }
}
