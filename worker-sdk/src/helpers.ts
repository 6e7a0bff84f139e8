import type { Lease } from './lease.js';
import type { AcquireOptions, LockContext, Locking } from './lock-api.js';

/**
 * A counting semaphore: at most `limit` permits held at once, granted in FIFO order. A request
 * for several permits waits at the head until they are all free (no starvation of large requests).
 *
 * @example
 * const renders = client.semaphore('pdf-render', { limit: 8 });
 * await renders.withPermit(async ({ signal }) => render(doc, { signal }));
 */
export class Semaphore {
  readonly name: string;
  readonly limit: number;
  readonly #client: Locking;

  constructor(client: Locking, name: string, limit: number) {
    this.#client = client;
    this.name = name;
    this.limit = limit;
  }

  /** Waits for `permits` (default 1) permits. */
  acquire(options: AcquireOptions & { readonly permits?: number } = {}): Promise<Lease> {
    return this.#client.acquire(this.name, options, this.#spec(options.permits));
  }

  /** Takes the permits only if they are free and nobody waits; null otherwise. */
  tryAcquire(options: Omit<AcquireOptions, 'waitMs'> & { readonly permits?: number } = {}): Promise<Lease | null> {
    return this.#client.tryAcquire(this.name, options, this.#spec(options.permits));
  }

  /** Runs `routine` holding the permits, renewing and releasing as withLock does. */
  withPermit<T>(routine: (ctx: LockContext) => Promise<T>, options: AcquireOptions & { readonly permits?: number } = {}): Promise<T> {
    return this.#client.withLease(this.acquire({ ...options, autoRenew: true }), routine);
  }

  #spec(permits = 1) {
    return { kind: 'semaphore', mode: 'shared', limit: this.limit, permits } as const;
  }
}

/**
 * A read-write lock: shared holders together, or one exclusive holder. Strict FIFO: a reader
 * queued behind a waiting writer waits for it, so writers never starve.
 */
export class ReadWriteLock {
  readonly name: string;
  readonly #client: Locking;

  constructor(client: Locking, name: string) {
    this.#client = client;
    this.name = name;
  }

  read(options: AcquireOptions = {}): Promise<Lease> {
    return this.#client.acquire(this.name, options, READ);
  }
  write(options: AcquireOptions = {}): Promise<Lease> {
    return this.#client.acquire(this.name, options, WRITE);
  }
  tryRead(options: Omit<AcquireOptions, 'waitMs'> = {}): Promise<Lease | null> {
    return this.#client.tryAcquire(this.name, options, READ);
  }
  tryWrite(options: Omit<AcquireOptions, 'waitMs'> = {}): Promise<Lease | null> {
    return this.#client.tryAcquire(this.name, options, WRITE);
  }
  withRead<T>(routine: (ctx: LockContext) => Promise<T>, options: AcquireOptions = {}): Promise<T> {
    return this.#client.withLease(this.read({ ...options, autoRenew: true }), routine);
  }
  withWrite<T>(routine: (ctx: LockContext) => Promise<T>, options: AcquireOptions = {}): Promise<T> {
    return this.#client.withLease(this.write({ ...options, autoRenew: true }), routine);
  }
}

const READ = Object.freeze({ kind: 'rwlock', mode: 'shared' } as const);
const WRITE = Object.freeze({ kind: 'rwlock', mode: 'exclusive' } as const);
