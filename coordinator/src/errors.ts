import { LockqError } from '@lockq/protocol';

/** The state store failed (not a fencing): worth retrying with the batch in hand. Code `STORE_UNAVAILABLE`. */
export class StoreUnavailableError extends LockqError {
  override name = 'StoreUnavailableError';
  constructor(message: string, options?: ErrorOptions) {
    super('STORE_UNAVAILABLE', message, options);
  }
}

/** A store write was refused because another coordinator has claimed the partition since. Code `STALE_EPOCH`. */
export class StaleEpochError extends LockqError {
  override name = 'StaleEpochError';
  constructor(message: string, options?: ErrorOptions) {
    super('STALE_EPOCH', message, options);
  }
}
