import type { Buffer } from 'node:buffer';

/**
 * What the kafka-replies bench (kafka-replies.ts) and its reader processes
 * (kafka-replies-worker.ts) say to each other over IPC, and the clock and record stamp both use.
 * A module of its own so that the parent never evaluates the worker's entry point.
 */

/** Where a reader's replies are. */
export interface ReaderSpec {
  /** The reply address: record key and the reader's group id. */
  readonly address: string;
  readonly topic: string;
  readonly partition: number;
  /** Per-worker layout: the reader creates its topic when it connects and deletes it when it closes. */
  readonly ownTopic: boolean;
}

export type RepliesCommand =
  | { readonly type: 'sync'; readonly id: number }
  | { readonly type: 'connect'; readonly readers: readonly ReaderSpec[]; readonly width: number }
  | { readonly type: 'measure' }
  | { readonly type: 'report' }
  | { readonly type: 'close'; readonly width: number };

export type RepliesReport =
  | { readonly type: 'sync'; readonly id: number; readonly now: number }
  /** Per reader, ms from starting to connect until reading (NaN: failed); failures' messages, a few. */
  | { readonly type: 'connected'; readonly connectMs: readonly number[]; readonly errors: readonly string[] }
  | { readonly type: 'measuring' }
  /**
   * Since `measure`: latencies (ms, this process's clock minus the send time in the record),
   * records fetched (own and others'), CPU seconds of this process.
   */
  | { readonly type: 'report'; readonly latencies: readonly number[]; readonly fetched: number; readonly own: number; readonly cpuSeconds: number }
  | { readonly type: 'closed'; readonly closeMs: readonly number[] };

/** Wall-clock ms with sub-millisecond resolution; comparable across processes up to a constant offset. */
export const clock = () => performance.timeOrigin + performance.now();

/** The first 8 bytes of a reply: the send time on the sender's clock. */
export function sentAt(value: Buffer | null): number {
  return value === null || value.length < 8 ? Number.NaN : value.readDoubleBE(0);
}
