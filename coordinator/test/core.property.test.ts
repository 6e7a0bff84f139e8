/**
 * Property-based tests of the lock core: random request sequences over a few sessions and locks,
 * with a manual clock, checked step by step against the guarantees (mutual exclusion, fencing,
 * FIFO, no late grants, one final answer per acquire) and against the reference model.
 *
 * Sessions belong to one to three principals, with the same session ids under different
 * principals; now and then a request names a session as another principal (an intruder). The
 * checker follows sessions by (principal, id), so a request that acted on another principal's
 * session would show as a hold or wait the replies never gave that session.
 *
 * Reproduce a failure with the seed fast-check prints: LOCKQ_FC_SEED=<seed> npx vitest run coordinator/test/core.property.test.ts
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { AcquireRequest, LockKind, ReplyBody, Request, RequestBase } from '@lockq/protocol';
import { type CoreLimits, DEFAULT_CORE_LIMITS, type Decision, LockCore } from '../src/core/index.js';
import { type ModelStep, ReferenceModel } from './support/reference-model.js';

const SEED = process.env.LOCKQ_FC_SEED === undefined ? 0x10c4 : Number(process.env.LOCKQ_FC_SEED);
const NUM_RUNS = 2000;
const MAX_COMMANDS = 60;
/** Fewer, longer runs reach deeper states: long queues, many tokens, sessions re-opened many times. */
const LONG_RUNS = 250;
const LONG_MAX_COMMANDS = 400;

// ---- the scenario ---------------------------------------------------------------------------------

/** Lock names, each with the kind (and limit) it is normally used as. */
const LOCKS: readonly { readonly name: string; readonly kind: LockKind; readonly limit: number }[] = [
  { name: 'a', kind: 'rwlock', limit: 1 },
  { name: 'b', kind: 'semaphore', limit: 3 },
  { name: 'c', kind: 'mutex', limit: 1 },
  { name: 'd', kind: 'semaphore', limit: 2 },
];
const KINDS: readonly LockKind[] = ['mutex', 'rwlock', 'semaphore'];

// The model remembers every answer: keep the dedupe window far beyond a run's simulated time.
const LIMITS: CoreLimits = { ...DEFAULT_CORE_LIMITS, dedupeWindowMs: 3_600_000, maxDedupeEntries: 1_000_000 };
const SMALL_LIMITS: CoreLimits = { ...LIMITS, maxWaitersPerLock: 2, maxHoldsPerSession: 2, maxWaitsPerSession: 1, maxSessions: 4 };
type Quotas = Pick<CoreLimits, 'maxSessionsPerPrincipal' | 'maxHoldsPerPrincipal' | 'maxWaitsPerPrincipal' | 'maxLockWaitsPerPrincipal' | 'maxNamesPerPrincipal'>;
/** Per-principal quotas small enough to be hit within a run. */
const tightQuotasArb: fc.Arbitrary<Quotas> = fc.record({
  maxSessionsPerPrincipal: fc.integer({ min: 2, max: 4 }),
  maxHoldsPerPrincipal: fc.integer({ min: 2, max: 5 }),
  maxWaitsPerPrincipal: fc.integer({ min: 1, max: 3 }),
  maxLockWaitsPerPrincipal: fc.integer({ min: 1, max: 2 }),
  maxNamesPerPrincipal: fc.integer({ min: 1, max: 3 }),
});

interface Config {
  /** Session slots: slot n is worker w<n>'s session (see Run.#resolve). */
  readonly sessions: number;
  /** Principals the slots are spread over: with one, requests carry none (identity off). */
  readonly principals: 1 | 2 | 3;
  readonly locks: number;
  readonly small: boolean;
  /** Small per-principal quotas, or none: the defaults. */
  readonly quotas: Quotas | null;
  readonly partitions: 1 | 2;
  readonly partition: 0 | 1;
  readonly tokenFloor: number;
  readonly tokenBlockSize: number;
  /** Session ttls of the sessions opened before the first command; empty = start with none. */
  readonly prelude: readonly number[];
}

/**
 * Commands name sessions, locks, tokens and earlier requests by small numbers, resolved against
 * the run when they are executed (see Run.#resolve), so any sequence is meaningful and shrinks well.
 */
interface Step {
  /** Clock change before the command (ms; may be negative). */
  readonly dt: number;
}
interface OnSession extends Step {
  readonly s: number;
  /** If the session is gone, open it again first (in a step of its own). */
  readonly reopen: boolean;
  /** Sent as another principal than the slot's (see Run.#resolve). */
  readonly intrude: boolean;
}
interface OnHold extends OnSession {
  readonly lock: number;
  /** Which token: mostly one the session holds (see Run.#token). */
  readonly which: number;
  readonly pick: number;
}
type Command =
  | (Step & { readonly t: 'open'; readonly s: number; readonly ttl: number; readonly alien: boolean; readonly intrude: boolean })
  | (OnSession & { readonly t: 'heartbeat' | 'close' })
  | (OnSession & {
      readonly t: 'acquire';
      readonly lock: number;
      readonly otherKind: boolean;
      readonly otherLimit: boolean;
      readonly shared: boolean;
      readonly permits: number;
      readonly ttl: number;
      readonly wait: number;
    })
  | (OnHold & { readonly t: 'release' })
  | (OnHold & { readonly t: 'extend'; readonly ttl: number })
  | (OnSession & { readonly t: 'cancel'; readonly lock: number; readonly which: number; readonly pick: number })
  | (Step & { readonly t: 'inspect'; readonly s: number; readonly lock: number | null })
  | (Step & { readonly t: 'resend'; readonly pick: number; readonly otherReplyTo: boolean })
  | (Step & { readonly t: 'conflict'; readonly pick: number })
  | (Step & { readonly t: 'tick' });

// Mostly forward by up to 400 ms; now and then not at all, or backwards (which the core must clamp).
const dtArb = fc.oneof(
  { weight: 12, arbitrary: fc.noBias(fc.integer({ min: 0, max: 400 })) },
  { weight: 2, arbitrary: fc.constant(0) },
  { weight: 1, arbitrary: fc.integer({ min: -200, max: -1 }) },
);
// Leases, waits and sessions short enough to run out often within a run of 60 steps (~12 s).
const ttlArb = fc.oneof(
  { weight: 1, arbitrary: fc.integer({ min: 10, max: 200 }) },
  { weight: 3, arbitrary: fc.noBias(fc.integer({ min: 200, max: 3000 })) },
);
// waitMs 0 is a try-lock.
const waitArb = fc.oneof({ weight: 1, arbitrary: fc.constant(0) }, { weight: 4, arbitrary: fc.noBias(fc.integer({ min: 1, max: 3000 })) });
const sessionTtlArb = fc.oneof(
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 800 }) },
  { weight: 4, arbitrary: fc.noBias(fc.integer({ min: 800, max: 8000 })) },
);
const s = fc.nat(5);
/** Whether a session found gone is opened again (in a step of its own) before the command. */
const reopen = fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) });
const lock = fc.nat(3);
const pick = fc.nat(20);
const rarely = fc.oneof({ weight: 12, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) });
const intrude = rarely;

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ t: fc.constant('open'), dt: dtArb, s, ttl: sessionTtlArb, alien: rarely, intrude }) },
  { weight: 5, arbitrary: fc.record({ t: fc.constant('heartbeat'), dt: dtArb, s, reopen, intrude }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('close'), dt: dtArb, s, reopen, intrude }) },
  {
    weight: 30,
    arbitrary: fc.record({
      t: fc.constant('acquire'),
      dt: dtArb,
      s,
      reopen,
      intrude,
      lock,
      otherKind: rarely,
      otherLimit: rarely,
      shared: fc.boolean(),
      permits: fc.nat(2),
      ttl: ttlArb,
      wait: waitArb,
    }),
  },
  { weight: 12, arbitrary: fc.record({ t: fc.constant('release'), dt: dtArb, s, reopen, intrude, lock, which: fc.nat(5), pick }) },
  { weight: 6, arbitrary: fc.record({ t: fc.constant('extend'), dt: dtArb, s, reopen, intrude, lock, which: fc.nat(5), pick, ttl: ttlArb }) },
  { weight: 5, arbitrary: fc.record({ t: fc.constant('cancel'), dt: dtArb, s, reopen, intrude, lock, which: fc.nat(3), pick }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('inspect'), dt: dtArb, s, lock: fc.option(lock, { nil: null }) }) },
  { weight: 8, arbitrary: fc.record({ t: fc.constant('resend'), dt: dtArb, pick: fc.nat(1000), otherReplyTo: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('conflict'), dt: dtArb, pick: fc.nat(1000) }) },
  { weight: 12, arbitrary: fc.record({ t: fc.constant('tick'), dt: dtArb }) },
);

const configArb: fc.Arbitrary<Config> = fc.record({
  sessions: fc.integer({ min: 3, max: 6 }),
  principals: fc.constantFrom<1 | 2 | 3>(1, 1, 2, 3),
  locks: fc.integer({ min: 2, max: 4 }),
  small: fc.boolean(),
  quotas: fc.oneof({ weight: 2, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: tightQuotasArb }),
  partitions: fc.constantFrom<1 | 2>(1, 1, 1, 1, 1, 2),
  partition: fc.constantFrom<0 | 1>(0, 1),
  tokenFloor: fc.constantFrom(0, 1_000_000),
  tokenBlockSize: fc.integer({ min: 1, max: 8 }),
  prelude: fc.oneof({ weight: 3, arbitrary: fc.array(sessionTtlArb, { minLength: 6, maxLength: 6 }) }, { weight: 1, arbitrary: fc.constant([]) }),
});

/** What the runs reached, so a change to the generators cannot quietly stop exercising a path. */
class Seen {
  readonly counts = new Map<string, number>();
  add(key: string): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }
  toString(): string {
    return [...this.counts].sort().map(([k, n]) => `${k}: ${n}`).join('\n');
  }
}

/** Every answer the generators must reach, and a few situations (see Run.exec). */
const MUST_REACH = [
  ...['granted', 'queued', 'released', 'extended', 'cancelled', 'opened', 'ok', 'lost', 'inspected', 'reserve-tokens'],
  ...['NO_SESSION', 'KIND_MISMATCH', 'LIMIT_MISMATCH', 'LOCK_BUSY', 'QUEUE_FULL', 'WAIT_TIMEOUT', 'CANCELLED', 'NOT_WAITING'],
  ...['NOT_HOLDER', 'LEASE_EXPIRED', 'TOO_MANY_HOLDS', 'TOO_MANY_WAITS', 'TOO_MANY_SESSIONS', 'WRONG_PARTITION'],
  ...['IDEMPOTENCY_CONFLICT', 'INVALID_FIELD', 'replayed', 'several-ended', 'open-ttl-shortened', 'clock-back'],
  ...['successor', 'successor-none', 'named-granted', 'named-granted-after-timeout', 'handed-off-early'],
  ...['FORBIDDEN', 'opened-beside-another-principal', 'QUOTA_EXCEEDED sessions', 'QUOTA_EXCEEDED holds', 'QUOTA_EXCEEDED waits'],
  ...['QUOTA_EXCEEDED lockWaits', 'QUOTA_EXCEEDED names'],
];

// ---- driving the core and the model side by side ---------------------------------------------------

class Run {
  readonly core: LockCore;
  readonly model: ReferenceModel;
  readonly checker: Checker;
  readonly #config: Config;
  /** The clock as the test moves it (may step back). */
  #clock = 0;
  /** The clock as the core sees it: never backwards. */
  #now = Number.NEGATIVE_INFINITY;
  #seq = 0;
  #step = 0;
  readonly #sent: Request[] = [];

  readonly #seen: Seen;
  /** Every principal the run may send as: the slots' (none: `""`), and the intruder's. */
  readonly #principals: readonly string[];

  constructor(config: Config, seen: Seen) {
    this.#config = config;
    this.#seen = seen;
    const k = config.principals;
    this.#principals = k === 1 ? ['', 'intruder'] : Array.from({ length: k }, (_, i) => `p${i}`);
    const limits = { ...(config.small ? SMALL_LIMITS : LIMITS), ...config.quotas };
    const { partition, partitions, tokenFloor, tokenBlockSize } = config;
    this.core = new LockCore({ partition, partitions, epoch: 1, tokenFloor, tokenBlockSize, limits });
    this.model = new ReferenceModel({ partition, partitions, tokenFloor, limits });
    this.checker = new Checker(tokenFloor, tokenBlockSize, (r) => this.model.hasSession(r.session, r.worker, r.principal));
  }

  prelude(): void {
    this.#config.prelude.slice(0, this.#config.sessions).forEach((ttl, i) => {
      this.exec({ t: 'open', dt: 0, s: i, ttl, alien: false, intrude: false });
    });
  }

  exec(cmd: Command): void {
    if ('reopen' in cmd && cmd.reopen) {
      const n = cmd.s % this.#config.sessions;
      const { session, worker, principal } = this.#slot(n, false);
      if (!this.model.hasSession(session, worker, principal)) this.exec({ t: 'open', dt: 0, s: n, ttl: 4000, alien: false, intrude: false });
    }
    this.#step++;
    this.#clock += cmd.dt;
    this.#now = Math.max(this.#now, this.#clock);
    const request = this.#resolve(cmd);
    const ttlBefore = this.model.sessions.find((x) => x.principal === (request?.principal ?? '') && x.id === request?.session && x.worker === request.worker)?.ttlMs;
    const out: Decision[] = [];
    if (request === undefined) this.core.tick(this.#clock, out);
    else this.core.handle(request, this.#clock, out);
    const expected = request === undefined ? this.model.tick(this.#clock) : this.model.handle(request, this.#clock);
    const where = () => `step ${this.#step} at ${this.#now} (clock ${this.#clock}): ${JSON.stringify(cmd)}\nrequest: ${JSON.stringify(request)}`;
    compare(out, expected, where);
    const seen = this.#seen;
    for (const d of out) {
      seen.add(d.type === 'reply' ? (d.body.type === 'error' ? `${d.body.code}${d.body.code === 'QUOTA_EXCEEDED' ? ` ${d.body.field}` : ''}` : d.body.type) : d.type);
      if (d.type === 'reply' && d.body.type === 'successor' && d.body.next === undefined) seen.add('successor-none');
    }
    if (expected.replayed) seen.add('replayed');
    if (out.filter((d) => d.type === 'reply' && (d.body.type === 'lost' || d.body.type === 'error')).length > 1) seen.add('several-ended');
    if (request?.op === 'open' && ttlBefore !== undefined && request.sessionTtlMs < ttlBefore) seen.add('open-ttl-shortened');
    if (request?.op === 'open' && this.model.sessions.some((x) => x.id === request.session && x.principal !== (request.principal ?? ''))) {
      if (out.at(-1)?.type === 'reply' && (out.at(-1) as Decision & { type: 'reply' }).body.type === 'opened') seen.add('opened-beside-another-principal');
    }
    if (this.#clock < this.#now) seen.add('clock-back');
    this.checker.observe(request, out, expected.replayed, this.#now, where);
    for (const key of this.checker.namedGrants.splice(0)) seen.add(key);
    this.#checkState(request, where);
    if (request !== undefined) this.#sent.push(request);
  }

  finish(): void {
    this.checker.finish(this.core, this.#now);
  }

  /** Invariants that hold between steps, read from the core and compared with the model. */
  #checkState(request: Request | undefined, where: () => string): void {
    const now = this.#now;
    const fail = (what: string) => {
      throw new Error(`${what}\n${where()}`);
    };
    if (canon(this.core.counts()) !== canon(this.model.counts())) {
      fail(`counts: core ${canon(this.core.counts())} model ${canon(this.model.counts())}`);
    }
    const names = new Set(this.core.lockNames());
    for (const l of LOCKS) {
      const view = this.core.detail(l.name, now);
      if (canon(view) !== canon(this.model.inspect(l.name, now))) {
        fail(`inspect ${l.name}: core ${canon(view)}\nmodel ${canon(this.model.inspect(l.name, now))}`);
      }
      if ((view !== null) !== names.has(l.name)) fail(`lockNames() disagrees with inspect(${l.name})`);
      if (view !== null) {
        if (view.holders.length === 0 && view.waiters.length === 0) fail(`lock ${l.name} kept with nobody holding or waiting`);
        if (!compatible(view.kind, view.limit, view.holders)) fail(`conflicting holds in inspect(${l.name}): ${canon(view.holders)}`);
        if (view.holders.some((h) => h.ttlMs <= 0)) fail(`expired hold still listed on ${l.name}`);
        if (view.waiters.some((w) => w.waitMs <= 0)) fail(`expired waiter still queued on ${l.name}`);
      }
      this.checker.agreesWith(l.name, view, now, fail);
    }
    const usage = (u: ReturnType<LockCore['usage']>) => (u === undefined ? '-' : `${u.sessions}/${u.holds}/${u.waits}/${u.names}`);
    for (const p of this.#principals) {
      const [core, model] = [usage(this.core.usage(p)), usage(this.model.usage(p))];
      if (core !== model) fail(`usage (sessions/holds/waits/names) of ${JSON.stringify(p)}: core ${core} model ${model}`);
    }
    const next = this.core.nextDeadline();
    const earliest = this.model.earliestDeadline();
    if ((next === undefined) !== (earliest === undefined)) fail(`nextDeadline ${next} but model's earliest deadline is ${earliest}`);
    if (next !== undefined && earliest !== undefined && (next <= now || next > earliest)) {
      fail(`nextDeadline ${next} not in (now ${now}, earliest deadline ${earliest}]`);
    }
    this.checker.grantedToLiveSessions(request, this.model, fail);
  }

  /**
   * Slot n's session: worker w<n>, of principal p<n mod k> (none with one principal), with id
   * s<n div k>, so slots of different principals share ids. An intruder sends as the next
   * principal (or as "intruder" when there is one): its request names an id it may not have.
   */
  #slot(n: number, intrude: boolean): { v: 1; worker: string; session: string; replyTo: string; principal?: string } {
    const k = this.#config.principals;
    const base = { v: 1 as const, worker: `w${n}`, session: `s${Math.floor(n / k)}`, replyTo: `q.s${n}` };
    if (intrude) return { ...base, principal: k === 1 ? 'intruder' : `p${(n + 1) % k}` };
    return k === 1 ? base : { ...base, principal: `p${n % k}` };
  }

  #resolve(cmd: Command): Request | undefined {
    const id = () => `${++this.#seq}`;
    const sessionOf = (i: number, intruding = false) => this.#slot(i % this.#config.sessions, intruding);
    const lockOf = (i: number) => LOCKS[i % this.#config.locks] as (typeof LOCKS)[number];
    switch (cmd.t) {
      case 'tick':
        return undefined;
      case 'open': {
        const b = sessionOf(cmd.s, cmd.intrude);
        const worker = cmd.alien ? `x${b.worker}` : b.worker;
        return { ...b, worker, id: id(), op: 'open', sessionTtlMs: cmd.ttl, partitions: this.#config.partitions };
      }
      case 'heartbeat':
      case 'close':
        return { ...sessionOf(cmd.s, cmd.intrude), id: id(), op: cmd.t };
      case 'inspect':
        return cmd.lock === null
          ? { ...sessionOf(cmd.s), id: id(), op: 'inspect' }
          : { ...sessionOf(cmd.s), id: id(), op: 'inspect', lock: lockOf(cmd.lock).name };
      case 'acquire': {
        const l = lockOf(cmd.lock);
        const kind = cmd.otherKind ? (KINDS[(KINDS.indexOf(l.kind) + 1 + (cmd.permits % 2)) % 3] as LockKind) : l.kind;
        const limit = kind !== 'semaphore' ? 1 : cmd.otherLimit || l.kind !== 'semaphore' ? l.limit + 1 : l.limit;
        const mode = kind === 'mutex' || (kind === 'rwlock' && !cmd.shared) ? 'exclusive' : 'shared';
        const permits = kind === 'semaphore' ? 1 + (cmd.permits % limit) : 1;
        return { ...sessionOf(cmd.s, cmd.intrude), id: id(), op: 'acquire', lock: l.name, kind, mode, limit, permits, ttlMs: cmd.ttl, waitMs: cmd.wait };
      }
      case 'release':
      case 'extend': {
        // An intruder names the slot's holds and tokens, as seen on the replies, from outside.
        const b = sessionOf(cmd.s, cmd.intrude);
        const { lock, token, handoff } = this.#token(keyOf(sessionOf(cmd.s)), lockOf(cmd.lock).name, cmd.which, cmd.pick);
        const r = cmd.t === 'release' ? ({ ...b, id: id(), op: 'release', lock, token } as const) : ({ ...b, id: id(), op: 'extend', lock, token, ttlMs: cmd.ttl } as const);
        return handoff ? { ...r, handoff: true } : r;
      }
      case 'cancel': {
        const b = sessionOf(cmd.s, cmd.intrude);
        const l = lockOf(cmd.lock).name;
        // Mostly one of the session's waiting acquires; else its latest acquire of the lock (likely
        // answered by now), someone else's acquire, or nothing at all.
        const own = keyOf(sessionOf(cmd.s));
        const waiting = this.checker.waiting(own);
        const mine = this.#sent.filter((r) => r.op === 'acquire' && keyOf(r) === own && r.lock === l);
        const any = this.#sent.filter((r) => r.op === 'acquire');
        const target =
          cmd.which <= 1
            ? (waiting[cmd.pick % Math.max(1, waiting.length)] ?? mine.at(-1))
            : cmd.which === 2
              ? mine.at(-1)
              : any[cmd.pick % Math.max(1, any.length)];
        return { ...b, id: id(), op: 'cancel', lock: target?.op === 'acquire' && cmd.which <= 1 ? target.lock : l, target: target?.id ?? 'nope' };
      }
      case 'resend': {
        const earlier = this.#sent[cmd.pick % Math.max(1, this.#sent.length)];
        if (earlier === undefined) return undefined;
        return cmd.otherReplyTo ? { ...earlier, replyTo: `q2.${earlier.session}` } : earlier;
      }
      case 'conflict': {
        const earlier = this.#sent[cmd.pick % Math.max(1, this.#sent.length)];
        if (earlier === undefined) return undefined;
        return changed(earlier);
      }
    }
  }

  /**
   * A lock and token to release or extend with: mostly a hold the session has, else an old token
   * of its own (likely expired), a token reserved for it as a named successor (mostly with the
   * proof of the holder's forwarded grant, `handoff: true`; else guessed, without one), someone
   * else's, or junk.
   */
  #token(session: string, lock: string, which: number, pick: number): { lock: string; token: number; handoff?: boolean } {
    const live = this.checker.holding(session);
    const named = this.checker.namedFor(session);
    if (which === 5 && named !== undefined) return { ...named, handoff: pick % 4 !== 0 };
    const mine = this.checker.grants.filter((g) => g.session === session && g.lock === lock);
    const all = this.checker.grants;
    const junk = { lock, token: this.#config.tokenFloor + 1 + (pick % 40) };
    if (which <= 3) return live[pick % Math.max(1, live.length)] ?? mine.at(-1) ?? junk;
    if (which === 4) return mine.at(-1 - (pick % Math.max(1, mine.length))) ?? junk;
    if (pick % 2 === 0) return { lock, token: all[pick % Math.max(1, all.length)]?.token ?? junk.token };
    return junk;
  }
}

/** The same request id with a different payload. */
function changed(r: Request): Request {
  switch (r.op) {
    case 'open':
      return { ...r, sessionTtlMs: r.sessionTtlMs + 1 };
    case 'acquire':
      return { ...r, ttlMs: r.ttlMs + 1 };
    case 'release':
      return { ...r, token: r.token + 1 };
    case 'extend':
      return { ...r, ttlMs: r.ttlMs + 1 };
    case 'cancel':
      return { ...r, target: `${r.target}x` };
    case 'heartbeat':
      return { ...envelopeOf(r), op: 'close' };
    default:
      return { ...envelopeOf(r), op: 'heartbeat' };
  }
}

/** A request's envelope: who sends it, for which session, and its id. */
function envelopeOf(r: Request): RequestBase {
  const base = { v: 1 as const, id: r.id, worker: r.worker, session: r.session, replyTo: r.replyTo };
  return r.principal === undefined ? base : { ...base, principal: r.principal };
}

/** A session as the checker follows it: its principal and id. */
function keyOf(r: { readonly session: string; readonly principal?: string }): string {
  return `${r.principal ?? ''}/${r.session}`;
}

/** The core's decisions must equal the model's, in order (token reservations are the checker's). */
function compare(all: readonly Decision[], expected: ModelStep, where: () => string): void {
  const got = all.filter((d) => d.type !== 'reserve-tokens').map(canon);
  const want = expected.decisions.map(canon);
  if (got.join('\n') !== want.join('\n')) {
    throw new Error(`core and model disagree\n${where()}\ncore:\n  ${got.join('\n  ')}\nmodel:\n  ${want.join('\n  ')}`);
  }
}

// ---- the guarantees, checked from the replies alone -------------------------------------------------

interface SeenAcquire {
  readonly request: AcquireRequest;
  /** Which opening of its session sent it. */
  incarnation?: number;
  state: 'sent' | 'queued' | 'granted' | 'failed';
  /** When its wait runs out (queued acquires). */
  waitDeadline: number;
  token: number;
  code: string;
}
/** A lock's named successor: the acquire (this very one: ids may be re-sent), its token, its holder's token. */
interface Named {
  readonly re: string;
  readonly token: number;
  readonly holder: number;
  /** Filled in by the acquire's own answer when it was named as it queued. */
  acquire: SeenAcquire | undefined;
}

interface SeenHold {
  readonly request: AcquireRequest;
  readonly token: number;
  deadline: number;
}

/**
 * Follows the reply stream the way a careful observer of every reply queue would, and checks the
 * guarantees against what it has seen: holds come from `granted` and go with `released`, `lost`
 * and a closed session; queues come from `queued` and shrink with grants and final errors.
 */
class Checker {
  /** By session key (see {@link keyOf}). */
  readonly grants: { readonly session: string; readonly lock: string; readonly token: number }[] = [];
  /** Grants to named successors seen in the last step, for the coverage counts. */
  readonly namedGrants: string[] = [];
  readonly #acquires = new Map<string, SeenAcquire>();
  /** Per lock: the successor its holder was told of, and the token reserved for it. */
  readonly #named = new Map<string, Named>();
  /** The acquire being decided in this step, if any. */
  #current: AcquireRequest | undefined;
  /** The token being released in this step, if any (its answer comes after the grants it causes). */
  #releasing: number | undefined;
  /** Per lock: the last token granted on it. */
  readonly #lockTokens = new Map<string, number>();
  readonly #holds = new Map<number, SeenHold>();
  /** Per lock, the ids of queued acquires in the order they were queued. */
  readonly #queues = new Map<string, string[]>();
  #lastToken: number;
  #reserved: number;
  #grantedThisStep: AcquireRequest[] = [];

  readonly #blockSize: number;
  /** Whether the session a request names is open now (after the step being checked). */
  readonly #open: (r: Request) => boolean;
  /** Per session key: how many times it was opened afresh (not resumed). */
  readonly #incarnations = new Map<string, number>();

  constructor(tokenFloor: number, tokenBlockSize: number, open: (r: Request) => boolean) {
    this.#open = open;
    this.#lastToken = tokenFloor;
    this.#reserved = tokenFloor;
    this.#blockSize = tokenBlockSize;
  }

  observe(request: Request | undefined, out: readonly Decision[], replayed: boolean, now: number, where: () => string): void {
    const fail = (what: string) => {
      throw new Error(`${what}\n${where()}\ncore:\n  ${out.map(canon).join('\n  ')}`);
    };
    this.#grantedThisStep = [];
    const last = request === undefined ? -1 : out.length - 1;
    const own = out[last];
    if (request !== undefined && (own?.type !== 'reply' || own.body.re !== request.id || own.to !== request.replyTo)) {
      fail('the last decision is not the answer to the request');
    }
    // An open that starts its session afresh comes after everything of the session's last
    // incarnation ended, in this step too (the core expires first; a named waiter's grant may then
    // pass on): count the new incarnation before reading the step, as `#open` tells the state after it.
    if (request?.op === 'open' && !replayed && own?.type === 'reply' && own.body.type === 'opened' && !own.body.resumed) {
      this.#incarnations.set(keyOf(request), (this.#incarnations.get(keyOf(request)) ?? 0) + 1);
    }
    // A fresh acquire that queues behind a mutex holder is named next before its own answer.
    this.#current = request?.op === 'acquire' && !replayed ? request : undefined;
    this.#releasing = request?.op === 'release' ? request.token : undefined;
    out.forEach((d, i) => {
      if (d.type === 'reserve-tokens') {
        if (d.ceiling <= this.#reserved || d.ceiling <= this.#lastToken) fail(`reservation ${d.ceiling} does not move the ceiling up`);
        if (d.ceiling > Math.max(this.#reserved, this.#lastToken) + this.#blockSize) fail(`reservation ${d.ceiling} is more than a block ahead`);
        this.#reserved = d.ceiling;
        return;
      }
      const body = d.body;
      if (i === last && request !== undefined) {
        if (replayed) this.#replayed(request, body, fail);
        else if (request.op === 'acquire') {
          const incarnation = this.#incarnations.get(keyOf(request)) ?? 0;
          const seen: SeenAcquire = { request, incarnation, state: 'sent', waitDeadline: 0, token: 0, code: '' };
          this.#acquires.set(request.id, seen);
          const named = this.#named.get(request.lock);
          if (named?.re === request.id && named.acquire === undefined) named.acquire = seen;
          this.#acquireAnswer(body, true, now, fail);
        } else this.#answer(request, body, now, fail);
        return;
      }
      this.#acquireAnswer(body, false, now, fail);
    });
    // Mutual exclusion: what the replies say is held is unexpired and free of conflicts.
    const byLock = new Map<string, SeenHold[]>();
    for (const h of this.#holds.values()) {
      if (h.deadline <= now) fail(`hold ${h.token} on ${h.request.lock} expired at ${h.deadline} without a lost event`);
      byLock.set(h.request.lock, [...(byLock.get(h.request.lock) ?? []), h]);
    }
    for (const [lock, holds] of byLock) {
      const first = holds[0] as SeenHold;
      const view = holds.map((h) => ({ mode: h.request.mode, permits: h.request.permits }));
      if (!compatible(first.request.kind, first.request.limit, view)) fail(`conflicting holds on ${lock}: ${holds.map((h) => h.token).join(', ')}`);
    }
  }

  /** Holds of a session (by key), as the replies tell. */
  holding(session: string): { lock: string; token: number }[] {
    return [...this.#holds.values()].filter((h) => keyOf(h.request) === session).map((h) => ({ lock: h.request.lock, token: h.token }));
  }

  /** A token reserved for a waiter of this session (by key) named next, as its holder was told. */
  namedFor(session: string): { lock: string; token: number } | undefined {
    for (const [lock, n] of this.#named) {
      const a = this.#acquires.get(n.re);
      if (a !== undefined && keyOf(a.request) === session) return { lock, token: n.token };
    }
    return undefined;
  }

  /** Waiting acquires of a session (by key), as the replies tell. */
  waiting(session: string): AcquireRequest[] {
    return [...this.#acquires.values()].filter((a) => a.state === 'queued' && keyOf(a.request) === session).map((a) => a.request);
  }

  /** What the replies say must be what the core shows. */
  agreesWith(lock: string, view: ReturnType<LockCore['detail']>, now: number, fail: (what: string) => never): void {
    const holds = [...this.#holds.values()].filter((h) => h.request.lock === lock).map((h) => `${h.token}/${keyOf(h.request)}/${h.deadline - now}`);
    const shown = (view?.holders ?? []).map((h) => `${h.token}/${keyOf(h)}/${h.ttlMs}`);
    if (holds.sort().join() !== shown.sort().join()) fail(`holds of ${lock}: replies say [${holds}], core shows [${shown}]`);
    const queue = this.#queues.get(lock) ?? [];
    const waiting = (view?.waiters ?? []).map((w) => w.request);
    if (queue.join() !== waiting.join()) fail(`queue of ${lock}: replies say [${queue}], core shows [${waiting}]`);
  }

  /** Grants go to live sessions only (a session closed by this very request closes after them). */
  grantedToLiveSessions(request: Request | undefined, model: ReferenceModel, fail: (what: string) => never): void {
    for (const r of this.#grantedThisStep) {
      if (request?.op === 'close' && keyOf(request) === keyOf(r)) continue;
      if (!model.hasSession(r.session, r.worker, r.principal)) fail(`granted ${r.id} to session ${keyOf(r)} which is gone`);
    }
  }

  /** Every acquire has exactly one final answer, or is still waiting. */
  finish(core: LockCore, now: number): void {
    for (const a of this.#acquires.values()) {
      if (a.state === 'sent') throw new Error(`acquire ${a.request.id} never answered`);
      if (a.state === 'queued' && !core.detail(a.request.lock, now)?.waiters.some((w) => w.request === a.request.id)) {
        throw new Error(`acquire ${a.request.id} neither answered nor waiting`);
      }
    }
  }

  /** An answer about an acquire: the request's own answer (`own`) or one that came later. */
  #acquireAnswer(body: ReplyBody, own: boolean, now: number, fail: (what: string) => never): void {
    if (body.type === 'successor') {
      this.#successor(body, fail);
      return;
    }
    const a = body.type === 'lost' ? undefined : this.#acquires.get(body.re);
    if (body.type === 'lost') {
      const h = this.#holds.get(body.token);
      if (h === undefined || h.request.id !== body.re || h.request.lock !== body.lock) throw fail(`lost for a hold never seen: ${canon(body)}`);
      if (body.reason === 'LEASE_EXPIRED' && h.deadline > now) fail(`lease of ${body.token} declared lost ${h.deadline - now} ms early`);
      this.#holds.delete(body.token);
      return;
    }
    if (a === undefined) throw fail(`answer for an unknown acquire: ${canon(body)}`);
    const queue = this.#queues.get(a.request.lock) ?? [];
    this.#queues.set(a.request.lock, queue);
    switch (body.type) {
      case 'granted': {
        const named = this.#named.get(body.lock);
        this.#named.delete(body.lock);
        const isNamed = named !== undefined && named.acquire === a && !own;
        const late = isNamed && a.state === 'failed' && a.code === 'WAIT_TIMEOUT';
        if (named !== undefined && !isNamed) {
          // The name passes on only when the named waiter cancelled or its session ended.
          const left = named.acquire;
          const ended =
            left !== undefined &&
            (!this.#open(left.request) || this.#incarnations.get(keyOf(left.request)) !== left.incarnation);
          if (left?.state !== 'failed' || !(['CANCELLED', 'NO_SESSION'].includes(left.code) || ended)) {
            fail(`${body.re} granted, but ${named.re} was named next`);
          }
        }
        if (own) {
          if (queue.length > 0) fail(`${body.re} granted at once ahead of waiters [${queue}]`);
        } else if (late) {
          // A named successor whose wait ran out: it may hold the lock by the forwarded grant.
          this.namedGrants.push('named-granted-after-timeout');
        } else {
          if (a.state !== 'queued') fail(`${body.re} granted while ${a.state}`);
          if (queue[0] !== body.re) fail(`${body.re} granted out of turn: queue is [${queue}]`);
          if (now >= a.waitDeadline) fail(`${body.re} granted at ${now}, its wait ended at ${a.waitDeadline}`);
          queue.shift();
        }
        if (body.lock !== a.request.lock || body.ttlMs !== a.request.ttlMs) fail(`grant does not match its acquire: ${canon(body)}`);
        if (isNamed) {
          // Its token was issued when it was named. The holder's hold may still be on record: its
          // release was overtaken by the successor presenting the forwarded token, which ends it.
          if (body.token !== named.token) fail(`${body.re} was named with token ${named.token} but granted ${body.token}`);
          if (!late) this.namedGrants.push('named-granted');
          if (named.holder !== this.#releasing && this.#holds.delete(named.holder)) this.namedGrants.push('handed-off-early');
        } else {
          if (body.token <= this.#lastToken) fail(`token ${body.token} not above the last one issued, ${this.#lastToken}`);
          if (body.token > this.#reserved) fail(`token ${body.token} issued above the reservation ${this.#reserved}`);
          this.#lastToken = body.token;
        }
        if (body.token <= (this.#lockTokens.get(body.lock) ?? 0)) fail(`token ${body.token} not above the last on ${body.lock}`);
        this.#lockTokens.set(body.lock, body.token);
        a.state = 'granted';
        a.token = body.token;
        this.#holds.set(body.token, { request: a.request, token: body.token, deadline: now + body.ttlMs });
        this.grants.push({ session: keyOf(a.request), lock: a.request.lock, token: body.token });
        this.#grantedThisStep.push(a.request);
        return;
      }
      case 'queued':
        if (!own || a.state !== 'sent') throw fail(`unexpected queued: ${canon(body)}`);
        queue.push(body.re);
        if (body.position !== queue.length) fail(`queued at position ${body.position}, replies say ${queue.length}`);
        a.state = 'queued';
        a.waitDeadline = now + a.request.waitMs;
        return;
      case 'error':
        if (own ? a.state !== 'sent' : a.state !== 'queued') throw fail(`second final answer for ${body.re}: ${canon(body)}`);
        if (!own) {
          if (!['CANCELLED', 'NO_SESSION', 'WAIT_TIMEOUT'].includes(body.code)) fail(`a waiter answered ${body.code}`);
          if (body.code === 'WAIT_TIMEOUT' && now < a.waitDeadline) fail(`${body.re} timed out ${a.waitDeadline - now} ms early`);
          // A named waiter that cancelled or lost its session is no longer next; one that timed out still is.
          if (body.code !== 'WAIT_TIMEOUT' && this.#named.get(a.request.lock)?.acquire === a) this.#named.delete(a.request.lock);
          queue.splice(queue.indexOf(body.re), 1);
        }
        a.state = 'failed';
        a.code = body.code;
        return;
      default:
        throw fail(`unexpected answer about an acquire: ${canon(body)}`);
    }
  }

  /** A holder told who is next: the head of its queue, with a newly issued token; or nobody. */
  #successor(body: ReplyBody & { type: 'successor' }, fail: (what: string) => never): void {
    const h = this.#holds.get(body.token);
    if (h === undefined || h.request.id !== body.re || h.request.lock !== body.lock || h.request.kind !== 'mutex') {
      throw fail(`successor event for a hold never seen or not a mutex: ${canon(body)}`);
    }
    if (body.next === undefined) {
      if (this.#named.has(body.lock)) fail(`told nobody is next on ${body.lock} while ${this.#named.get(body.lock)?.re} is named`);
      return;
    }
    const g = body.next.grant;
    // The head of the queue, or the acquire being decided now when it queues first.
    const current = this.#current?.id === g.re ? this.#current : undefined;
    const head = this.#queues.get(body.lock)?.[0] ?? current?.id;
    const request = current ?? this.#acquires.get(g.re)?.request;
    if (g.re !== head || request === undefined) throw fail(`${g.re} named next on ${body.lock}, but the queue is [${this.#queues.get(body.lock)}]`);
    if (g.lock !== body.lock || g.ttlMs !== request.ttlMs) fail(`named grant does not match its acquire: ${canon(body)}`);
    if (g.token <= this.#lastToken) fail(`named token ${g.token} not above the last one issued, ${this.#lastToken}`);
    if (g.token > this.#reserved) fail(`named token ${g.token} issued above the reservation ${this.#reserved}`);
    this.#lastToken = g.token;
    this.#named.set(body.lock, { re: g.re, token: g.token, holder: body.token, acquire: current === undefined ? this.#acquires.get(g.re) : undefined });
  }

  /** The answer to anything but a fresh acquire. */
  #answer(request: Request, body: ReplyBody, now: number, fail: (what: string) => never): void {
    if (body.type === 'released' || body.type === 'extended') {
      const h = this.#holds.get(body.token);
      if (h === undefined || keyOf(h.request) !== keyOf(request) || h.request.lock !== body.lock) {
        throw fail(`${body.type} a hold the replies never gave this session: ${canon(body)}`);
      }
      if (body.type === 'released') this.#holds.delete(body.token);
      else h.deadline = now + body.ttlMs;
      return;
    }
    if (request.op === 'close' && body.type === 'ok') {
      for (const [token, h] of this.#holds) if (keyOf(h.request) === keyOf(request)) this.#holds.delete(token);
    }
  }

  /** A duplicate gets the answer the original got, brought up to date. */
  #replayed(request: Request, body: ReplyBody, fail: (what: string) => never): void {
    const a = request.op === 'acquire' ? this.#acquires.get(request.id) : undefined;
    if (a === undefined || body.type === 'error' && body.code === 'IDEMPOTENCY_CONFLICT') return;
    if (a.state === 'granted') {
      const live = this.#holds.has(a.token);
      if (live ? body.type !== 'granted' || body.token !== a.token : body.type !== 'error' || body.code !== 'LEASE_EXPIRED') {
        fail(`duplicate of granted ${a.request.id} answered ${canon(body)}`);
      }
    } else if (a.state === 'queued') {
      const position = (this.#queues.get(a.request.lock) ?? []).indexOf(a.request.id) + 1;
      if (body.type !== 'queued' || body.position !== position) fail(`duplicate of waiting ${a.request.id} answered ${canon(body)}, position ${position}`);
    } else if (a.state === 'failed' && (body.type !== 'error' || body.code !== a.code)) {
      fail(`duplicate of failed ${a.request.id} answered ${canon(body)}`);
    }
  }
}

// ---- helpers ----------------------------------------------------------------------------------------

/** Holds that may coexist on one lock. */
function compatible(kind: LockKind, limit: number, holds: readonly { readonly mode: 'shared' | 'exclusive'; readonly permits: number }[]): boolean {
  if (kind === 'semaphore') return holds.reduce((sum, h) => sum + h.permits, 0) <= limit;
  if (kind === 'mutex') return holds.length <= 1;
  return holds.length <= 1 || holds.every((h) => h.mode === 'shared');
}

/** JSON with sorted keys, so equal values compare equal as strings. */
function canon(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

// ---- the properties ---------------------------------------------------------------------------------

function check(numRuns: number, maxCommands: number): Seen {
  const seen = new Seen();
  fc.assert(
    fc.property(configArb, fc.array(commandArb, { maxLength: maxCommands, size: 'max' }), (config, commands) => {
      const run = new Run(config, seen);
      run.prelude();
      for (const c of commands) run.exec(c);
      run.finish();
    }),
    // A failure of a long run can take very long to shrink: stop after a while and report the
    // smallest counterexample found so far rather than hang CI.
    { seed: SEED, numRuns, interruptAfterTimeLimit: 120_000, markInterruptAsFailure: true },
  );
  if (process.env.LOCKQ_FC_STATS === '1') console.log(String(seen));
  return seen;
}

describe('lock core, property-based', () => {
  it(`agrees with the reference model and keeps every guarantee: ${NUM_RUNS} runs of up to ${MAX_COMMANDS} commands, seed ${SEED}`, () => {
    const seen = check(NUM_RUNS, MAX_COMMANDS);
    expect(MUST_REACH.filter((key) => !seen.counts.has(key)), 'paths the generators never reached').toEqual([]);
  });

  it(`does so over long runs too: ${LONG_RUNS} runs of up to ${LONG_MAX_COMMANDS} commands, seed ${SEED}`, () => {
    check(LONG_RUNS, LONG_MAX_COMMANDS);
  });
});
