import { Buffer } from 'node:buffer';
import { parseCanonicalReply, parseCanonicalRequest, writeCanonicalReply, writeCanonicalRequest } from './canonical.js';
import { type ErrorCode, ERROR_CODES } from './codes.js';
import { isHmac16 } from './grant-mac.js';
import { readInspected } from './inspected.js';
import { isHandOffProof, isPrintableName, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, RANGES } from './limits.js';
import type { AcquireRequest, AcquireWire, DistributiveOmit, LockKind, LockMode, Op, Reply, ReplyType, Request, RequestBase } from './messages.js';

/** Why a request was refused, and where to answer if that could be read from it. */
export interface DecodeFailure {
  readonly ok: false;
  readonly code: ErrorCode;
  readonly message: string;
  readonly field?: string;
  /** Salvaged from the rejected message when present and well formed, so the sender can be answered. */
  readonly id?: string;
  readonly replyTo?: string;
}
export type DecodeResult = { readonly ok: true; readonly request: Request } | DecodeFailure;

export function encode(message: Request | Reply): Buffer {
  return Buffer.from(JSON.stringify(message), 'utf8');
}

/**
 * Encodes a reply body with its envelope. Splices the envelope into the body's JSON rather than
 * spreading it into a new object: this runs for every answer the coordinator sends.
 */
export function encodeReply(body: DistributiveOmit<Reply, 'v' | 'epoch' | 'partition'>, epoch: number, partition: number): Buffer {
  const head = `{"v":1,"epoch":${epoch},"partition":${partition}`;
  return Buffer.from(writeCanonicalReply(head, body) ?? `${head},${JSON.stringify(body).slice(1)}`, 'utf8');
}

/**
 * Encodes a request from the JSON of its envelope up to its last value (which the SDK keeps per
 * session) and the op's fields: this runs for every request a worker sends.
 */
export function encodeRequest(head: string, fields: DistributiveOmit<Request | AcquireWire, keyof RequestBase>): Buffer {
  return Buffer.from(writeCanonicalRequest(head, fields) ?? `${head},${JSON.stringify(fields).slice(1)}`, 'utf8');
}

type Check = (value: unknown) => ErrorCode | null;

const isId: Check = (v) => (typeof v === 'string' && isPrintableName(v, RANGES.id) ? null : 'INVALID_FIELD');
const isReplyTo: Check = (v) => (typeof v === 'string' && isPrintableName(v, RANGES.replyTo) ? null : 'INVALID_FIELD');
const isLockName: Check = (v) =>
  typeof v !== 'string' ? 'INVALID_FIELD' : isPrintableName(v, RANGES.lockName) ? null : 'NAME_INVALID';
const isToken: Check = (v) => (Number.isSafeInteger(v) && (v as number) > 0 ? null : 'INVALID_FIELD');
const intIn =
  (range: { readonly min: number; readonly max: number }, code: ErrorCode): Check =>
  (v) =>
    typeof v !== 'number' ? 'INVALID_FIELD' : Number.isSafeInteger(v) && v >= range.min && v <= range.max ? null : code;
const oneOf =
  (...allowed: readonly string[]): Check =>
  (v) =>
    typeof v === 'string' && allowed.includes(v) ? null : 'INVALID_FIELD';

const isSeq: Check = (v) => (Number.isSafeInteger(v) && (v as number) > 0 ? null : 'INVALID_FIELD');
const isSettled: Check = (v) => (Number.isSafeInteger(v) && (v as number) >= 0 ? null : 'INVALID_FIELD');
/** Optional on every request. */
const SEQUENCING: Readonly<Record<string, Check>> = { seq: isSeq, settled: isSettled };
/** Optional on release and extend: a proof string, never the `true` the coordinator puts in its place. */
const HAND_OFF: Readonly<Record<string, Check>> = { ...SEQUENCING, handoff: (v) => (isHandOffProof(v) ? null : 'INVALID_FIELD') };

interface Shape {
  readonly required: Readonly<Record<string, Check>>;
  readonly optional: Readonly<Record<string, Check>>;
}
const BASE: Readonly<Record<string, Check>> = {
  v: () => null, // checked first, with its own code
  op: () => null,
  id: isId,
  worker: isId,
  session: isId,
  replyTo: isReplyTo,
};
const SHAPES: Readonly<Record<Op, Shape>> = {
  open: {
    required: {
      ...BASE,
      sessionTtlMs: intIn(RANGES.sessionTtlMs, 'SESSION_TTL_OUT_OF_RANGE'),
      partitions: intIn(RANGES.partitions, 'INVALID_FIELD'),
    },
    optional: SEQUENCING,
  },
  heartbeat: { required: BASE, optional: SEQUENCING },
  close: { required: BASE, optional: SEQUENCING },
  acquire: {
    required: {
      ...BASE,
      lock: isLockName,
      ttlMs: intIn(RANGES.ttlMs, 'TTL_OUT_OF_RANGE'),
      waitMs: intIn(RANGES.waitMs, 'WAIT_OUT_OF_RANGE'),
    },
    optional: {
      ...SEQUENCING,
      kind: oneOf('mutex', 'rwlock', 'semaphore'),
      mode: oneOf('exclusive', 'shared'),
      limit: intIn(RANGES.limit, 'LIMIT_OUT_OF_RANGE'),
      permits: intIn(RANGES.limit, 'PERMITS_OUT_OF_RANGE'),
    },
  },
  release: { required: { ...BASE, lock: isLockName, token: isToken }, optional: HAND_OFF },
  extend: {
    required: { ...BASE, lock: isLockName, token: isToken, ttlMs: intIn(RANGES.ttlMs, 'TTL_OUT_OF_RANGE') },
    optional: HAND_OFF,
  },
  cancel: { required: { ...BASE, lock: isLockName, target: isId }, optional: SEQUENCING },
  inspect: { required: BASE, optional: { ...SEQUENCING, lock: isLockName } },
};

function fail(code: ErrorCode, field: string | undefined, raw: Record<string, unknown> | null): DecodeFailure {
  const message = field === undefined ? ERROR_CODES[code].text : `${field}: ${ERROR_CODES[code].text}`;
  const out: { -readonly [K in keyof DecodeFailure]: DecodeFailure[K] } = { ok: false, code, message };
  if (field !== undefined) out.field = field;
  if (raw !== null) {
    if (isId(raw.id) === null) out.id = raw.id as string;
    if (isReplyTo(raw.replyTo) === null) out.replyTo = raw.replyTo as string;
  }
  return out;
}

/**
 * Decodes and validates one request. Strict: unknown fields, wrong types and out-of-range values
 * are refused with a stable code; the decoded acquire has every optional field filled in.
 */
export function decodeRequest(body: Uint8Array, maxBytes: number = MAX_MESSAGE_BYTES): DecodeResult {
  if (!(body.byteLength <= Math.min(maxBytes, MAX_MESSAGE_BYTES))) return fail('MESSAGE_TOO_LARGE', undefined, null);
  const text = utf8(body);
  const canonical = parseCanonicalRequest(text);
  if (canonical === undefined) return decodeRequestText(text);
  return canonical.op === 'acquire' ? normaliseAcquire(canonical) : { ok: true, request: canonical as unknown as Request };
}

/**
 * The general path of {@link decodeRequest}, for any layout: parse, then check each field against
 * its op's shape. Exported only so tests can hold the fast path to it.
 * @internal
 */
export function decodeRequestText(text: string): DecodeResult {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return fail('MALFORMED', undefined, null);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return fail('MALFORMED', undefined, null);
  const msg = raw as Record<string, unknown>;
  if (msg.v !== PROTOCOL_VERSION) return fail('UNSUPPORTED_VERSION', 'v', msg);
  const op = msg.op;
  if (typeof op !== 'string' || !Object.hasOwn(SHAPES, op)) return fail('UNKNOWN_OP', 'op', msg);
  const shape = SHAPES[op as Op];
  for (const field in shape.required) {
    const code = (shape.required[field] as Check)(msg[field]);
    if (code !== null) return fail(code, field, msg);
  }
  for (const field in msg) {
    if (Object.hasOwn(shape.required, field)) continue;
    const check = Object.hasOwn(shape.optional, field) ? shape.optional[field] : undefined;
    if (check === undefined) return fail('INVALID_FIELD', field, msg);
    const code = check(msg[field]);
    if (code !== null) return fail(code, field, msg);
  }
  return op === 'acquire' ? normaliseAcquire(msg) : { ok: true, request: msg as unknown as Request };
}

/**
 * Bodies to text. Invalid UTF-8 becomes U+FFFD, which no field accepts. A leading byte-order mark
 * is kept (`ignoreBOM`), so JSON.parse refuses it, as the protocol says.
 */
const UTF8 = new TextDecoder('utf-8', { ignoreBOM: true });

function utf8(body: Uint8Array): string {
  return UTF8.decode(body);
}

function normaliseAcquire(msg: Record<string, unknown>): DecodeResult {
  const kind = (msg.kind ?? 'mutex') as LockKind;
  let mode = msg.mode as LockMode | undefined;
  let limit = msg.limit as number | undefined;
  let permits = msg.permits as number | undefined;
  // Fields a kind does not use are refused, unless they carry exactly the value normalisation
  // gives them, so a decoded acquire encodes and decodes to itself.
  if (kind === 'semaphore') {
    if (limit === undefined) return fail('INVALID_FIELD', 'limit', msg);
    if (mode !== undefined && mode !== 'shared') return fail('INVALID_FIELD', 'mode', msg);
    permits ??= 1;
    if (permits > limit) return fail('PERMITS_OUT_OF_RANGE', 'permits', msg);
    mode = 'shared';
  } else {
    if (limit !== undefined && limit !== 1) return fail('INVALID_FIELD', 'limit', msg);
    if (permits !== undefined && permits !== 1) return fail('INVALID_FIELD', 'permits', msg);
    if (kind === 'mutex' && mode === 'shared') return fail('INVALID_FIELD', 'mode', msg);
    mode ??= 'exclusive';
    limit = 1;
    permits = 1;
  }
  // Built field by field, not spread: this runs for every acquire.
  const request: { -readonly [K in keyof AcquireRequest]: AcquireRequest[K] } = {
    v: 1,
    op: 'acquire',
    id: msg.id as string,
    worker: msg.worker as string,
    session: msg.session as string,
    replyTo: msg.replyTo as string,
    lock: msg.lock as string,
    kind,
    mode,
    limit,
    permits,
    ttlMs: msg.ttlMs as number,
    waitMs: msg.waitMs as number,
  };
  if (msg.seq !== undefined) request.seq = msg.seq as number;
  if (msg.settled !== undefined) request.settled = msg.settled as number;
  return { ok: true, request };
}

const REPLY_TYPES: ReadonlySet<ReplyType> = new Set<ReplyType>([
  'granted',
  'queued',
  'released',
  'extended',
  'cancelled',
  'opened',
  'ok',
  'error',
  'lost',
  'successor',
  'inspected',
]);

/**
 * Decodes a reply. Replies come from a coordinator the worker trusts (a forwarded grant is
 * believed only with a `mac` the SDK checks), so this checks the envelope (version, type, request
 * id, epoch, partition), an error's `partitions`, and the form of `opened`'s `key` and a grant's
 * `proof` and `mac` (each on its own reply type only), and leaves the rest of the body to the
 * reader, except an `inspected` reply: that goes to user code as it is, so it is read field by
 * field to exactly the public view (see `readInspected`). It returns null for anything else
 * rather than throwing inside a transport callback.
 */
export function decodeReply(body: Uint8Array): Reply | null {
  if (body.byteLength > MAX_MESSAGE_BYTES * 16) return null;
  const text = utf8(body);
  return parseCanonicalReply(text) ?? decodeReplyText(text);
}

const isPartitionCount = intIn(RANGES.partitions, 'INVALID_FIELD');

/**
 * The general path of {@link decodeReply}, for any layout. Exported only so tests can hold the
 * fast path to it.
 * @internal
 */
export function decodeReplyText(text: string): Reply | null {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof raw !== 'object' || raw === null) return null;
  const r = raw as Record<string, unknown>;
  if (r.v !== PROTOCOL_VERSION || typeof r.re !== 'string' || !REPLY_TYPES.has(r.type as ReplyType)) return null;
  if (!Number.isSafeInteger(r.epoch) || !Number.isSafeInteger(r.partition)) return null;
  // The body fields checked: those a worker acts on (WRONG_PARTITION's partition count) and the
  // keys and MACs it checks forwards with, each only where it belongs.
  if (r.partitions !== undefined && (r.type !== 'error' || isPartitionCount(r.partitions) !== null)) return null;
  if (r.key !== undefined && (r.type !== 'opened' || !isHmac16(r.key))) return null;
  if ((r.mac !== undefined || r.proof !== undefined) && !isGrantSeal(r)) return null;
  if (r.type === 'inspected') return readInspected(r, r.epoch as number, r.partition as number);
  return raw as Reply;
}

/** A grant's `proof` and `mac`, where present, are 22 characters of base64url; no other reply has them. */
function isGrantSeal(r: Record<string, unknown>): boolean {
  return r.type === 'granted' && (r.mac === undefined || isHmac16(r.mac)) && (r.proof === undefined || isHandOffProof(r.proof));
}
