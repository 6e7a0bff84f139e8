import type { Lease } from './lease.js';

/** The leases this client holds, by partition and fencing token (each partition has one token counter). */
export class HeldLeases {
  readonly #byKey = new Map<string, Lease>();

  add(lease: Lease): void {
    this.#byKey.set(`${lease.partition}:${lease.token}`, lease);
  }

  get(partition: number, token: number): Lease | undefined {
    return this.#byKey.get(`${partition}:${token}`);
  }

  has(partition: number, token: number): boolean {
    return this.#byKey.has(`${partition}:${token}`);
  }

  /** No longer held here (released); a later message about it finds nothing. */
  forget(lease: Lease): void {
    this.#byKey.delete(`${lease.partition}:${lease.token}`);
  }

  /** The coordinator says the hold is gone. */
  lose(partition: number, token: number, reason: string): void {
    const key = `${partition}:${token}`;
    const lease = this.#byKey.get(key);
    if (lease === undefined) return;
    this.#byKey.delete(key);
    lease.lose(reason);
  }

  /** Every lease (on `partition`, if given) is gone: its session ended, or the client closed. */
  loseAll(reason: string, partition?: number): void {
    for (const [key, lease] of this.#byKey) {
      if (partition !== undefined && lease.partition !== partition) continue;
      this.#byKey.delete(key);
      lease.lose(reason);
    }
  }
}
