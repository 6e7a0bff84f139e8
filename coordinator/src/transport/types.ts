/**
 * The coordinator side of a broker. It consumes one partition's requests strictly in order and
 * publishes replies; no driver type crosses this interface.
 */
export interface ServerTransport {
  /**
   * Starts consuming the request destination of `partition`. `onBatch` is never called
   * concurrently for one partition, and the next batch comes only after its promise settles.
   * When it resolves the batch is acknowledged; when it rejects the batch goes back to the broker
   * for redelivery (idempotency absorbs the duplicates).
   *
   * `onLost` is called when this consumer loses its place (its channel or connection dropped):
   * the broker may serve another consumer meanwhile, so whatever the caller built from earlier
   * batches may be stale by the time deliveries resume here.
   */
  consume(partition: number, onBatch: (batch: readonly Uint8Array[]) => Promise<void>, onLost?: () => void): Promise<void>;
  /** Publishes replies, in order; resolves once the broker has accepted all of them. */
  publish(replies: readonly Outbound[]): Promise<void>;
  /** Parks a poison request on the dead-letter destination; it is acknowledged with its batch. */
  deadLetter(partition: number, body: Uint8Array, code: string): Promise<void>;
  /** Stops consuming `partition`; a batch in progress finishes. */
  stopConsuming(partition: number): Promise<void>;
  close(): Promise<void>;
}

export interface Outbound {
  readonly to: string;
  readonly body: Uint8Array;
}
