/**
 * The coordinator side of a broker (the seam is written down in docs/transports.md). It consumes
 * one partition's requests strictly in order, in batches, and publishes replies; bytes and
 * topology names (`@lockq/protocol`'s `requestDestination`, `deadLetterDestination`) cross it,
 * no driver type does. Every adapter passes `defineTransportContract` in
 * `test/transport-contract.ts`.
 *
 * Reconnecting is the adapter's job: after a lost connection it connects again by itself (with
 * the shared retry policy), consumes every partition it was consuming, and calls `onLost` for
 * each of them on the way; meanwhile `publish` and `deadLetter` reject.
 */
export interface ServerTransport {
  /**
   * The prefix of every destination name (`@lockq/protocol`'s topology): a coordinator that checks
   * identity answers only to reply addresses under `replyNamespace(principal, prefix)`.
   * @defaultValue `'lockq'`
   */
  readonly prefix?: string;
  /**
   * `false` when the broker cannot say who sent a request (Kafka: a record does not carry its
   * producer's principal), so batches never come with `principals` and a coordinator refuses
   * identity `required` on it (docs/security.md §3). @defaultValue the transport may vouch
   * (RabbitMQ's `user_id`, memory)
   */
  readonly vouchesForSenders?: false;
  /**
   * Starts consuming the request destination of `partition` (declaring it as the broker needs).
   * Requests come in the order the broker holds them, each at least once. `onBatch` gets the
   * requests delivered since the last batch, in order; it is never called concurrently for one
   * partition, and the next batch comes only after its promise settles. When it resolves the
   * batch is acknowledged (and not delivered again); when it rejects, the batch and everything
   * delivered behind it go back to the broker and are redelivered, in order, ahead of later
   * requests, after a backoff (idempotency absorbs the duplicates). A standby: a second
   * consumer of one partition (another transport) gets nothing until the active one stops,
   * closes or dies, and then continues where it left off.
   *
   * `onLost` is called when this consumer loses its place (its channel or connection dropped):
   * the broker may serve another consumer meanwhile, so whatever the caller built from earlier
   * batches may be stale by the time deliveries resume here.
   *
   * `onGained` is called when the broker says this consumer has become the partition's active one
   * (Kafka: the group assigned it the partition and its transactional producer is claimed), so
   * the caller can take the partition's state over at once rather than at the next request. A
   * broker that does not say (RabbitMQ's single active consumer) never calls it.
   *
   * Rejects when the broker cannot be reached, or when this transport already consumes
   * `partition`.
   */
  consume(partition: number, onBatch: BatchHandler, onLost?: () => void, onGained?: () => void): Promise<void>;
  /**
   * Publishes replies, in order, and resolves once the broker has accepted every one of them.
   * A reply to an address nobody consumes any more is accepted and dropped.
   *
   * A reply the broker cannot take (an address it cannot carry, a refusal of that very message)
   * never costs the others: the adapter skips it, publishes the rest, and rejects afterwards with
   * an error carrying a {@link PublishRefusal} (read it with {@link publishRefusal}). Any other
   * rejection (not connected, the connection dropped with replies in flight) means some replies
   * may not have reached the broker: publish them again (replies are at least once; the SDK
   * drops duplicates).
   *
   * `partition` is the partition whose batch (or expiry tick) the replies answer. A transport
   * that commits a batch's replies together with its acknowledgement (Kafka: one transaction
   * with the consumed offsets) puts them in that partition's open transaction, and replies of a
   * tick in a transaction of their own; others ignore it.
   */
  publish(replies: readonly Outbound[], partition?: number): Promise<void>;
  /**
   * Parks a poison request on the partition's dead-letter destination with its code; resolves
   * once the broker has it. The request itself is acknowledged with its batch.
   */
  deadLetter(partition: number, body: Uint8Array, code: string): Promise<void>;
  /**
   * Stops consuming `partition`; a batch in progress finishes (and is acknowledged) before this
   * resolves, and requests delivered but not yet handed over go back to the broker, in order.
   * Idempotent.
   */
  stopConsuming(partition: number): Promise<void>;
  /** Stops consuming every partition as `stopConsuming` does, then disconnects. Idempotent. */
  close(): Promise<void>;
}

/**
 * One partition's batch handler. `principals[i]`, when the transport can vouch for senders, is
 * who sent `batch[i]` as the broker validated it (RabbitMQ: the `user_id` property, which the
 * broker checks against the publishing connection's user), or undefined when that message
 * carries no vouched sender. A transport that vouches for nobody passes no `principals`
 * (docs/security.md §5).
 */
export type BatchHandler = (batch: readonly Uint8Array[], principals?: readonly (string | undefined)[]) => Promise<void>;

/** One reply: `body` for the reply address `to` (a request's `replyTo`). */
export interface Outbound {
  readonly to: string;
  readonly body: Uint8Array;
}

/**
 * What a rejection of {@link ServerTransport.publish} carries when the broker refused some of the
 * replies. The RabbitMQ adapter's `AmqpTransportError` has these fields (and `code`
 * `TRANSPORT_ERROR`).
 */
export interface PublishRefusal {
  /**
   * Indexes into the replies given to `publish`, ascending, of those the broker refused: they
   * were not delivered and never will be, so drop them (publishing them again fails again).
   */
  readonly refusedIndexes: readonly number[];
  /**
   * True when every reply not listed was accepted: nothing needs publishing again. False when
   * some of the others may not have been (the connection dropped too): publish those again.
   */
  readonly refused: boolean;
}

/** The {@link PublishRefusal} a `publish` rejection carries, or null when it names no refused reply. */
export function publishRefusal(err: unknown): PublishRefusal | null {
  if (typeof err !== 'object' || err === null) return null;
  const { refused, refusedIndexes } = err as Partial<PublishRefusal>;
  if (!Array.isArray(refusedIndexes) || refusedIndexes.length === 0) return null;
  return { refused: refused === true, refusedIndexes };
}
