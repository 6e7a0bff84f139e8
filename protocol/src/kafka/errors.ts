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

/** Node's codes for a broker certificate that did not verify: not signed by a trusted CA, expired. */
const UNTRUSTED_CODES: ReadonlySet<string> = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
]);

/**
 * What to do about a `kafkas://` connection that failed on TLS, for the message of the error that
 * stops a transport opening; undefined when `err` is no TLS failure, or the URL is `kafka://`
 * (`tls` undefined). kafkajs keeps Node's error code on its connection error; a broker with
 * `ssl.client.auth=required` answers a missing or unknown client certificate with an alert, or
 * (TLS 1.3, when the client wrote first) by closing the connection.
 */
export function kafkaTlsHint(tls: { readonly ca?: unknown; readonly cert?: unknown } | undefined, err: unknown): string | undefined {
  if (tls === undefined) return undefined;
  const codes: string[] = [];
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    if (typeof e.code === 'string') codes.push(e.code);
    e = e.cause as typeof e;
  }
  const trust = tls.ca === undefined ? 'give tls.ca (--tls-ca) the CA that signed it, or set NODE_EXTRA_CA_CERTS' : 'tls.ca (--tls-ca) must hold the CA that signed it';
  if (codes.some((c) => UNTRUSTED_CODES.has(c))) return `the broker's certificate did not verify: ${trust}`;
  if (codes.includes('ERR_TLS_CERT_ALTNAME_INVALID')) {
    return "the broker's certificate does not name the host connected to (the URL's for a bootstrap broker, the advertised listener's for the others)";
  }
  if (codes.includes('ERR_SSL_WRONG_VERSION_NUMBER')) return 'the listener does not speak TLS: use kafka:// for a plaintext listener';
  if (codes.some((c) => /ALERT_(BAD_CERTIFICATE|CERTIFICATE_REQUIRED|UNKNOWN_CA|CERTIFICATE_UNKNOWN)$/.test(c) || c === 'ECONNRESET' || c === 'EPIPE')) {
    return tls.cert === undefined
      ? 'the broker may require a client certificate (ssl.client.auth=required): give tls.cert and tls.key (--tls-cert, --tls-key)'
      : "the broker may not accept this client certificate: it must be signed by a CA in the broker's ssl.truststore";
  }
  return undefined;
}
