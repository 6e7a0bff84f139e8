/**
 * Fuzzing a real coordinator over the real RabbitMQ: a few hundred random byte strings, random
 * JSON values, mutated requests and well-formed requests of sessions nobody opened, published raw
 * with amqplib onto partition 0's request queue of a `lockq coordinator` process (needs
 * `npx tsc -b` first), while a well-behaved SDK worker acquires and releases a lock on the same
 * partition. Expected: the coordinator neither dies nor logs an error; each garbage message is
 * dead-lettered (nothing in it says where to answer) or answered with the error the codec or the
 * core gives it, to the address it names; every request of the worker is answered; /readyz is 200
 * at the end.
 *
 * The messages come from a seed: LOCKQ_FC_SEED=<seed> npx vitest run test/fuzz.amqp.test.ts
 * (LOCKQ_FUZZ_MESSAGES sets how many).
 */
import { DEFAULT_MAX_MESSAGE_BYTES, decodeRequest, deadLetterDestination, requestDestination } from '@lockq/protocol';
import { LockClient } from '@lockq/worker-sdk';
import { connect } from 'amqplib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AMQP_URL, requireRabbit } from './support/brokers.js';
import { CoordinatorProcess } from './support/processes.js';
import { amqpRun } from './support/amqp-run.js';
import { RAW_PRINCIPAL, rawReplyQueue } from './support/raw.js';
import { waitFor } from './support/wait-for.js';

const rabbit = await requireRabbit();

const SEED = Number(process.env.LOCKQ_FC_SEED ?? 0xf0a9);
const MESSAGES = Number(process.env.LOCKQ_FUZZ_MESSAGES ?? 400);
const run = amqpRun('fuzz', { rabbit, extraQueues: (prefix) => [rawReplyQueue(prefix, 'fuzz')] });
const PREFIX = run.prefix();
/** Where the garbage asks to be answered: a queue of this test's own, in guest's reply namespace. */
const REPLIES = rawReplyQueue(PREFIX, 'fuzz');
/** Every ninth message goes without `user_id`: refused FORBIDDEN unread, whatever it holds. */
const anonymous = (i: number) => i % 9 === 4;


// ---- the garbage ---------------------------------------------------------------------------------

/** Raw JSON texts a field's value may be replaced with. */
const ODD = ['null', 'true', '0', '-1', '1e400', '0.5', '9007199254740992', '""', '"\\u0000"', '"\\ud800"', '"é"', '[]', '{}', '{"__proto__":{}}', '"open"'];
const OPS = ['heartbeat', 'close', 'acquire', 'release', 'extend', 'cancel'] as const;

/** A well-formed request of a session nobody opened, as ordered [key, raw JSON] pairs; answered to REPLIES. */
function ghostRequest(i: number, op: (typeof OPS)[number], n: number): [string, string][] {
  const fields: Record<string, unknown> = { v: 1, op, id: `fz${i}`, worker: `ghost-${n}`, session: `ghost-${n}.0`, replyTo: REPLIES };
  if (op === 'acquire') Object.assign(fields, { lock: 'job', ttlMs: 10 + n, waitMs: n % 2 });
  if (op === 'release' || op === 'extend') Object.assign(fields, { lock: 'job', token: 1 + n });
  if (op === 'extend') fields.ttlMs = 1000;
  if (op === 'cancel') Object.assign(fields, { lock: 'job', target: `r${n}` });
  if (n % 7 === 0) Object.assign(fields, { seq: 1 + n, settled: n });
  return Object.entries(fields).map(([k, v]) => [k, JSON.stringify(v)]);
}

type Mutation = { readonly t: 'drop' | 'retype' | 'huge' | 'extra' | 'proto' | 'duplicate'; readonly at: number; readonly value: string };
function mutate(entries: [string, string][], m: Mutation): void {
  const i = m.at % entries.length;
  const key = (entries[i] as [string, string])[0];
  if (m.t === 'drop') entries.splice(i, 1);
  if (m.t === 'retype') entries[i] = [key, m.value];
  if (m.t === 'huge') entries[i] = [key, m.at % 2 === 0 ? JSON.stringify('x'.repeat(300)) : '123456789012345678901234567890'];
  if (m.t === 'extra') entries.splice(i, 0, ['x', m.value]);
  if (m.t === 'proto') entries.splice(i, 0, ['__proto__', '{"op":"close"}']);
  if (m.t === 'duplicate') entries.push([key, m.value]);
}
const render = (entries: readonly [string, string][]) => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`;

const garbageArb: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)) },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null', 'utf8')) },
  {
    weight: 6,
    arbitrary: fc
      .tuple(
        fc.constantFrom(...OPS),
        fc.nat(50),
        fc.nat(),
        fc.array(
          fc.record({
            t: fc.constantFrom('drop', 'retype', 'retype', 'huge', 'extra', 'proto', 'duplicate'),
            at: fc.nat(),
            value: fc.constantFrom(...ODD),
          }) as fc.Arbitrary<Mutation>,
          { maxLength: 3 },
        ),
      )
      .map(([op, n, id, mutations]) => {
        const entries = ghostRequest(id, op, n);
        for (const m of mutations) if (entries.length > 0) mutate(entries, m);
        return Buffer.from(render(entries), 'utf8');
      }),
  },
  // Over the coordinator's size limit (but well formed): dead-lettered.
  { weight: 1, arbitrary: fc.nat(2000).map((n) => Buffer.from(`{"v":1,"pad":"${'p'.repeat(DEFAULT_MAX_MESSAGE_BYTES + n)}","replyTo":"${REPLIES}"}`, 'utf8')) },
);

/** What the coordinator must do with a message: park it, or answer `re` with `code` on REPLIES. */
type Expected = { readonly deadLetter: true } | { readonly deadLetter: false; readonly re: string; readonly code: string };

function expectedFor(body: Buffer): Expected | undefined {
  const decoded = decodeRequest(body, DEFAULT_MAX_MESSAGE_BYTES);
  if (decoded.ok) {
    // Only a session nobody opened reaches the core here, and it has no sessions of these ids.
    if (decoded.request.replyTo !== REPLIES || decoded.request.op === 'open' || decoded.request.op === 'inspect') return undefined;
    return { deadLetter: false, re: decoded.request.id, code: 'NO_SESSION' };
  }
  if (decoded.replyTo === undefined) return { deadLetter: true };
  // An answer to an address of nobody's is published and dropped by the broker: nothing to check.
  if (decoded.replyTo !== REPLIES) return undefined;
  return { deadLetter: false, re: decoded.id ?? '', code: decoded.code };
}

// ---- the test --------------------------------------------------------------------------------------

describe.skipIf(!rabbit)('garbage on a request queue, beside a well-behaved worker', () => {
  it(`${MESSAGES} random messages: nothing crashes, each is parked or answered with its error, the worker is always answered`, async () => {
    const messages: { body: Buffer; expected: Expected }[] = [];
    for (const body of fc.sample(garbageArb, { seed: SEED, numRuns: MESSAGES * 2 })) {
      const expected = anonymous(messages.length) ? ({ deadLetter: true } as const) : expectedFor(body);
      if (expected !== undefined && messages.length < MESSAGES) messages.push({ body, expected });
    }
    expect(messages.length).toBe(MESSAGES);
    const deadLetters = messages.filter((m) => m.expected.deadLetter).length;
    const answers = messages.flatMap((m) => (m.expected.deadLetter ? [] : [`${m.expected.re} ${m.expected.code}`])).sort();
    // Not vacuous: both outcomes are exercised, and much of the garbage gets past the codec.
    expect(deadLetters).toBeGreaterThan(MESSAGES / 10);
    expect(answers.length).toBeGreaterThan(MESSAGES / 4);

    const coord = await CoordinatorProcess.start(['--transport', AMQP_URL, '--prefix', PREFIX]);
    const conn = await connect(AMQP_URL);
    try {
      const ch = await conn.createConfirmChannel();
      await ch.assertQueue(REPLIES, { exclusive: true, autoDelete: true });
      const replies: Record<string, unknown>[] = [];
      await ch.consume(REPLIES, (msg) => {
        if (msg !== null) replies.push(JSON.parse(msg.content.toString('utf8')) as Record<string, unknown>);
      }, { noAck: true });

      // Short enough that a partition that stopped answering fails the test, not its timeout.
      const worker = await LockClient.connect(AMQP_URL, { prefix: PREFIX, workerId: `${PREFIX}-good`, requestTimeoutMs: 5000 });
      run.clients.push(worker);
      let cycles = 0;
      /** One acquire and release of the worker's: each is answered (a timeout rejects). */
      const cycle = async () => {
        const lease = await worker.acquire('job', { ttlMs: 10_000 });
        expect(lease.token).toBeGreaterThan(0);
        await lease.release();
        cycles++;
      };
      // In chunks, each followed on the queue by the worker's requests, so garbage and good
      // requests share batches.
      const CHUNK = 20;
      for (let at = 0; at < messages.length; at += CHUNK) {
        for (const [i, m] of messages.slice(at, at + CHUNK).entries()) {
          const headers = (at + i) % 5 === 0 ? { 'x-fuzz': at + i, 'x-lockq-code': 'FORGED' } : undefined;
          const sender = anonymous(at + i) ? {} : { userId: RAW_PRINCIPAL };
          ch.sendToQueue(requestDestination(0, PREFIX), m.body, { persistent: i % 2 === 0, ...sender, ...(headers === undefined ? {} : { headers }) });
        }
        await Promise.all([cycle(), ch.waitForConfirms()]);
      }
      await cycle();

      // Refused unanswered: parked, or (past the partition's dead-letter rate) acked and counted.
      const unanswered = async () => (await coord.metric('lockq_dead_lettered_total')) + (await coord.metric('lockq_dead_letters_skipped_total'));
      await waitFor(
        async () => replies.length >= answers.length && (await unanswered()) >= deadLetters,
        () => `${answers.length} error replies (got ${replies.length}) and ${deadLetters} dead letters`,
        { timeoutMs: 20_000 },
      );
      expect(replies.map((r) => `${String(r.re)} ${r.type === 'error' ? String(r.code) : `(${String(r.type)})`}`).sort()).toEqual(answers);
      expect(await unanswered()).toBe(deadLetters);
      expect(await coord.metric('lockq_forbidden_total')).toBe(messages.filter((_, i) => anonymous(i)).length);
      // Parked on the dead-letter queue, each one (bodies may be cut short there; see protocol §16.2).
      const parked = await coord.metric('lockq_dead_lettered_total');
      expect(parked).toBeGreaterThan(deadLetters / 2);
      await waitFor(async () => (await ch.checkQueue(deadLetterDestination(PREFIX))).messageCount === parked, `${parked} dead letters parked`);
      const refusedByCodec = messages.filter((m, i) => !anonymous(i) && !decodeRequest(m.body, DEFAULT_MAX_MESSAGE_BYTES).ok).length;
      expect(await coord.metric('lockq_rejected_total')).toBe(refusedByCodec);
      expect(cycles).toBe(Math.ceil(MESSAGES / CHUNK) + 1);

      expect(coord.running).toBe(true);
      const ready = await fetch(`${coord.admin}/readyz`);
      expect(ready.status).toBe(200);
      expect(coord.lines.filter((l) => (l.level ?? 0) >= 50)).toEqual([]); // nothing logged at error level
      await ch.close();
    } finally {
      await conn.close();
    }
    expect(await coord.stop()).toBe(0);
  }, 60_000);
});
