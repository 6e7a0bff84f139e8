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
  /** On `RATE_LIMITED`: how long to wait before sending again, in ms (1 ms – 1 min). */
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message?: string, options?: ErrorOptions & { readonly field?: string; readonly retryAfterMs?: number }) {
    super(message ?? ERROR_CODES[code].text, options);
    this.code = code;
    this.retriable = ERROR_CODES[code].retriable;
    this.field = options?.field;
    this.retryAfterMs = options?.retryAfterMs;
  }
}

/** The longest `retryAfterMs` the SDK heeds: a reply cannot make a worker wait longer than this. */
const MAX_RETRY_AFTER_MS = 60_000;

/** The one place a wire code becomes an error object, for the SDK and the CLI alike. */
export function errorFromWire(code: unknown, message: unknown, field?: unknown, retryAfterMs?: unknown): LockqError {
  const c: ErrorCode = isErrorCode(code) ? code : 'TRANSPORT_ERROR';
  const text = typeof message === 'string' && message !== '' ? message : ERROR_CODES[c].text;
  const after =
    typeof retryAfterMs === 'number' && Number.isFinite(retryAfterMs) ? Math.min(MAX_RETRY_AFTER_MS, Math.max(1, Math.ceil(retryAfterMs))) : undefined;
  return new LockqError(c, text, {
    ...(typeof field === 'string' ? { field } : {}),
    ...(after === undefined ? {} : { retryAfterMs: after }),
  });
}
