import type { LockKind, LockMode } from '@lockq/protocol';
import type { Lease } from './lease.js';

/** Options of one acquire. */
export interface AcquireOptions {
  /** Lease length. @defaultValue the client's `defaultTtlMs` (30000) */
  readonly ttlMs?: number;
  /** How long to wait in the queue; 0 = try once. @defaultValue the client's `defaultWaitMs` (30000) */
  readonly waitMs?: number;
  /** Aborting it cancels the waiting request (the acquire rejects with ABORTED). */
  readonly signal?: AbortSignal;
  /** Extend the lease automatically until it is released. @defaultValue false (true in withLock) */
  readonly autoRenew?: boolean;
  /** Told the request's place in the queue (1 = next) when it has to wait. */
  readonly onQueued?: (position: number) => void;
}

/** What kind of hold to ask for; the helpers (semaphore, rwlock) fill this in. */
export interface LockSpec {
  readonly kind: LockKind;
  readonly mode: LockMode;
  /** Semaphore only. */
  readonly limit?: number;
  /** Semaphore only. @defaultValue 1 */
  readonly permits?: number;
}

/** What a `withLock` routine receives. */
export interface LockContext {
  /** The fencing token: hand it to the resource, which must refuse lower ones. */
  readonly token: number;
  /** Aborts the moment the lease can no longer be trusted. */
  readonly signal: AbortSignal;
  readonly lease: Lease;
}

/** What the semaphore and read-write lock helpers build on; {@link LockClient} provides it. */
export interface Locking {
  acquire(name: string, options: AcquireOptions, spec: LockSpec): Promise<Lease>;
  tryAcquire(name: string, options: Omit<AcquireOptions, 'waitMs'>, spec: LockSpec): Promise<Lease | null>;
  withLease<T>(acquired: Promise<Lease>, routine: (ctx: LockContext) => Promise<T>): Promise<T>;
}
