import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseCanonicalReply, parseCanonicalRequest, writeCanonicalReply, writeCanonicalRequest } from '../src/canonical.js';
import {
  decodeReply,
  decodeReplyText,
  decodeRequest,
  decodeRequestText,
  encodeReply,
  encodeRequest,
  type ReplyBody,
} from '../src/index.js';

/**
 * The codec's fast path (canonical.ts) must never change a byte or an answer: on any input,
 * encodeRequest and encodeReply write exactly what JSON.stringify writes, and decodeRequest and
 * decodeReply give exactly what their general paths give, down to the key order of what they
 * build. The inputs start as the canonical layouts (so the fast path is exercised) and are then
 * mutated towards everything near them.
 */

// ---- inputs ------------------------------------------------------------------------------------

/** Characters near the edges of what the fast path accepts. */
const CHARS = ['a', 'Z', '0', '9', '-', ':', '.', '!', '~', '"', '\\', ' ', '\t', '\u007f', 'é', '\u2028', '😀', '{', '}', ','];
/** Mostly values every field accepts, so the fast path is taken often; then values at and past its edges. */
const text = (maxLength: number) =>
  fc.oneof(
    { weight: 6, arbitrary: fc.string({ unit: fc.constantFrom('a', 'b', '7', ':', '-', '.'), minLength: 1, maxLength: 12 }) },
    { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom(...CHARS), maxLength: 12 }) },
    // Around the length limits (128 for ids, 256 for lock names and reply addresses).
    { weight: 1, arbitrary: fc.constantFrom(127, 128, 129, 255, 256, 257).map((n) => 'x'.repeat(Math.min(n, maxLength))) },
  );
const int = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 10, max: 100_000 }) },
  { weight: 1, arbitrary: fc.constantFrom(-1, 0, 1, 9, 10, 99, 100, 4096, 600_000, 600_001, 3_600_000, 3_600_001, 86_400_000, 86_400_001) },
  { weight: 1, arbitrary: fc.constantFrom(2 ** 53 - 1, 2 ** 53, 1e15 - 1, 1e15, 1e16, 0.5, 10.5, -0) },
);

/** What an SDK puts after the envelope, for every op (acquire in each of its kinds). */
const fields = fc.oneof(
  fc.record({ op: fc.constant('acquire'), lock: text(300), ttlMs: int, waitMs: int }),
  fc.record({ op: fc.constant('acquire'), lock: text(300), ttlMs: int, waitMs: int, kind: fc.constant('rwlock'), mode: fc.constantFrom('shared', 'exclusive') }),
  fc.record({ op: fc.constant('acquire'), lock: text(300), ttlMs: int, waitMs: int, kind: fc.constant('semaphore'), limit: int, permits: int }),
  fc.record({ op: fc.constant('release'), lock: text(300), token: int }),
  fc.record({ op: fc.constant('extend'), lock: text(300), token: int, ttlMs: int }),
  fc.record({ op: fc.constantFrom('heartbeat', 'close') }),
  fc.record({ op: fc.constant('open'), sessionTtlMs: int, partitions: int }),
  fc.record({ op: fc.constant('cancel'), lock: text(300), target: text(200) }),
);

/** A request exactly as LockClient #send lays it out. */
const canonicalRequest = fc
  .record({ worker: text(200), session: text(200), replyTo: text(300), id: text(200), seq: int, settled: int, fields })
  .map(
    (r) =>
      `{"v":1,"worker":${JSON.stringify(r.worker)},"session":${JSON.stringify(r.session)},"replyTo":${JSON.stringify(r.replyTo)},` +
      `"id":${JSON.stringify(r.id)},"seq":${r.seq},"settled":${r.settled},${JSON.stringify(r.fields).slice(1)}`,
  );

/** A reply body as the core builds it, for the replies the fast path reads and a few it leaves alone. */
const replyBody: fc.Arbitrary<ReplyBody> = fc.oneof(
  fc.record({ type: fc.constant('granted'), re: text(200), lock: text(300), token: int, ttlMs: int, basis: text(200) }),
  fc.record({ type: fc.constant('extended'), re: text(200), lock: text(300), token: int, ttlMs: int, basis: text(200) }),
  fc.record({ type: fc.constant('released'), re: text(200), lock: text(300), token: int }),
  fc.record({ type: fc.constant('queued'), re: text(200), lock: text(300), position: int }),
  fc.record({ type: fc.constant('ok'), re: text(200) }),
) as fc.Arbitrary<ReplyBody>;
const canonicalReply = fc
  .record({ body: replyBody, epoch: int, partition: int })
  .map((r) => Buffer.from(encodeReply(r.body, r.epoch, r.partition)).toString('utf8'));

/** Bytes spliced in by mutations: structure, digits, quotes, escapes, whitespace, non-ASCII and invalid UTF-8. */
const SPLICES = ['"', '\\', ',', ':', '{', '}', ' ', '0', '1', '9', '-', '.', 'e', 'x', '\u00e9', '\ufeff', '"v":1,', '"seq":2,', '"op":"close",', '"lock":"a",', '"kind":"mutex",']
  .map((s) => Buffer.from(s, 'utf8'))
  .concat([Buffer.from([0xff]), Buffer.from([0xc3]), Buffer.from([0x80])]);
const mutation = fc.record({
  at: fc.nat(),
  cut: fc.integer({ min: 0, max: 3 }),
  insert: fc.option(fc.constantFrom(...SPLICES), { nil: undefined }),
});

/** The text's bytes with up to four edits: each cuts a few bytes somewhere and may splice others in. */
function mutated(source: string, edits: readonly { at: number; cut: number; insert: Buffer | undefined }[]): Uint8Array {
  let bytes = Buffer.from(source, 'utf8');
  for (const e of edits) {
    const at = e.at % (bytes.length + 1);
    bytes = Buffer.concat([bytes.subarray(0, at), e.insert ?? Buffer.alloc(0), bytes.subarray(at + e.cut)]);
  }
  // Decoded from inside a larger buffer, as a transport may hand it over.
  const framed = Buffer.concat([Buffer.from('[['), bytes, Buffer.from(']]')]);
  return framed.subarray(2, 2 + bytes.length);
}
const inputs = (canonical: fc.Arbitrary<string>) =>
  fc.tuple(canonical, fc.oneof(fc.constant([]), fc.array(mutation, { minLength: 1, maxLength: 4 }))).map(([source, edits]) => mutated(source, edits));

/** The same value with its key order made visible: toEqual alone ignores it. */
const exactly = (value: unknown) => ({ value, json: JSON.stringify(value) });

// ---- properties --------------------------------------------------------------------------------

const RUNS = 20_000;

describe('the fast path of decodeRequest', () => {
  it('decodes every input exactly as the general path does', () => {
    let fast = 0;
    fc.assert(
      fc.property(inputs(canonicalRequest), (body) => {
        const general = decodeRequestText(Buffer.from(body).toString('utf8'));
        if (parseCanonicalRequest(Buffer.from(body).toString('latin1')) !== undefined) fast++;
        expect(exactly(decodeRequest(body))).toEqual(exactly(general));
      }),
      { numRuns: RUNS },
    );
    // Not vacuous: a fair share of the inputs took the fast path (about 1 in 15 of them).
    expect(fast).toBeGreaterThan(RUNS / 50);
  });

  it('takes the fast path for what the SDK sends in a lock life cycle', () => {
    const envelope = '{"v":1,"worker":"w-1","session":"w-1.ab12cd34.0","replyTo":"lockq.replies.w-1.ab12cd34","id":"ab12cd34-1z","seq":71,"settled":70,';
    for (const tail of [
      '"op":"acquire","lock":"invoice:42","ttlMs":10000,"waitMs":30000}',
      '"op":"release","lock":"invoice:42","token":7}',
      '"op":"extend","lock":"invoice:42","token":7,"ttlMs":10000}',
      '"op":"heartbeat"}',
    ]) {
      const text = envelope + tail;
      expect(parseCanonicalRequest(text)).toBeDefined();
      expect(exactly(decodeRequest(Buffer.from(text)))).toEqual(exactly(decodeRequestText(text)));
    }
  });
});

describe('the fast path of decodeReply', () => {
  it('decodes every input exactly as the general path does', () => {
    let fast = 0;
    fc.assert(
      fc.property(inputs(canonicalReply), (body) => {
        if (parseCanonicalReply(Buffer.from(body).toString('latin1')) !== undefined) fast++;
        expect(exactly(decodeReply(body))).toEqual(exactly(decodeReplyText(Buffer.from(body).toString('utf8'))));
      }),
      { numRuns: RUNS },
    );
    expect(fast).toBeGreaterThan(RUNS / 50);
  });
});

// ---- writing -----------------------------------------------------------------------------------

/** The canonical layouts, with the discriminant's value first. */
const LAYOUTS: readonly (readonly string[])[] = [
  ['op:acquire', 'lock', 'ttlMs', 'waitMs'],
  ['op:release', 'lock', 'token'],
  ['op:extend', 'lock', 'token', 'ttlMs'],
  ['op:heartbeat'],
  ['type:granted', 're', 'lock', 'token', 'ttlMs', 'basis'],
  ['type:extended', 're', 'lock', 'token', 'ttlMs', 'basis'],
  ['type:released', 're', 'lock', 'token'],
];
/** Any value a field might hold: mostly the right kind, then anything JSON.stringify treats specially. */
const anyValue = fc.oneof(
  { weight: 4, arbitrary: text(300) },
  { weight: 4, arbitrary: int },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom<unknown>(Number.NaN, Number.POSITIVE_INFINITY, -Number.POSITIVE_INFINITY, 1e21, 1e-7, -5, null, true, undefined, { a: 1 }, ['x'], '\ud800'),
  },
);
/** An object with a canonical layout's fields, then perhaps one dropped, one added or two swapped. */
const fieldsLike = fc
  .tuple(fc.constantFrom(...LAYOUTS), fc.array(anyValue, { minLength: 6, maxLength: 6 }), fc.nat(), fc.constantFrom('none', 'drop', 'add', 'swap', 'inherit'))
  .map(([layout, values, at, change]) => {
    const [discriminant, value] = (layout[0] as string).split(':') as [string, string];
    const entries: [string, unknown][] = [[discriminant, value], ...layout.slice(1).map((k, i): [string, unknown] => [k, values[i]])];
    const i = at % entries.length;
    const j = (at >> 3) % entries.length;
    if (change === 'drop') entries.splice(i, 1);
    if (change === 'add') entries.splice(i, 0, ['kind', values[5]]);
    if (change === 'swap') [entries[i], entries[j]] = [entries[j] as [string, unknown], entries[i] as [string, unknown]];
    const fields = Object.fromEntries(entries);
    // An inherited enumerable field: JSON.stringify leaves it out, so the fast path must not match.
    return change === 'inherit' ? Object.assign(Object.create({ inherited: 1 }), fields) : fields;
  });

describe('the fast path of encodeRequest and encodeReply', () => {
  const ascii = (bytes: Uint8Array) => Buffer.from(bytes).toString('utf8');
  it('writes exactly what JSON.stringify writes', () => {
    let fast = 0;
    fc.assert(
      fc.property(fieldsLike, int, int, (fields, epoch, partition) => {
        const head = `{"v":1,"epoch":${epoch},"partition":${partition}`;
        const general = `${head},${JSON.stringify(fields).slice(1)}`;
        if ('op' in fields) {
          if (writeCanonicalRequest(head, fields) !== undefined) fast++;
          expect(ascii(encodeRequest(head, fields))).toBe(general);
        } else {
          if (writeCanonicalReply(head, fields) !== undefined) fast++;
          expect(ascii(encodeReply(fields, epoch, partition))).toBe(general);
        }
      }),
      { numRuns: RUNS },
    );
    expect(fast).toBeGreaterThan(RUNS / 50);
  });
});
