import { ERROR_CODES, type ErrorCode, type LostEvent, type ReplyBody, type Request } from '@lockq/protocol';
import type { Hold, Waiter } from './entities.js';

/**
 * What the core decided. The runtime persists reservations before it publishes any reply.
 * Replies that end a wait or a hold say how long it lasted, for metrics (never on the wire).
 */
export type Decision =
  | {
      readonly type: 'reply';
      readonly to: string;
      readonly body: ReplyBody;
      /** On a grant: how long the request waited in the queue. */
      readonly waitedMs?: number;
      /** On a release or a lost hold: how long it was held. */
      readonly heldMs?: number;
      /**
       * On a `successor` event naming a waiter: that waiter's session, which the runtime binds
       * the grant's hand-off proof to (docs/security.md §6.1). Never on the wire.
       */
      readonly nextSession?: string;
      /** With `nextSession`: that waiter's principal (`""` with identity off). Never on the wire. */
      readonly nextPrincipal?: string;
      /**
       * On an `opened` reply: the session's principal (`""` with identity off), from which and the
       * body's session id the runtime derives the session key it adds to the reply
       * (docs/security.md §6.2). Never on the wire.
       */
      readonly principal?: string;
    }
  | { readonly type: 'reserve-tokens'; readonly ceiling: number };

// The bodies the core answers with, built in one place each.

/** `body` as the answer to `request`: an `opened` one names its session's principal (see `Decision`). */
export function answer(request: Request, body: ReplyBody): Decision {
  const to = request.replyTo;
  return body.type === 'opened' ? { type: 'reply', to, body, principal: request.principal ?? '' } : { type: 'reply', to, body };
}

export function error(re: string, code: ErrorCode, field?: string): ReplyBody {
  const message = ERROR_CODES[code].text;
  return field === undefined ? { type: 'error', re, code, message } : { type: 'error', re, code, message, field };
}

/**
 * A request for another partition's lock (`field` "lock"), or an open that counts partitions
 * differently (`field` "partitions"): says how many partitions this coordinator has, so a worker
 * can learn it.
 */
export function wrongPartition(re: string, field: 'lock' | 'partitions', partitions: number): ReplyBody {
  return { type: 'error', re, code: 'WRONG_PARTITION', message: ERROR_CODES.WRONG_PARTITION.text, field, partitions };
}

/** A grant of `hold`, with what is left of its lease at `now`. */
export function granted(re: string, hold: Hold, now: number, basis: string): ReplyBody {
  return {
    type: 'granted',
    re,
    lock: hold.lock.name,
    token: hold.token,
    ttlMs: Math.max(0, Math.floor(hold.deadline - now)),
    basis,
  };
}

/** `position` is 1 for the head of the queue. */
export function queued(re: string, w: Waiter, position: number): ReplyBody {
  return { type: 'queued', re, lock: w.lock.name, position };
}

/** Where `w` stands in its queue, counted from its head (1). */
export function positionOf(w: Waiter): number {
  let position = 1;
  for (let p = w.prev; p !== null; p = p.prev) position++;
  return position;
}

/** Tells the holder of `h` it no longer holds. */
export function lost(h: Hold, reason: LostEvent['reason'], now: number): Decision {
  const body: ReplyBody = { type: 'lost', re: h.request, lock: h.lock.name, token: h.token, reason };
  return { type: 'reply', to: h.session.replyTo, body, heldMs: now - h.grantedAt };
}
