import { LockqError } from '../errors.js';

/**
 * A broker operation failed: not connected (reconnecting), the connection dropped with the
 * operation in flight, or the broker refused a message (no such queue, queue full, a name it
 * cannot carry). Code `TRANSPORT_ERROR`, retriable.
 */
export class AmqpTransportError extends LockqError {
  override name = 'AmqpTransportError';
  /**
   * The broker refused this very message (see the transports' `send`), or, for a batch (the
   * coordinator's `publish`), every message of the batch that did not go out was refused and
   * the others were accepted: retrying the refused ones cannot help.
   * @defaultValue false
   */
  readonly refused: boolean;
  /**
   * For a batch: the indexes, in the order given, of the messages that were refused (an address
   * the broker cannot carry, a broker nack). Those were not delivered and never will be; every
   * message not listed was accepted when `refused` is true, and may or may not have been when
   * it is false (retry those). Empty for a single message.
   * @defaultValue `[]`
   */
  readonly refusedIndexes: readonly number[];

  constructor(
    message: string,
    options?: ErrorOptions & { readonly refused?: boolean; readonly refusedIndexes?: readonly number[] },
  ) {
    super('TRANSPORT_ERROR', message, options);
    this.refused = options?.refused ?? false;
    this.refusedIndexes = Object.freeze([...(options?.refusedIndexes ?? [])]);
  }
}
