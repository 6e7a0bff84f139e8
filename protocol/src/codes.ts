/**
 * Every error code lockq puts on the wire or raises in the SDK, with whether retrying the same
 * call later can succeed. This one table is shared by the coordinator, the SDK and the CLI, and
 * documented in docs/protocol.md; codes are stable strings and never change meaning.
 */
export const ERROR_CODES = {
  // Input: the request itself is wrong. Nothing changed; sending it again fails again.
  MALFORMED: { retriable: false, text: 'message is not a JSON object' },
  MESSAGE_TOO_LARGE: { retriable: false, text: 'message exceeds the size limit' },
  UNSUPPORTED_VERSION: { retriable: false, text: 'protocol version is not supported' },
  UNKNOWN_OP: { retriable: false, text: 'unknown operation' },
  INVALID_FIELD: { retriable: false, text: 'a field is missing, of the wrong type, or not allowed' },
  NAME_INVALID: { retriable: false, text: 'lock name is empty, too long or has a character outside 0x21-0x7E' },
  TTL_OUT_OF_RANGE: { retriable: false, text: 'ttlMs is out of range' },
  WAIT_OUT_OF_RANGE: { retriable: false, text: 'waitMs is out of range' },
  SESSION_TTL_OUT_OF_RANGE: { retriable: false, text: 'sessionTtlMs is out of range' },
  LIMIT_OUT_OF_RANGE: { retriable: false, text: 'semaphore limit is out of range' },
  PERMITS_OUT_OF_RANGE: { retriable: false, text: 'permits is out of range or above the limit' },
  WRONG_PARTITION: { retriable: false, text: 'request reached a partition that does not own the lock' },
  FORBIDDEN: { retriable: false, text: 'refused because of who sent it or where it wants answers (docs/security.md)' },
  // State: the request is well formed but conflicts with what the coordinator knows.
  KIND_MISMATCH: { retriable: false, text: 'lock is in use as another kind (mutex, rwlock, semaphore)' },
  LIMIT_MISMATCH: { retriable: false, text: 'semaphore is in use with another limit' },
  NOT_HOLDER: { retriable: false, text: 'no hold with that token for this session' },
  LEASE_EXPIRED: { retriable: false, text: 'the lease expired before this request' },
  NOT_WAITING: { retriable: false, text: 'no waiting request with that id' },
  IDEMPOTENCY_CONFLICT: { retriable: false, text: 'request id reused with a different payload' },
  CANCELLED: { retriable: false, text: 'the waiting request was cancelled' },
  QUOTA_EXCEEDED: { retriable: false, text: "the sender's principal is at a quota on this partition (field says which)" },
  // Backpressure and timing: try again later.
  LOCK_BUSY: { retriable: true, text: 'lock is held or has waiters (try-lock)' },
  QUEUE_FULL: { retriable: true, text: 'too many waiters on this lock' },
  WAIT_TIMEOUT: { retriable: true, text: 'not granted before waitMs elapsed' },
  TOO_MANY_HOLDS: { retriable: true, text: 'this session holds the maximum number of locks' },
  TOO_MANY_WAITS: { retriable: true, text: 'this session has the maximum number of waiting requests' },
  TOO_MANY_SESSIONS: { retriable: true, text: 'the partition has the maximum number of sessions' },
  RATE_LIMITED: { retriable: true, text: "the sender's principal sends faster than its rate; retry after retryAfterMs" },
  NO_SESSION: { retriable: true, text: 'the session is unknown or expired; open a new one' },
  SHUTTING_DOWN: { retriable: true, text: 'the coordinator is shutting down' },
  // Raised by the SDK only, never sent by a coordinator.
  TIMEOUT: { retriable: true, text: 'no answer from the coordinator in time' },
  LEASE_LOST: { retriable: true, text: 'the lease can no longer be trusted' },
  ABORTED: { retriable: false, text: 'the caller aborted the request' },
  CLIENT_CLOSED: { retriable: false, text: 'the client is closed' },
  TRANSPORT_ERROR: { retriable: true, text: 'the broker connection failed' },
  // Raised inside the coordinator only, never sent to a worker.
  STORE_UNAVAILABLE: { retriable: true, text: 'the state store could not be reached' },
  STALE_EPOCH: { retriable: false, text: 'another coordinator has claimed the partition since' },
} as const satisfies Record<string, { readonly retriable: boolean; readonly text: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}
