import type { Logger } from 'pino';
import { decodeReply, type GrantedReply, type Reply, verifyGrantMac } from '@lockq/protocol';
import type { HandOff } from './hand-off.js';
import type { HeldLeases } from './held-leases.js';
import type { RequestTable } from './request-table.js';
import type { PartitionSession } from './session.js';
import type { Sessions } from './sessions.js';
import type { ReplyOrigin } from './transport/types.js';

/** Where each kind of reply goes. */
export interface ReplyRoutes {
  readonly sessions: Pick<Sessions, 'find' | 'term' | 'proven'>;
  readonly requests: Pick<RequestTable, 'waiting' | 'answer' | 'sentAt' | 'resendOnPartition'>;
  readonly leases: Pick<HeldLeases, 'lose'>;
  readonly handOff: Pick<HandOff, 'successorNamed' | 'unclaimed'>;
  readonly logger: Logger;
}

/**
 * Why a reply was dropped, never acted on (see {@link ReplyRouter.dropped}):
 * - `unreadable`: not a reply (see `decodeReply`);
 * - `unknown-partition`: for a partition this client never spoke to;
 * - `mismatch`: its request is another partition's, or a grant is of another lock than asked for;
 * - `forward-not-grant`: a forward (another worker published it) that is not a `granted`;
 * - `forward-mac`: a forwarded grant without a `mac` this session's key verifies;
 * - `forward-epoch`: a forwarded grant of another coordinator term than the current one.
 */
export type DroppedReason = 'unreadable' | 'unknown-partition' | 'mismatch' | 'forward-not-grant' | 'forward-mac' | 'forward-epoch';

/** Per reason, at most one warning this often; the rest are counted (and logged at debug). */
const WARN_EVERY_MS = 60_000;

/**
 * Reads every message that reaches the client's reply address and hands it to the part that
 * deals with it: answers to the request table (which proves the session alive), events about
 * holds to the held leases and the hand-off, grants nobody waits for to the hand-off. Replies
 * from a replaced coordinator term are ignored; the first reply of a new term has everything in
 * flight on its partition asked again.
 *
 * What the transport says another worker published (origin `'forward'`) is believed only as a
 * hand-off: a `granted` whose `mac` the session's key verifies (the coordinator made it for this
 * session when it named the successor) and of the current term, never a new one
 * (docs/security.md §6.2). Anything else that fails a check is dropped and counted.
 */
export class ReplyRouter {
  readonly #sessions: ReplyRoutes['sessions'];
  readonly #requests: ReplyRoutes['requests'];
  readonly #leases: ReplyRoutes['leases'];
  readonly #handOff: ReplyRoutes['handOff'];
  readonly #logger: Logger;
  readonly #dropped: Record<DroppedReason, number> = {
    unreadable: 0,
    'unknown-partition': 0,
    mismatch: 0,
    'forward-not-grant': 0,
    'forward-mac': 0,
    'forward-epoch': 0,
  };
  readonly #warnedAt = new Map<DroppedReason, number>();

  constructor(routes: ReplyRoutes) {
    this.#sessions = routes.sessions;
    this.#requests = routes.requests;
    this.#leases = routes.leases;
    this.#handOff = routes.handOff;
    this.#logger = routes.logger;
  }

  /** Replies dropped so far, by reason. */
  get dropped(): Readonly<Record<DroppedReason, number>> {
    return { ...this.#dropped };
  }

  /** One message from the reply address; `origin` as the transport tells it (undefined: it cannot). */
  route(body: Uint8Array, origin?: ReplyOrigin): void {
    const reply = decodeReply(body);
    if (reply === null) {
      this.#drop('unreadable', {});
      return;
    }
    // Not `get`: a made-up partition number must not create a session record.
    const s = this.#sessions.find(reply.partition);
    if (s === undefined) {
      this.#drop('unknown-partition', { partition: reply.partition });
      return;
    }
    if (origin === 'forward') {
      if (!this.#believable(s, reply)) return;
    } else {
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
      this.#drop('mismatch', { re: reply.re, lock: pending.lock, partition: pending.session.partition });
      return;
    }
    if (reply.type !== 'error' && reply.type !== 'inspected') this.#sessions.proven(pending.session, this.#requests.sentAt(pending.seq));
    this.#requests.answer(pending, reply);
  }

  /**
   * A forward is believed only as a grant, and as the coordinator's only if its MAC holds under
   * the session's key, and only for the current term: a forward never moves the session to another term (a forged
   * `epoch: 2^53-1` would make every later reply look stale).
   */
  #believable(s: PartitionSession, reply: Reply): reply is GrantedReply {
    if (reply.type !== 'granted') {
      this.#drop('forward-not-grant', { type: reply.type });
      return false;
    }
    const grant = reply;
    if (s.key === undefined || !verifyGrantMac(s.key, grant)) {
      this.#drop('forward-mac', { re: grant.re, keyed: s.key !== undefined });
      return false;
    }
    if (grant.epoch !== s.epoch) {
      this.#drop('forward-epoch', { re: grant.re, epoch: grant.epoch, current: s.epoch });
      return false;
    }
    return true;
  }

  /** Counts a dropped reply; warns the first time for a reason and then at most once a minute. */
  #drop(reason: DroppedReason, detail: Record<string, unknown>): void {
    const count = ++this.#dropped[reason];
    const now = performance.now();
    const warnedAt = this.#warnedAt.get(reason);
    if (warnedAt === undefined || now - warnedAt >= WARN_EVERY_MS) {
      this.#warnedAt.set(reason, now);
      this.#logger.warn({ reason, dropped: count, ...detail }, 'reply dropped (counted in droppedReplies)');
    } else if (this.#logger.isLevelEnabled('debug')) {
      this.#logger.debug({ reason, ...detail }, 'reply dropped');
    }
  }
}
