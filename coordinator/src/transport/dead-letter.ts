import { checkInteger } from '@lockq/protocol';

/**
 * Bounds on what the dead-letter destination keeps. Poison is evidence for an operator, not
 * data: a sender must not be able to fill the broker's memory or disk by sending it.
 */
export interface DeadLetterBounds {
  /**
   * Dead letters kept; past it the oldest are dropped (RabbitMQ: `x-max-length` with
   * `drop-head` on the dead-letter queue). @defaultValue 10000
   */
  readonly deadLetterMaxLength?: number;
  /**
   * Bytes of a poison body the coordinator keeps when it parks one; the rest is cut off and the
   * original length recorded (RabbitMQ: header `x-lockq-original-bytes`). @defaultValue 1024
   */
  readonly deadLetterBodyBytes?: number;
}

export const DEFAULT_DEAD_LETTER_MAX_LENGTH = 10_000;
export const DEFAULT_DEAD_LETTER_BODY_BYTES = 1024;

export function resolveDeadLetterBounds(o: DeadLetterBounds): Required<DeadLetterBounds> {
  return {
    deadLetterMaxLength: checkInteger('deadLetterMaxLength', o.deadLetterMaxLength ?? DEFAULT_DEAD_LETTER_MAX_LENGTH, 1),
    deadLetterBodyBytes: checkInteger('deadLetterBodyBytes', o.deadLetterBodyBytes ?? DEFAULT_DEAD_LETTER_BODY_BYTES, 0),
  };
}

/** The first `maxBytes` of `body` (a view, not a copy): what a dead letter keeps of it. */
export function deadLetterPrefix(body: Uint8Array, maxBytes: number): Uint8Array {
  return body.byteLength <= maxBytes ? body : body.subarray(0, maxBytes);
}
