import { jain, median, percentile } from './stats.js';

/**
 * The workloads every lock system in the broker suites runs, written once so lockq and its
 * peers are measured by the same code: closed loops of simulated workers, each awaiting its
 * own operation before starting the next one.
 */

/** Gives a held lock back. */
export type Release = () => Promise<void>;

/** One simulated worker of a lock system. */
export interface Contender {
  /**
   * Acquires `name`, resolving once it is held. Resolves null when the library gave up (its
   * retries ran out): the worker then asks again, as an application would, and the wait goes on.
   */
  acquire(name: string): Promise<Release | null>;
}

/** A lock system under test, with its workers already connected. */
export interface LockSystem {
  readonly label: string;
  readonly workers: readonly Contender[];
  /** Messages (or commands) sent so far by both sides, for the cost per acquisition. */
  messages(): number;
}

/** Run settings shared by every workload. */
export interface Window {
  readonly seconds: number;
  /** Names are `<namespace>:...`, unique per run so nothing is left from an earlier one. */
  readonly namespace: string;
}

/** Everything a workload run reports; fields a workload does not measure are NaN. */
export interface Figures {
  /** Cycles, round trips or hand-offs per second. */
  rate: number;
  /** Acquire latency (distinct locks) or wait (hot lock), ms. */
  p50: number;
  p99: number;
  max: number;
  /** Jain's fairness index over per-worker acquisitions. */
  jain: number;
  /** Messages or commands per acquisition. */
  perAcquisition: number;
  /** Hot lock: from one holder's release call to the next grant, median, ms. */
  gap: number;
  /** Acquisitions the library gave up on (then asked again), per acquisition. */
  gaveUp: number;
}

export const NOT_MEASURED: Readonly<Figures> = { rate: Number.NaN, p50: Number.NaN, p99: Number.NaN, max: Number.NaN, jain: Number.NaN, perAcquisition: Number.NaN, gap: Number.NaN, gaveUp: Number.NaN };

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Aborted on SIGINT or SIGTERM: the loops end early and the suites clean up before exiting. */
export const interruption = new AbortController();

/** `run`, failing if it takes longer than `ms` (a hung broker must not hang the bench). */
export async function withDeadline<T>(what: string, ms: number, run: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${Math.round(ms / 1000)} s`)), ms);
  });
  try {
    return await Promise.race([run, expired]);
  } finally {
    clearTimeout(timer);
  }
}

const running = () => !interruption.signal.aborted;

/** Holds until `deadline`: a timer for the bulk, then yielding turns (I/O runs) for the last millisecond. */
async function holdUntil(deadline: number): Promise<void> {
  const coarse = Math.floor(deadline - performance.now()) - 1;
  if (coarse > 0) await sleep(coarse);
  while (performance.now() < deadline) await new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * `workers` closed loops, each running `step` until the window ends; `step` returns one latency
 * sample. Operations per second are counted over the time until the last loop finished.
 */
export async function closedLoop(
  workers: number,
  seconds: number,
  step: (worker: number) => Promise<number>,
): Promise<{ rate: number; latencies: number[]; perWorker: number[] }> {
  const latencies: number[] = [];
  const perWorker = new Array<number>(workers).fill(0);
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      while (performance.now() < end && running()) {
        latencies.push(await step(w));
        perWorker[w] = (perWorker[w] as number) + 1;
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  return { rate: latencies.length / elapsed, latencies, perWorker };
}

function summarise(latencies: number[]): Pick<Figures, 'p50' | 'p99' | 'max'> {
  latencies.sort((a, b) => a - b);
  return { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies[latencies.length - 1] ?? Number.NaN };
}

/** Acquires until it holds, counting give-ups. */
async function acquireRetrying(c: Contender, name: string, gaveUp: { n: number }, until: number): Promise<Release | null> {
  for (;;) {
    const release = await c.acquire(name);
    if (release !== null) return release;
    gaveUp.n++;
    if (performance.now() >= until || !running()) return null;
  }
}

/** `n` workers, each acquiring and releasing its own lock: cycles/s and acquire latency. */
export async function distinctLocks(system: LockSystem, n: number, w: Window): Promise<Figures> {
  const workers = system.workers.slice(0, n);
  if (workers.length < n) throw new Error(`${system.label}: ${n} workers wanted, ${workers.length} connected`);
  const gaveUp = { n: 0 };
  const before = system.messages();
  const run = await closedLoop(n, w.seconds, async (i) => {
    const t0 = performance.now();
    const release = await acquireRetrying(workers[i] as Contender, `${w.namespace}:d${i}`, gaveUp, Number.POSITIVE_INFINITY);
    const latency = performance.now() - t0;
    await release?.();
    return latency;
  });
  const acquisitions = run.latencies.length;
  return {
    ...NOT_MEASURED,
    rate: run.rate,
    ...summarise(run.latencies),
    jain: jain(run.perWorker),
    perAcquisition: (system.messages() - before) / acquisitions,
    gaveUp: gaveUp.n / acquisitions,
  };
}

/**
 * Every worker on one lock, holding it `holdMs` each time: hand-offs/s (grants within the
 * window), wait from asking to holding, fairness over per-worker grants, and the hand-off gap.
 * A wait still open when the window ends counts with its length so far (so a starved worker
 * shows in p99 and max, as a lower bound). A grant after the window is given back at once, so
 * the run drains quickly.
 */
export async function hotLock(system: LockSystem, holdMs: number, w: Window): Promise<Figures> {
  const workers = system.workers;
  const name = `${w.namespace}:hot`;
  const gaveUp = { n: 0 };
  const waits: number[] = [];
  const gaps: number[] = [];
  const perWorker = new Array<number>(workers.length).fill(0);
  let lastRelease = Number.NaN;
  let grants = 0;
  let total = 0;
  const before = system.messages();
  const start = performance.now();
  const end = start + w.seconds * 1000;
  await Promise.all(
    workers.map(async (c, i) => {
      while (performance.now() < end && running()) {
        const asked = performance.now();
        const release = await acquireRetrying(c, name, gaveUp, end);
        const granted = performance.now();
        if (release !== null) total++;
        if (release === null || granted >= end) {
          waits.push(Math.min(granted, end) - asked);
          await release?.();
          return;
        }
        grants++;
        waits.push(granted - asked);
        if (!Number.isNaN(lastRelease)) gaps.push(granted - lastRelease);
        perWorker[i] = (perWorker[i] as number) + 1;
        if (holdMs > 0) await holdUntil(granted + holdMs);
        lastRelease = performance.now();
        await release();
      }
    }),
  );
  gaps.sort((a, b) => a - b);
  return {
    rate: grants / w.seconds,
    ...summarise(waits),
    jain: jain(perWorker),
    perAcquisition: (system.messages() - before) / total,
    gap: percentile(gaps, 50),
    gaveUp: gaveUp.n / total,
  };
}

/** The median of every field over several runs. */
export function medians(runs: readonly Figures[]): Figures {
  const out = { ...NOT_MEASURED };
  for (const key of Object.keys(NOT_MEASURED) as (keyof Figures)[]) {
    const values = runs.map((r) => r[key]).filter((v) => !Number.isNaN(v));
    out[key] = values.length === 0 ? Number.NaN : median(values);
  }
  return out;
}
