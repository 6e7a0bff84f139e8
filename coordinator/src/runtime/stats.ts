import type { Decision } from '../core/index.js';
import type { ForbiddenReason } from './admission.js';

/** What one partition has done: plain counters, cheap to bump on the hot path. */
export class PartitionStats {
  batches = 0;
  requests = 0;
  /** Requests refused by the codec (answered with an error or dead-lettered). */
  rejected = 0;
  deadLettered = 0;
  /** Refused requests acked without parking them: the dead-letter rate was used up (a flood). */
  deadLettersSkipped = 0;
  /** Requests dropped over their principal's rate (`RATE_LIMITED`), answered or not. */
  rateLimited = 0;
  /** Replies the transport refused for good (an address it cannot carry): dropped, not retried. */
  repliesRefused = 0;
  grants = 0;
  queued = 0;
  releases = 0;
  /** Leases that ran out (`lost` with LEASE_EXPIRED). */
  expiries = 0;
  /** Holds lost because their session expired (or the coordinator shut down without a store). */
  sessionExpiries = 0;
  /** Error answers by code; codes are a closed set, so this stays small. */
  readonly errors = new Map<string, number>();
  /** Requests refused `FORBIDDEN` before the core, by reason (a closed set). */
  readonly forbidden = new Map<ForbiddenReason, number>();

  count(decisions: readonly Decision[]): void {
    for (const d of decisions) {
      if (d.type !== 'reply') continue;
      const body = d.body;
      switch (body.type) {
        case 'granted':
          this.grants++;
          break;
        case 'queued':
          this.queued++;
          break;
        case 'released':
          this.releases++;
          break;
        case 'lost':
          if (body.reason === 'LEASE_EXPIRED') this.expiries++;
          else this.sessionExpiries++;
          break;
        case 'error':
          this.errors.set(body.code, (this.errors.get(body.code) ?? 0) + 1);
          break;
        default:
      }
    }
  }
}

type Counter = Exclude<keyof PartitionStats, 'errors' | 'forbidden' | 'count'>;

/**
 * Counters a coordinator keeps per partition, for its demo line, its metrics (read at scrape
 * time) and its logs; the totals sum the partitions.
 */
export class CoordinatorStats {
  readonly #partitions = new Map<number, PartitionStats>();

  /** The stats of partition `p`, created on first use. */
  partition(p: number): PartitionStats {
    let s = this.#partitions.get(p);
    if (s === undefined) {
      s = new PartitionStats();
      this.#partitions.set(p, s);
    }
    return s;
  }

  /** Every partition's stats, in partition order. */
  partitions(): [number, PartitionStats][] {
    return [...this.#partitions].sort(([a], [b]) => a - b);
  }

  total(counter: Counter): number {
    let n = 0;
    for (const s of this.#partitions.values()) n += s[counter];
    return n;
  }

  get grants(): number {
    return this.total('grants');
  }

  get expiries(): number {
    return this.total('expiries');
  }
}
