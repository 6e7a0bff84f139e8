import type { Logger } from 'pino';
import { type RetryPolicy, resolveRetryPolicy } from '../retry.js';
import { type ResolvedTlsOptions, resolveTlsOptions, type TlsOptions } from '../tls.js';
import { checkInteger } from '../validate.js';
import { type KafkaDriverLogLevel, KAFKA_DRIVER_LOG_LEVELS } from './log.js';

/** The defaults of the settings both Kafka transports share. */
export const KAFKA_LINK_DEFAULTS = Object.freeze({
  connectTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  sessionTimeoutMs: 10_000,
  heartbeatIntervalMs: 1_000,
  rebalanceTimeoutMs: 10_000,
  maxWaitMs: 500,
  driverLogLevel: 'error',
} as const);

/**
 * The settings both Kafka transports (worker and coordinator side) take. Each may also be given
 * in the URL's query (`kafka://h:9092?sessionTimeoutMs=6000&clientId=billing`); a field set here
 * wins over the URL.
 */
export interface KafkaLinkOptions {
  /**
   * The bootstrap brokers: `kafka://host:9092,host2:9092?…` for plaintext listeners,
   * `kafkas://host:9093,…` for TLS ones (port 9092 when left out, for both: Kafka has no
   * standard TLS port). No SASL yet: credentials in the URL are refused.
   */
  readonly url: string;
  /**
   * TLS for a `kafkas://` URL, as PEM contents: `ca` to verify the brokers against and this
   * client's certificate and key for a listener with `ssl.client.auth=required`. Each broker's
   * certificate is always verified, its host name included (the name in the URL for the
   * bootstrap brokers, the advertised one for the rest). Refused with a `kafka://` URL.
   * @defaultValue Node's CAs, no client certificate
   */
  readonly tls?: TlsOptions;
  /** The client id the broker sees in its logs and quotas. @defaultValue `'lockq-coordinator'` or `'lockq-worker'` */
  readonly clientId?: string;
  /** Bound on establishing a TCP connection to a broker. @defaultValue 10000 */
  readonly connectTimeoutMs?: number;
  /** Bound on one request to a broker. @defaultValue 30000 */
  readonly requestTimeoutMs?: number;
  /**
   * Consumer groups: a member not heard from for this long is dropped from its group and its
   * partitions move. For coordinators this bounds how long a dead coordinator's partitions wait
   * for a new owner. The broker accepts `group.min.session.timeout.ms` to
   * `group.max.session.timeout.ms` (6 s to 30 min by default). @defaultValue 10000
   */
  readonly sessionTimeoutMs?: number;
  /** Consumer groups: how often a member tells the broker it is alive; below `sessionTimeoutMs`. @defaultValue 1000 */
  readonly heartbeatIntervalMs?: number;
  /** Consumer groups: how long a rebalance waits for every member to join again. @defaultValue 10000 */
  readonly rebalanceTimeoutMs?: number;
  /**
   * Longest a fetch waits at the broker for new records. It is also how long an idle member
   * takes to notice a rebalance, so it bounds how fast partitions move. @defaultValue 500
   */
  readonly maxWaitMs?: number;
  /**
   * Backoff after a failure: between restarts of a consumer that crashed, and between attempts
   * of the client's own retries; `attempts` bounds consecutive crashes before the transport
   * gives up (`onError`). @defaultValue `DEFAULT_RETRY_POLICY` (forever)
   */
  readonly reconnect?: Partial<RetryPolicy>;
  /**
   * How much of the driver's (kafkajs's) own logging reaches `logger`, at the matching pino
   * level. @defaultValue `'error'`
   */
  readonly driverLogLevel?: KafkaDriverLogLevel;
  /** @defaultValue no logging */
  readonly logger?: Logger;
}

/** {@link KafkaLinkOptions} checked and filled in. */
export interface ResolvedKafkaLinkOptions {
  /** `host:port` of each bootstrap broker. */
  readonly brokers: readonly string[];
  /** The URL without its query, for logs and messages. */
  readonly logUrl: string;
  readonly clientId: string;
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly sessionTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  readonly rebalanceTimeoutMs: number;
  readonly maxWaitMs: number;
  readonly reconnect: RetryPolicy;
  readonly driverLogLevel: KafkaDriverLogLevel;
  /** The TLS socket options for `kafkas://`; undefined for `kafka://`. */
  readonly tls: ResolvedTlsOptions | undefined;
  /** The URL's query options, for the side-specific ones (`replyPartitions`, `replicationFactor`). */
  readonly query: ReadonlyMap<string, string>;
}

/** Query options a `kafka://` URL may carry; anything else is refused, naming it. */
export const KAFKA_URL_OPTIONS = Object.freeze([
  'clientId',
  'connectTimeoutMs',
  'requestTimeoutMs',
  'sessionTimeoutMs',
  'heartbeatIntervalMs',
  'rebalanceTimeoutMs',
  'maxWaitMs',
  'driverLogLevel',
  // Coordinator side only; a worker given the same URL ignores them.
  'replyPartitions',
  'replicationFactor',
] as const);

/** A parsed `kafka://` or `kafkas://` URL: its brokers and its query options. */
export interface KafkaUrl {
  readonly brokers: readonly string[];
  readonly query: ReadonlyMap<string, string>;
}

/**
 * Parses `kafka://host:9092,host2:9092?option=value` (or `kafkas://…`, TLS). Throws a RangeError
 * naming the problem: neither scheme, no broker, a bad port, credentials (no SASL yet), a path,
 * or an unknown option. WHATWG URL parsing cannot take a comma-separated host list, hence by hand.
 */
export function parseKafkaUrl(url: string): KafkaUrl {
  const m = /^kafkas?:\/\/([^/?#]*)(\/?)(?:\?([^#]*))?$/i.exec(url);
  if (m === null) {
    throw new RangeError(`url: expected kafka://host:port[,host:port…][?options] (kafkas:// for TLS), got ${JSON.stringify(redactKafkaUrl(url))}`);
  }
  const [, hosts = '', , search] = m;
  if (hosts.includes('@')) {
    throw new RangeError('url: credentials in a kafka:// URL are not supported (no SASL yet): use a listener without authentication (TLS client certificates are fine)');
  }
  const brokers = hosts.split(',').map((h) => brokerAddress(h.trim()));
  if (brokers.length === 0 || hosts.trim() === '') throw new RangeError('url: a kafka:// URL names at least one broker');
  const query = new Map<string, string>();
  for (const [key, value] of new URLSearchParams(search ?? '')) {
    if (!(KAFKA_URL_OPTIONS as readonly string[]).includes(key)) {
      throw new RangeError(`url: unknown option ${JSON.stringify(key)} (known: ${KAFKA_URL_OPTIONS.join(', ')})`);
    }
    query.set(key, value);
  }
  return { brokers: Object.freeze(brokers), query };
}

/** Whether `url` is `kafkas://` (TLS listeners) rather than `kafka://`. */
export function isKafkaTlsUrl(url: string): boolean {
  return /^kafkas:/i.test(url);
}

/** `host:port`, `[v6]:port` or a host alone (port 9092), as `host:port`. */
function brokerAddress(text: string): string {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?$/.exec(text);
  if (m === null) throw new RangeError(`url: ${JSON.stringify(text)} is not a broker address (host or host:port)`);
  const port = m[2] === undefined ? 9092 : Number(m[2]);
  checkInteger('url port', port, 1, 65_535);
  return `${m[1]}:${port}`;
}

/** A kafka:// or kafkas:// URL fit for a log line: without its query. */
export function redactKafkaUrl(url: string): string {
  return url.replace(/\/\/[^@/?#]*@/, '//***@').replace(/\?.*$/, '');
}

/** An integer option: the field when set, else the URL's query, else the default; checked, naming it. */
export function kafkaIntegerOption(
  name: string,
  value: number | undefined,
  query: ReadonlyMap<string, string>,
  fallback: number,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
): number {
  if (value !== undefined) return checkInteger(name, value, min, max);
  const text = query.get(name);
  if (text === undefined) return fallback;
  const n = /^-?\d+$/.test(text) ? Number(text) : Number.NaN;
  return checkInteger(name, n, min, max);
}

/**
 * Checks the shared settings, naming a bad field, fills in the defaults and freezes the result.
 * `clientId` is the side's default client id.
 */
export function resolveKafkaLinkOptions(o: KafkaLinkOptions, clientId: string): ResolvedKafkaLinkOptions {
  const { brokers, query } = parseKafkaUrl(o.url);
  const tls = isKafkaTlsUrl(o.url);
  if (!tls && o.tls !== undefined) throw new RangeError('tls: given for a kafka:// URL, which does not use TLS; use kafkas://');
  const d = KAFKA_LINK_DEFAULTS;
  const int = (name: keyof typeof d & keyof KafkaLinkOptions, min: number, max?: number) =>
    kafkaIntegerOption(name, o[name] as number | undefined, query, d[name] as number, min, max);
  const sessionTimeoutMs = int('sessionTimeoutMs', 1, 3_600_000);
  const heartbeatIntervalMs = int('heartbeatIntervalMs', 1, 3_600_000);
  if (heartbeatIntervalMs >= sessionTimeoutMs) {
    throw new RangeError(`heartbeatIntervalMs: must be below sessionTimeoutMs (${heartbeatIntervalMs} >= ${sessionTimeoutMs})`);
  }
  const driverLogLevel = o.driverLogLevel ?? (query.get('driverLogLevel') as KafkaDriverLogLevel | undefined) ?? d.driverLogLevel;
  if (!(driverLogLevel in KAFKA_DRIVER_LOG_LEVELS)) {
    throw new RangeError(`driverLogLevel: expected one of ${Object.keys(KAFKA_DRIVER_LOG_LEVELS).join(', ')}, got ${JSON.stringify(driverLogLevel)}`);
  }
  const id = o.clientId ?? query.get('clientId') ?? clientId;
  if (!/^[A-Za-z0-9._ /-]{1,249}$/.test(id)) throw new RangeError(`clientId: expected 1-249 of A-Z a-z 0-9 . _ - / and space, got ${JSON.stringify(id)}`);
  return Object.freeze({
    brokers,
    logUrl: redactKafkaUrl(o.url),
    clientId: id,
    connectTimeoutMs: int('connectTimeoutMs', 1),
    requestTimeoutMs: int('requestTimeoutMs', 1),
    sessionTimeoutMs,
    heartbeatIntervalMs,
    rebalanceTimeoutMs: int('rebalanceTimeoutMs', 1, 3_600_000),
    maxWaitMs: int('maxWaitMs', 1, 60_000),
    reconnect: resolveRetryPolicy(o.reconnect, 'reconnect'),
    driverLogLevel,
    tls: tls ? resolveTlsOptions(o.tls) : undefined,
    query,
  });
}
