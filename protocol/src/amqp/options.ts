import type { Logger } from 'pino';
import { type RetryPolicy, resolveRetryPolicy } from '../retry.js';
import { type ResolvedTlsOptions, resolveTlsOptions, type TlsOptions } from '../tls.js';
import { checkInteger } from '../validate.js';

/** The defaults of the connection settings both AMQP transports share. */
export const AMQP_LINK_DEFAULTS = Object.freeze({
  heartbeatMs: 10_000,
  connectTimeoutMs: 10_000,
  prefetch: 256,
} as const);

/** The connection settings both AMQP transports (worker and coordinator side) take. */
export interface AmqpLinkOptions {
  /** The broker, e.g. `amqp://user:pass@rabbit:5672/vhost`. */
  readonly url: string;
  /** Heartbeat negotiated with the broker (whole seconds on the wire; 0 turns it off). @defaultValue 10000 */
  readonly heartbeatMs?: number;
  /** Bound on establishing the TCP connection. @defaultValue 10000 */
  readonly connectTimeoutMs?: number;
  /**
   * Deliveries the broker may push on a consuming channel before they are acknowledged: on the
   * worker side replies, on the coordinator side requests per partition (and so its largest
   * batch). @defaultValue 256
   */
  readonly prefetch?: number;
  /**
   * Backoff between reconnect attempts after a lost connection; `attempts` bounds reconnecting.
   * The coordinator also waits it before consuming a partition again after a lost channel or a
   * rejected batch. @defaultValue `DEFAULT_RETRY_POLICY` (forever)
   */
  readonly reconnect?: Partial<RetryPolicy>;
  /**
   * The connection's name in the broker's management tools.
   * @defaultValue `'lockq coordinator'`, or `'lockq worker <workerId>/<instance>'` for a worker
   */
  readonly connectionName?: string;
  /**
   * TLS for an `amqps://` URL: the CA to verify the broker against and this client's certificate
   * and key, as PEM contents. Refused with an `amqp://` URL. The broker's certificate is always
   * verified. @defaultValue Node's CAs, no client certificate
   */
  readonly tls?: TlsOptions;
  /** @defaultValue no logging */
  readonly logger?: Logger;
}

/** {@link AmqpLinkOptions} checked and filled in. */
export interface ResolvedAmqpLinkOptions {
  /** The URL with the heartbeat set, for connecting. */
  readonly connectUrl: string;
  /** The URL without credentials, for logs and messages. */
  readonly logUrl: string;
  readonly connectTimeoutMs: number;
  readonly prefetch: number;
  readonly reconnect: RetryPolicy;
  readonly connectionName: string;
  /** The TLS socket options for `amqps://`; undefined for `amqp://`. */
  readonly tls: ResolvedTlsOptions | undefined;
}

/**
 * Checks the shared settings, naming a bad field, fills in the defaults and freezes the result.
 * `connectionName` is the side's default name.
 */
export function resolveAmqpLinkOptions(o: AmqpLinkOptions, connectionName: string): ResolvedAmqpLinkOptions {
  const d = AMQP_LINK_DEFAULTS;
  return Object.freeze({
    connectUrl: amqpUrlWithHeartbeat(o.url, checkInteger('heartbeatMs', o.heartbeatMs ?? d.heartbeatMs, 0)),
    logUrl: amqpUrlForLogs(o.url),
    connectTimeoutMs: checkInteger('connectTimeoutMs', o.connectTimeoutMs ?? d.connectTimeoutMs, 1),
    prefetch: checkInteger('prefetch', o.prefetch ?? d.prefetch, 1, 65_535),
    reconnect: resolveRetryPolicy(o.reconnect, 'reconnect'),
    connectionName: o.connectionName ?? connectionName,
    tls: linkTls(o),
  });
}

/** TLS settings only where the URL asks for TLS: on `amqp://` they would be silently unused. */
function linkTls(o: AmqpLinkOptions): ResolvedTlsOptions | undefined {
  if (new URL(o.url).protocol === 'amqps:') return resolveTlsOptions(o.tls);
  if (o.tls !== undefined) throw new RangeError('tls: given for an amqp:// URL, which does not use TLS; use amqps://');
  return undefined;
}

/** Adds the heartbeat to an `amqp://` / `amqps://` URL unless the URL already sets one. */
export function amqpUrlWithHeartbeat(url: string, heartbeatMs: number): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch (cause) {
    throw new RangeError('url: not a valid URL', { cause });
  }
  if (u.protocol !== 'amqp:' && u.protocol !== 'amqps:') {
    throw new RangeError(`url: expected amqp:// or amqps://, got ${JSON.stringify(u.protocol)}`);
  }
  if (!u.searchParams.has('heartbeat')) u.searchParams.set('heartbeat', String(Math.ceil(heartbeatMs / 1000)));
  return u.toString();
}

/** The URL without credentials, for logs. */
export function amqpUrlForLogs(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname}`;
}
