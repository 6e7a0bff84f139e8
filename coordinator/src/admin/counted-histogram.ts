import type { Metric, Registry } from 'prom-client';

/** One partition's samples: counts per bucket, then sum and count, in one typed array. */
export class HistogramSeries {
  readonly #bounds: Float64Array;
  /** [bucket 0 .. bucket n-1, +Inf bucket, sum, count]; buckets are not cumulative here. */
  readonly values: Float64Array;

  constructor(bounds: Float64Array) {
    this.#bounds = bounds;
    this.values = new Float64Array(bounds.length + 3);
  }

  observe(value: number): void {
    const bounds = this.#bounds;
    const values = this.values;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    values[i] = (values[i] as number) + 1;
    values[bounds.length + 1] = (values[bounds.length + 1] as number) + value;
    values[bounds.length + 2] = (values[bounds.length + 2] as number) + 1;
  }
}

/**
 * A Prometheus histogram with one label, counted in typed arrays and turned into samples only
 * when scraped. prom-client's own `observe()` builds a label hash and objects on every call
 * (about a microsecond each), which is as much as the core spends deciding a request; this one
 * costs a few comparisons. It plugs into a prom-client {@link Registry} through the public
 * `get()` shape every prom-client metric returns (what `getMetricsAsJSON` aggregates).
 */
export class CountedHistogram<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #label: L;
  readonly #bounds: Float64Array;
  readonly #series = new Map<string, HistogramSeries>();

  constructor(options: { name: string; help: string; label: L; buckets: readonly number[]; registry: Registry }) {
    this.name = options.name;
    this.help = options.help;
    this.#label = options.label;
    const sorted = [...options.buckets].sort((a, b) => a - b);
    if (sorted.length === 0 || sorted.some((b) => !Number.isFinite(b))) {
      throw new RangeError(`${options.name}: buckets must be finite numbers, at least one`);
    }
    this.#bounds = Float64Array.from(new Set(sorted));
    // The registry only calls get() and reset(); the cast is for its union of prom-client classes.
    options.registry.registerMetric(this as unknown as Metric);
  }

  /** The series for one label value, created (all zero) on first use; keep it to observe cheaply. */
  series(labelValue: string): HistogramSeries {
    let s = this.#series.get(labelValue);
    if (s === undefined) {
      s = new HistogramSeries(this.#bounds);
      this.#series.set(labelValue, s);
    }
    return s;
  }

  reset(): void {
    for (const s of this.#series.values()) s.values.fill(0);
  }

  async get(): Promise<{
    name: string;
    help: string;
    type: 'histogram';
    aggregator: 'sum';
    values: { labels: Record<string, string | number>; value: number; metricName: string }[];
  }> {
    const bucket = `${this.name}_bucket`;
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    const n = this.#bounds.length;
    for (const [labelValue, s] of this.#series) {
      let cumulative = 0;
      for (let i = 0; i < n; i++) {
        cumulative += s.values[i] as number;
        values.push({ labels: { le: this.#bounds[i] as number, [this.#label]: labelValue }, value: cumulative, metricName: bucket });
      }
      const count = s.values[n + 2] as number;
      values.push({ labels: { le: '+Inf', [this.#label]: labelValue }, value: count, metricName: bucket });
      values.push({ labels: { [this.#label]: labelValue }, value: s.values[n + 1] as number, metricName: `${this.name}_sum` });
      values.push({ labels: { [this.#label]: labelValue }, value: count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
