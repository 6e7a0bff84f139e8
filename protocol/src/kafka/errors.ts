import { LockqError } from '../errors.js';

/**
 * A Kafka operation failed: not connected, the broker did not take a record in time, the broker
 * refused a record (no such topic or partition, too large), or a coordinator's transactional
 * producer was fenced by a newer owner of its partition. Code `TRANSPORT_ERROR`, retriable.
 */
export class KafkaTransportError extends LockqError {
  override name = 'KafkaTransportError';
  /**
   * The broker refused this very record (see the transports' `send`): it will never be
   * delivered, and retrying it cannot help. @defaultValue false
   */
  readonly refused: boolean;
  /** For a batch of replies: the indexes the broker refused (see `PublishRefusal`). @defaultValue `[]` */
  readonly refusedIndexes: readonly number[];
  /**
   * A coordinator's producer was fenced: another coordinator took the partition over and
   * initialised the same transactional id, so nothing this one writes for it can commit.
   * @defaultValue false
   */
  readonly fenced: boolean;

  constructor(
    message: string,
    options?: ErrorOptions & { readonly refused?: boolean; readonly refusedIndexes?: readonly number[]; readonly fenced?: boolean },
  ) {
    super('TRANSPORT_ERROR', message, options);
    this.refused = options?.refused ?? false;
    this.refusedIndexes = Object.freeze([...(options?.refusedIndexes ?? [])]);
    this.fenced = options?.fenced ?? false;
  }
}

/** The Kafka protocol error name kafkajs gives `err` (or its causes), e.g. `UNKNOWN_TOPIC_OR_PARTITION`. */
export function kafkaErrorType(err: unknown): string | undefined {
  for (let e = err as { type?: unknown; cause?: unknown } | undefined, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if (typeof e.type === 'string') return e.type;
    e = e.cause as typeof e;
  }
  return undefined;
}

/**
 * Error types that mean a transactional producer was fenced: a newer producer with the same
 * transactional id exists (`PRODUCER_FENCED` is what brokers answer on newer request versions).
 */
const FENCED_TYPES: ReadonlySet<string> = new Set(['INVALID_PRODUCER_EPOCH', 'PRODUCER_FENCED', 'INVALID_PRODUCER_ID_MAPPING']);

/** Whether `err` says the producer was fenced by a newer one with its transactional id. */
export function isFencedError(err: unknown): boolean {
  const type = kafkaErrorType(err);
  if (type !== undefined && FENCED_TYPES.has(type)) return true;
  // kafkajs does not know code 90 (PRODUCER_FENCED) by name.
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if (e.code === 90) return true;
    e = e.cause as typeof e;
  }
  return false;
}

/**
 * Error types that refuse the record itself: it was not written and sending it again fails
 * again (a partition the topic does not have, a record over the broker's size limit, a topic
 * this client may not write).
 */
const REFUSED_TYPES: ReadonlySet<string> = new Set([
  'UNKNOWN_TOPIC_OR_PARTITION',
  'MESSAGE_TOO_LARGE',
  'RECORD_LIST_TOO_LARGE',
  'INVALID_RECORD',
  'TOPIC_AUTHORIZATION_FAILED',
  'INVALID_TOPIC_EXCEPTION',
]);

/** Whether `err` refuses the record itself (see {@link REFUSED_TYPES}). */
export function isRefusalError(err: unknown): boolean {
  const type = kafkaErrorType(err);
  return type !== undefined && REFUSED_TYPES.has(type);
}
