import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type AcquireRequest,
  type AcquireWire,
  type DecodeFailure,
  type DecodeResult,
  decodeReply,
  decodeRequest,
  encode,
  ERROR_CODES,
  type ErrorCode,
  MAX_MESSAGE_BYTES,
  type Op,
  OPS,
  partitionOf,
  type Reply,
  type Request,
} from '../src/index.js';

// ---- helpers ----------------------------------------------------------------------------------

type Wire = Record<string, unknown>;

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);
const wire = (message: unknown): Uint8Array => utf8(JSON.stringify(message));
const decodeWire = (message: unknown, maxBytes?: number): DecodeResult =>
  maxBytes === undefined ? decodeRequest(wire(message)) : decodeRequest(wire(message), maxBytes);

function expectFailure(result: DecodeResult, code: ErrorCode, field?: string): DecodeFailure {
  if (result.ok) throw new Error(`expected ${code}${field === undefined ? '' : ` on ${field}`}, got ok`);
  expect({ code: result.code, field: result.field }).toEqual({ code, field });
  expect(result.message).toContain(ERROR_CODES[code].text);
  if (field === undefined) expect('field' in result).toBe(false);
  return result;
}

function expectOk(result: DecodeResult): Request {
  if (!result.ok) throw new Error(`expected ok, got ${result.code} (${result.message})`);
  return result.request;
}

/** FNV-1a 32-bit over UTF-8 bytes, written independently of topology.ts as the reference. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) {
    hash ^= byte;
    hash = Number((BigInt(hash) * 0x01000193n) & 0xffffffffn);
  }
  return hash;
}

const ENV = { v: 1, id: 'req-1', worker: 'worker-1', session: 'session-1', replyTo: 'lockq.replies.worker-1.i1' } as const;

/** One fully specified, valid request of every op (acquire already in its normalised form). */
const VALID: { readonly [K in Op]: Extract<Request, { op: K }> } = {
  open: { ...ENV, op: 'open', sessionTtlMs: 10_000, partitions: 16 },
  heartbeat: { ...ENV, op: 'heartbeat' },
  close: { ...ENV, op: 'close' },
  acquire: {
    ...ENV,
    op: 'acquire',
    lock: 'invoice:42',
    kind: 'mutex',
    mode: 'exclusive',
    limit: 1,
    permits: 1,
    ttlMs: 30_000,
    waitMs: 5_000,
  },
  release: { ...ENV, op: 'release', lock: 'invoice:42', token: 7 },
  extend: { ...ENV, op: 'extend', lock: 'invoice:42', token: 7, ttlMs: 30_000 },
  cancel: { ...ENV, op: 'cancel', lock: 'invoice:42', target: 'req-0' },
  inspect: { ...ENV, op: 'inspect', lock: 'invoice:42' },
};

/** Minimal wire form of an acquire (optional fields left out). */
const ACQUIRE_WIRE: Wire = { ...ENV, op: 'acquire', lock: 'invoice:42', ttlMs: 30_000, waitMs: 5_000 };

/** What a worker puts on the wire for each op: the minimal form for acquire. */
const WIRE: { readonly [K in Op]: Wire } = {
  ...(VALID as unknown as { readonly [K in Op]: Wire }),
  acquire: { ...ACQUIRE_WIRE, kind: 'mutex', mode: 'exclusive' },
};

/** Required fields of every op after the envelope, in the order the codec checks them. */
const REQUIRED: { readonly [K in Op]: readonly string[] } = {
  open: ['id', 'worker', 'session', 'replyTo', 'sessionTtlMs', 'partitions'],
  heartbeat: ['id', 'worker', 'session', 'replyTo'],
  close: ['id', 'worker', 'session', 'replyTo'],
  acquire: ['id', 'worker', 'session', 'replyTo', 'lock', 'ttlMs', 'waitMs'],
  release: ['id', 'worker', 'session', 'replyTo', 'lock', 'token'],
  extend: ['id', 'worker', 'session', 'replyTo', 'lock', 'token', 'ttlMs'],
  cancel: ['id', 'worker', 'session', 'replyTo', 'lock', 'target'],
  inspect: ['id', 'worker', 'session', 'replyTo'],
};

type FieldKind = 'string' | 'integer' | 'enum';
const FIELD_KIND: Readonly<Record<string, FieldKind>> = {
  id: 'string',
  worker: 'string',
  session: 'string',
  replyTo: 'string',
  lock: 'string',
  target: 'string',
  sessionTtlMs: 'integer',
  partitions: 'integer',
  ttlMs: 'integer',
  waitMs: 'integer',
  token: 'integer',
  limit: 'integer',
  permits: 'integer',
  kind: 'enum',
  mode: 'enum',
};

/** Values of the wrong JSON type for a field of the given kind. */
function wrongTypes(kind: FieldKind): readonly unknown[] {
  const common = [null, true, false, [], {}, ['x'], { a: 1 }];
  return kind === 'integer' ? [...common, '10', 'NaN', 'Infinity', ''] : [...common, 0, 1, 12.5];
}

// ---- round trips ------------------------------------------------------------------------------

describe('encode / decodeRequest round trip', () => {
  it('covers every op', () => {
    expect(Object.keys(VALID).sort()).toEqual([...OPS].sort());
  });

  for (const op of OPS.filter((o) => o !== 'acquire')) {
    it(`round-trips ${op}`, () => {
      const request = VALID[op];
      const bytes = encode(request);
      expect(bytes.toString('utf8')).toBe(JSON.stringify(request));
      expect(expectOk(decodeRequest(bytes))).toEqual(request);
    });
  }

  it('round-trips inspect without a lock', () => {
    const request: Request = { ...ENV, op: 'inspect' };
    const decoded = expectOk(decodeRequest(encode(request)));
    expect(decoded).toEqual(request);
    expect('lock' in decoded).toBe(false);
  });

  it('round-trips acquire from its wire form to its normalised form', () => {
    expect(expectOk(decodeWire(WIRE.acquire))).toEqual(VALID.acquire);
    expect(expectOk(decodeWire(ACQUIRE_WIRE))).toEqual(VALID.acquire);
    const shapes: readonly [Wire, AcquireRequest][] = [
      [{ ...ACQUIRE_WIRE, kind: 'rwlock', mode: 'shared' }, { ...VALID.acquire, kind: 'rwlock', mode: 'shared' }],
      [{ ...ACQUIRE_WIRE, kind: 'rwlock' }, { ...VALID.acquire, kind: 'rwlock', mode: 'exclusive' }],
      [
        { ...ACQUIRE_WIRE, kind: 'semaphore', limit: 8, permits: 3 },
        { ...VALID.acquire, kind: 'semaphore', mode: 'shared', limit: 8, permits: 3 },
      ],
      [{ ...ACQUIRE_WIRE, waitMs: 0, ttlMs: 10 }, { ...VALID.acquire, waitMs: 0, ttlMs: 10 }],
    ];
    for (const [sent, decoded] of shapes) expect(expectOk(decodeWire(sent))).toEqual(decoded);
  });

  it('round-trips what the SDK sends (AcquireWire) to its normalised form', () => {
    const base: AcquireWire = { ...ENV, op: 'acquire', lock: 'x', ttlMs: 100, waitMs: 0 };
    const cases: readonly [AcquireWire, Partial<AcquireRequest>][] = [
      [base, { kind: 'mutex', mode: 'exclusive', limit: 1, permits: 1 }],
      [{ ...base, kind: 'mutex', mode: 'exclusive' }, { kind: 'mutex', mode: 'exclusive', limit: 1, permits: 1 }],
      [{ ...base, kind: 'rwlock', mode: 'shared' }, { kind: 'rwlock', mode: 'shared', limit: 1, permits: 1 }],
      [{ ...base, kind: 'semaphore', limit: 4, permits: 2 }, { kind: 'semaphore', mode: 'shared', limit: 4, permits: 2 }],
    ];
    for (const [sent, normalised] of cases) {
      expect(expectOk(decodeRequest(wire(sent)))).toEqual({ ...base, ...normalised });
    }
  });

  // The normalised form carries mode, limit and permits for every kind; the decoder accepts them
  // when they hold exactly the values normalisation gives, so a decoded acquire is a fixed point.
  it('round-trips acquire (mutex) through encode', () => {
    expect(expectOk(decodeRequest(encode(VALID.acquire)))).toEqual(VALID.acquire);
  });
  it('round-trips acquire (rwlock, shared) through encode', () => {
    const request: AcquireRequest = { ...VALID.acquire, kind: 'rwlock', mode: 'shared' };
    expect(expectOk(decodeRequest(encode(request)))).toEqual(request);
  });
  it('round-trips acquire (semaphore) through encode', () => {
    const request: AcquireRequest = { ...VALID.acquire, kind: 'semaphore', mode: 'shared', limit: 8, permits: 3 };
    expect(expectOk(decodeRequest(encode(request)))).toEqual(request);
  });

  it('decodes a view into a larger buffer without reading outside it', () => {
    const inner = encode(VALID.heartbeat);
    const big = new Uint8Array(inner.byteLength + 20).fill(0x7b); // '{' garbage around the view
    big.set(inner, 10);
    const view = big.subarray(10, 10 + inner.byteLength);
    expect(expectOk(decodeRequest(view))).toEqual(VALID.heartbeat);
  });

  it('accepts insignificant JSON whitespace, any key order and integral numbers written as 1e3 or 10.0', () => {
    const text = ` \n{ "waitMs" : 0.0 , "ttlMs": 1e3, "lock":"x", "op":"acquire", "replyTo":"r", "session":"s", "worker":"w", "id":"i", "v":1.0 }\t`;
    expect(expectOk(decodeRequest(utf8(text)))).toEqual({
      v: 1,
      op: 'acquire',
      id: 'i',
      worker: 'w',
      session: 's',
      replyTo: 'r',
      lock: 'x',
      kind: 'mutex',
      mode: 'exclusive',
      limit: 1,
      permits: 1,
      ttlMs: 1000,
      waitMs: 0,
    });
  });
});

// ---- acquire normalisation --------------------------------------------------------------------

describe('acquire normalisation', () => {
  it('a bare acquire is an exclusive mutex with one permit', () => {
    expect(expectOk(decodeWire(ACQUIRE_WIRE))).toMatchObject({ kind: 'mutex', mode: 'exclusive', limit: 1, permits: 1 });
  });

  it('mutex: explicit kind and exclusive mode are accepted', () => {
    const r = expectOk(decodeWire({ ...ACQUIRE_WIRE, kind: 'mutex', mode: 'exclusive' }));
    expect(r).toMatchObject({ kind: 'mutex', mode: 'exclusive', limit: 1, permits: 1 });
  });

  it('mutex: shared mode is refused', () => {
    expectFailure(decodeWire({ ...ACQUIRE_WIRE, mode: 'shared' }), 'INVALID_FIELD', 'mode');
    expectFailure(decodeWire({ ...ACQUIRE_WIRE, kind: 'mutex', mode: 'shared' }), 'INVALID_FIELD', 'mode');
  });

  it('rwlock: mode defaults to exclusive; shared is kept', () => {
    expect(expectOk(decodeWire({ ...ACQUIRE_WIRE, kind: 'rwlock' }))).toMatchObject({
      kind: 'rwlock',
      mode: 'exclusive',
      limit: 1,
      permits: 1,
    });
    expect(expectOk(decodeWire({ ...ACQUIRE_WIRE, kind: 'rwlock', mode: 'shared' }))).toMatchObject({
      kind: 'rwlock',
      mode: 'shared',
      limit: 1,
      permits: 1,
    });
  });

  it('semaphore: permits default to 1, mode is shared', () => {
    expect(expectOk(decodeWire({ ...ACQUIRE_WIRE, kind: 'semaphore', limit: 8 }))).toMatchObject({
      kind: 'semaphore',
      mode: 'shared',
      limit: 8,
      permits: 1,
    });
    expect(expectOk(decodeWire({ ...ACQUIRE_WIRE, kind: 'semaphore', limit: 8, permits: 8 }))).toMatchObject({
      permits: 8,
    });
    expect(
      expectOk(decodeWire({ ...ACQUIRE_WIRE, kind: 'semaphore', limit: 1_000_000, permits: 1_000_000 })),
    ).toMatchObject({ limit: 1_000_000, permits: 1_000_000 });
  });

  it('semaphore: limit is required', () => {
    expectFailure(decodeWire({ ...ACQUIRE_WIRE, kind: 'semaphore' }), 'INVALID_FIELD', 'limit');
    expectFailure(decodeWire({ ...ACQUIRE_WIRE, kind: 'semaphore', permits: 1 }), 'INVALID_FIELD', 'limit');
  });

  it('semaphore: permits above the limit are PERMITS_OUT_OF_RANGE', () => {
    expectFailure(decodeWire({ ...ACQUIRE_WIRE, kind: 'semaphore', limit: 8, permits: 9 }), 'PERMITS_OUT_OF_RANGE', 'permits');
  });

  it('semaphore: mode other than its normalised "shared" is not allowed', () => {
    expectOk(decodeWire({ ...ACQUIRE_WIRE, kind: 'semaphore', limit: 8, mode: 'shared' }));
    expectFailure(decodeWire({ ...ACQUIRE_WIRE, kind: 'semaphore', limit: 8, mode: 'exclusive' }), 'INVALID_FIELD', 'mode');
  });

  it('limit and permits other than their normalised 1 are refused on a mutex and an rwlock', () => {
    for (const kind of [undefined, 'mutex', 'rwlock']) {
      const k = kind === undefined ? {} : { kind };
      expectOk(decodeWire({ ...ACQUIRE_WIRE, ...k, limit: 1, permits: 1 }));
      expectFailure(decodeWire({ ...ACQUIRE_WIRE, ...k, limit: 2 }), 'INVALID_FIELD', 'limit');
      expectFailure(decodeWire({ ...ACQUIRE_WIRE, ...k, permits: 2 }), 'INVALID_FIELD', 'permits');
    }
  });

  it('limit and permits are range-checked before the kind rules apply', () => {
    expectFailure(decodeWire({ ...ACQUIRE_WIRE, kind: 'semaphore', limit: 0 }), 'LIMIT_OUT_OF_RANGE', 'limit');
    expectFailure(decodeWire({ ...ACQUIRE_WIRE, kind: 'semaphore', limit: 1_000_001 }), 'LIMIT_OUT_OF_RANGE', 'limit');
    expectFailure(decodeWire({ ...ACQUIRE_WIRE, kind: 'semaphore', limit: 2.5 }), 'LIMIT_OUT_OF_RANGE', 'limit');
    expectFailure(decodeWire({ ...ACQUIRE_WIRE, kind: 'semaphore', limit: 4, permits: 0 }), 'PERMITS_OUT_OF_RANGE', 'permits');
    expectFailure(decodeWire({ ...ACQUIRE_WIRE, kind: 'semaphore', limit: 4, permits: -1 }), 'PERMITS_OUT_OF_RANGE', 'permits');
    expectFailure(decodeWire({ ...ACQUIRE_WIRE, limit: 0 }), 'LIMIT_OUT_OF_RANGE', 'limit');
  });

  it('unknown kind or mode values are INVALID_FIELD', () => {
    expectFailure(decodeWire({ ...ACQUIRE_WIRE, kind: 'spinlock' }), 'INVALID_FIELD', 'kind');
    expectFailure(decodeWire({ ...ACQUIRE_WIRE, kind: 'Mutex' }), 'INVALID_FIELD', 'kind');
    expectFailure(decodeWire({ ...ACQUIRE_WIRE, kind: 'rwlock', mode: 'read' }), 'INVALID_FIELD', 'mode');
  });

  it('normalising is idempotent: a decoded acquire re-encodes and decodes to itself', () => {
    for (const extra of [{}, { kind: 'rwlock' }, { kind: 'rwlock', mode: 'shared' }, { kind: 'semaphore', limit: 3 }]) {
      const once = expectOk(decodeWire({ ...ACQUIRE_WIRE, ...extra }));
      expect(expectOk(decodeRequest(encode(once)))).toEqual(once);
    }
  });

  it('follows the table of docs/protocol.md §6 for every combination of kind, mode, limit and permits', () => {
    // The table, column by column: a field a kind does not use is allowed only with the value
    // normalisation gives it; anything else is refused, naming one of the offending fields.
    const allowed = (kind: string, field: 'mode' | 'limit' | 'permits', value: unknown, limit: unknown): boolean => {
      if (value === undefined) return !(kind === 'semaphore' && field === 'limit');
      if (kind === 'semaphore') return field === 'mode' ? value === 'shared' : field === 'limit' || (value as number) <= (limit as number);
      if (field === 'mode') return value === 'exclusive' || (kind === 'rwlock' && value === 'shared');
      return value === 1;
    };
    let accepted = 0;
    for (const kind of [undefined, 'mutex', 'rwlock', 'semaphore']) {
      for (const mode of [undefined, 'exclusive', 'shared']) {
        for (const limit of [undefined, 1, 4]) {
          for (const permits of [undefined, 1, 2, 5]) {
            const sent = { ...ACQUIRE_WIRE, kind, mode, limit, permits };
            const k = kind ?? 'mutex';
            const offending = (['mode', 'limit', 'permits'] as const).filter((f) => !allowed(k, f, sent[f], limit));
            const result = decodeWire(sent); // JSON drops the undefined fields: absent on the wire
            if (offending.length === 0) {
              accepted++;
              expect(expectOk(result), JSON.stringify(sent)).toEqual({
                ...VALID.acquire,
                kind: k,
                mode: k === 'semaphore' ? 'shared' : (mode ?? 'exclusive'),
                limit: k === 'semaphore' ? limit : 1,
                permits: k === 'semaphore' ? (permits ?? 1) : 1,
              });
            } else {
              if (result.ok) throw new Error(`${JSON.stringify(sent)}: expected a refusal on ${offending.join(' or ')}, got ok`);
              expect(offending, JSON.stringify(sent)).toContain(result.field);
              expect(result.code).toBe(result.field === 'permits' && k === 'semaphore' ? 'PERMITS_OUT_OF_RANGE' : 'INVALID_FIELD');
            }
          }
        }
      }
    }
    // Kind absent or mutex: 2 modes × 2 limits × 2 permits each; rwlock: 3 × 2 × 2; semaphore: 2 modes × (limit 1: 2 permits + limit 4: 3).
    expect(accepted).toBe(2 * (2 * 2 * 2) + 3 * 2 * 2 + 2 * (2 + 3));
  });
});

// ---- framing ----------------------------------------------------------------------------------

describe('framing: not a JSON object', () => {
  const notJson = ['', ' ', '{', '{"v":1,', 'hello', "{'v':1}", '{"v":1}}', 'undefined', 'NaN', '\uFEFF{}'];
  for (const text of notJson) {
    it(`MALFORMED for ${JSON.stringify(text)}`, () => {
      const f = expectFailure(decodeRequest(utf8(text)), 'MALFORMED');
      expect('id' in f || 'replyTo' in f).toBe(false);
    });
  }

  const notObjects = ['[]', JSON.stringify([VALID.heartbeat]), '"heartbeat"', '42', '-1.5', 'null', 'true', 'false'];
  for (const text of notObjects) {
    it(`MALFORMED for the JSON value ${text.slice(0, 30)}`, () => {
      const f = expectFailure(decodeRequest(utf8(text)), 'MALFORMED');
      expect('id' in f || 'replyTo' in f).toBe(false);
    });
  }

  it('MALFORMED for invalid UTF-8 outside strings', () => {
    const bytes = Uint8Array.from([0x7b, 0xff, 0xfe, 0x7d]);
    expectFailure(decodeRequest(bytes), 'MALFORMED');
  });
});

describe('framing: size', () => {
  /** A valid heartbeat padded with trailing whitespace to exactly `size` bytes. */
  const padded = (size: number): Uint8Array => {
    const body = JSON.stringify(VALID.heartbeat);
    return utf8(body + ' '.repeat(size - Buffer.byteLength(body)));
  };

  it('accepts exactly maxBytes and refuses one byte more', () => {
    expectOk(decodeRequest(padded(200), 200));
    const f = expectFailure(decodeRequest(padded(201), 200), 'MESSAGE_TOO_LARGE');
    expect('id' in f || 'replyTo' in f).toBe(false);
  });

  it('counts bytes, not characters', () => {
    const message = { ...WIRE.acquire, lock: 'x'.repeat(10) };
    const ascii = wire(message);
    expectOk(decodeRequest(ascii, ascii.byteLength));
    // Same character count but a two-byte character in an (invalid anyway) field: the size check comes first.
    const wide = wire({ ...message, lock: `${'x'.repeat(9)}é` });
    expect(wide.byteLength).toBe(ascii.byteLength + 1);
    expectFailure(decodeRequest(wide, ascii.byteLength), 'MESSAGE_TOO_LARGE');
  });

  it('defaults to MAX_MESSAGE_BYTES', () => {
    expect(MAX_MESSAGE_BYTES).toBe(65_536);
    expectOk(decodeRequest(padded(MAX_MESSAGE_BYTES)));
    expectFailure(decodeRequest(padded(MAX_MESSAGE_BYTES + 1)), 'MESSAGE_TOO_LARGE');
  });

  it('never accepts more than MAX_MESSAGE_BYTES, whatever maxBytes says', () => {
    expectOk(decodeRequest(padded(MAX_MESSAGE_BYTES), 10 * MAX_MESSAGE_BYTES));
    expectFailure(decodeRequest(padded(MAX_MESSAGE_BYTES + 1), 10 * MAX_MESSAGE_BYTES), 'MESSAGE_TOO_LARGE');
    expectFailure(decodeRequest(padded(MAX_MESSAGE_BYTES + 1), Number.POSITIVE_INFINITY), 'MESSAGE_TOO_LARGE');
  });

  // A NaN maxBytes (a mis-parsed config value) must not switch the size check off.
  it('a NaN maxBytes still never accepts more than MAX_MESSAGE_BYTES', () => {
    expectFailure(decodeRequest(padded(MAX_MESSAGE_BYTES + 1), Number.NaN), 'MESSAGE_TOO_LARGE');
  });

  it('checks size before parsing', () => {
    expectFailure(decodeRequest(utf8('x'.repeat(101)), 100), 'MESSAGE_TOO_LARGE');
  });
});

// ---- envelope ---------------------------------------------------------------------------------

describe('version and op', () => {
  it('v missing, 2, 0, "1", null are UNSUPPORTED_VERSION', () => {
    const { v: _v, ...noV } = VALID.heartbeat;
    expectFailure(decodeWire(noV), 'UNSUPPORTED_VERSION', 'v');
    for (const v of [2, 0, '1', null, 1.5, true]) {
      expectFailure(decodeWire({ ...VALID.heartbeat, v }), 'UNSUPPORTED_VERSION', 'v');
    }
  });

  it('the version is checked before the op', () => {
    expectFailure(decodeWire({ ...VALID.heartbeat, v: 2, op: 'frobnicate' }), 'UNSUPPORTED_VERSION', 'v');
  });

  it('unknown, missing or non-string op is UNKNOWN_OP', () => {
    const { op: _op, ...noOp } = VALID.heartbeat;
    expectFailure(decodeWire(noOp), 'UNKNOWN_OP', 'op');
    for (const op of ['lock', 'ACQUIRE', 'Acquire', '', 'constructor', 'toString', '__proto__', 'hasOwnProperty', 1, null, ['acquire']]) {
      expectFailure(decodeWire({ ...VALID.heartbeat, op }), 'UNKNOWN_OP', 'op');
    }
  });

  it('the op is checked before the fields', () => {
    expectFailure(decodeWire({ v: 1, op: 'nope' }), 'UNKNOWN_OP', 'op');
  });
});

describe('required fields', () => {
  for (const op of OPS) {
    for (const field of REQUIRED[op]) {
      it(`${op} without ${field} is INVALID_FIELD on ${field}`, () => {
        const { [field]: _gone, ...rest } = WIRE[op];
        expectFailure(decodeWire(rest), 'INVALID_FIELD', field);
      });
    }
  }

  it('required fields are checked in the documented order', () => {
    // Every required field wrong at once: the first in REQUIRED order is reported.
    for (const op of OPS) {
      const broken: Wire = { v: 1, op };
      for (const field of REQUIRED[op]) broken[field] = null;
      const first = REQUIRED[op][0];
      expectFailure(decodeWire(broken), 'INVALID_FIELD', first);
    }
    expectFailure(decodeWire({ ...WIRE.acquire, lock: '', ttlMs: 1 }), 'NAME_INVALID', 'lock');
    expectFailure(decodeWire({ ...WIRE.acquire, ttlMs: 1, waitMs: -1 }), 'TTL_OUT_OF_RANGE', 'ttlMs');
  });

  it('required fields are checked before unknown or optional ones', () => {
    expectFailure(decodeWire({ extra: 1, ...VALID.release, token: 0 }), 'INVALID_FIELD', 'token');
    expectFailure(decodeWire({ kind: 'bogus', ...ACQUIRE_WIRE, waitMs: -1 }), 'WAIT_OUT_OF_RANGE', 'waitMs');
  });
});

describe('wrong types', () => {
  for (const op of OPS) {
    const request = WIRE[op];
    for (const field of Object.keys(request)) {
      if (field === 'v' || field === 'op') continue;
      const kind = FIELD_KIND[field];
      if (kind === undefined) throw new Error(`no kind for ${field}`);
      it(`${op}.${field} of the wrong type is INVALID_FIELD`, () => {
        for (const value of wrongTypes(kind)) {
          expectFailure(decodeWire({ ...request, [field]: value }), 'INVALID_FIELD', field);
        }
      });
    }
  }

  it('optional acquire fields of the wrong type are INVALID_FIELD', () => {
    for (const field of ['kind', 'mode', 'limit', 'permits'] as const) {
      const kind = FIELD_KIND[field] ?? 'string';
      for (const value of wrongTypes(kind)) {
        const base = field === 'mode' ? { ...ACQUIRE_WIRE, kind: 'rwlock' } : { ...ACQUIRE_WIRE, kind: 'semaphore', limit: 4 };
        expectFailure(decodeWire({ ...base, [field]: value }), 'INVALID_FIELD', field);
      }
    }
  });

  it('an explicit null for an optional field is INVALID_FIELD, not "absent"', () => {
    expectFailure(decodeWire({ ...ACQUIRE_WIRE, kind: null }), 'INVALID_FIELD', 'kind');
    expectFailure(decodeWire({ ...VALID.heartbeat, op: 'inspect', lock: null }), 'INVALID_FIELD', 'lock');
  });
});

describe('unknown fields', () => {
  it('any field an op does not define is INVALID_FIELD on that field', () => {
    expectFailure(decodeWire({ ...VALID.heartbeat, extra: 1 }), 'INVALID_FIELD', 'extra');
    expectFailure(decodeWire({ ...VALID.heartbeat, lock: 'x' }), 'INVALID_FIELD', 'lock');
    expectFailure(decodeWire({ ...VALID.close, token: 1 }), 'INVALID_FIELD', 'token');
    expectFailure(decodeWire({ ...VALID.release, ttlMs: 100 }), 'INVALID_FIELD', 'ttlMs');
    expectFailure(decodeWire({ ...VALID.extend, waitMs: 0 }), 'INVALID_FIELD', 'waitMs');
    expectFailure(decodeWire({ ...VALID.cancel, token: 1 }), 'INVALID_FIELD', 'token');
    expectFailure(decodeWire({ ...VALID.open, lock: 'x' }), 'INVALID_FIELD', 'lock');
    expectFailure(decodeWire({ ...VALID.inspect, kind: 'mutex' }), 'INVALID_FIELD', 'kind');
    expectFailure(decodeWire({ ...WIRE.acquire, token: 1 }), 'INVALID_FIELD', 'token');
    expectFailure(decodeWire({ ...WIRE.acquire, epoch: 1 }), 'INVALID_FIELD', 'epoch');
  });

  it('even fields named like Object.prototype members are unknown', () => {
    for (const key of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
      const text = JSON.stringify(VALID.heartbeat).replace(/}$/, `,"${key}":{"polluted":true}}`);
      expectFailure(decodeRequest(utf8(text)), 'INVALID_FIELD', key);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('an unknown field is reported even when the value is harmless (null, empty)', () => {
    expectFailure(decodeWire({ ...VALID.heartbeat, extra: null }), 'INVALID_FIELD', 'extra');
    expectFailure(decodeWire({ ...VALID.heartbeat, '': '' }), 'INVALID_FIELD', '');
  });
});

// ---- names and ids ----------------------------------------------------------------------------

describe('lock names', () => {
  const withLock: readonly Op[] = ['acquire', 'release', 'extend', 'cancel', 'inspect'];
  const bad: readonly [string, string][] = [
    ['empty', ''],
    ['257 characters', 'a'.repeat(257)],
    ['a space (0x20)', 'a b'],
    ['only a space', ' '],
    ['a newline', 'a\nb'],
    ['a tab', 'a\tb'],
    ['a NUL', 'a\u0000b'],
    ['DEL (0x7F)', 'a\u007fb'],
    ['non-ASCII (é)', 'caf\u00e9'],
    ['non-ASCII (U+0080)', '\u0080'],
    ['an emoji', 'lock-\u{1f512}'],
    ['a lone surrogate', 'a\ud800'],
  ];
  const good: readonly [string, string][] = [
    ['one character', 'x'],
    ['256 characters', 'a'.repeat(256)],
    ['0x21 (!)', '!'],
    ['0x7E (~)', '~'],
    ['a double quote (0x22)', 'say"hi"'],
    ['a backslash', 'a\\b'],
    ['every printable ASCII character', Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).join('')],
    ['braces', '{order-7}:lines'],
  ];

  for (const op of withLock) {
    for (const [label, lock] of bad) {
      it(`${op}: ${label} is NAME_INVALID`, () => {
        expectFailure(decodeWire({ ...WIRE[op], lock }), 'NAME_INVALID', 'lock');
      });
    }
    it(`${op}: boundary names are accepted`, () => {
      for (const [, lock] of good) expect(expectOk(decodeWire({ ...WIRE[op], lock }))).toMatchObject({ lock });
    });
  }

  it('a name that is not a string is INVALID_FIELD, not NAME_INVALID', () => {
    expectFailure(decodeWire({ ...VALID.release, lock: 42 }), 'INVALID_FIELD', 'lock');
    expectFailure(decodeWire({ ...VALID.release, lock: ['x'] }), 'INVALID_FIELD', 'lock');
  });
});

describe('ids and reply addresses', () => {
  for (const field of ['id', 'worker', 'session'] as const) {
    it(`${field}: 1 to 128 printable ASCII characters, else INVALID_FIELD`, () => {
      for (const value of ['x', 'a'.repeat(128), '!~"{}', 'a7f3c2e0-0b7d-4c1e-9a55-3d2f1e0c9b8a']) {
        expectOk(decodeWire({ ...VALID.heartbeat, [field]: value }));
      }
      for (const value of ['', 'a'.repeat(129), 'a b', 'a\nb', 'caf\u00e9', '\u007f']) {
        expectFailure(decodeWire({ ...VALID.heartbeat, [field]: value }), 'INVALID_FIELD', field);
      }
    });
  }

  it('cancel.target follows the id rules', () => {
    expectOk(decodeWire({ ...VALID.cancel, target: 'a'.repeat(128) }));
    expectFailure(decodeWire({ ...VALID.cancel, target: 'a'.repeat(129) }), 'INVALID_FIELD', 'target');
    expectFailure(decodeWire({ ...VALID.cancel, target: '' }), 'INVALID_FIELD', 'target');
    expectFailure(decodeWire({ ...VALID.cancel, target: 'a b' }), 'INVALID_FIELD', 'target');
  });

  it('replyTo: 1 to 255 printable ASCII characters (an AMQP routing key), else INVALID_FIELD', () => {
    expectOk(decodeWire({ ...VALID.heartbeat, replyTo: 'r'.repeat(255) }));
    for (const replyTo of ['', 'r'.repeat(256), 'r'.repeat(257), 'lockq replies', 'caf\u00e9']) {
      expectFailure(decodeWire({ ...VALID.heartbeat, replyTo }), 'INVALID_FIELD', 'replyTo');
    }
  });
});

// ---- numeric ranges ---------------------------------------------------------------------------

describe('numeric ranges', () => {
  it('acquire.ttlMs: integer 10..86_400_000, else TTL_OUT_OF_RANGE', () => {
    for (const ttlMs of [10, 11, 86_400_000]) expectOk(decodeWire({ ...ACQUIRE_WIRE, ttlMs }));
    for (const ttlMs of [9, 0, -1, 86_400_001, 1.5, 10.5, Number.MAX_SAFE_INTEGER + 1]) {
      expectFailure(decodeWire({ ...ACQUIRE_WIRE, ttlMs }), 'TTL_OUT_OF_RANGE', 'ttlMs');
    }
  });

  it('extend.ttlMs has the same range', () => {
    for (const ttlMs of [10, 86_400_000]) expectOk(decodeWire({ ...VALID.extend, ttlMs }));
    for (const ttlMs of [9, 86_400_001, 1.5]) expectFailure(decodeWire({ ...VALID.extend, ttlMs }), 'TTL_OUT_OF_RANGE', 'ttlMs');
  });

  it('a JSON number too large for a double (1e400) parses as Infinity and is out of range', () => {
    const text = JSON.stringify(ACQUIRE_WIRE).replace('"ttlMs":30000', '"ttlMs":1e400');
    expect(text).toContain('1e400');
    expectFailure(decodeRequest(utf8(text)), 'TTL_OUT_OF_RANGE', 'ttlMs');
  });

  it('numbers written as strings ("NaN", "Infinity", "100") are INVALID_FIELD', () => {
    for (const ttlMs of ['NaN', 'Infinity', '-Infinity', '100', '1e3']) {
      expectFailure(decodeWire({ ...ACQUIRE_WIRE, ttlMs }), 'INVALID_FIELD', 'ttlMs');
    }
    // JSON.stringify turns NaN and Infinity into null, which is a wrong type too.
    expectFailure(decodeWire({ ...ACQUIRE_WIRE, ttlMs: Number.NaN }), 'INVALID_FIELD', 'ttlMs');
    expectFailure(decodeWire({ ...ACQUIRE_WIRE, ttlMs: Number.POSITIVE_INFINITY }), 'INVALID_FIELD', 'ttlMs');
  });

  it('acquire.waitMs: integer 0..3_600_000, else WAIT_OUT_OF_RANGE', () => {
    for (const waitMs of [0, 1, 3_600_000]) expectOk(decodeWire({ ...ACQUIRE_WIRE, waitMs }));
    for (const waitMs of [-1, -1000, 3_600_001, 0.5]) {
      expectFailure(decodeWire({ ...ACQUIRE_WIRE, waitMs }), 'WAIT_OUT_OF_RANGE', 'waitMs');
    }
  });

  it('open.sessionTtlMs: integer 100..600_000, else SESSION_TTL_OUT_OF_RANGE', () => {
    for (const sessionTtlMs of [100, 600_000]) expectOk(decodeWire({ ...VALID.open, sessionTtlMs }));
    for (const sessionTtlMs of [99, 0, -100, 600_001, 150.5]) {
      expectFailure(decodeWire({ ...VALID.open, sessionTtlMs }), 'SESSION_TTL_OUT_OF_RANGE', 'sessionTtlMs');
    }
  });

  it('open.partitions: integer 1..4096, else INVALID_FIELD', () => {
    for (const partitions of [1, 4096]) expectOk(decodeWire({ ...VALID.open, partitions }));
    for (const partitions of [0, -1, 4097, 1.5]) {
      expectFailure(decodeWire({ ...VALID.open, partitions }), 'INVALID_FIELD', 'partitions');
    }
  });

  for (const op of ['release', 'extend'] as const) {
    it(`${op}.token: a positive safe integer, else INVALID_FIELD`, () => {
      for (const token of [1, 2, Number.MAX_SAFE_INTEGER]) expectOk(decodeWire({ ...VALID[op], token }));
      for (const token of [0, -1, -7, 1.5, Number.MAX_SAFE_INTEGER + 1, 2 ** 53, 1e20, '7']) {
        expectFailure(decodeWire({ ...VALID[op], token }), 'INVALID_FIELD', 'token');
      }
    });
  }
});

// ---- salvage ----------------------------------------------------------------------------------

describe('salvaging id and replyTo from a refused request', () => {
  it('keeps both when they are well formed', () => {
    const f = expectFailure(decodeWire({ ...WIRE.acquire, ttlMs: 1 }), 'TTL_OUT_OF_RANGE', 'ttlMs');
    expect(f.id).toBe(ENV.id);
    expect(f.replyTo).toBe(ENV.replyTo);
  });

  it('salvages from version, op and unknown-field failures too', () => {
    for (const [message, code] of [
      [{ ...VALID.heartbeat, v: 2 }, 'UNSUPPORTED_VERSION'],
      [{ ...VALID.heartbeat, op: 'nope' }, 'UNKNOWN_OP'],
      [{ ...VALID.heartbeat, extra: 1 }, 'INVALID_FIELD'],
      [{ ...VALID.heartbeat, worker: '' }, 'INVALID_FIELD'],
      [{ ...ACQUIRE_WIRE, kind: 'semaphore' }, 'INVALID_FIELD'],
    ] as const) {
      const f = decodeWire(message);
      expect(f).toMatchObject({ ok: false, code, id: ENV.id, replyTo: ENV.replyTo });
    }
  });

  it('drops an id that is malformed and keeps a good replyTo', () => {
    for (const id of ['', 'a b', 'a'.repeat(129), 42, null]) {
      const f = expectFailure(decodeWire({ ...VALID.heartbeat, id }), 'INVALID_FIELD', 'id');
      expect('id' in f).toBe(false);
      expect(f.replyTo).toBe(ENV.replyTo);
    }
  });

  it('drops a replyTo that is malformed and keeps a good id', () => {
    for (const replyTo of ['', 'r'.repeat(257), 'a\nb', 7, { queue: 'x' }]) {
      const f = expectFailure(decodeWire({ ...VALID.heartbeat, replyTo }), 'INVALID_FIELD', 'replyTo');
      expect('replyTo' in f).toBe(false);
      expect(f.id).toBe(ENV.id);
    }
  });

  it('salvages no reply address from the 286-byte poison (a 256-character replyTo): it is dead-lettered, not answered', () => {
    const poison = utf8(`{"v":2,"id":"p1","replyTo":"${'x'.repeat(256)}"}`);
    expect(poison.byteLength).toBe(286);
    const f = decodeRequest(poison);
    expect(f).toMatchObject({ ok: false, code: 'UNSUPPORTED_VERSION', id: 'p1' });
    expect('replyTo' in f).toBe(false);
  });

  it('drops both when both are missing', () => {
    const f = expectFailure(decodeWire({ v: 1, op: 'heartbeat' }), 'INVALID_FIELD', 'id');
    expect('id' in f || 'replyTo' in f).toBe(false);
  });

  it('salvages nothing from a message that could not be read as an object', () => {
    const text = JSON.stringify([{ ...VALID.heartbeat }]);
    const f = expectFailure(decodeRequest(utf8(text)), 'MALFORMED');
    expect('id' in f || 'replyTo' in f).toBe(false);
    const big = expectFailure(decodeRequest(wire({ ...VALID.heartbeat, pad: 'x'.repeat(300) }), 100), 'MESSAGE_TOO_LARGE');
    expect('id' in big || 'replyTo' in big).toBe(false);
  });
});

// ---- decodeReply ------------------------------------------------------------------------------

describe('decodeReply', () => {
  const env = { v: 1, re: 'req-1', epoch: 3, partition: 5 } as const;
  const replies: readonly Reply[] = [
    { ...env, type: 'granted', lock: 'x', token: 9, ttlMs: 30_000, basis: 'req-1' },
    { ...env, type: 'queued', lock: 'x', position: 2 },
    { ...env, type: 'released', lock: 'x', token: 9 },
    { ...env, type: 'extended', lock: 'x', token: 9, ttlMs: 30_000, basis: 'req-2' },
    { ...env, type: 'cancelled', lock: 'x' },
    { ...env, type: 'opened', session: 's', resumed: false, sessionTtlMs: 10_000 },
    { ...env, type: 'ok' },
    { ...env, type: 'error', code: 'LOCK_BUSY', message: ERROR_CODES.LOCK_BUSY.text },
    { ...env, type: 'error', code: 'NAME_INVALID', message: 'lock: x', field: 'lock' },
    { ...env, type: 'lost', lock: 'x', token: 9, reason: 'LEASE_EXPIRED' },
    { ...env, type: 'lost', lock: 'x', token: 9, reason: 'NO_SESSION' },
    { ...env, type: 'lost', lock: 'x', token: 9, reason: 'SHUTTING_DOWN' },
    { ...env, type: 'inspected', counts: { locks: 0, holds: 0, waiters: 0, sessions: 1 } },
    { ...env, type: 'inspected', lock: null, counts: { locks: 0, holds: 0, waiters: 0, sessions: 1 } },
    {
      ...env,
      type: 'inspected',
      lock: {
        lock: 'x',
        kind: 'rwlock',
        limit: 1,
        holderCount: 1,
        waiterCount: 1,
        holders: [{ worker: 'w', token: 9, mode: 'shared', permits: 1, ttlMs: 100 }],
        waiters: [{ worker: 'w2', mode: 'exclusive', permits: 1, position: 1, waitMs: 50 }],
      },
      counts: { locks: 1, holds: 1, waiters: 1, sessions: 2 },
    },
  ];

  it('accepts every reply type', () => {
    const types = new Set(replies.map((r) => r.type));
    expect(types.size).toBe(10);
    for (const reply of replies) expect(decodeReply(encode(reply))).toEqual(reply);
  });

  it('accepts epoch 0 and partition 0', () => {
    expect(decodeReply(wire({ v: 1, re: 'r', epoch: 0, partition: 0, type: 'ok' }))).not.toBeNull();
  });

  it("reads WRONG_PARTITION's partition count (1 to 4096), and refuses one out of range or on another reply", () => {
    const wrong = { ...env, type: 'error', code: 'WRONG_PARTITION', message: ERROR_CODES.WRONG_PARTITION.text, field: 'lock', partitions: 4 } as const;
    expect(decodeReply(encode(wrong))).toEqual(wrong);
    for (const partitions of [1, 4096]) expect(decodeReply(wire({ ...wrong, partitions }))).toEqual({ ...wrong, partitions });
    for (const partitions of [0, -1, 4097, 1.5, '4', null, true]) expect(decodeReply(wire({ ...wrong, partitions }))).toBeNull();
    expect(decodeReply(wire({ v: 1, re: 'r', epoch: 0, partition: 0, type: 'ok', partitions: 4 }))).toBeNull();
  });

  it('reads a session key on opened and a proof and MAC on granted (22 characters of base64url), and refuses them malformed or elsewhere', () => {
    const seal = 'Ab0_-'.padEnd(22, 'x');
    const opened = { ...env, type: 'opened', session: 's', resumed: false, sessionTtlMs: 10_000, key: seal } as const;
    const granted = { ...env, type: 'granted', lock: 'x', token: 9, ttlMs: 30_000, basis: 'req-1', proof: seal, mac: seal } as const;
    expect(decodeReply(encode(opened))).toEqual(opened);
    expect(decodeReply(encode(granted))).toEqual(granted);
    const { proof: _, ...macOnly } = granted;
    expect(decodeReply(encode(macOnly))).toEqual(macOnly);
    for (const bad of ['', 'x'.repeat(21), 'x'.repeat(23), `${'x'.repeat(21)}=`, `${'x'.repeat(21)}+`, 22, null]) {
      expect(decodeReply(wire({ ...opened, key: bad })), `key ${String(bad)}`).toBeNull();
      expect(decodeReply(wire({ ...granted, mac: bad })), `mac ${String(bad)}`).toBeNull();
      expect(decodeReply(wire({ ...granted, proof: bad })), `proof ${String(bad)}`).toBeNull();
    }
    expect(decodeReply(wire({ ...granted, type: 'extended' }))).toBeNull();
    expect(decodeReply(wire({ ...opened, type: 'ok', key: undefined, mac: seal }))).toBeNull();
    expect(decodeReply(wire({ ...env, type: 'ok', key: seal }))).toBeNull();
  });

  const ok: Wire = { v: 1, re: 'req-1', epoch: 3, partition: 5, type: 'ok' };
  const garbage: readonly [string, Uint8Array][] = [
    ['not JSON', utf8('{"v":1')],
    ['empty', utf8('')],
    ['null', utf8('null')],
    ['a string', utf8('"ok"')],
    ['a number', utf8('1')],
    ['an array', wire([ok])],
    ['version 2', wire({ ...ok, v: 2 })],
    ['version missing', wire({ ...ok, v: undefined })],
    ['version "1"', wire({ ...ok, v: '1' })],
    ['re missing', wire({ ...ok, re: undefined })],
    ['re a number', wire({ ...ok, re: 1 })],
    ['type unknown', wire({ ...ok, type: 'denied' })],
    ['type missing', wire({ ...ok, type: undefined })],
    ['type a request op', wire({ ...ok, type: 'acquire' })],
    ['epoch non-integer', wire({ ...ok, epoch: 1.5 })],
    ['epoch a string', wire({ ...ok, epoch: '3' })],
    ['epoch missing', wire({ ...ok, epoch: undefined })],
    ['epoch unsafe', wire({ ...ok, epoch: 2 ** 53 })],
    ['partition missing', wire({ ...ok, partition: undefined })],
    ['partition non-integer', wire({ ...ok, partition: 0.5 })],
    ['too large', utf8(JSON.stringify({ ...ok, pad: 'x'.repeat(16 * MAX_MESSAGE_BYTES) }))],
  ];
  for (const [label, body] of garbage) {
    it(`returns null for ${label}`, () => {
      expect(decodeReply(body)).toBeNull();
    });
  }

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const r = decodeReply(bytes);
        expect(r === null || typeof r === 'object').toBe(true);
      }),
    );
  });
});

// ---- partitionOf ------------------------------------------------------------------------------

describe('partitionOf', () => {
  const FULL = 2 ** 32; // modulo 2^32 exposes the raw 32-bit hash

  it('is FNV-1a 32-bit (published test vectors)', () => {
    expect(partitionOf('', FULL)).toBe(0x811c9dc5);
    expect(partitionOf('a', FULL)).toBe(0xe40c292c);
    expect(partitionOf('foobar', FULL)).toBe(0xbf9cf968);
  });

  it('has stable vectors (these are in docs/protocol.md)', () => {
    expect(partitionOf('a', 16)).toBe(12);
    expect(partitionOf('invoice:42', 16)).toBe(4);
    expect(partitionOf('foobar', 1000)).toBe(720);
    expect(partitionOf('task:913', 7)).toBe(3);
    expect(partitionOf('{order-7}:lines', 16)).toBe(11);
    expect(partitionOf('pdf-render', 4096)).toBe(2472);
  });

  it('one partition (or fewer) is always partition 0', () => {
    for (const name of ['a', 'invoice:42', '{x}y']) {
      expect(partitionOf(name, 1)).toBe(0);
      expect(partitionOf(name, 0)).toBe(0);
    }
  });

  it('matches a byte-wise reference implementation for any lock name', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 256 }), fc.integer({ min: 1, max: 4096 }), (name, partitions) => {
        const open = name.indexOf('{');
        const close = open >= 0 ? name.indexOf('}', open + 1) : -1;
        const key = open >= 0 && close > open + 1 ? name.slice(open + 1, close) : name;
        const p = partitionOf(name, partitions);
        expect(p).toBe(partitions <= 1 ? 0 : fnv1a(key) % partitions);
        expect(Number.isInteger(p) && p >= 0 && p < Math.max(1, partitions)).toBe(true);
      }),
    );
  });

  it('a {tag} pins names to the partition of the tag', () => {
    for (const partitions of [2, 16, 1000, 4096]) {
      expect(partitionOf('{a}x', partitions)).toBe(partitionOf('{a}y', partitions));
      expect(partitionOf('{a}x', partitions)).toBe(partitionOf('a', partitions));
      expect(partitionOf('{order-7}:lines', partitions)).toBe(partitionOf('{order-7}:total', partitions));
      expect(partitionOf('prefix:{order-7}:total', partitions)).toBe(partitionOf('order-7', partitions));
    }
  });

  it('an empty tag {} falls back to the whole name', () => {
    expect(partitionOf('{}x', FULL)).toBe(fnv1a('{}x'));
    expect(partitionOf('{}x', FULL)).not.toBe(partitionOf('x', FULL));
    // Only the first '{' counts: a later non-empty tag after an empty one is not used.
    expect(partitionOf('x{}{a}', FULL)).toBe(fnv1a('x{}{a}'));
  });

  it('an unclosed brace or a lone } hashes the whole name', () => {
    expect(partitionOf('{abc', FULL)).toBe(fnv1a('{abc'));
    expect(partitionOf('abc}', FULL)).toBe(fnv1a('abc}'));
    expect(partitionOf('}a{', FULL)).toBe(fnv1a('}a{'));
  });

  it('the tag is the text between the first { and the next }', () => {
    expect(partitionOf('{{a}}', FULL)).toBe(fnv1a('{a'));
    expect(partitionOf('{a}{b}', FULL)).toBe(fnv1a('a'));
  });

  it('spreads 10,000 names roughly uniformly over 16 partitions', () => {
    const counts = new Array<number>(16).fill(0);
    for (let i = 0; i < 10_000; i++) {
      const p = partitionOf(`job:${i}`, 16);
      counts[p] = (counts[p] ?? 0) + 1;
    }
    const mean = 10_000 / 16;
    for (const c of counts) {
      expect(c).toBeGreaterThanOrEqual(mean * 0.75);
      expect(c).toBeLessThanOrEqual(mean * 1.25);
    }
  });
});

// ---- properties -------------------------------------------------------------------------------

describe('decodeRequest on arbitrary input', () => {
  const SDK_ONLY: readonly ErrorCode[] = ['TIMEOUT', 'LEASE_LOST', 'ABORTED', 'CLIENT_CLOSED', 'TRANSPORT_ERROR'];

  function check(bytes: Uint8Array): void {
    let result: DecodeResult | undefined;
    expect(() => {
      result = decodeRequest(bytes);
    }).not.toThrow();
    if (result === undefined) throw new Error('no result');
    if (result.ok) {
      // Whatever was accepted is a fixed point of encode/decode.
      expect(decodeRequest(encode(result.request))).toEqual(result);
    } else {
      expect(Object.hasOwn(ERROR_CODES, result.code)).toBe(true);
      expect(SDK_ONLY).not.toContain(result.code);
      expect(typeof result.message).toBe('string');
    }
  }

  it('never throws on any JSON value', () => {
    fc.assert(fc.property(fc.jsonValue(), (value) => check(wire(value))), { numRuns: 500 });
  });

  it('never throws on any JS value that JSON.stringify accepts', () => {
    fc.assert(
      fc.property(fc.anything({ withBigInt: false, withBoxedValues: true, withMap: true, withSet: true, withTypedArray: true, withSparseArray: true, withNullPrototype: true }), (value) => {
        let text: string | undefined;
        try {
          text = JSON.stringify(value);
        } catch {
          return; // e.g. cyclic; not something a peer can send
        }
        if (text !== undefined) check(utf8(text));
      }),
      { numRuns: 500 },
    );
  });

  it('never throws on arbitrary strings and bytes', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (text) => check(utf8(text))), { numRuns: 300 });
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => check(bytes)), { numRuns: 300 });
  });

  it('never throws on near-valid requests with random field values', () => {
    const anyValue = fc.oneof(
      fc.jsonValue(),
      fc.constantFrom('mutex', 'rwlock', 'semaphore', 'shared', 'exclusive', 'x', '', 'a b'),
      fc.integer({ min: -10, max: 5_000_000 }),
      fc.constantFrom(0, 1, 10, 100, 4096, 86_400_000, 3_600_000, 600_000, 1.5, -0, Number.MAX_SAFE_INTEGER, 2 ** 53),
    );
    const fieldName = fc.constantFrom(
      'v', 'op', 'id', 'worker', 'session', 'replyTo', 'lock', 'kind', 'mode', 'limit', 'permits',
      'ttlMs', 'waitMs', 'token', 'target', 'sessionTtlMs', 'partitions', 'extra', '__proto__',
    );
    fc.assert(
      fc.property(
        fc.constantFrom(...OPS),
        fc.array(fc.tuple(fieldName, fc.option(anyValue, { nil: undefined })), { maxLength: 4 }),
        (op, edits) => {
          const message: Wire = { ...WIRE[op] };
          for (const [field, value] of edits) {
            if (value === undefined) delete message[field];
            else Object.defineProperty(message, field, { value, enumerable: true, writable: true, configurable: true });
          }
          const bytes = wire(message);
          check(bytes);
          const result = decodeRequest(bytes);
          if (!result.ok && result.code !== 'MALFORMED' && result.code !== 'MESSAGE_TOO_LARGE') {
            // Salvage is exactly "present and well formed".
            const id = message.id;
            const wellFormedId = typeof id === 'string' && /^[\x21-\x7e]{1,128}$/.test(id);
            expect(result.id).toBe(wellFormedId ? id : undefined);
            expect('id' in result).toBe(wellFormedId);
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});
