import type { PartitionCounts } from '@lockq/worker-sdk/protocol';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Decision } from '../core/index.js';
import type { CoordinatorObserver } from '../runtime/options.js';

/** What the scrape-time gauges read; a {@link Coordinator} is one. */
export interface MetricsSource {
  counts(): Map<number, PartitionCounts>;
  readonly stats: { readonly deadLettered: number; readonly rejected: number };
  readonly options: { readonly ownPartitions: readonly number[] };
}

export interface CoordinatorMetricsOptions {
  /**
   * Also export prom-client's process metrics (CPU, memory, event-loop lag, GC). Off by default
   * because each call starts its own event-loop monitor: right for a service, noise in tests.
   * @defaultValue false
   */
  readonly processMetrics?: boolean;
  /** Upper bounds of the wait-time histogram, in seconds. @defaultValue {@link DEFAULT_WAIT_BUCKETS_S} */
  readonly waitBucketsS?: readonly number[];
  /** Upper bounds of the hold-time histogram, in seconds. @defaultValue {@link DEFAULT_HOLD_BUCKETS_S} */
  readonly holdBucketsS?: readonly number[];
}

/** Immediate grants observe 0, so the first bucket separates "no wait" from "a short wait". */
export const DEFAULT_WAIT_BUCKETS_S = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300] as const;
export const DEFAULT_HOLD_BUCKETS_S = [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600] as const;
const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024] as const;

type Inc = { inc(value?: number): void };
type Observe = { observe(value: number): void };

/** prom-client children bound to one partition's label, so the hot path does not build label objects. */
interface PartitionMetrics {
  readonly label: string;
  readonly requests: Inc;
  readonly batches: Inc;
  readonly batchSize: Observe;
  readonly grants: Inc;
  readonly queued: Inc;
  readonly releases: Inc;
  readonly leaseExpiries: Inc;
  readonly sessionExpiries: Inc;
  readonly waitS: Observe;
  readonly holdS: Observe;
  /** By error code, created on first use (codes are a closed set, so this stays small). */
  readonly errors: Map<string, Inc>;
}

/**
 * Prometheus metrics of one coordinator, in a registry of its own (so several coordinators in
 * one process do not clash). Pass it as the coordinator's `observer`, then {@link attach} the
 * coordinator so scrapes can read its gauges.
 *
 * @example
 * const metrics = new CoordinatorMetrics();
 * const coordinator = await Coordinator.start({ transport, observer: metrics });
 * metrics.attach(coordinator);
 * const text = await metrics.registry.metrics();
 */
export class CoordinatorMetrics implements CoordinatorObserver {
  readonly registry = new Registry();
  readonly #byPartition: (PartitionMetrics | undefined)[] = [];
  #source: MetricsSource | undefined;

  readonly #requests: Counter<'partition'>;
  readonly #batches: Counter<'partition'>;
  readonly #batchSize: Histogram<'partition'>;
  readonly #grants: Counter<'partition'>;
  readonly #queued: Counter<'partition'>;
  readonly #releases: Counter<'partition'>;
  readonly #errors: Counter<'partition' | 'code'>;
  readonly #leaseExpiries: Counter<'partition'>;
  readonly #sessionExpiries: Counter<'partition'>;
  readonly #waitS: Histogram<'partition'>;
  readonly #holdS: Histogram<'partition'>;
  readonly #reconnects: Counter;

  constructor(options: CoordinatorMetricsOptions = {}) {
    const registers = [this.registry];
    const counter = (name: string, help: string) => new Counter({ name, help, labelNames: ['partition'], registers });
    this.#requests = counter('lockq_requests_total', 'Requests consumed, including ones refused as malformed.');
    this.#batches = counter('lockq_batches_total', 'Request batches decided (expiry ticks are not batches).');
    this.#batchSize = new Histogram({
      name: 'lockq_batch_size',
      help: 'Requests per batch.',
      labelNames: ['partition'],
      buckets: [...BATCH_SIZE_BUCKETS],
      registers,
    });
    this.#grants = counter('lockq_grants_total', 'Holds granted, at once or from the queue.');
    this.#queued = counter('lockq_queued_total', 'Acquires that joined a queue.');
    this.#releases = counter('lockq_releases_total', 'Holds released by their holder.');
    this.#errors = new Counter({
      name: 'lockq_errors_total',
      help: 'Error answers by code: denials (LOCK_BUSY, QUEUE_FULL, WAIT_TIMEOUT, ...) and input errors.',
      labelNames: ['partition', 'code'],
      registers,
    });
    this.#leaseExpiries = counter('lockq_lease_expiries_total', 'Holds lost because their lease ran out.');
    this.#sessionExpiries = counter(
      'lockq_session_expiries_total',
      "Holds lost because their owner's session expired (one per hold).",
    );
    this.#waitS = new Histogram({
      name: 'lockq_wait_seconds',
      help: 'Time from acquire to grant; immediate grants observe 0.',
      labelNames: ['partition'],
      buckets: [...(options.waitBucketsS ?? DEFAULT_WAIT_BUCKETS_S)],
      registers,
    });
    this.#holdS = new Histogram({
      name: 'lockq_hold_seconds',
      help: 'Time from grant to release or loss of a hold.',
      labelNames: ['partition'],
      buckets: [...(options.holdBucketsS ?? DEFAULT_HOLD_BUCKETS_S)],
      registers,
    });
    this.#reconnects = new Counter({
      name: 'lockq_transport_reconnects_total',
      help: 'Times the transport re-established its broker connection.',
      registers,
    });

    // Gauges and totals the coordinator already keeps are read at scrape time, not on the hot path.
    const source = (): MetricsSource | undefined => this.#source;
    const gauge = (name: string, help: string, pick: (c: PartitionCounts) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['partition'],
        registers,
        collect() {
          for (const [p, c] of source()?.counts() ?? []) this.set({ partition: String(p) }, pick(c));
        },
      });
    gauge('lockq_locks', 'Locks with a holder or a waiter.', (c) => c.locks);
    gauge('lockq_holds', 'Holds in force.', (c) => c.holds);
    gauge('lockq_waiters', 'Requests waiting in queues (queue depth).', (c) => c.waiters);
    gauge('lockq_sessions', 'Open worker sessions.', (c) => c.sessions);
    gauge('lockq_last_token', 'Highest fencing token issued.', (c) => c.lastToken);
    const total = (name: string, help: string, read: (s: MetricsSource['stats']) => number) => {
      let seen = 0;
      return new Counter({
        name,
        help,
        registers,
        collect() {
          const from = source();
          if (from === undefined) return;
          const now = read(from.stats);
          if (now > seen) this.inc(now - seen);
          seen = now;
        },
      });
    };
    total('lockq_dead_lettered_total', 'Requests parked on the dead-letter destination.', (s) => s.deadLettered);
    total('lockq_rejected_total', 'Requests the codec refused (answered with an error or dead-lettered).', (s) => s.rejected);

    if (options.processMetrics === true) collectDefaultMetrics({ register: this.registry });
  }

  /** Lets scrapes read the coordinator's counts and totals; also zero-fills its partitions' series. */
  attach(source: MetricsSource): void {
    this.#source = source;
    for (const p of source.options.ownPartitions) this.#partition(p);
  }

  /** Counts a transport reconnect; the runtime calls it from the transport's reconnect event. */
  reconnected(): void {
    this.#reconnects.inc();
  }

  /** The exposition text of every metric. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** {@link CoordinatorObserver}: one pass over the decisions; counters are bumped once per batch. */
  batch(partition: number, requests: number, decisions: readonly Decision[]): void {
    const m = this.#byPartition[partition] ?? this.#partition(partition);
    let grants = 0;
    let queued = 0;
    let releases = 0;
    let leaseExpiries = 0;
    let sessionExpiries = 0;
    for (const d of decisions) {
      if (d.type !== 'reply') continue;
      const body = d.body;
      switch (body.type) {
        case 'granted':
          grants++;
          m.waitS.observe((d.waitedMs ?? 0) / 1000);
          break;
        case 'queued':
          queued++;
          break;
        case 'released':
          releases++;
          if (d.heldMs !== undefined) m.holdS.observe(d.heldMs / 1000);
          break;
        case 'lost':
          if (body.reason === 'LEASE_EXPIRED') leaseExpiries++;
          else sessionExpiries++;
          if (d.heldMs !== undefined) m.holdS.observe(d.heldMs / 1000);
          break;
        case 'error':
          this.#error(m, body.code).inc();
          break;
        default:
      }
    }
    if (requests > 0) {
      m.requests.inc(requests);
      m.batches.inc();
      m.batchSize.observe(requests);
    }
    if (grants > 0) m.grants.inc(grants);
    if (queued > 0) m.queued.inc(queued);
    if (releases > 0) m.releases.inc(releases);
    if (leaseExpiries > 0) m.leaseExpiries.inc(leaseExpiries);
    if (sessionExpiries > 0) m.sessionExpiries.inc(sessionExpiries);
  }

  #partition(partition: number): PartitionMetrics {
    const existing = this.#byPartition[partition];
    if (existing !== undefined) return existing;
    const label = String(partition);
    const m: PartitionMetrics = {
      label,
      requests: this.#requests.labels(label),
      batches: this.#batches.labels(label),
      batchSize: this.#batchSize.labels(label),
      grants: this.#grants.labels(label),
      queued: this.#queued.labels(label),
      releases: this.#releases.labels(label),
      leaseExpiries: this.#leaseExpiries.labels(label),
      sessionExpiries: this.#sessionExpiries.labels(label),
      waitS: this.#waitS.labels(label),
      holdS: this.#holdS.labels(label),
      errors: new Map(),
    };
    // Series exist from the start, so rate() has a zero to begin from.
    for (const c of [m.requests, m.batches, m.grants, m.queued, m.releases, m.leaseExpiries, m.sessionExpiries]) c.inc(0);
    this.#waitS.zero({ partition: label });
    this.#holdS.zero({ partition: label });
    this.#batchSize.zero({ partition: label });
    this.#byPartition[partition] = m;
    return m;
  }

  #error(m: PartitionMetrics, code: string): Inc {
    let c = m.errors.get(code);
    if (c === undefined) {
      c = this.#errors.labels(m.label, code);
      m.errors.set(code, c);
    }
    return c;
  }
}
