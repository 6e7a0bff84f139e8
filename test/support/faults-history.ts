import type { FencedResource } from './fenced-resource.js';
import type { WorkerEvent } from './faults-processes.js';

export { seededRandom } from '../fixtures/src/worker-io.js';

/** An integer in [min, max]. */
export function between(random: () => number, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

/** A positive integer from the environment, or the fallback. */
export function envInt(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name}: expected a non-negative integer, got ${JSON.stringify(text)}`);
  return n;
}

/** The run's seed: LOCKQ_FAULT_SEED, or a fixed default so CI runs are repeatable. */
export function faultSeed(): number {
  return envInt('LOCKQ_FAULT_SEED', 20_240_611);
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

/** One gated FIFO round: a holder, then waiters queued one after the other, then the release. */
export interface FifoRound {
  readonly lock: string;
  readonly gateToken: number;
  /** In the order they were queued. */
  readonly waiters: readonly { readonly worker: string; readonly position: number; readonly token: number | undefined }[];
}

export interface HistoryInput {
  /** Every event of every worker of the run (workers already told to stop and finished). */
  readonly events: readonly WorkerEvent[];
  readonly workers: readonly string[];
  readonly resource: FencedResource;
  /** Locks used as read-modify-write counters: their final value must equal their accepted writes. */
  readonly counters: readonly string[];
  readonly fifoRounds: readonly FifoRound[];
  /** Error codes that may end an acquire in this scenario (e.g. WAIT_TIMEOUT); any other is a problem. */
  readonly allowedErrors?: readonly string[];
}

export interface HistoryReport {
  readonly acquires: number;
  readonly grants: number;
  readonly accepted: number;
  readonly rejected: number;
  readonly errors: Readonly<Record<string, number>>;
  /** Every broken guarantee, in words; empty when the run is clean. */
  readonly problems: readonly string[];
}

/**
 * The checks after every fault run:
 * - no double grant: the fenced resource never accepted a token lower than one it had accepted
 *   for the key, nor one token from two workers (`violations()`);
 * - tokens strictly increase per lock in grant-time order, across every fail-over, and no token
 *   is granted twice;
 * - no lost waiter: every worker finished (`done`, no `fatal`) and every acquire it sent ended
 *   in exactly one grant or one error, of an allowed code;
 * - FIFO where observable: in each gated round, waiters were queued at positions 1..K and
 *   granted in that order;
 * - every counter's final value equals its accepted writes (mutual exclusion by lease held), and
 *   the workers' view of their writes matches the resource's.
 */
export function checkHistory(input: HistoryInput): HistoryReport {
  const problems: string[] = [];
  const say = (text: string) => {
    if (problems.length < 200) problems.push(text);
  };
  const allowed = new Set(input.allowedErrors ?? []);

  // -- double grants at the resource --------------------------------------------------------
  for (const v of input.resource.violations()) say(`resource accepted a stale or shared token: ${JSON.stringify(v)}`);

  // -- every worker finished; every acquire ended once ----------------------------------------
  const byWorker = new Map<string, WorkerEvent[]>();
  for (const e of input.events) {
    const list = byWorker.get(e.worker) ?? [];
    if (list.length === 0) byWorker.set(e.worker, list);
    list.push(e);
  }
  let acquires = 0;
  const errors: Record<string, number> = {};
  for (const worker of input.workers) {
    const events = byWorker.get(worker) ?? [];
    if (!events.some((e) => e.event === 'done')) say(`${worker} never reported done (hung or died)`);
    for (const e of events.filter((e) => e.event === 'fatal')) say(`${worker} failed: ${e.message ?? ''} (${e.code ?? ''})`);
    const ends = new Map<number, string[]>();
    for (const e of events) {
      if (e.n === undefined) continue;
      if (e.event === 'acquire-sent') {
        acquires++;
        if (ends.has(e.n)) say(`${worker} sent acquire #${e.n} twice`);
        ends.set(e.n, []);
      } else if (e.event === 'granted' || e.event === 'error') {
        const list = ends.get(e.n);
        if (list === undefined) say(`${worker}: ${e.event} for acquire #${e.n}, which was never sent`);
        else list.push(e.event);
        if (e.event === 'error') {
          const code = e.code ?? 'NONE';
          errors[code] = (errors[code] ?? 0) + 1;
          if (!allowed.has(code)) say(`${worker}: acquire #${e.n} on ${e.lock ?? '?'} failed with ${code}: ${e.message ?? ''}`);
        }
      }
    }
    for (const [n, list] of ends) {
      // A grant may be followed by an error of the work under it; never two grants, never nothing.
      const grants = list.filter((x) => x === 'granted').length;
      if (list.length === 0) say(`${worker}: acquire #${n} never ended (a lost waiter)`);
      else if (grants > 1) say(`${worker}: acquire #${n} was granted ${grants} times`);
      else if (grants === 0 && list.length > 1) say(`${worker}: acquire #${n} ended ${list.length} times`);
    }
  }

  // -- tokens per lock, in grant-time order ---------------------------------------------------
  const grants = input.events.filter((e) => e.event === 'granted');
  const perLock = new Map<string, WorkerEvent[]>();
  for (const g of grants) {
    const lock = g.lock ?? '?';
    const list = perLock.get(lock) ?? [];
    if (list.length === 0) perLock.set(lock, list);
    list.push(g);
  }
  for (const [lock, list] of perLock) {
    // Stable sort by the worker's clock (one machine): a mutex's next grant is decided only after
    // the previous holder released, which it does after reporting its grant.
    const ordered = [...list].sort((a, b) => a.at - b.at);
    for (let i = 1; i < ordered.length; i++) {
      const prev = ordered[i - 1] as WorkerEvent;
      const cur = ordered[i] as WorkerEvent;
      if ((cur.token ?? 0) <= (prev.token ?? 0)) {
        say(`${lock}: token ${cur.token} (${cur.worker} at ${cur.at}) not above ${prev.token} (${prev.worker} at ${prev.at}) granted before it`);
      }
    }
  }

  // -- counters and the workers' view of their writes ------------------------------------------
  const writes = input.events.filter((e) => e.event === 'write');
  let accepted = 0;
  let rejected = 0;
  for (const w of writes) {
    if (w.accepted === true) accepted++;
    else rejected++;
  }
  const granted = new Set(grants.map((g) => `${g.worker}/${g.lock}/${g.token}`));
  for (const w of writes) {
    if (!granted.has(`${w.worker}/${w.lock}/${w.token}`)) say(`${w.worker} wrote ${w.lock} with token ${w.token}, which it was never granted`);
  }
  for (const lock of input.counters) {
    const atResource = input.resource.history.filter((h) => h.key === lock && h.accepted).length;
    const reported = writes.filter((w) => w.lock === lock && w.accepted === true).length;
    const value = input.resource.read(lock);
    if (value !== atResource) say(`${lock}: final counter ${value} but ${atResource} accepted writes (two holders at once)`);
    if (reported !== atResource) say(`${lock}: workers report ${reported} accepted writes, the resource ${atResource}`);
  }
  if (rejected > 0) say(`${rejected} writes were refused by the fenced resource (a holder wrote after a later grant had written)`);

  // -- FIFO in gated rounds -------------------------------------------------------------------
  input.fifoRounds.forEach((round, r) => {
    const positions = round.waiters.map((w) => w.position);
    const expected = round.waiters.map((_, i) => i + 1);
    if (JSON.stringify(positions) !== JSON.stringify(expected)) {
      say(`FIFO round ${r + 1} (${round.lock}): queued at positions ${JSON.stringify(positions)}, expected ${JSON.stringify(expected)}`);
    }
    let previous = round.gateToken;
    for (const w of round.waiters) {
      if (w.token === undefined) {
        say(`FIFO round ${r + 1} (${round.lock}): ${w.worker} (position ${w.position}) was never granted`);
        continue;
      }
      if (w.token <= previous) {
        say(`FIFO round ${r + 1} (${round.lock}): ${w.worker} at position ${w.position} got token ${w.token}, not above ${previous} granted before it`);
      }
      previous = w.token;
    }
  });

  return { acquires, grants: grants.length, accepted, rejected, errors, problems };
}

/** One line for the test log. */
export function summarize(report: HistoryReport): string {
  const errors = Object.entries(report.errors)
    .map(([code, n]) => `${code}=${n}`)
    .join(' ');
  return `${report.acquires} acquires, ${report.grants} grants, ${report.accepted} accepted writes, ${report.rejected} refused, errors: ${errors === '' ? 'none' : errors}`;
}
