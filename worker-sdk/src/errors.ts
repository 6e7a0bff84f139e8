import { ERROR_CODES, type ErrorCode, isErrorCode } from './protocol/codes.js';

/**
 * Every error the SDK raises. `code` is stable (see the table in docs/protocol.md) and
 * `retriable` says whether the same call may succeed later.
 */
export class LockqError extends Error {
  override name = 'LockqError';
  readonly code: ErrorCode;
  readonly retriable: boolean;
  /** For input errors: the offending field. */
  readonly field: string | undefined;

  constructor(code: ErrorCode, message?: string, options?: ErrorOptions & { readonly field?: string }) {
    super(message ?? ERROR_CODES[code].text, options);
    this.code = code;
    this.retriable = ERROR_CODES[code].retriable;
    this.field = options?.field;
  }
}

/** The lease can no longer be trusted: it expired, was lost with the session, or renewal failed. */
export class LeaseLostError extends LockqError {
  override name = 'LeaseLostError';
  /** What the coordinator said, when it said something (LEASE_EXPIRED, NO_SESSION, NOT_HOLDER). */
  readonly reason: string;
  /** True when only this worker gave up on the lease (its local deadline passed without renewal). */
  readonly local: boolean;

  constructor(lock: string, reason: string, options?: ErrorOptions & { readonly local?: boolean }) {
    super('LEASE_LOST', `lease on ${lock} lost: ${reason}`, options);
    this.reason = reason;
    this.local = options?.local ?? false;
  }
}

/** No answer from the coordinator in time. */
export class LockqTimeoutError extends LockqError {
  override name = 'LockqTimeoutError';
  constructor(message: string) {
    super('TIMEOUT', message);
  }
}

/** The one place a wire code becomes an error object, for the SDK and the CLI alike. */
export function errorFromWire(code: unknown, message: unknown, field?: unknown): LockqError {
  const c: ErrorCode = isErrorCode(code) ? code : 'TRANSPORT_ERROR';
  const text = typeof message === 'string' && message !== '' ? message : ERROR_CODES[c].text;
  return typeof field === 'string' ? new LockqError(c, text, { field }) : new LockqError(c, text);
}
