/**
 * Fuzzing the codec: random bytes, random JSON and mutated valid requests (fields dropped, types
 * swapped, values at and beyond every RANGES limit, huge numbers, unicode, nesting, duplicate keys,
 * `__proto__`) through decodeRequest and decodeReply and their canonical fast paths. Whatever
 * comes in: nothing throws; a request is either valid by the rules of docs/protocol.md §3 (checked
 * here independently of the codec) and re-encodes and decodes to itself, or refused with one of
 * the decoder's codes; a reply is null or has a well-formed envelope; the fast paths answer exactly
 * as the general paths do.
 *
 * Reproduce a failure with the seed fast-check prints:
 * LOCKQ_FC_SEED=<seed> npx vitest run protocol/test/fuzz.test.ts (LOCKQ_FC_RUNS sets the runs).
 */
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  type DecodeResult,
  decodeReply,
  decodeReplyText,
  decodeRequest,
  decodeRequestText,
  encode,
  type ErrorCode,
  MAX_MESSAGE_BYTES,
  OPS,
  RANGES,
  type Reply,
  type Request,
} from '../src/index.js';

const SEED = Number(process.env.LOCKQ_FC_SEED ?? 0xf022);
const RUNS = Number(process.env.LOCKQ_FC_RUNS ?? 2500);
const params = { seed: SEED, numRuns: RUNS };

// ---- the oracle: docs/protocol.md §3 and §6, written apart from codec.ts ------------------------

/** The codes the decoder may answer with (§12, §13): input errors, never a state or SDK code. */
const DECODER_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'MALFORMED',
  'MESSAGE_TOO_LARGE',
  'UNSUPPORTED_VERSION',
  'UNKNOWN_OP',
  'INVALID_FIELD',
  'NAME_INVALID',
  'TTL_OUT_OF_RANGE',
  'WAIT_OUT_OF_RANGE',
  'SESSION_TTL_OUT_OF_RANGE',
  'LIMIT_OUT_OF_RANGE',
  'PERMITS_OUT_OF_RANGE',
]);

type Range = { readonly min: number; readonly max: number };
const printable = (v: unknown, r: Range): boolean => typeof v === 'string' && v.length >= r.min && v.length <= r.max && /^[\x21-\x7e]*$/.test(v);
const intIn = (v: unknown, r: Range): boolean => Number.isSafeInteger(v) && (v as number) >= r.min && (v as number) <= r.max;
const ANY_INT = { min: 1, max: Number.MAX_SAFE_INTEGER };

/** Every field a decoded request of each op may carry, with its rule. */
const FIELDS: Readonly<Record<string, Readonly<Record<string, (v: unknown) => boolean>>>> = (() => {
  const base = {
    v: (v: unknown) => v === 1,
    op: (v: unknown) => typeof v === 'string',
    id: (v: unknown) => printable(v, RANGES.id),
    worker: (v: unknown) => printable(v, RANGES.id),
    session: (v: unknown) => printable(v, RANGES.id),
    replyTo: (v: unknown) => printable(v, RANGES.replyTo),
    seq: (v: unknown) => v === undefined || intIn(v, ANY_INT),
    settled: (v: unknown) => v === undefined || intIn(v, { min: 0, max: Number.MAX_SAFE_INTEGER }),
  };
  const lock = (v: unknown) => printable(v, RANGES.lockName);
  const ttlMs = (v: unknown) => intIn(v, RANGES.ttlMs);
  // §4.3: a hand-off proof, 22 characters of base64url.
  const handoff = (v: unknown) => v === undefined || (typeof v === 'string' && /^[A-Za-z0-9_-]{22}$/.test(v));
  return {
    open: { ...base, sessionTtlMs: (v) => intIn(v, RANGES.sessionTtlMs), partitions: (v) => intIn(v, RANGES.partitions) },
    heartbeat: base,
    close: base,
    acquire: {
      ...base,
      lock,
      ttlMs,
      waitMs: (v) => intIn(v, RANGES.waitMs),
      kind: (v) => v === 'mutex' || v === 'rwlock' || v === 'semaphore',
      mode: (v) => v === 'exclusive' || v === 'shared',
      limit: (v) => intIn(v, RANGES.limit),
      permits: (v) => intIn(v, RANGES.limit),
    },
    release: { ...base, lock, token: (v) => intIn(v, ANY_INT), handoff },
    extend: { ...base, lock, token: (v) => intIn(v, ANY_INT), ttlMs, handoff },
    cancel: { ...base, lock, target: (v) => printable(v, RANGES.id) },
    inspect: { ...base, lock: (v) => v === undefined || lock(v) },
  };
})();

/** Why `r` is not a valid decoded request, or null when it is. */
function invalidity(r: Request): string | null {
  const rules = FIELDS[r.op];
  if (rules === undefined || !OPS.includes(r.op)) return `op ${String(r.op)}`;
  const fields = r as unknown as Record<string, unknown>;
  for (const key of Object.keys(fields)) if (!Object.hasOwn(rules, key)) return `unknown field ${key}`;
  for (const [key, rule] of Object.entries(rules)) if (!rule(fields[key])) return `field ${key} = ${JSON.stringify(fields[key])}`;
  if (r.op === 'acquire') {
    // Normalised: every optional field filled in, and consistent with the kind (§6).
    if (r.kind === 'semaphore') {
      if (r.mode !== 'shared' || r.permits > r.limit) return 'semaphore mode/permits';
    } else if (r.limit !== 1 || r.permits !== 1 || (r.kind === 'mutex' && r.mode !== 'exclusive')) {
      return `${r.kind} mode/limit/permits`;
    }
  }
  return null;
}

/** As the codec reads a body: a leading byte-order mark is kept (and refused). */
const UTF8 = new TextDecoder('utf-8', { ignoreBOM: true });
const text = (body: Uint8Array): string => UTF8.decode(body);
/** A value with its key order made visible (toEqual alone ignores it); -0 as JSON writes it. */
const exactly = (value: unknown) => ({ json: JSON.stringify(value) });

/** Everything the codec promises about one request body. */
function checkRequest(body: Uint8Array): DecodeResult {
  const result = decodeRequest(body);
  // Whatever the limit a coordinator is configured to, and at the default one.
  const atDefault = decodeRequest(body, DEFAULT_MAX_MESSAGE_BYTES);
  if (body.byteLength > DEFAULT_MAX_MESSAGE_BYTES) expect(atDefault).toMatchObject({ ok: false, code: 'MESSAGE_TOO_LARGE' });
  else expect(exactly(atDefault)).toEqual(exactly(result));
  if (body.byteLength <= MAX_MESSAGE_BYTES) {
    // The fast path changes nothing: the general path gives the same object, key order included.
    expect(exactly(result)).toEqual(exactly(decodeRequestText(text(body))));
  }
  if (result.ok) {
    expect(invalidity(result.request)).toBeNull();
    // Re-encoded (as the coordinator's journal and the SDK write it), it decodes to itself.
    const again = decodeRequest(encode(result.request));
    expect(exactly(again)).toEqual(exactly(result));
  } else {
    expect(DECODER_CODES.has(result.code)).toBe(true);
    expect(typeof result.message).toBe('string');
    if (result.field !== undefined) expect(typeof result.field).toBe('string');
    // What is salvaged to answer the sender is itself well formed (§12).
    if (result.id !== undefined) expect(printable(result.id, RANGES.id)).toBe(true);
    if (result.replyTo !== undefined) expect(printable(result.replyTo, RANGES.replyTo)).toBe(true);
    for (const key of Object.keys(result)) expect(['ok', 'code', 'message', 'field', 'id', 'replyTo']).toContain(key);
  }
  return result;
}

const REPLY_TYPES = ['granted', 'queued', 'released', 'extended', 'cancelled', 'opened', 'ok', 'error', 'lost', 'successor', 'inspected'];

/** Everything the codec promises about one reply body. */
function checkReply(body: Uint8Array): Reply | null {
  const reply = decodeReply(body);
  if (body.byteLength <= MAX_MESSAGE_BYTES * 16) expect(exactly(reply)).toEqual(exactly(decodeReplyText(text(body))));
  if (reply !== null) {
    expect(reply.v).toBe(1);
    expect(typeof reply.re).toBe('string');
    expect(REPLY_TYPES).toContain(reply.type);
    expect(Number.isSafeInteger(reply.epoch) && Number.isSafeInteger(reply.partition)).toBe(true);
    const partitions = (reply as { partitions?: unknown }).partitions;
    if (partitions !== undefined) expect(reply.type === 'error' && intIn(partitions, RANGES.partitions)).toBe(true);
    expect(exactly(decodeReply(encode(reply)))).toEqual(exactly(reply));
  }
  return reply;
}

// ---- inputs ------------------------------------------------------------------------------------

/** Raw JSON texts a field's value may be replaced with: every type, edge numbers, odd strings, nesting. */
const ODD_VALUES = [
  'null', 'true', 'false', '0', '-0', '1', '-1', '0.5', '1.0', '1e3', '1E3', '1e400', '-1e400', '1e-400',
  '9007199254740991', '9007199254740992', '9007199254740993', '18446744073709551616', `1${'0'.repeat(300)}`,
  '""', '" "', '"a b"', '"\\u0000"', '"\\ud800"', '"\\ud83d\\ude00"', '"é"', '"\\u00e9"', '"日本"', '"\\"q\\""', '"\\\\"',
  '"\\u2028"', '"1"', '"true"', '"mutex"', '"shared"', '[]', '[1]', '{}', '{"a":{"b":[1,{}]}}', '{"__proto__":{"x":1}}',
  '[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]',
];

/** Each ranged field with the values at and beyond its limits. */
const RANGED: Readonly<Record<string, Range>> = {
  id: RANGES.id,
  worker: RANGES.id,
  session: RANGES.id,
  target: RANGES.id,
  replyTo: RANGES.replyTo,
  lock: RANGES.lockName,
  ttlMs: RANGES.ttlMs,
  waitMs: RANGES.waitMs,
  sessionTtlMs: RANGES.sessionTtlMs,
  limit: RANGES.limit,
  permits: RANGES.limit,
  partitions: RANGES.partitions,
  seq: ANY_INT,
  settled: { min: 0, max: Number.MAX_SAFE_INTEGER },
  token: ANY_INT,
};
const STRING_FIELDS = new Set(['id', 'worker', 'session', 'target', 'replyTo', 'lock']);

/** A value at or just beyond an edge of `key`'s range, as raw JSON. */
function boundary(key: string, pick: number): string {
  const r = RANGED[key] ?? ANY_INT;
  const lengths = [r.min - 1, r.min, r.min + 1, r.max - 1, r.max, r.max + 1, r.max * 2];
  if (STRING_FIELDS.has(key)) return JSON.stringify('x'.repeat(Math.max(0, lengths[pick % lengths.length] as number)));
  const values = [...lengths, 2 ** 53 - 1, 2 ** 53, -(2 ** 53), 1e16, 1e21, 0, -1];
  return String(values[pick % values.length]);
}

const idText = fc.string({ unit: fc.constantFrom('a', 'b', '7', ':', '-', '.', '~'), minLength: 1, maxLength: 10 });
const inRange = (r: Range) => fc.oneof(fc.integer({ min: r.min, max: Math.min(r.max, r.min + 1000) }), fc.constantFrom(r.min, r.max));

/** A valid request of any op, as ordered [key, raw JSON] pairs (so keys may later repeat). */
const validEntries: fc.Arbitrary<[string, string][]> = fc
  .record({
    id: idText,
    worker: idText,
    session: idText,
    replyTo: idText,
    lock: idText,
    seq: fc.option(inRange(ANY_INT), { nil: undefined }),
    settled: fc.option(inRange({ min: 0, max: Number.MAX_SAFE_INTEGER }), { nil: undefined }),
    op: fc.constantFrom(...OPS),
    kind: fc.constantFrom(undefined, 'mutex', 'rwlock', 'semaphore'),
    shared: fc.boolean(),
    limit: inRange(RANGES.limit),
    ttlMs: inRange(RANGES.ttlMs),
    waitMs: inRange(RANGES.waitMs),
    sessionTtlMs: inRange(RANGES.sessionTtlMs),
    partitions: inRange(RANGES.partitions),
    token: inRange(ANY_INT),
  })
  .map((g) => {
    const fields: Record<string, unknown> = { v: 1, op: g.op, id: g.id, worker: g.worker, session: g.session, replyTo: g.replyTo };
    if (g.seq !== undefined) fields.seq = g.seq;
    if (g.settled !== undefined) fields.settled = g.settled;
    switch (g.op) {
      case 'open':
        Object.assign(fields, { sessionTtlMs: g.sessionTtlMs, partitions: g.partitions });
        break;
      case 'acquire':
        Object.assign(fields, { lock: g.lock, ttlMs: g.ttlMs, waitMs: g.waitMs });
        if (g.kind !== undefined) fields.kind = g.kind;
        if (g.kind === 'semaphore') Object.assign(fields, { limit: g.limit, permits: 1 + (g.token % g.limit) });
        if (g.kind === 'rwlock' && g.shared) fields.mode = 'shared';
        break;
      case 'release':
        Object.assign(fields, { lock: g.lock, token: g.token });
        break;
      case 'extend':
        Object.assign(fields, { lock: g.lock, token: g.token, ttlMs: g.ttlMs });
        break;
      case 'cancel':
        Object.assign(fields, { lock: g.lock, target: g.id });
        break;
      case 'inspect':
        if (g.shared) fields.lock = g.lock;
        break;
      default:
        break;
    }
    return Object.entries(fields).map(([k, v]): [string, string] => [k, JSON.stringify(v)]);
  });

const EXTRA_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'x', 'v ', 'Op', 'mode', 'kind', 'limit', 'permits', 'target', 'token', '', '\u00e9'];
const jsonText = fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v));
const anyValueText = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...ODD_VALUES) },
  { weight: 1, arbitrary: jsonText },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }).map((s) => JSON.stringify(s)) },
);

type Edit =
  | { readonly t: 'drop' | 'retype' | 'boundary' | 'duplicate' | 'unicode' | 'nest'; readonly at: number; readonly value: string; readonly pick: number }
  | { readonly t: 'extra'; readonly at: number; readonly key: string; readonly value: string };
const edit: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({
    t: fc.constantFrom('drop', 'retype', 'boundary', 'boundary', 'boundary', 'duplicate', 'unicode', 'nest'),
    at: fc.nat(),
    value: anyValueText,
    pick: fc.nat(),
  }),
  fc.record({ t: fc.constant('extra'), at: fc.nat(), key: fc.constantFrom(...EXTRA_KEYS), value: anyValueText }),
) as fc.Arbitrary<Edit>;

function applyEdit(entries: [string, string][], e: Edit): void {
  if (entries.length === 0) return;
  const i = e.at % entries.length;
  const [key] = entries[i] as [string, string];
  switch (e.t) {
    case 'drop':
      entries.splice(i, 1);
      return;
    case 'retype':
      entries[i] = [key, e.value];
      return;
    case 'boundary':
      entries[i] = [key, boundary(key, e.pick)];
      return;
    case 'duplicate': // JSON.parse keeps the last one
      entries.splice(e.pick % (entries.length + 1), 0, [key, e.pick % 2 === 0 ? e.value : (entries[i] as [string, string])[1]]);
      return;
    case 'unicode':
      entries[i] = [key, JSON.stringify(['é', '日本', '😀', '\u0085', '\ufeff', '\ud800', 'ａ'][e.pick % 7] + key)];
      return;
    case 'nest':
      entries[i] = [key, e.pick % 2 === 0 ? `{${JSON.stringify(key)}:${entries[i]?.[1]}}` : `[${entries[i]?.[1]}]`];
      return;
    case 'extra':
      entries.splice(i, 0, [e.key, e.value]);
      return;
  }
}

/** The pairs as a JSON object's text, compact or spaced out. */
const render = (entries: readonly [string, string][], spaced: boolean): string =>
  spaced ? `{ ${entries.map(([k, v]) => `${JSON.stringify(k)} : ${v}`).join(' ,\n\t')} }` : `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`;

const mutatedRequest = fc
  .tuple(validEntries, fc.array(edit, { maxLength: 3 }), fc.boolean())
  .map(([entries, edits, spaced]) => {
    for (const e of edits) applyEdit(entries, e);
    return Buffer.from(render(entries, spaced), 'utf8');
  });

/** Objects built from the protocol's keys (and a few dangerous ones) with any values. */
const keyedObject = fc
  .array(fc.tuple(fc.constantFrom(...Object.keys(RANGED), 'v', 'op', 'kind', 'mode', 'type', 're', 'epoch', 'partition', ...EXTRA_KEYS), anyValueText), {
    maxLength: 14,
  })
  .map((entries) => Buffer.from(render(entries, false), 'utf8'));

const randomBytes = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  // Bytes after a plausible start, so the parser gets past the first character.
  fc.tuple(fc.constantFrom('{', '{"v":1,', '{"v":1,"op":"acquire",', '\ufeff{', '['), fc.uint8Array({ maxLength: 200 })).map(([head, tail]) =>
    Buffer.concat([Buffer.from(head, 'utf8'), tail]),
  ),
);

// ---- replies -----------------------------------------------------------------------------------

const validReplyEntries: fc.Arbitrary<[string, string][]> = fc
  .record({
    type: fc.constantFrom(...REPLY_TYPES),
    re: idText,
    epoch: inRange(ANY_INT),
    partition: fc.nat({ max: 4095 }),
    lock: idText,
    token: inRange(ANY_INT),
    ttlMs: inRange(RANGES.ttlMs),
    partitions: fc.option(inRange(RANGES.partitions), { nil: undefined }),
  })
  .map((g) => {
    const fields: Record<string, unknown> = { v: 1, epoch: g.epoch, partition: g.partition, type: g.type, re: g.re };
    if (g.type === 'granted' || g.type === 'extended') Object.assign(fields, { lock: g.lock, token: g.token, ttlMs: g.ttlMs, basis: g.re });
    // A forwarded grant's proof and MAC, an opened's session key: 22 characters of base64url.
    if (g.type === 'granted' && g.partition % 2 === 1) Object.assign(fields, { proof: 'P'.repeat(22), mac: `${g.re.length}`.padEnd(22, '_') });
    if (g.type === 'opened') Object.assign(fields, { session: g.re, resumed: false, sessionTtlMs: 1000, key: '-'.repeat(22) });
    if (g.type === 'released') Object.assign(fields, { lock: g.lock, token: g.token });
    if (g.type === 'error') Object.assign(fields, { code: 'WRONG_PARTITION', message: 'm', ...(g.partitions === undefined ? {} : { partitions: g.partitions }) });
    if (g.type === 'inspected') {
      fields.counts = { locks: 1, holds: 1, waiters: g.partition % 3, sessions: 2 };
      const holder = { worker: g.re, token: g.token, mode: 'exclusive', permits: 1, ttlMs: g.ttlMs };
      const waiter = { worker: g.lock, mode: 'shared', permits: 1, position: 1, waitMs: g.ttlMs };
      if (g.partitions !== undefined) {
        fields.lock = g.partitions % 2 === 0 ? null : { lock: g.lock, kind: 'rwlock', limit: 1, holderCount: 1, waiterCount: 1, holders: [holder], waiters: [waiter] };
      }
    }
    return Object.entries(fields).map(([k, v]): [string, string] => [k, JSON.stringify(v)]);
  });
const mutatedReply = fc
  .tuple(validReplyEntries, fc.array(edit, { maxLength: 3 }), fc.boolean())
  .map(([entries, edits, spaced]) => {
    for (const e of edits) applyEdit(entries, e);
    return Buffer.from(render(entries, spaced), 'utf8');
  });

// ---- properties --------------------------------------------------------------------------------

describe('decodeRequest on anything', () => {
  it('random bytes: never throws; refused with a decoder code', () => {
    fc.assert(
      fc.property(randomBytes, (body) => {
        checkRequest(body);
      }),
      params,
    );
  });

  it('random JSON values and objects of protocol keys: valid or refused with a decoder code', () => {
    fc.assert(
      fc.property(fc.oneof(jsonText.map((t) => Buffer.from(t, 'utf8')), keyedObject), (body) => {
        checkRequest(body);
      }),
      params,
    );
  });

  it('mutated valid requests: valid (and re-encoded to itself) or refused with a decoder code', () => {
    let ok = 0;
    let refused = 0;
    fc.assert(
      fc.property(mutatedRequest, (body) => {
        if (checkRequest(body).ok) ok++;
        else refused++;
      }),
      params,
    );
    // Not vacuous: both sides of the line are reached often.
    expect(ok).toBeGreaterThan(RUNS / 10);
    expect(refused).toBeGreaterThan(RUNS / 10);
  });

  it('edge cases: size limits, deep nesting, byte-order mark, duplicate keys, __proto__', () => {
    const valid = '{"v":1,"op":"heartbeat","id":"r1","worker":"w","session":"s","replyTo":"q"}';
    const pad = (n: number) => Buffer.from(`${valid.slice(0, -1)}${' '.repeat(n - valid.length)}}`, 'utf8');
    expect(checkRequest(pad(DEFAULT_MAX_MESSAGE_BYTES)).ok).toBe(true);
    expect(checkRequest(pad(DEFAULT_MAX_MESSAGE_BYTES + 1)).ok).toBe(true); // only a coordinator's own limit refuses it
    expect(decodeRequest(pad(DEFAULT_MAX_MESSAGE_BYTES + 1), DEFAULT_MAX_MESSAGE_BYTES)).toMatchObject({ code: 'MESSAGE_TOO_LARGE' });
    expect(checkRequest(pad(MAX_MESSAGE_BYTES + 1))).toMatchObject({ ok: false, code: 'MESSAGE_TOO_LARGE' });
    const depth = MAX_MESSAGE_BYTES / 2 - 64;
    expect(checkRequest(Buffer.from(`${'['.repeat(depth)}${']'.repeat(depth)}`))).toMatchObject({ code: 'MALFORMED' });
    expect(checkRequest(Buffer.from(`${valid.slice(0, -1)},"x":${'['.repeat(depth)}${']'.repeat(depth)}}`))).toMatchObject({
      code: 'INVALID_FIELD',
      field: 'x',
      id: 'r1',
      replyTo: 'q',
    });
    expect(checkRequest(Buffer.from(`\ufeff${valid}`))).toMatchObject({ code: 'MALFORMED' });
    expect(checkRequest(Buffer.from(`{"v":2,${valid.slice(1)}`)).ok).toBe(true); // the last of duplicate keys counts
    expect(checkRequest(Buffer.from(`${valid.slice(0, -1)},"v":2}`))).toMatchObject({ code: 'UNSUPPORTED_VERSION' });
    expect(checkRequest(Buffer.from(`${valid.slice(0, -1)},"__proto__":{"op":"close"}}`))).toMatchObject({ code: 'INVALID_FIELD', field: '__proto__' });
    expect(checkRequest(Buffer.from(valid.replace('"heartbeat"', '"__proto__"')))).toMatchObject({ code: 'UNKNOWN_OP' });
    expect(checkRequest(Buffer.from(valid.replace('"heartbeat"', '"toString"')))).toMatchObject({ code: 'UNKNOWN_OP' });
    expect(checkReply(Buffer.from(`${'['.repeat(depth * 8)}${']'.repeat(depth * 8)}`))).toBeNull();
  });
});

describe('decodeReply on anything', () => {
  it('random bytes, random JSON and mutated replies: null or a well-formed envelope, never a throw', () => {
    let decoded = 0;
    fc.assert(
      fc.property(fc.oneof(randomBytes, jsonText.map((t) => Buffer.from(t, 'utf8')), keyedObject, mutatedReply, mutatedReply), (body) => {
        if (checkReply(body) !== null) decoded++;
      }),
      params,
    );
    expect(decoded).toBeGreaterThan(RUNS / 10);
  });
});
