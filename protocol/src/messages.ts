import type { ErrorCode } from './codes.js';

/** How a lock name is used. A name is one kind at a time; mixing kinds is `KIND_MISMATCH`. */
export type LockKind = 'mutex' | 'rwlock' | 'semaphore';
export type LockMode = 'exclusive' | 'shared';

/** Fields every request carries. */
export interface RequestBase {
  readonly v: 1;
  /** Request id, unique per worker: the idempotency key. */
  readonly id: string;
  readonly worker: string;
  readonly session: string;
  /** Where answers and events for this session go (a topology name from the transport). */
  readonly replyTo: string;
  /**
   * Optional: this request's number in the session, increasing in send order (a re-send keeps
   * its number). With `settled`, it lets the coordinator forget answers the worker has.
   */
  readonly seq?: number;
  /**
   * Optional: the worker has the final answer to every request of this session numbered up to
   * here (or no longer needs it), except acquires still waiting in a queue. The coordinator then
   * forgets those answers, and drops a request numbered at or below it as a stale duplicate
   * (a waiting or granted acquire is still answered with its current state).
   */
  readonly settled?: number;
  /**
   * Never on the wire (the decoder refuses it like any unknown field): who sent the request, as
   * the transport vouches for it (RabbitMQ's validated `user_id`), set by the coordinator's
   * runtime after decoding and journaled with the request. Sessions belong to a principal: one
   * principal's request can never name another's session (docs/security.md §5.3). Absent when
   * the coordinator runs with identity off; the core treats that as the principal `""`.
   */
  readonly principal?: string;
}

export interface OpenRequest extends RequestBase {
  readonly op: 'open';
  readonly sessionTtlMs: number;
  /** How many partitions the worker believes there are; a mismatch is `WRONG_PARTITION`. */
  readonly partitions: number;
}
export interface HeartbeatRequest extends RequestBase {
  readonly op: 'heartbeat';
}
export interface CloseRequest extends RequestBase {
  readonly op: 'close';
}
/** Acquire after decoding: optional wire fields are filled in (mode, limit, permits). */
export interface AcquireRequest extends RequestBase {
  readonly op: 'acquire';
  readonly lock: string;
  readonly kind: LockKind;
  /** `exclusive` for a mutex; `shared` or `exclusive` for an rwlock; `shared` for a semaphore. */
  readonly mode: LockMode;
  /** Semaphore permits in all (1 for mutex and rwlock). */
  readonly limit: number;
  /** Permits asked for (1 for mutex and rwlock). */
  readonly permits: number;
  readonly ttlMs: number;
  /** How long to wait in the queue; 0 = try-lock, answered at once. */
  readonly waitMs: number;
}
/** Acquire as a worker sends it: kind defaults to mutex; mode, limit and permits as the kind needs. */
export interface AcquireWire extends Omit<AcquireRequest, 'kind' | 'mode' | 'limit' | 'permits'> {
  readonly kind?: LockKind;
  readonly mode?: LockMode;
  readonly limit?: number;
  readonly permits?: number;
}
export interface ReleaseRequest extends RequestBase {
  readonly op: 'release';
  readonly lock: string;
  readonly token: number;
  /**
   * Optional, only from a named successor that took the holder's forwarded grant and speaks
   * before the coordinator's own copy came: that grant's `proof` (22 characters), which lets the
   * coordinator complete the hand-off early (docs/protocol.md §4.3). The coordinator checks it
   * before its core sees the request and passes the request on with `true` (the proof held) or
   * without the field, so the core and the journal never see a proof; on the wire, only a string.
   */
  readonly handoff?: string | true;
}
export interface ExtendRequest extends RequestBase {
  readonly op: 'extend';
  readonly lock: string;
  readonly token: number;
  readonly ttlMs: number;
  /**
   * Optional, only from a named successor that took the holder's forwarded grant and speaks
   * before the coordinator's own copy came: that grant's `proof` (22 characters), which lets the
   * coordinator complete the hand-off early (docs/protocol.md §4.3). The coordinator checks it
   * before its core sees the request and passes the request on with `true` (the proof held) or
   * without the field, so the core and the journal never see a proof; on the wire, only a string.
   */
  readonly handoff?: string | true;
}
export interface CancelRequest extends RequestBase {
  readonly op: 'cancel';
  readonly lock: string;
  /** The id of the waiting acquire to cancel. */
  readonly target: string;
}
export interface InspectRequest extends RequestBase {
  readonly op: 'inspect';
  readonly lock?: string;
}

export type Request =
  | OpenRequest
  | HeartbeatRequest
  | CloseRequest
  | AcquireRequest
  | ReleaseRequest
  | ExtendRequest
  | CancelRequest
  | InspectRequest;
export type Op = Request['op'];
export const OPS: readonly Op[] = ['open', 'heartbeat', 'close', 'acquire', 'release', 'extend', 'cancel', 'inspect'];

/** Fields every reply and event carries. */
export interface ReplyBase {
  readonly v: 1;
  /** The request id this answers (for events, the acquire whose hold it concerns). */
  readonly re: string;
  /** Coordinator term; the SDK ignores replies from an epoch lower than one it has seen. */
  readonly epoch: number;
  readonly partition: number;
}

/**
 * A lease. `ttlMs` is what remains of it when the coordinator decided; `basis` is the id of a
 * request from the same session that the coordinator had already processed then. The holder may
 * trust the lease until (time it first sent `basis`) + `ttlMs` - drift margin, never longer.
 */
export interface GrantedReply extends ReplyBase {
  readonly type: 'granted';
  readonly lock: string;
  readonly token: number;
  readonly ttlMs: number;
  readonly basis: string;
  /**
   * Only in a successor event's grant (and so in the holder's forward of it): the hand-off proof
   * the successor puts in the `handoff` field of its requests for this hold until the
   * coordinator's own copy of the grant comes (docs/protocol.md §4.3). Never in the coordinator's
   * own grants.
   */
  readonly proof?: string;
  /**
   * Only in a successor event's grant (and so in the holder's forward of it): the coordinator's
   * MAC over this grant under the successor's session key (the `key` of its `opened` reply), so
   * the successor can tell the holder's forward from a forgery (docs/protocol.md §4.3). 16 bytes,
   * base64url (22 characters). Never in the coordinator's own grants.
   */
  readonly mac?: string;
}
export interface QueuedReply extends ReplyBase {
  readonly type: 'queued';
  readonly lock: string;
  /** 1 = next in line. */
  readonly position: number;
}
export interface ReleasedReply extends ReplyBase {
  readonly type: 'released';
  readonly lock: string;
  readonly token: number;
}
export interface ExtendedReply extends ReplyBase {
  readonly type: 'extended';
  readonly lock: string;
  readonly token: number;
  readonly ttlMs: number;
  readonly basis: string;
}
export interface CancelledReply extends ReplyBase {
  readonly type: 'cancelled';
  readonly lock: string;
}
export interface OpenedReply extends ReplyBase {
  readonly type: 'opened';
  readonly session: string;
  /** True when the session already existed (a reconnect within its ttl keeps its holds). */
  readonly resumed: boolean;
  readonly sessionTtlMs: number;
  /**
   * The session key: 16 bytes, base64url (22 characters), derived by the coordinator from its
   * secret, the partition, the session's principal and its id. Only the session's own reply
   * address receives it; the worker verifies the `mac` of forwarded grants with it
   * (docs/security.md §6.2). Absent from a coordinator that does not sign forwards.
   */
  readonly key?: string;
}
export interface OkReply extends ReplyBase {
  readonly type: 'ok';
}
export interface ErrorReply extends ReplyBase {
  readonly type: 'error';
  readonly code: ErrorCode;
  readonly message: string;
  /** For input errors: the offending field. */
  readonly field?: string;
  /**
   * On `WRONG_PARTITION` only (always there): how many partitions the coordinator has, so a
   * worker can learn the count (an integer within the `partitions` range of an `open`).
   */
  readonly partitions?: number;
  /** On `RATE_LIMITED` only: how long the sender should wait before sending again, in ms. */
  readonly retryAfterMs?: number;
}
/**
 * Unsolicited: a hold this session had is gone: its lease or its session expired, or the
 * coordinator shut down without a durable store (its successor starts empty).
 */
export interface LostEvent extends ReplyBase {
  readonly type: 'lost';
  readonly lock: string;
  readonly token: number;
  readonly reason: 'LEASE_EXPIRED' | 'NO_SESSION' | 'SHUTTING_DOWN';
}

/**
 * Unsolicited, to the holder of a contended mutex: the waiter next in line and the grant it is
 * to get, with its fencing token already reserved. When the holder releases, its SDK forwards
 * `grant` (with this event's `v`, `epoch` and `partition`) straight to `to`, the successor's
 * reply address, so the hand-off costs one hop instead of a round trip through the coordinator.
 * The coordinator grants the same hold with the same token when it processes the release (or the
 * holder's lease or session ends), so the successor gets it either way and keeps the first copy.
 * A later event for the same hold replaces this one; one without `next` means nobody is named.
 */
export interface SuccessorEvent extends ReplyBase {
  readonly type: 'successor';
  /** The holder's acquire. */
  readonly re: string;
  readonly lock: string;
  /** The holder's token. */
  readonly token: number;
  readonly next?: { readonly to: string; readonly grant: Omit<GrantedReply, 'v' | 'epoch' | 'partition'> };
}

/**
 * A holder as `inspect` shows it, to any client and on the admin listener: who holds, how, with
 * which token and for how long. No session id: that and the worker id were all a forged release
 * needed (docs/security.md, "What the views show").
 */
export interface HolderView {
  readonly worker: string;
  /** The hold's fencing token; the protected resource sees it anyway. */
  readonly token: number;
  readonly mode: LockMode;
  readonly permits: number;
  /** Lease left, from the coordinator's point of view. */
  readonly ttlMs: number;
}
/** A waiter as `inspect` shows it: no session or request id (a forged `cancel` needs both). */
export interface WaiterView {
  readonly worker: string;
  readonly mode: LockMode;
  readonly permits: number;
  readonly position: number;
  /** Wait left before `WAIT_TIMEOUT`. */
  readonly waitMs: number;
}
export interface LockView {
  readonly lock: string;
  readonly kind: LockKind;
  readonly limit: number;
  /** All holders and waiters; the lists may stop short of these (see INSPECT_MAX_LISTED). */
  readonly holderCount: number;
  readonly waiterCount: number;
  readonly holders: readonly HolderView[];
  readonly waiters: readonly WaiterView[];
}
/** A partition's counts as the wire's `inspected` reply carries them. */
export interface InspectedCounts {
  readonly locks: number;
  readonly holds: number;
  readonly waiters: number;
  readonly sessions: number;
}
/**
 * What a coordinator counts of a partition, for its operator (the admin listener, metrics): the
 * wire's counts and the token counter. `lastToken` stays off the wire: it bounds the token the
 * coordinator reserves for a named successor (docs/security.md, "What the views show").
 */
export interface PartitionCounts extends InspectedCounts {
  /** Highest fencing token issued (or reserved for a named successor) so far in this partition. */
  readonly lastToken: number;
}
export interface InspectedReply extends ReplyBase {
  readonly type: 'inspected';
  /** Absent when no lock was asked for; null when the lock is free and unknown. */
  readonly lock?: LockView | null;
  readonly counts: InspectedCounts;
}

export type Reply =
  | GrantedReply
  | QueuedReply
  | ReleasedReply
  | ExtendedReply
  | CancelledReply
  | OpenedReply
  | OkReply
  | ErrorReply
  | LostEvent
  | SuccessorEvent
  | InspectedReply;
export type ReplyType = Reply['type'];

/** Distributes `Omit` over a union, so a reply can be built without its envelope. */
export type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** A reply without its envelope (`v`, `epoch`, `partition`), as the core produces it. */
export type ReplyBody = DistributiveOmit<Reply, 'v' | 'epoch' | 'partition'>;
