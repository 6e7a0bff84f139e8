import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Request } from '@lockq/protocol';
import { type CoreOptions, DEFAULT_CORE_LIMITS, type Decision, LockCore } from '../src/core/index.js';

/**
 * Durability rests on two facts about the core, checked here on random histories:
 * 1. a snapshot (through JSON, as the store keeps it) restores a core that behaves exactly as the
 *    original from then on: same answers, same tokens, same expiries;
 * 2. replaying the journal (every request, and every expiry tick that decided something, each at
 *    its recorded `now`) on a snapshot rebuilds exactly the state the original had.
 *
 * Two of the three sessions share an id under different principals (and the third has none), so
 * a snapshot that lost track of whose session is whose would not restore to the same core.
 */

const OPTIONS: CoreOptions = {
  partition: 0,
  partitions: 1,
  epoch: 1,
  tokenFloor: 0,
  tokenBlockSize: 4,
  limits: { ...DEFAULT_CORE_LIMITS, maxWaitersPerLock: 3, maxLockWaitsPerPrincipal: 2, maxNamesPerPrincipal: 3, dedupeWindowMs: 500, maxDedupeEntries: 40 },
};
/** Session slots: an id and, but for the first, a principal. Answers go to `to.<slot>`. */
const SESSIONS: readonly { readonly session: string; readonly principal?: string }[] = [
  { session: 's0' },
  { session: 's1', principal: 'P' },
  { session: 's1', principal: 'Q' },
];
const LOCKS = [
  { lock: 'm', kind: 'mutex', mode: 'exclusive', limit: 1 },
  { lock: 'r', kind: 'rwlock', mode: 'shared', limit: 1 },
  { lock: 'w', kind: 'rwlock', mode: 'exclusive', limit: 1 },
  { lock: 'sem', kind: 'semaphore', mode: 'shared', limit: 3 },
] as const;

type Step =
  | { t: 'advance'; ms: number }
  | { t: 'open'; s: number; ttl: number }
  | { t: 'acquire'; s: number; l: number; permits: number; ttl: number; wait: number }
  | { t: 'release'; s: number; pick: number }
  | { t: 'extend'; s: number; pick: number; ttl: number }
  | { t: 'cancel'; s: number; pick: number }
  | { t: 'heartbeat'; s: number }
  | { t: 'close'; s: number }
  | { t: 'dup'; pick: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ t: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 300 }) }),
  fc.record({ t: fc.constant('open' as const), s: fc.nat(2), ttl: fc.integer({ min: 100, max: 800 }) }),
  fc.record({
    t: fc.constant('acquire' as const),
    s: fc.nat(2),
    l: fc.nat(3),
    permits: fc.integer({ min: 1, max: 3 }),
    ttl: fc.integer({ min: 10, max: 600 }),
    wait: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 700 })),
  }),
  fc.record({ t: fc.constant('release' as const), s: fc.nat(2), pick: fc.nat() }),
  fc.record({ t: fc.constant('extend' as const), s: fc.nat(2), pick: fc.nat(), ttl: fc.integer({ min: 10, max: 600 }) }),
  fc.record({ t: fc.constant('cancel' as const), s: fc.nat(2), pick: fc.nat() }),
  fc.record({ t: fc.constant('heartbeat' as const), s: fc.nat(2) }),
  fc.record({ t: fc.constant('close' as const), s: fc.nat(2) }),
  fc.record({ t: fc.constant('dup' as const), pick: fc.nat() }),
);

/** Turns steps into (request | tick, now) inputs, learning tokens and ids from the answers. */
class Driver {
  /** Every input the original core was given, with what it decided. */
  readonly inputs: { request: Request | null; now: number; out: Decision[] }[] = [];
  #now = 0;
  #id = 0;
  readonly #tokens = new Map<number, { lock: string; token: number }[]>();
  readonly #acquires = new Map<number, { lock: string; id: string }[]>();
  readonly #sent: Request[] = [];

  constructor(readonly core: LockCore) {}

  run(steps: readonly Step[]): void {
    for (const s of SESSIONS.keys()) this.#send(this.#open(s, 1000));
    for (const st of steps) this.#apply(st);
  }

  readonly #seq = new Map<number, number>();

  /** s0 sends unnumbered requests (time-window memory); s1 and s2 number theirs, settling with a lag. */
  #base(s: number) {
    const slot = SESSIONS[s] as (typeof SESSIONS)[number];
    const base = { v: 1 as const, id: `q${++this.#id}`, worker: `w${s}`, replyTo: `to.${s}`, ...slot };
    if (s === 0) return base;
    const seq = (this.#seq.get(s) ?? 0) + 1;
    this.#seq.set(s, seq);
    return { ...base, seq, settled: Math.max(0, seq - 1 - s) };
  }

  #open(s: number, ttl: number): Request {
    return { ...this.#base(s), op: 'open', sessionTtlMs: ttl, partitions: 1 };
  }

  #apply(st: Step): void {
    switch (st.t) {
      case 'advance': {
        this.#now += st.ms;
        const out: Decision[] = [];
        this.core.tick(this.#now, out);
        // Like the runtime: a tick is journaled only when it decided something.
        if (out.length > 0) this.inputs.push({ request: null, now: this.#now, out });
        this.#learn(out);
        return;
      }
      case 'open':
        this.#send(this.#open(st.s, st.ttl));
        return;
      case 'acquire': {
        const l = LOCKS[st.l] as (typeof LOCKS)[number];
        const permits = l.kind === 'semaphore' ? st.permits : 1;
        this.#send({ ...this.#base(st.s), op: 'acquire', ...l, permits, ttlMs: st.ttl, waitMs: st.wait });
        return;
      }
      case 'release':
      case 'extend': {
        const held = this.#tokens.get(st.s) ?? [];
        const h = held[st.pick % Math.max(1, held.length)] ?? { lock: 'm', token: 999 };
        const req = st.t === 'release' ? { op: 'release' as const } : { op: 'extend' as const, ttlMs: st.ttl };
        this.#send({ ...this.#base(st.s), ...req, lock: h.lock, token: h.token } as Request);
        return;
      }
      case 'cancel': {
        const waits = this.#acquires.get(st.s) ?? [];
        const w = waits[st.pick % Math.max(1, waits.length)] ?? { lock: 'm', id: 'nope' };
        this.#send({ ...this.#base(st.s), op: 'cancel', lock: w.lock, target: w.id });
        return;
      }
      case 'heartbeat':
        this.#send({ ...this.#base(st.s), op: 'heartbeat' });
        return;
      case 'close':
        this.#send({ ...this.#base(st.s), op: 'close' });
        return;
      case 'dup': {
        const r = this.#sent[st.pick % Math.max(1, this.#sent.length)];
        if (r !== undefined) this.#send(r);
      }
    }
  }

  #send(request: Request): void {
    const out: Decision[] = [];
    this.core.handle(request, this.#now, out);
    this.inputs.push({ request, now: this.#now, out });
    this.#sent.push(request);
    if (request.op === 'acquire') {
      const s = Number(request.replyTo.slice(3));
      this.#acquires.set(s, [...(this.#acquires.get(s) ?? []), { lock: request.lock, id: request.id }]);
    }
    this.#learn(out);
  }

  #learn(out: readonly Decision[]): void {
    for (const d of out) {
      if (d.type === 'reply' && d.body.type === 'granted') {
        const s = Number(d.to.slice(3));
        this.#tokens.set(s, [...(this.#tokens.get(s) ?? []), { lock: d.body.lock, token: d.body.token }]);
      }
    }
  }
}

function replay(core: LockCore, inputs: readonly { request: Request | null; now: number }[]): Decision[] {
  const out: Decision[] = [];
  for (const { request, now } of inputs) {
    if (request === null) core.tick(now, out);
    else core.handle(request, now, out);
  }
  return out;
}

const throughJson = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

describe('snapshot and journal replay', () => {
  it('a restored core answers every later input exactly as the original', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), fc.array(step, { maxLength: 40 }), (before, after) => {
        const original = new LockCore(OPTIONS);
        const driver = new Driver(original);
        driver.run(before);
        const restored = LockCore.restore(throughJson(original.snapshot()), OPTIONS);
        expect(restored.snapshot()).toEqual(original.snapshot());
        // Drive the original further; the restored core, given the same inputs, decides the same.
        const split = driver.inputs.length;
        driver.run(after);
        for (const input of driver.inputs.slice(split)) expect(replay(restored, [input])).toEqual(input.out);
        restored.tick(original.now, []); // the unjournaled ticks that decided nothing
        expect(restored.snapshot()).toEqual(original.snapshot());
      }),
      { numRuns: Number(process.env.LOCKQ_FC_RUNS ?? 400), seed: Number(process.env.LOCKQ_FC_SEED ?? 20261121) },
    );
  });

  it('replaying the journal from the start rebuilds the same state', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 100 }), (steps) => {
        const original = new LockCore(OPTIONS);
        const driver = new Driver(original);
        driver.run(steps);
        const twin = new LockCore(OPTIONS);
        expect(replay(twin, driver.inputs)).toEqual(driver.inputs.flatMap((i) => i.out));
        // Ticks that decided nothing are not journaled (they only move the clock, or end a
        // session with nothing held or awaited). Brought to the same time, nothing differs.
        const late: Decision[] = [];
        twin.tick(original.now, late);
        expect(late).toEqual([]);
        expect(twin.snapshot()).toEqual(original.snapshot());
      }),
      { numRuns: Number(process.env.LOCKQ_FC_RUNS ?? 400), seed: Number(process.env.LOCKQ_FC_SEED ?? 20261121) },
    );
  });

  it('a restored core continues tokens above the floor it is given, never reusing one', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), fc.nat(50), (steps, gap) => {
        const original = new LockCore(OPTIONS);
        new Driver(original).run(steps);
        const snap = throughJson(original.snapshot());
        const floor = snap.tokenCeiling + gap;
        const restored = LockCore.restore(snap, { ...OPTIONS, epoch: 2, tokenFloor: floor });
        const out: Decision[] = [];
        restored.handle(
          { v: 1, op: 'open', id: 'fresh-open', worker: 'wz', session: 'z', replyTo: 'to.z', sessionTtlMs: 600_000, partitions: 1 },
          snap.now,
          out,
        );
        restored.handle(
          { v: 1, op: 'acquire', id: 'fresh', worker: 'wz', session: 'z', replyTo: 'to.z', lock: 'fresh-lock', kind: 'mutex', mode: 'exclusive', limit: 1, permits: 1, ttlMs: 100, waitMs: 0 },
          snap.now,
          out,
        );
        const grant = out.find((d) => d.type === 'reply' && d.body.type === 'granted');
        expect(grant?.type === 'reply' && grant.body.type === 'granted' ? grant.body.token : 0).toBe(floor + 1);
      }),
      { numRuns: 200, seed: 7 },
    );
  });
});
