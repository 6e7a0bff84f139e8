import type { Decision } from '../core/index.js';

/** Counters a coordinator keeps for its demo line, its metrics and its logs. */
export class CoordinatorStats {
  batches = 0;
  requests = 0;
  /** Requests refused by the codec (answered with an error or dead-lettered). */
  rejected = 0;
  deadLettered = 0;
  grants = 0;
  queued = 0;
  releases = 0;
  /** Leases that ran out (`lost` with LEASE_EXPIRED). */
  expiries = 0;
  /** Holds dropped because their session expired. */
  sessionExpiries = 0;
  readonly errors = new Map<string, number>();

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
