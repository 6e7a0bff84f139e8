import { checkInteger, DEFAULT_MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES, RANGES, TOPOLOGY_PREFIX } from '@lockq/protocol';
import { pino, type Logger } from 'pino';
import { type CoreLimits, coreLimits, DEFAULT_CORE_LIMITS, DEFAULT_TOKEN_BLOCK_SIZE } from '../core/index.js';
import { MemoryStore } from '../store/index.js';
import type { StateStore } from '../store/types.js';
import type { ServerTransport } from '../transport/types.js';
import type { Decision } from '../core/index.js';
import { Admission, type Identity, type PrincipalRate } from './admission.js';
import { HandOffProofs } from './hand-off-proof.js';

/**
 * Told about every committed batch, for metrics. Called on the hot path only when set, after
 * the batch's replies were published; it must not throw and must not keep `decisions`.
 */
export interface CoordinatorObserver {
  batch(partition: number, requests: number, decisions: readonly Decision[]): void;
}

/** Options of a coordinator process. */
export interface CoordinatorOptions {
  /** Where requests come from and replies go. */
  readonly transport: ServerTransport;
  /** Epochs and token reservations. @defaultValue a new {@link MemoryStore} (not durable) */
  readonly store?: StateStore;
  /** Partitions in the deployment; workers must use the same number. @defaultValue 1 */
  readonly partitions?: number;
  /** The partitions this process consumes. @defaultValue all of them */
  readonly ownPartitions?: readonly number[];
  /** Largest request accepted, in bytes. @defaultValue 4096 */
  readonly maxMessageBytes?: number;
  /** Bounds enforced by the core; any subset. @defaultValue {@link DEFAULT_CORE_LIMITS} */
  readonly limits?: Partial<CoreLimits>;
  /** Tokens reserved from the store at a time. @defaultValue 10000 */
  readonly tokenBlockSize?: number;
  /** Monotonic clock in ms. @defaultValue `performance.now` */
  readonly clock?: () => number;
  /** @defaultValue a silent logger */
  readonly logger?: Logger;
  /** Metrics hook; see {@link CoordinatorObserver}. */
  readonly observer?: CoordinatorObserver;
  /** With a journaling store: snapshot after this many journal entries. @defaultValue 1000 */
  readonly snapshotEvery?: number;
  /**
   * Claim every owned partition at start instead of on its first delivery. Right for a lone
   * coordinator; wrong for a standby, which must not fence the active one. @defaultValue false
   */
  readonly claimAtStart?: boolean;
  /** After being fenced by another coordinator, wait this long before rejoining as standby. @defaultValue 1000 */
  readonly standbyPauseMs?: number;
  /**
   * A partition whose oldest unanswered work (a batch not yet answered, or replies that did not
   * go out) is this old is stalled: `Coordinator.stalled()` lists it and `/readyz` answers
   * 503. The default is the SDK's request timeout: a partition this slow already fails its
   * workers. @defaultValue 10000
   */
  readonly stallMs?: number;
  /**
   * Key of the hand-off proofs (docs/security.md §6.1): give every coordinator that may run a
   * partition the same one, so a proof survives a take-over. Without one, each process picks a
   * random key; a successor's early request after a take-over is then `NOT_HOLDER` and its SDK
   * waits for the new term's own grant. @defaultValue random, per process
   */
  readonly handOffSecret?: Uint8Array | string;
  /**
   * `required`: every request must carry a principal the transport vouches for (RabbitMQ: the
   * validated `user_id` property) and a reply address in that principal's namespace, else it is
   * dead-lettered `FORBIDDEN`; sessions belong to their principal. `off`: everyone who can publish
   * is one principal (docs/security.md §5). A transport that vouches for nobody (Kafka) needs
   * `off`, given explicitly. @defaultValue `'required'`
   */
  readonly identity?: Identity;
  /**
   * Requests a second one principal may send to one partition (a token bucket holding up to
   * `burst`); beyond it requests are dropped before they are decoded, and at most one in
   * 100 ms is answered `RATE_LIMITED` with `retryAfterMs`. Set it when principals are per worker
   * or per service (`lockq setup-broker`); with one shared principal it would limit everyone
   * together. @defaultValue none
   */
  readonly principalRate?: PrincipalRate;
}

export interface ResolvedCoordinatorOptions {
  readonly transport: ServerTransport;
  readonly store: StateStore;
  readonly partitions: number;
  readonly ownPartitions: readonly number[];
  readonly maxMessageBytes: number;
  readonly limits: CoreLimits;
  readonly tokenBlockSize: number;
  readonly clock: () => number;
  readonly logger: Logger;
  readonly observer: CoordinatorObserver | undefined;
  readonly snapshotEvery: number;
  readonly claimAtStart: boolean;
  readonly standbyPauseMs: number;
  readonly stallMs: number;
  readonly handOffProofs: HandOffProofs;
  /** A new door for one partition (each partition counts its own rates). */
  readonly admission: () => Admission;
}

/** Validates options, naming the bad field, fills in defaults and freezes the result. */
export function resolveCoordinatorOptions(options: CoordinatorOptions): ResolvedCoordinatorOptions {
  const partitions = options.partitions ?? 1;
  checkInteger('partitions', partitions, RANGES.partitions.min, RANGES.partitions.max);
  const ownPartitions = options.ownPartitions ?? Array.from({ length: partitions }, (_, i) => i);
  if (ownPartitions.length === 0) throw new RangeError('ownPartitions: must name at least one partition');
  for (const p of ownPartitions) checkInteger('ownPartitions[]', p, 0, partitions - 1);
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  checkInteger('maxMessageBytes', maxMessageBytes, 256, MAX_MESSAGE_BYTES);
  // maxLockWaitsPerPrincipal follows a maxWaitersPerLock given without it (see coreLimits).
  const limits = coreLimits(options.limits);
  for (const [name, value] of Object.entries(limits)) checkInteger(`limits.${name}`, value, 1, Number.MAX_SAFE_INTEGER);
  const tokenBlockSize = options.tokenBlockSize ?? DEFAULT_TOKEN_BLOCK_SIZE;
  checkInteger('tokenBlockSize', tokenBlockSize, 1, 1_000_000_000);
  const snapshotEvery = options.snapshotEvery ?? 1000;
  checkInteger('snapshotEvery', snapshotEvery, 1, 1_000_000_000);
  const standbyPauseMs = options.standbyPauseMs ?? 1000;
  checkInteger('standbyPauseMs', standbyPauseMs, 0, 1_000_000_000);
  const stallMs = options.stallMs ?? 10_000;
  checkInteger('stallMs', stallMs, 1, 1_000_000_000);
  const secret = options.handOffSecret;
  if (secret !== undefined && secret.length < 16) throw new RangeError('handOffSecret: must be at least 16 bytes');
  const identity = options.identity ?? 'required';
  if (identity !== 'required' && identity !== 'off') throw new RangeError(`identity: expected 'required' or 'off', got ${JSON.stringify(identity)}`);
  if (identity === 'required' && options.transport.vouchesForSenders === false) {
    // Every request would be refused FORBIDDEN; running without identity must be asked for.
    throw new RangeError(
      "identity: 'required' needs a transport that vouches for senders, and this one cannot say who sent a request " +
        "(Kafka: docs/security.md §3): set identity 'off' (lockq coordinator --identity off) to run without identity",
    );
  }
  const rate = options.principalRate;
  if (rate !== undefined) {
    checkInteger('principalRate.perSecond', rate.perSecond, 1, 1_000_000_000);
    checkInteger('principalRate.burst', rate.burst, 1, 1_000_000_000);
  }
  const prefix = options.transport.prefix ?? TOPOLOGY_PREFIX;
  return Object.freeze({
    transport: options.transport,
    store: options.store ?? new MemoryStore(),
    partitions,
    ownPartitions: Object.freeze([...new Set(ownPartitions)].sort((a, b) => a - b)),
    maxMessageBytes,
    limits: Object.freeze(limits),
    tokenBlockSize,
    clock: options.clock ?? (() => performance.now()),
    logger: options.logger ?? pino({ level: 'silent' }),
    observer: options.observer,
    snapshotEvery,
    claimAtStart: options.claimAtStart ?? false,
    standbyPauseMs,
    stallMs,
    handOffProofs: new HandOffProofs(secret),
    admission: () => new Admission(identity, prefix, rate ?? null),
  });
}
