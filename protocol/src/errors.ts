import { ERROR_CODES, type ErrorCode, isErrorCode } from './codes.js';

/**
 * Every error lockq raises, on either side. `code` is stable (see the table in docs/protocol.md) and
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

/** The one place a wire code becomes an error object, for the SDK and the CLI alike. */
export function errorFromWire(code: unknown, message: unknown, field?: unknown): LockqError {
  const c: ErrorCode = isErrorCode(code) ? code : 'TRANSPORT_ERROR';
  const text = typeof message === 'string' && message !== '' ? message : ERROR_CODES[c].text;
  return typeof field === 'string' ? new LockqError(c, text, { field }) : new LockqError(c, text);
}
