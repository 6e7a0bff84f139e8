/**
 * Hard ranges of the wire protocol. A coordinator may be configured tighter (see its options),
 * never looser. Every range is inclusive.
 */
export const PROTOCOL_VERSION = 1;

export const RANGES = {
  /** Lock names, worker ids, session ids, request ids and reply addresses: printable ASCII without space. */
  lockName: { min: 1, max: 256 },
  id: { min: 1, max: 128 },
  /**
   * 255, not 256: an AMQP routing key (and queue name) is a short string of at most 255 bytes, and
   * an address a broker cannot take would leave the answer unpublishable. Printable ASCII, so
   * characters are bytes. A request over it has no usable address and is dead-lettered.
   */
  replyTo: { min: 1, max: 255 },
  ttlMs: { min: 10, max: 86_400_000 },
  waitMs: { min: 0, max: 3_600_000 },
  sessionTtlMs: { min: 100, max: 600_000 },
  limit: { min: 1, max: 1_000_000 },
  partitions: { min: 1, max: 4096 },
} as const;

/** Messages larger than this are never accepted, whatever a coordinator is configured to. */
export const MAX_MESSAGE_BYTES = 65_536;
/** An `inspected` reply lists at most this many holders and waiters (it carries the totals). */
export const INSPECT_MAX_LISTED = 1000;

/** The default size limit of a coordinator. */
export const DEFAULT_MAX_MESSAGE_BYTES = 4096;

// 0x21-0x7E: printable ASCII without space, so names survive logs, URLs and every broker's naming.
const PRINTABLE = /^[\x21-\x7e]+$/;

export function isPrintableName(value: string, range: { readonly min: number; readonly max: number }): boolean {
  return value.length >= range.min && value.length <= range.max && PRINTABLE.test(value);
}

/**
 * A hand-off proof (docs/protocol.md §4.3): the first 16 bytes of an HMAC-SHA256, base64url
 * without padding, so exactly 22 characters of `A-Z a-z 0-9 - _`.
 */
const HAND_OFF_PROOF = /^[A-Za-z0-9_-]{22}$/;

/** True for a well-formed hand-off proof (a successor grant's `proof`, a request's `handoff`). */
export function isHandOffProof(value: unknown): value is string {
  return typeof value === 'string' && HAND_OFF_PROOF.test(value);
}

/**
 * A principal: the name a broker or a key vouches for (a RabbitMQ user, docs/security.md §5).
 * No `.` (so `<prefix>.replies.<principal>.` is never a prefix of another principal's names) and
 * no regex metacharacters (principals appear in broker permission patterns).
 */
const PRINCIPAL = /^[A-Za-z0-9_-]{1,64}$/;

/** True for a name that may be a principal. */
export function isPrincipal(value: unknown): value is string {
  return typeof value === 'string' && PRINCIPAL.test(value);
}
