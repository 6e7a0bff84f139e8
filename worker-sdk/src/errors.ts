import { LockqError } from '@lockq/protocol';

export { errorFromWire, LockqError } from '@lockq/protocol';

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
