import type { PartitionCounts } from '@lockq/protocol';
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { Decision } from '../core/index.js';
import type { CoordinatorObserver } from '../runtime/options.js';
import type { PartitionStats } from '../runtime/stats.js';
import { CountedHistogram, type HistogramSeries } from './counted-histogram.js';

/** What scrapes read; a {@link Coordinator} is one. */
export interface MetricsSource {
  counts(): Map<number, PartitionCounts>;
  readonly stats: { partitions(): [number, PartitionStats][] };
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

/** One partition's histogram series: the only thing the hot path touches (typed-array bumps). */
interface PartitionSeries {
  readonly batchSize: HistogramSeries;
  readonly waitS: HistogramSeries;
  readonly holdS: HistogramSeries;
}

type StatName = Exclude<keyof PartitionStats, 'errors' | 'forbidden' | 'count'>;

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
  readonly #byPartition: (PartitionSeries | undefined)[] = [];
  readonly #batchSize: CountedHistogram<'partition'>;
  readonly #waitS: CountedHistogram<'partition'>;
  readonly #holdS: CountedHistogram<'partition'>;
  readonly #reconnects: Counter;
  #source: MetricsSource | undefined;

  constructor(options: CoordinatorMetricsOptions = {}) {
    const registry = this.registry;
    const registers = [registry];
    // Counters are the coordinator's own (CoordinatorStats), read at scrape time.
    const partitions = (): [number, PartitionStats][] => this.#source?.stats.partitions() ?? [];
    const total = (name: string, help: string, field: StatName) =>
      new Counter({
        name,
        help,
        labelNames: ['partition'],
        registers,
        collect() {
          this.reset();
          for (const [p, t] of partitions()) this.inc({ partition: String(p) }, t[field]);
        },
      });
    const histogram = (name: string, help: string, buckets: readonly number[]) =>
      new CountedHistogram({ name, help, label: 'partition', buckets, registry });
    total('lockq_requests_total', 'Requests consumed, including ones refused as malformed.', 'requests');
    total('lockq_batches_total', 'Request batches decided (expiry ticks are not batches).', 'batches');
    this.#batchSize = histogram('lockq_batch_size', 'Requests per batch.', BATCH_SIZE_BUCKETS);
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
        for (const [p, t] of partitions()) for (const [code, n] of t.errors) this.inc({ partition: String(p), code }, n);
      },
    });
    total('lockq_lease_expiries_total', 'Holds lost because their lease ran out.', 'expiries');
    total('lockq_session_expiries_total', "Holds lost because their owner's session expired (one per hold).", 'sessionExpiries');
    this.#waitS = histogram('lockq_wait_seconds', 'Time from acquire to grant; immediate grants observe 0.', options.waitBucketsS ?? DEFAULT_WAIT_BUCKETS_S);
    this.#holdS = histogram('lockq_hold_seconds', 'Time from grant to release or loss of a hold.', options.holdBucketsS ?? DEFAULT_HOLD_BUCKETS_S);
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
    total('lockq_dead_lettered_total', 'Requests parked on the dead-letter destination.', 'deadLettered');
    total('lockq_rejected_total', 'Requests the codec refused (answered with an error or dead-lettered).', 'rejected');
    total('lockq_dead_letters_skipped_total', 'Refused requests acked without parking them (the dead-letter rate was used up).', 'deadLettersSkipped');
    total('lockq_rate_limited_total', "Requests dropped over their principal's rate (RATE_LIMITED).", 'rateLimited');
    new Counter({
      name: 'lockq_forbidden_total',
      help: 'Requests refused FORBIDDEN before the core: no vouched principal, or a reply address outside its namespace.',
      labelNames: ['partition', 'reason'],
      registers,
      collect() {
        this.reset();
        for (const [p, t] of partitions()) for (const [reason, n] of t.forbidden) this.inc({ partition: String(p), reason }, n);
      },
    });
    total('lockq_replies_refused_total', 'Replies the transport refused for good (an address it cannot carry); dropped.', 'repliesRefused');

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

  /** {@link CoordinatorObserver}: one pass over the decisions, typed-array increments only. */
  batch(partition: number, requests: number, decisions: readonly Decision[]): void {
    const t = this.#byPartition[partition] ?? this.#partition(partition);
    if (requests > 0) t.batchSize.observe(requests);
    for (const d of decisions) {
      if (d.type !== 'reply') continue;
      if (d.body.type === 'granted') t.waitS.observe((d.waitedMs ?? 0) / 1000);
      else if (d.heldMs !== undefined) t.holdS.observe(d.heldMs / 1000);
    }
  }

  #partition(partition: number): PartitionSeries {
    const existing = this.#byPartition[partition];
    if (existing !== undefined) return existing;
    const label = String(partition);
    const t = { batchSize: this.#batchSize.series(label), waitS: this.#waitS.series(label), holdS: this.#holdS.series(label) };
    this.#byPartition[partition] = t;
    return t;
  }
}
