/**
 * Fuzzing the core with what a hostile or buggy client can send that the codec accepts: requests
 * as other workers, as another principal (naming a session only another principal has, or one of
 * its own under the same id) or for sessions nobody opened, other sessions' tokens and waiters, the token
 * reserved for a named successor, tokens that expired or never existed, other kinds and limits,
 * other partitions' locks and partition counts, re-used request ids with other payloads,
 * duplicates, numbered requests below the watermark and watermarks far ahead, and random
 * well-formed requests, mixed with a live workload of valid ones on a manual clock.
 *
 * Checked after every request: the core does not throw; every request is answered (a stale
 * duplicate excepted, §8.1); a request answered with an error emits that answer and nothing else,
 * and leaves the core's state exactly as `afterRefusal` (support/digest.ts) says, which allows
 * only what docs/protocol.md allows: the sender's watermark, its liveness, and the remembered
 * answer for the request's own id. An inspect changes nothing at all, and neither does a request
 * answered `FORBIDDEN`. The principal is not on the wire: it is set after decoding, as the runtime
 * does with what the broker vouches for.
 *
 * Reproduce a failure with the seed fast-check prints:
 * LOCKQ_FC_SEED=<seed> npx vitest run coordinator/test/core.fuzz.test.ts (LOCKQ_FC_RUNS sets the runs).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeRequest, encode, type LockKind, OPS, type Op, partitionOf, type ReplyBody, type Request } from '@lockq/protocol';
import { type CoreLimits, DEFAULT_CORE_LIMITS, type Decision, LockCore } from '../src/core/index.js';
import { afterRefusal, digestOf, type State, stateOf } from './support/digest.js';

const SEED = Number(process.env.LOCKQ_FC_SEED ?? 0xf0c0);
const RUNS = Number(process.env.LOCKQ_FC_RUNS ?? 300);
const MAX_COMMANDS = 80;
const SESSIONS = 4;
/** Lock names; partitionOf spreads them over the partitions, so some are always another's. */
const NAMES = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l'];
const KINDS: readonly LockKind[] = ['mutex', 'rwlock', 'semaphore'];
/** Each name's usual kind: by position; semaphores of 2 permits. */
const kindOf = (name: string): LockKind => KINDS[NAMES.indexOf(name) % 3] as LockKind;
const SEMAPHORE_LIMIT = 2;
/** Principals of the sessions s<n> (by n mod 2) when the run has two; with one, none (`""`). */
const PRINCIPALS = ['alice', 'bob'];
/** A session nobody ever opens: a heartbeat from it prunes what aged out and does nothing else. */
const NOBODY = { v: 1, op: 'heartbeat', worker: 'nobody', session: 'nobody', replyTo: 'q.nobody' } as const;

// ---- commands ----------------------------------------------------------------------------------

/**
 * Who a request claims to come from: session s<n> as its own worker, as another worker, as its
 * own worker but another principal (`twin`: the session is not its to name, unless that principal
 * opened one of its own under the id), or a session nobody opened.
 */
type Who = 'self' | 'otherWorker' | 'twin' | 'ghost';
interface Envelope {
  readonly dt: number;
  readonly s: number;
  readonly who: Who;
  /** No seq; the session's next number; or one at or below its watermark (a stale duplicate). */
  readonly numbering: 'none' | 'next' | 'stale';
  /** No settled; a little behind the session's numbers; up to ahead of them; or the largest there is. */
  readonly settle: 'none' | 'behind' | 'ahead' | 'max';
  readonly pick: number;
}
type TokenSource = 'own' | 'other' | 'successor' | 'random' | 'expired' | 'max';
type Command = Envelope &
  (
    | { readonly t: 'tick' }
    | { readonly t: 'heartbeat' | 'close' }
    | { readonly t: 'open'; readonly ttl: number; readonly wrongPartitions: boolean }
    | {
        readonly t: 'acquire';
        readonly lock: number;
        readonly variant: 'usual' | 'otherKind' | 'otherLimit' | 'foreign';
        readonly shared: boolean;
        readonly ttl: number;
        readonly wait: number;
      }
    | { readonly t: 'release' | 'extend'; readonly lock: number; readonly token: TokenSource; readonly ttl: number; readonly foreign: boolean }
    | { readonly t: 'cancel'; readonly lock: number; readonly target: 'own' | 'other' | 'random' | 'ownOtherLock' }
    | { readonly t: 'inspect'; readonly lock: number | null }
    | { readonly t: 'resend'; readonly how: 'same' | 'otherReplyTo' | 'conflict' | 'otherSession' }
    | { readonly t: 'random'; readonly op: Op; readonly reuseId: boolean; readonly lock: number; readonly token: number; readonly ttl: number; readonly wait: number; readonly kind: number }
  );

const rarely = fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) });
const envelope = {
  dt: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 150 }) }, { weight: 1, arbitrary: fc.constant(0) }),
  s: fc.nat(SESSIONS - 1),
  who: fc.constantFrom<Who>('self', 'self', 'self', 'self', 'self', 'self', 'otherWorker', 'twin', 'ghost'),
  numbering: fc.constantFrom<Envelope['numbering']>('none', 'none', 'none', 'next', 'next', 'next', 'stale'),
  settle: fc.oneof(
    { weight: 40, arbitrary: fc.constantFrom<Envelope['settle']>('none', 'none', 'none', 'none', 'behind', 'behind', 'ahead') },
    { weight: 1, arbitrary: fc.constant<Envelope['settle']>('max') },
  ),
  pick: fc.nat(1000),
};
const ttl = fc.oneof({ weight: 1, arbitrary: fc.integer({ min: 10, max: 200 }) }, { weight: 4, arbitrary: fc.integer({ min: 500, max: 5000 }) });
const lock = fc.nat(NAMES.length - 1);
const commandArb: fc.Arbitrary<Command> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ ...envelope, t: fc.constant('tick' as const) }) },
  { weight: 4, arbitrary: fc.record({ ...envelope, t: fc.constantFrom<'heartbeat' | 'close'>('heartbeat', 'heartbeat', 'close') }) },
  { weight: 6, arbitrary: fc.record({ ...envelope, t: fc.constant('open' as const), ttl: fc.integer({ min: 100, max: 5000 }), wrongPartitions: rarely }) },
  {
    weight: 30,
    arbitrary: fc.record({
      ...envelope,
      t: fc.constant('acquire' as const),
      lock,
      variant: fc.constantFrom('usual', 'usual', 'usual', 'usual', 'usual', 'usual', 'otherKind', 'otherLimit', 'foreign') as fc.Arbitrary<'usual'>,
      shared: fc.boolean(),
      ttl,
      wait: fc.oneof({ weight: 1, arbitrary: fc.constant(0) }, { weight: 3, arbitrary: fc.integer({ min: 1, max: 3000 }) }),
    }),
  },
  {
    weight: 14,
    arbitrary: fc.record({
      ...envelope,
      t: fc.constantFrom('release' as const, 'release' as const, 'extend' as const),
      lock,
      token: fc.constantFrom<TokenSource>('own', 'own', 'own', 'other', 'successor', 'successor', 'random', 'expired', 'max'),
      ttl,
      foreign: rarely,
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({ ...envelope, t: fc.constant('cancel' as const), lock, target: fc.constantFrom('own', 'own', 'other', 'random', 'ownOtherLock') as fc.Arbitrary<'own'> }),
  },
  { weight: 2, arbitrary: fc.record({ ...envelope, t: fc.constant('inspect' as const), lock: fc.option(lock, { nil: null }) }) },
  {
    weight: 8,
    arbitrary: fc.record({ ...envelope, t: fc.constant('resend' as const), how: fc.constantFrom('same', 'otherReplyTo', 'conflict', 'otherSession') as fc.Arbitrary<'same'> }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      ...envelope,
      t: fc.constant('random' as const),
      op: fc.constantFrom(...OPS),
      reuseId: fc.boolean(),
      lock,
      token: fc.oneof(fc.integer({ min: 1, max: 60 }), fc.constant(Number.MAX_SAFE_INTEGER)),
      ttl,
      wait: fc.integer({ min: 0, max: 2000 }),
      kind: fc.nat(5),
    }),
  },
) as fc.Arbitrary<Command>;

interface Config {
  readonly partitions: 1 | 2 | 3;
  readonly partition: number;
  /** Small caps, so QUEUE_FULL, TOO_MANY_* come up. */
  readonly small: boolean;
  /** Small per-principal quotas, so each QUOTA_EXCEEDED comes up. */
  readonly quotas: boolean;
  /** Sessions of one principal (none: identity off) or of two. */
  readonly principals: 1 | 2;
  /** A short dedupe window and a small memo cap, so answers are forgotten within a run. */
  readonly shortMemory: boolean;
  readonly unsettledCap: number;
  readonly tokenFloor: number;
  readonly tokenBlockSize: number;
}
const configArb: fc.Arbitrary<Config> = fc
  .record({
    partitions: fc.constantFrom<1 | 2 | 3>(1, 1, 2, 3),
    partition: fc.nat(2),
    small: fc.boolean(),
    quotas: fc.boolean(),
    principals: fc.constantFrom<1 | 2>(1, 2),
    shortMemory: fc.boolean(),
    unsettledCap: fc.constantFrom(2, 10_000),
    tokenFloor: fc.constantFrom(0, 1_000_000),
    tokenBlockSize: fc.integer({ min: 1, max: 8 }),
  })
  .map((c) => ({ ...c, partition: c.partition % c.partitions }));

function limitsOf(config: Config): CoreLimits {
  return {
    ...DEFAULT_CORE_LIMITS,
    ...(config.small ? { maxWaitersPerLock: 1, maxHoldsPerSession: 2, maxWaitsPerSession: 1, maxSessions: 3 } : {}),
    ...(config.quotas
      ? { maxSessionsPerPrincipal: 3, maxHoldsPerPrincipal: 4, maxWaitsPerPrincipal: 2, maxLockWaitsPerPrincipal: 1, maxNamesPerPrincipal: 3 }
      : {}),
    ...(config.shortMemory ? { dedupeWindowMs: 500, maxDedupeEntries: 8 } : { dedupeWindowMs: 3_600_000, maxDedupeEntries: 1_000_000 }),
    maxUnsettledPerSession: config.unsettledCap,
  };
}

/** What the runs reached, so a change to the generators cannot quietly stop exercising a path. */
const MUST_REACH = [
  ...['NO_SESSION', 'NOT_HOLDER', 'LEASE_EXPIRED', 'NOT_WAITING', 'KIND_MISMATCH', 'LIMIT_MISMATCH', 'LOCK_BUSY', 'QUEUE_FULL'],
  ...['TOO_MANY_HOLDS', 'TOO_MANY_WAITS', 'TOO_MANY_SESSIONS', 'WRONG_PARTITION', 'IDEMPOTENCY_CONFLICT', 'INVALID_FIELD'],
  ...['stale', 'replayed error', 'settled raised by a refusal', 'successor token by another session', 'handed off early'],
  'successor token without proof',
  ...['FORBIDDEN', 'QUOTA_EXCEEDED sessions', 'QUOTA_EXCEEDED holds', 'QUOTA_EXCEEDED waits', 'QUOTA_EXCEEDED lockWaits', 'QUOTA_EXCEEDED names'],
  'twin opened',
];

// ---- driving the core --------------------------------------------------------------------------

class Run {
  readonly core: LockCore;
  readonly #config: Config;
  readonly #limits: CoreLimits;
  readonly #owned: readonly string[];
  readonly #foreign: readonly string[];
  readonly #sent: Request[] = [];
  readonly #seqs = new Map<string, number>();
  readonly #seen: Map<string, number>;
  #now = 0;
  #ids = 0;
  #step = 0;

  constructor(config: Config, seen: Map<string, number>) {
    this.#config = config;
    this.#seen = seen;
    this.#limits = limitsOf(config);
    const { partition, partitions, tokenFloor, tokenBlockSize } = config;
    this.core = new LockCore({ partition, partitions, epoch: 1, tokenFloor, tokenBlockSize, limits: this.#limits });
    const owned = NAMES.filter((n) => partitionOf(n, partitions) === partition);
    // A few names each, so locks are contended.
    this.#owned = (owned.length > 0 ? owned : NAMES).slice(0, 4);
    this.#foreign = NAMES.filter((n) => partitionOf(n, partitions) !== partition);
  }

  #count(what: string): void {
    this.#seen.set(what, (this.#seen.get(what) ?? 0) + 1);
  }

  /** The principal of session s<n>, or with `twin` the other one (`intruder` when there is one). */
  #principalOf(n: number, twin = false): string | undefined {
    if (this.#config.principals === 1) return twin ? 'intruder' : undefined;
    return PRINCIPALS[(n + (twin ? 1 : 0)) % 2];
  }

  exec(cmd: Command): void {
    // Mostly, a session found gone is opened again first (in a step of its own), as its worker would.
    if (cmd.t !== 'tick' && cmd.t !== 'open' && cmd.who === 'self' && cmd.pick % 4 !== 0 && !this.#lives(this.#principalOf(cmd.s), `s${cmd.s}`)) {
      this.exec({ t: 'open', dt: 0, s: cmd.s, who: 'self', numbering: 'none', settle: 'none', pick: 0, ttl: 4000, wrongPartitions: false });
    }
    this.#step++;
    this.#now += cmd.dt;
    const now = this.#now;
    const where = (request?: unknown) => `step ${this.#step} at ${now}: ${JSON.stringify(cmd)}\nrequest: ${JSON.stringify(request)}`;
    this.core.tick(now, []);
    // Housekeeping due at `now` happens on any request but inspect; do it first, so what follows
    // is the request's own doing.
    const pruned: Decision[] = [];
    this.core.handle({ ...NOBODY, id: `hk${this.#step}` }, now, pruned);
    expect(pruned.map((d) => (d.type === 'reply' && d.body.type === 'error' ? d.body.code : d.type)), where()).toEqual(['NO_SESSION']);
    if (cmd.t === 'tick') return;

    const before = stateOf(this.core);
    const { principal, ...raw } = this.#resolve(cmd, before);
    // Through the codec, as a coordinator gets it: every request here is one the codec accepts.
    const decoded = decodeRequest(encode(raw as unknown as Request));
    if (!decoded.ok) throw new Error(`the codec refused ${decoded.code} ${decoded.field}: ${where(raw)}`);
    // The principal is never on the wire: the runtime puts the one the broker vouches for there.
    const vouched: Request = principal === undefined ? decoded.request : { ...decoded.request, principal: principal as string };
    // Half the time the reserved token comes with the forwarded grant's proof, which the runtime
    // checks and passes on as `handoff: true` (the codec takes only a proof string).
    const proven = (cmd.t === 'release' || cmd.t === 'extend') && cmd.token === 'successor' && cmd.pick % 2 === 0;
    const request: Request = proven && (vouched.op === 'release' || vouched.op === 'extend') ? { ...vouched, handoff: true } : vouched;
    const out: Decision[] = [];
    this.core.handle(request, now, out);
    this.#sent.push(vouched); // as sent: a re-send goes through the codec again

    const last = out.at(-1);
    const answer = last?.type === 'reply' && last.to === request.replyTo && last.body.re === request.id ? last.body : undefined;
    const mine = (s: { readonly principal?: string; readonly session?: string; readonly id?: string }) =>
      (s.principal ?? '') === (request.principal ?? '') && (s.session ?? s.id) === request.session;
    const sender = request.op === 'inspect' ? undefined : before.sessions.find((s) => mine(s) && s.worker === request.worker);
    const stale = sender !== undefined && request.seq !== undefined && request.seq <= Math.max(sender.settled, request.settled ?? 0);
    if (!stale && answer === undefined) throw new Error(`no answer: ${JSON.stringify(out)}\n${where(request)}`);
    if (stale) this.#count('stale');

    const after = stateOf(this.core);
    if (request.op === 'inspect') {
      expect(out.length, where(request)).toBe(1);
      this.#expectState(after, before, request, where);
      return;
    }
    if (answer !== undefined && answer.type !== 'error') {
      if (request.op === 'open' && answer.type === 'opened' && before.sessions.some((s) => s.id === request.session && !mine(s))) this.#count('twin opened');
      this.#noteSuccess(request, answer, before);
      return;
    }
    // Refused (or a stale duplicate, unanswered): that answer alone, and the state as allowed.
    if (answer !== undefined) {
      this.#count(answer.code === 'QUOTA_EXCEEDED' ? `${answer.code} ${answer.field}` : answer.code);
      if (before.memos.some((m) => mine(m) && m.request.id === request.id && m.request.worker === request.worker)) {
        this.#count('replayed error');
      }
      if (answer.code === 'FORBIDDEN') {
        // Another principal's session: not even the sender's own watermark or liveness (it has none here).
        expect(answer.field, where(request)).toBe('session');
        expect(before.sessions.some((s) => s.id === request.session && !mine(s)) && !before.sessions.some(mine), where(request)).toBe(true);
      }
    }
    if (sender !== undefined && (request.settled ?? 0) > sender.settled) this.#count('settled raised by a refusal');
    if (request.op === 'release' || request.op === 'extend') {
      const named = before.locks.find((l) => l.name === request.lock)?.next;
      if (named !== undefined && named.token === request.token && !mine(named)) this.#count('successor token by another session');
      // The reserved token is no secret (it is the partition's counter when the waiter was named):
      // without the proof, even the named waiter's own session gets nothing for it (security §6.1).
      if (named !== undefined && named.token === request.token && mine(named) && request.handoff !== true) {
        this.#count('successor token without proof');
      }
    }
    expect(out, where(request)).toEqual(answer === undefined ? [] : [last]);
    this.#expectState(after, afterRefusal(before, request, answer, now, this.#limits), request, where);
  }

  #lives(principal: string | undefined, session: string): boolean {
    return stateOf(this.core).sessions.some((s) => (s.principal ?? '') === (principal ?? '') && s.id === session);
  }

  #expectState(actual: State, expected: State, request: Request, where: (r?: unknown) => string): void {
    if (digestOf(actual) === digestOf(expected)) return;
    expect(actual, `the state changed beyond what a refused request may change\n${where(request)}`).toEqual(expected);
  }

  #noteSuccess(request: Request, answer: ReplyBody, before: State): void {
    this.#count(answer.type);
    if (request.op !== 'release' && request.op !== 'extend') return;
    const named = before.locks.find((l) => l.name === request.lock)?.next;
    if (named !== undefined && named.token === request.token && answer.type !== 'error') {
      expect(request.handoff, `the reserved token was taken without the hand-off proof: ${JSON.stringify(request)}`).toBe(true);
      this.#count('handed off early');
    }
  }

  /** The command as a request, against the state as it is now; `principal` is the sender's, set after decoding. */
  #resolve(cmd: Exclude<Command, { t: 'tick' }>, state: State): Record<string, unknown> & { principal?: unknown } {
    const n = cmd.s;
    const own = `s${n}`;
    const principal = this.#principalOf(n, cmd.who === 'twin');
    const base: Record<string, unknown> = {
      v: 1,
      id: `${++this.#ids}`,
      worker: cmd.who === 'otherWorker' ? `w${(n + 1) % SESSIONS}` : `w${n}`,
      session: cmd.who === 'ghost' ? `g${n}` : own,
      replyTo: `q.s${n}`,
      ...(principal === undefined ? {} : { principal }),
    };
    const key = `${principal ?? ''}/${own}`;
    const next = (this.#seqs.get(key) ?? 0) + 1;
    const settled = state.sessions.find((x) => (x.principal ?? '') === (principal ?? '') && x.id === own)?.settled ?? 0;
    if (cmd.numbering === 'next') {
      this.#seqs.set(key, next);
      base.seq = next;
    } else if (cmd.numbering === 'stale') {
      base.seq = Math.max(1, settled - (cmd.pick % 3));
    }
    if (cmd.settle === 'behind') base.settled = Math.max(0, next - 1 - (cmd.pick % 4));
    else if (cmd.settle === 'ahead') base.settled = next - 1 + (cmd.pick % 3); // at or past this request's own number: stale
    else if (cmd.settle === 'max') base.settled = Number.MAX_SAFE_INTEGER;

    const nameOf = (i: number, foreign = false) =>
      foreign && this.#foreign.length > 0 ? (this.#foreign[i % this.#foreign.length] as string) : (this.#owned[i % this.#owned.length] as string);
    const holders = state.locks.flatMap((l) => l.holders.map((h) => ({ ...h, lock: l.name })));
    const waiters = state.locks.flatMap((l) => l.waiters.map((w) => ({ ...w, lock: l.name })));
    const pickOf = <T>(list: readonly T[]): T | undefined => list[cmd.pick % Math.max(1, list.length)];

    switch (cmd.t) {
      case 'heartbeat':
      case 'close':
        return { ...base, op: cmd.t };
      case 'open':
        return { ...base, op: 'open', sessionTtlMs: cmd.ttl, partitions: cmd.wrongPartitions ? this.#config.partitions + 1 : this.#config.partitions };
      case 'inspect':
        return cmd.lock === null ? { ...base, op: 'inspect' } : { ...base, op: 'inspect', lock: nameOf(cmd.lock) };
      case 'acquire': {
        const name = nameOf(cmd.lock, cmd.variant === 'foreign');
        const usual = kindOf(name);
        const kind = cmd.variant === 'otherKind' ? (KINDS[(KINDS.indexOf(usual) + 1 + (cmd.pick % 2)) % 3] as LockKind) : usual;
        const limit = cmd.variant === 'otherLimit' ? SEMAPHORE_LIMIT + 1 : SEMAPHORE_LIMIT;
        const fields: Record<string, unknown> = { op: 'acquire', lock: name, ttlMs: cmd.ttl, waitMs: cmd.wait };
        if (kind === 'rwlock') Object.assign(fields, { kind, mode: cmd.shared ? 'shared' : 'exclusive' });
        if (kind === 'semaphore') Object.assign(fields, { kind, limit, permits: 1 + (cmd.pick % limit) });
        if (kind === 'mutex' && cmd.variant === 'otherLimit') Object.assign(fields, { kind: 'semaphore', limit: 1 });
        return { ...base, ...fields };
      }
      case 'release':
      case 'extend': {
        let name = nameOf(cmd.lock, cmd.foreign);
        let token: number;
        const session = base.session;
        switch (cmd.token) {
          case 'own': {
            const h = pickOf(holders.filter((x) => x.session === session)) ?? pickOf(holders);
            name = h?.lock ?? name;
            token = h?.token ?? 1;
            break;
          }
          case 'other': {
            const h = pickOf(holders.filter((x) => x.session !== session));
            name = h?.lock ?? name;
            token = h?.token ?? state.lastToken;
            break;
          }
          case 'successor': {
            // The token reserved for a named waiter: what its holder forwards, and what inspect's
            // lastToken gives away; from the named waiter's own session it completes the hand-off.
            const l = pickOf(state.locks.filter((x) => x.next !== undefined));
            name = l?.name ?? name;
            token = l?.next?.token ?? state.lastToken;
            break;
          }
          case 'random':
            token = 1 + (cmd.pick % (state.lastToken - this.#config.tokenFloor + 3)) + this.#config.tokenFloor;
            break;
          case 'expired':
            token = pickOf(state.expiredTokens)?.token ?? state.lastToken;
            break;
          case 'max':
            token = Number.MAX_SAFE_INTEGER;
            break;
        }
        token = Math.max(1, token); // the codec refuses 0: a fresh partition has issued none
        return cmd.t === 'release' ? { ...base, op: 'release', lock: name, token } : { ...base, op: 'extend', lock: name, token, ttlMs: cmd.ttl };
      }
      case 'cancel': {
        const mine = waiters.filter((w) => w.session === base.session);
        const w = cmd.target === 'other' ? pickOf(waiters.filter((x) => x.session !== base.session)) : pickOf(mine);
        const name = cmd.target === 'ownOtherLock' || w === undefined ? nameOf(cmd.lock) : w.lock;
        return { ...base, op: 'cancel', lock: name, target: cmd.target === 'random' || w === undefined ? `${cmd.pick}` : w.request.id };
      }
      case 'resend': {
        const earlier = pickOf(this.#sent);
        if (earlier === undefined) return { ...base, op: 'heartbeat' };
        const copy: Record<string, unknown> = { ...earlier };
        if (cmd.how === 'otherReplyTo') copy.replyTo = `q2.${earlier.session}`;
        if (cmd.how === 'otherSession') {
          delete copy.principal;
          Object.assign(copy, { worker: base.worker, session: base.session, replyTo: base.replyTo }, 'principal' in base ? { principal: base.principal } : {});
        }
        if (cmd.how === 'conflict') {
          if ('ttlMs' in copy) copy.ttlMs = (copy.ttlMs as number) + 1;
          else if ('token' in copy) copy.token = copy.token === 1 ? 2 : (copy.token as number) - 1;
          else if ('sessionTtlMs' in copy) copy.sessionTtlMs = (copy.sessionTtlMs as number) + 1;
          else if ('target' in copy) copy.target = copy.target === 'x' ? 'y' : 'x';
          else if ('lock' in copy) delete copy.lock;
          else copy.op = copy.op === 'heartbeat' ? 'close' : 'heartbeat';
        }
        return copy;
      }
      case 'random': {
        const id = cmd.reuseId ? (pickOf(this.#sent)?.id ?? base.id) : base.id;
        const name = nameOf(cmd.lock, cmd.kind === 5);
        const kind = KINDS[cmd.kind % 3] as LockKind;
        const r: Record<string, unknown> = { ...base, id, op: cmd.op };
        if (cmd.op === 'open') Object.assign(r, { sessionTtlMs: 100 + cmd.wait, partitions: 1 + (cmd.kind % 3) });
        if (cmd.op === 'acquire') {
          Object.assign(r, { lock: name, kind, ttlMs: cmd.ttl, waitMs: cmd.wait });
          if (kind === 'semaphore') Object.assign(r, { limit: 1 + (cmd.token % 3), permits: 1 });
        }
        if (cmd.op === 'release') Object.assign(r, { lock: name, token: cmd.token });
        if (cmd.op === 'extend') Object.assign(r, { lock: name, token: cmd.token, ttlMs: cmd.ttl });
        if (cmd.op === 'cancel') Object.assign(r, { lock: name, target: `${cmd.token}` });
        if (cmd.op === 'inspect' && cmd.kind > 2) r.lock = name;
        return r;
      }
    }
  }
}

// ---- the property --------------------------------------------------------------------------------

describe('the core against rejected inputs mixed into a live workload', () => {
  it('never throws, answers every request, and a refused one changes only what the protocol allows', () => {
    const seen = new Map<string, number>();
    fc.assert(
      fc.property(configArb, fc.array(commandArb, { maxLength: MAX_COMMANDS, size: 'max' }), (config, commands) => {
        const run = new Run(config, seen);
        // Every session opened first, as a live workload would have them.
        for (let s = 0; s < SESSIONS; s++) {
          run.exec({ t: 'open', dt: 0, s, who: 'self', numbering: 'none', settle: 'none', pick: 0, ttl: 4000, wrongPartitions: false });
        }
        for (const cmd of commands) run.exec(cmd);
      }),
      { seed: SEED, numRuns: RUNS },
    );
    const missing = MUST_REACH.filter((what) => (seen.get(what) ?? 0) === 0);
    expect(missing, [...seen].sort().map(([k, v]) => `${k}: ${v}`).join('\n')).toEqual([]);
  });
});
