/**
 * What this client knows of each of its recent requests, by sequence number, in a fixed ring:
 * when it was first sent (looked up for every grant, its `basis`) and whether its final answer has
 * come (looked up for every reply nobody waits for). Both are asked per message, so neither may
 * cost an allocation or a Map; a slot is forgotten when the request `capacity` later reuses it.
 */
export class SendTimes {
  readonly #seqs: Float64Array;
  readonly #times: Float64Array;
  /** Once the request's final answer has come: 2 if it was a grant, else 1. */
  readonly #answered: Uint8Array;

  constructor(capacity = 8192) {
    this.#seqs = new Float64Array(capacity).fill(-1);
    this.#times = new Float64Array(capacity);
    this.#answered = new Uint8Array(capacity);
  }

  /** Records the first send of `seq`; later sends (re-sends after a reconnect) keep the first time. */
  record(seq: number, at: number): void {
    const i = seq % this.#seqs.length;
    if (this.#seqs[i] === seq) return;
    this.#seqs[i] = seq;
    this.#times[i] = at;
    this.#answered[i] = 0;
  }

  /** The first send time of `seq`, or undefined once it has been overwritten. */
  get(seq: number): number | undefined {
    const i = seq % this.#seqs.length;
    return this.#seqs[i] === seq ? this.#times[i] : undefined;
  }

  /** Notes that the final answer to `seq` has come, and whether it was a grant (nothing, once `seq` has been overwritten). */
  markAnswered(seq: number, granted: boolean): void {
    const i = seq % this.#seqs.length;
    if (this.#seqs[i] === seq) this.#answered[i] = granted ? 2 : 1;
  }

  /**
   * True when `seq` was answered with a grant this client took, as far as the ring still
   * remembers: another copy of that grant (a hand-off sends two) is a duplicate, whereas a grant
   * for a request answered otherwise is to be given back.
   */
  tookGrant(seq: number): boolean {
    const i = seq % this.#seqs.length;
    return this.#seqs[i] === seq && this.#answered[i] === 2;
  }
}
