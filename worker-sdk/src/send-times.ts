/**
 * When this client first sent each of its recent requests, by sequence number, in a fixed ring:
 * looked up for every grant (its `basis`), so it must cost no allocation and no Map.
 */
export class SendTimes {
  readonly #seqs: Float64Array;
  readonly #times: Float64Array;

  constructor(capacity = 8192) {
    this.#seqs = new Float64Array(capacity).fill(-1);
    this.#times = new Float64Array(capacity);
  }

  /** Records the first send of `seq`; later sends (re-sends after a reconnect) keep the first time. */
  record(seq: number, at: number): void {
    const i = seq % this.#seqs.length;
    if (this.#seqs[i] === seq) return;
    this.#seqs[i] = seq;
    this.#times[i] = at;
  }

  /** The first send time of `seq`, or undefined once it has been overwritten. */
  get(seq: number): number | undefined {
    const i = seq % this.#seqs.length;
    return this.#seqs[i] === seq ? this.#times[i] : undefined;
  }
}
