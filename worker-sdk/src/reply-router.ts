import type { Logger } from 'pino';
import { decodeReply } from '@lockq/protocol';
import type { HandOff } from './hand-off.js';
import type { HeldLeases } from './held-leases.js';
import type { RequestTable } from './request-table.js';
import type { Sessions } from './sessions.js';

/** Where each kind of reply goes. */
export interface ReplyRoutes {
  readonly sessions: Pick<Sessions, 'get' | 'term' | 'proven'>;
  readonly requests: Pick<RequestTable, 'waiting' | 'answer' | 'sentAt' | 'resendOnPartition'>;
  readonly leases: Pick<HeldLeases, 'lose'>;
  readonly handOff: Pick<HandOff, 'successorNamed' | 'unclaimed'>;
  readonly logger: Logger;
}

/**
 * Reads every message that reaches the client's reply address and hands it to the part that
 * deals with it: answers to the request table (which proves the session alive), events about
 * holds to the held leases and the hand-off, grants nobody waits for to the hand-off. Replies
 * from a replaced coordinator term are ignored; the first reply of a new term has everything in
 * flight on its partition asked again.
 */
export class ReplyRouter {
  readonly #sessions: ReplyRoutes['sessions'];
  readonly #requests: ReplyRoutes['requests'];
  readonly #leases: ReplyRoutes['leases'];
  readonly #handOff: ReplyRoutes['handOff'];
  readonly #logger: Logger;

  constructor(routes: ReplyRoutes) {
    this.#sessions = routes.sessions;
    this.#requests = routes.requests;
    this.#leases = routes.leases;
    this.#handOff = routes.handOff;
    this.#logger = routes.logger;
  }

  route(body: Uint8Array): void {
    const reply = decodeReply(body);
    if (reply === null) {
      this.#logger.warn('unreadable reply dropped');
      return;
    }
    const s = this.#sessions.get(reply.partition);
    const term = this.#sessions.term(s, reply.epoch);
    if (term === 'stale') return;
    if (term === 'new') this.#requests.resendOnPartition(reply.partition, reply.re);
    if (reply.type === 'lost') {
      this.#leases.lose(reply.partition, reply.token, reply.reason);
      return;
    }
    if (reply.type === 'successor') {
      this.#handOff.successorNamed(reply);
      return;
    }
    const pending = this.#requests.waiting(reply.re);
    if (pending === undefined) {
      // A second copy, or an answer nobody waits for any more; a grant may need giving back.
      if (reply.type === 'granted') this.#handOff.unclaimed(reply);
      return;
    }
    if (reply.partition !== pending.session.partition || (reply.type === 'granted' && reply.lock !== pending.lock)) {
      // Not an answer to that request: a grant of another lock (or from another partition) under
      // its id is a forgery or a bug, and believing it would make this worker think it holds a
      // lock someone else may hold.
      this.#logger.warn({ re: reply.re, lock: pending.lock, partition: pending.session.partition }, 'reply that does not match its request dropped');
      return;
    }
    if (reply.type !== 'error' && reply.type !== 'inspected') this.#sessions.proven(pending.session, this.#requests.sentAt(pending.seq));
    this.#requests.answer(pending, reply);
  }
}
