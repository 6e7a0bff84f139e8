import { hostname } from 'node:os';
import { pino, type Logger } from 'pino';
import { checkFraction, checkInteger, isPrintableName, RANGES, resolveTlsOptions, type TlsOptions } from '@lockq/protocol';
import type { ClientTransport } from './transport/types.js';

/** Options of {@link LockClient.connect}. Every one is optional. */
export interface LockClientOptions {
  /** Who this worker is, in holder lists and logs. @defaultValue `<hostname>-<pid>` */
  readonly workerId?: string;
  /** Partitions of the deployment; must match the coordinators. @defaultValue 1 */
  readonly partitions?: number;
  /** A session not heard from for this long is expired and its holds released. @defaultValue 15000 */
  readonly sessionTtlMs?: number;
  /** Heartbeat period; a heartbeat is skipped when another request went out recently. @defaultValue sessionTtlMs / 3 */
  readonly heartbeatMs?: number;
  /** How long to wait for the coordinator's first answer to a request. @defaultValue 10000 */
  readonly requestTimeoutMs?: number;
  /** Lease when an acquire does not say. @defaultValue 30000 */
  readonly defaultTtlMs?: number;
  /** Wait when an acquire does not say. @defaultValue 30000 */
  readonly defaultWaitMs?: number;
  /** Clock-rate error allowed for, as a fraction of the lease. @defaultValue 0.01 */
  readonly driftFactor?: number;
  /** Plus this fixed margin, in ms. @defaultValue 5 */
  readonly driftMarginMs?: number;
  /** Auto-renewal (withLock) extends when this fraction of the local lease has passed. @defaultValue 0.5 */
  readonly renewAt?: number;
  /** Topology name prefix; must match the coordinators. @defaultValue 'lockq' */
  readonly prefix?: string;
  /**
   * Hand a contended mutex to a successor that is a client in this same process directly, not
   * through the broker (see the successor event in docs/protocol.md). @defaultValue true
   */
  readonly localHandOff?: boolean;
  /**
   * TLS for an `amqps://` or `kafkas://` URL, as PEM contents (not paths): `ca` to verify the broker against
   * (it replaces Node's CAs), `cert` and `key` when the broker asks for a client certificate.
   * The broker's certificate is always verified; refused with any other URL.
   * @defaultValue Node's CAs, no client certificate
   * @example
   * { tls: { ca: readFileSync('ca.pem'), cert: readFileSync('worker.pem'), key: readFileSync('worker.key') } }
   */
  readonly tls?: TlsOptions;
  /**
   * Who this worker is to the coordinator (docs/security.md §5): requests carry it as the
   * broker-validated `user_id`, and replies come to a queue in its namespace. Give it only when
   * the URL does not name the broker user (a certificate login); it must be that user.
   * `[A-Za-z0-9_-]{1,64}`. @defaultValue the URL's user (`guest` without one; `local` on memory:)
   */
  readonly principal?: string;
  /** @defaultValue a silent logger */
  readonly logger?: Logger;
  /** A transport to use instead of the one the URL names (tests, custom brokers). */
  readonly transport?: ClientTransport;
}

export type ResolvedClientOptions = Required<Omit<LockClientOptions, 'transport' | 'tls' | 'principal'>> & {
  /** Checked at connect (a certificate without its key fails there); undefined when not given. */
  readonly tls: TlsOptions | undefined;
  /** Checked by the transport, which knows the URL's user; undefined when not given. */
  readonly principal: string | undefined;
};

export const DEFAULT_CLIENT_OPTIONS = Object.freeze({
  partitions: 1,
  sessionTtlMs: 15_000,
  requestTimeoutMs: 10_000,
  defaultTtlMs: 30_000,
  defaultWaitMs: 30_000,
  driftFactor: 0.01,
  driftMarginMs: 5,
  renewAt: 0.5,
  prefix: 'lockq',
  localHandOff: true,
});

/** Validates options (naming the bad field), fills in defaults and derived values, freezes. */
export function resolveClientOptions(options: LockClientOptions = {}): ResolvedClientOptions {
  const o = { ...DEFAULT_CLIENT_OPTIONS, ...withoutUndefined(options) };
  const workerId = options.workerId ?? `${hostname()}-${process.pid}`.replace(/[^\x21-\x7e]/g, '_').slice(0, 100);
  if (!isPrintableName(workerId, { min: 1, max: 100 })) {
    throw new RangeError('workerId: 1 to 100 printable ASCII characters without spaces');
  }
  checkInteger('partitions', o.partitions, RANGES.partitions.min, RANGES.partitions.max);
  checkInteger('sessionTtlMs', o.sessionTtlMs, RANGES.sessionTtlMs.min, RANGES.sessionTtlMs.max);
  const heartbeatMs = options.heartbeatMs ?? Math.max(10, Math.floor(o.sessionTtlMs / 3));
  checkInteger('heartbeatMs', heartbeatMs, 10, o.sessionTtlMs - 1);
  checkInteger('requestTimeoutMs', o.requestTimeoutMs, 1, 3_600_000);
  checkInteger('defaultTtlMs', o.defaultTtlMs, RANGES.ttlMs.min, RANGES.ttlMs.max);
  checkInteger('defaultWaitMs', o.defaultWaitMs, RANGES.waitMs.min, RANGES.waitMs.max);
  checkFraction('driftFactor', o.driftFactor, 0, 0.5);
  checkInteger('driftMarginMs', o.driftMarginMs, 0, 60_000);
  checkFraction('renewAt', o.renewAt, 0.05, 0.95);
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(o.prefix)) throw new RangeError('prefix: 1 to 64 of A-Z a-z 0-9 _ . -');
  if (typeof o.localHandOff !== 'boolean') throw new RangeError('localHandOff: true or false');
  return Object.freeze({
    ...o,
    workerId,
    heartbeatMs,
    tls: options.tls === undefined ? undefined : resolveTlsOptions(options.tls),
    principal: options.principal,
    logger: options.logger ?? pino({ level: 'silent' }),
  });
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
