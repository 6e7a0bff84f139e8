import type { AcquireRequest, LockKind, LockMode, ReplyBody, Request } from '@lockq/protocol';

/**
 * A core's whole state as plain JSON: what the durable store keeps, and what a new coordinator
 * restores before replaying the journal. Waiters are listed in queue order and memos oldest
 * first, so a restored core behaves exactly as the original would have.
 */
export interface CoreSnapshot {
  readonly version: 1;
  readonly partition: number;
  readonly partitions: number;
  /** The core's clock when the snapshot was taken. */
  readonly now: number;
  readonly lastToken: number;
  readonly tokenCeiling: number;
  readonly sessions: readonly SessionSnapshot[];
  readonly locks: readonly LockSnapshot[];
  readonly memos: readonly MemoSnapshot[];
  readonly expiredTokens: readonly { readonly token: number; readonly session: string; readonly at: number }[];
}

export interface SessionSnapshot {
  readonly id: string;
  readonly worker: string;
  readonly replyTo: string;
  readonly ttlMs: number;
  readonly deadline: number;
  readonly lastRequest: string;
  readonly settled: number;
}

export interface LockSnapshot {
  readonly name: string;
  readonly kind: LockKind;
  readonly limit: number;
  readonly holders: readonly {
    readonly token: number;
    readonly session: string;
    readonly mode: LockMode;
    readonly permits: number;
    readonly request: string;
    readonly grantedAt: number;
    readonly deadline: number;
  }[];
  readonly waiters: readonly {
    readonly session: string;
    readonly request: AcquireRequest;
    readonly queuedAt: number;
    readonly deadline: number;
  }[];
  /**
   * Mutex only: the waiter named to the holder (by its token) as next, with the token reserved
   * for it. First in line while it waits; `timedOut` once its wait ran out (it is no longer in
   * `waiters` but still gets the lock when the holder is done).
   */
  readonly next?: {
    readonly holder: number;
    readonly session: string;
    readonly request: AcquireRequest;
    readonly queuedAt: number;
    readonly deadline: number;
    readonly token: number;
    readonly timedOut: boolean;
  };
}

export interface MemoSnapshot {
  readonly session: string;
  readonly request: Request;
  readonly at: number;
  /** A final answer, or the hold (by token) or wait (by request id) the request became. */
  readonly outcome: { readonly body: ReplyBody } | { readonly hold: number } | { readonly waiter: string };
}
