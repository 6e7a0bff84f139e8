/**
 * A resource protected by fencing tokens, as a user's database would be: it refuses any write
 * whose token is lower than the highest it has accepted for that key.
 */
export class FencedCounter {
  readonly #highest = new Map<string, number>();
  readonly #values = new Map<string, number>();
  accepted = 0;
  rejected = 0;

  /** Read-modify-write under `token`; false (and nothing written) when the token is stale. */
  increment(key: string, token: number, read: number): boolean {
    if (token < (this.#highest.get(key) ?? 0)) {
      this.rejected++;
      return false;
    }
    this.#highest.set(key, token);
    this.#values.set(key, read + 1);
    this.accepted++;
    return true;
  }

  read(key: string): number {
    return this.#values.get(key) ?? 0;
  }
}
