import type { PartitionCounts } from '@lockq/worker-sdk/protocol';
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { Decision } from '../core/index.js';
import type { CoordinatorObserver } from '../runtime/options.js';
import { CountedHistogram, type HistogramSeries } from './counted-histogram.js';

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

/**
 * One partition's running totals. The observer only bumps these plain fields and typed arrays;
 * prom-client sees them when scraped (prom-client's inc/observe hash labels and allocate on every
 * call, which the hot path cannot afford).
 */
class PartitionTotals {
  readonly label: string;
  requests = 0;
  batches = 0;
  grants = 0;
  queued = 0;
  releases = 0;
  leaseExpiries = 0;
  sessionExpiries = 0;
  /** By error code; codes are a closed set, so this stays small. */
  readonly errors = new Map<string, number>();
  readonly batchSize: HistogramSeries;
  readonly waitS: HistogramSeries;
  readonly holdS: HistogramSeries;

  constructor(label: string, batchSize: HistogramSeries, waitS: HistogramSeries, holdS: HistogramSeries) {
    this.label = label;
    this.batchSize = batchSize;
    this.waitS = waitS;
    this.holdS = holdS;
  }
}

type TotalName = 'requests' | 'batches' | 'grants' | 'queued' | 'releases' | 'leaseExpiries' | 'sessionExpiries';

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
  /** Indexed by partition number (sparse): the hot path's lookup is one array read. */
  readonly #byPartition: (PartitionTotals | undefined)[] = [];
  /** The same totals, in partition order, for scrapes. */
  readonly #partitions: PartitionTotals[] = [];
  readonly #batchSize: CountedHistogram<'partition'>;
  readonly #waitS: CountedHistogram<'partition'>;
  readonly #holdS: CountedHistogram<'partition'>;
  readonly #reconnects: Counter;
  #source: MetricsSource | undefined;

  constructor(options: CoordinatorMetricsOptions = {}) {
    const registry = this.registry;
    const registers = [registry];
    const partitions = (): readonly PartitionTotals[] => this.#partitions;
    const total = (name: string, help: string, field: TotalName) =>
      new Counter({
        name,
        help,
        labelNames: ['partition'],
        registers,
        collect() {
          this.reset();
          for (const t of partitions()) this.inc({ partition: t.label }, t[field]);
        },
      });
    total('lockq_requests_total', 'Requests consumed, including ones refused as malformed.', 'requests');
    total('lockq_batches_total', 'Request batches decided (expiry ticks are not batches).', 'batches');
    this.#batchSize = new CountedHistogram({
      name: 'lockq_batch_size',
      help: 'Requests per batch.',
      label: 'partition',
      buckets: BATCH_SIZE_BUCKETS,
      registry,
    });
    total('lockq_grants_total', 'Holds granted, at once or from the queue.', 'grants');
    total('lockq_queued_total', 'Acquires that joined a queue.', 'queued');
    total('lockq_releases_total', 'Holds released by their holder.', 'releases');
    new Counter({
      name: 'lockq_errors_total',
      help: 'Error answers by code: denials (LOCK_BUSY, QUEUE_FULL, WAIT_TIMEOUT, ...) and input errors.',
      labelNames: ['partition', 'code'],
      registers,
      collect() {
        this.reset();
        for (const t of partitions()) for (const [code, n] of t.errors) this.inc({ partition: t.label, code }, n);
      },
    });
    total('lockq_lease_expiries_total', 'Holds lost because their lease ran out.', 'leaseExpiries');
    total('lockq_session_expiries_total', "Holds lost because their owner's session expired (one per hold).", 'sessionExpiries');
    this.#waitS = new CountedHistogram({
      name: 'lockq_wait_seconds',
      help: 'Time from acquire to grant; immediate grants observe 0.',
      label: 'partition',
      buckets: options.waitBucketsS ?? DEFAULT_WAIT_BUCKETS_S,
      registry,
    });
    this.#holdS = new CountedHistogram({
      name: 'lockq_hold_seconds',
      help: 'Time from grant to release or loss of a hold.',
      label: 'partition',
      buckets: options.holdBucketsS ?? DEFAULT_HOLD_BUCKETS_S,
      registry,
    });
    this.#reconnects = new Counter({
      name: 'lockq_transport_reconnects_total',
      help: 'Times the transport re-established its broker connection.',
      registers,
    });

    // Gauges and totals the coordinator already keeps are read at scrape time.
    const source = (): MetricsSource | undefined => this.#source;
    const gauge = (name: string, help: string, pick: (c: PartitionCounts) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['partition'],
        registers,
        collect() {
          this.reset();
          for (const [p, c] of source()?.counts() ?? []) this.set({ partition: String(p) }, pick(c));
        },
      });
    gauge('lockq_locks', 'Locks with a holder or a waiter.', (c) => c.locks);
    gauge('lockq_holds', 'Holds in force.', (c) => c.holds);
    gauge('lockq_waiters', 'Requests waiting in queues (queue depth).', (c) => c.waiters);
    gauge('lockq_sessions', 'Open worker sessions.', (c) => c.sessions);
    gauge('lockq_last_token', 'Highest fencing token issued.', (c) => c.lastToken);
    const stat = (name: string, help: string, read: (s: MetricsSource['stats']) => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read(source()?.stats ?? { deadLettered: 0, rejected: 0 }));
        },
      });
    stat('lockq_dead_lettered_total', 'Requests parked on the dead-letter destination.', (s) => s.deadLettered);
    stat('lockq_rejected_total', 'Requests the codec refused (answered with an error or dead-lettered).', (s) => s.rejected);

    if (options.processMetrics === true) collectDefaultMetrics({ register: registry });
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

  /** {@link CoordinatorObserver}: one pass over the decisions, plain increments only. */
  batch(partition: number, requests: number, decisions: readonly Decision[]): void {
    const t = this.#byPartition[partition] ?? this.#partition(partition);
    if (requests > 0) {
      t.requests += requests;
      t.batches++;
      t.batchSize.observe(requests);
    }
    for (const d of decisions) {
      if (d.type !== 'reply') continue;
      const body = d.body;
      switch (body.type) {
        case 'granted':
          t.grants++;
          t.waitS.observe((d.waitedMs ?? 0) / 1000);
          break;
        case 'queued':
          t.queued++;
          break;
        case 'released':
          t.releases++;
          if (d.heldMs !== undefined) t.holdS.observe(d.heldMs / 1000);
          break;
        case 'lost':
          if (body.reason === 'LEASE_EXPIRED') t.leaseExpiries++;
          else t.sessionExpiries++;
          if (d.heldMs !== undefined) t.holdS.observe(d.heldMs / 1000);
          break;
        case 'error':
          t.errors.set(body.code, (t.errors.get(body.code) ?? 0) + 1);
          break;
        default:
      }
    }
  }

  #partition(partition: number): PartitionTotals {
    const existing = this.#byPartition[partition];
    if (existing !== undefined) return existing;
    const label = String(partition);
    const t = new PartitionTotals(label, this.#batchSize.series(label), this.#waitS.series(label), this.#holdS.series(label));
    this.#byPartition[partition] = t;
    this.#partitions.push(t);
    this.#partitions.sort((a, b) => Number(a.label) - Number(b.label));
    return t;
  }
}
