import { RANGES, TOPOLOGY_PREFIX } from '@lockq/protocol';
import { DEFAULT_ADMIN_HOST, DEFAULT_ADMIN_PORT } from '@lockq/coordinator';

/** A mistake in how the CLI was called: reported with the help hint, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** `lockq coordinator` flags as parseArgs returns them (all strings). */
export interface CoordinatorFlags {
  readonly transport?: string | undefined;
  readonly store?: string | undefined;
  readonly partitions?: string | undefined;
  readonly own?: string | undefined;
  readonly 'admin-host'?: string | undefined;
  readonly 'admin-port'?: string | undefined;
  readonly prefix?: string | undefined;
  readonly prefetch?: string | undefined;
  readonly 'max-queue-length'?: string | undefined;
  readonly 'dead-letter-max-length'?: string | undefined;
  readonly 'log-level'?: string | undefined;
  readonly 'secret-file'?: string | undefined;
  readonly 'tls-ca'?: string | undefined;
  readonly 'tls-cert'?: string | undefined;
  readonly 'tls-key'?: string | undefined;
  readonly identity?: string | undefined;
  readonly 'principal-rate'?: string | undefined;
}

/** Where each flag falls back to when it is not given. Flags win over the environment. */
export const COORDINATOR_ENV = {
  transport: 'LOCKQ_TRANSPORT',
  store: 'LOCKQ_STORE',
  partitions: 'LOCKQ_PARTITIONS',
  own: 'LOCKQ_OWN_PARTITIONS',
  'admin-host': 'LOCKQ_ADMIN_HOST',
  'admin-port': 'LOCKQ_ADMIN_PORT',
  prefix: 'LOCKQ_PREFIX',
  prefetch: 'LOCKQ_PREFETCH',
  'max-queue-length': 'LOCKQ_MAX_QUEUE_LENGTH',
  'dead-letter-max-length': 'LOCKQ_DEAD_LETTER_MAX_LENGTH',
  'log-level': 'LOCKQ_LOG_LEVEL',
  'secret-file': 'LOCKQ_SECRET_FILE',
  'tls-ca': 'LOCKQ_TLS_CA',
  'tls-cert': 'LOCKQ_TLS_CERT',
  'tls-key': 'LOCKQ_TLS_KEY',
  identity: 'LOCKQ_IDENTITY',
  'principal-rate': 'LOCKQ_PRINCIPAL_RATE',
} as const satisfies Record<keyof CoordinatorFlags, string>;

export interface CoordinatorSettings {
  /** `amqp://…`, `amqps://…`, `kafka://…`, `kafkas://…` or `memory:[name]`. */
  readonly transport: string;
  readonly store: string | undefined;
  readonly partitions: number;
  /** Undefined = all partitions. */
  readonly ownPartitions: readonly number[] | undefined;
  readonly adminHost: string;
  readonly adminPort: number;
  readonly prefix: string;
  /** Undefined = the transport's default. */
  readonly prefetch: number | undefined;
  /** Requests a partition's queue holds before the broker refuses more; undefined = unbounded. */
  readonly maxQueueLength: number | undefined;
  /** Dead letters kept (the oldest are dropped); undefined = the transport's default. */
  readonly deadLetterMaxLength: number | undefined;
  readonly logLevel: string;
  /** File holding the key of the hand-off proofs; undefined = a random key per process. */
  readonly secretFile: string | undefined;
  /**
   * PEM files for every TLS connection (`amqps://` transport, `rediss://` store): the CA that
   * verifies the servers, this process's certificate and key; each undefined when not given.
   */
  readonly tls: TlsFiles;
  /** Whether requests must come from a broker-vouched principal (docs/security.md §5). */
  readonly identity: 'required' | 'off';
  /** Requests a second per principal per partition (burst twice that); undefined = no limit. */
  readonly principalRate: number | undefined;
}

/** Paths of the `--tls-*` files; `cert` and `key` are both given or neither. */
export interface TlsFiles {
  readonly ca: string | undefined;
  readonly cert: string | undefined;
  readonly key: string | undefined;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const TRANSPORT_SCHEMES = ['amqp:', 'amqps:', 'kafka:', 'kafkas:', 'memory:'] as const;
/** Topology names are built from the prefix; keep it to what every broker accepts in a name. */
const PREFIX_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$/;

/** Flags over environment over defaults; every bad value is named by its flag. */
export function coordinatorSettings(flags: CoordinatorFlags, env: NodeJS.ProcessEnv): CoordinatorSettings {
  const pick = (name: keyof CoordinatorFlags): string | undefined => {
    const flag = flags[name];
    if (flag !== undefined) return flag;
    const fromEnv = env[COORDINATOR_ENV[name]];
    return fromEnv === '' ? undefined : fromEnv;
  };
  const where = (name: keyof CoordinatorFlags) =>
    flags[name] !== undefined ? `--${name}` : `${COORDINATOR_ENV[name]} (--${name})`;

  const transport = pick('transport');
  if (transport === undefined) {
    throw new UsageError(`--transport is required (or set ${COORDINATOR_ENV.transport}), e.g. amqp://localhost`);
  }
  const scheme = transport.slice(0, transport.indexOf(':') + 1).toLowerCase();
  if (!(TRANSPORT_SCHEMES as readonly string[]).includes(scheme)) {
    throw new UsageError(`${where('transport')}: unsupported scheme in ${JSON.stringify(redactUrl(transport))} (use amqp://, amqps://, kafka://, kafkas:// or memory:)`);
  }

  const partitions = parseInteger(where('partitions'), pick('partitions'), 1, RANGES.partitions.min, RANGES.partitions.max);
  const ownText = pick('own');
  let ownPartitions: number[] | undefined;
  if (ownText !== undefined) {
    ownPartitions = ownText.split(',').map((part) => parseInteger(where('own'), part.trim(), 0, 0, partitions - 1));
  }

  const adminHost = pick('admin-host') ?? DEFAULT_ADMIN_HOST;
  const adminPort = parseInteger(where('admin-port'), pick('admin-port'), DEFAULT_ADMIN_PORT, 0, 65_535);
  const prefix = pick('prefix') ?? TOPOLOGY_PREFIX;
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new UsageError(`${where('prefix')}: expected 1-64 letters, digits, '_', '-' or '.', got ${JSON.stringify(prefix)}`);
  }
  const prefetchText = pick('prefetch');
  // AMQP's prefetch count is a 16-bit field.
  const prefetch = prefetchText === undefined ? undefined : parseInteger(where('prefetch'), prefetchText, 0, 1, 65_535);
  const optionalCount = (name: 'max-queue-length' | 'dead-letter-max-length') => {
    const text = pick(name);
    return text === undefined ? undefined : parseInteger(where(name), text, 0, 1, Number.MAX_SAFE_INTEGER);
  };
  const maxQueueLength = optionalCount('max-queue-length');
  const deadLetterMaxLength = optionalCount('dead-letter-max-length');
  const identity = pick('identity') ?? 'required';
  if (identity !== 'required' && identity !== 'off') {
    throw new UsageError(`${where('identity')}: expected required or off, got ${JSON.stringify(identity)}`);
  }
  if (scheme === 'kafka:' || scheme === 'kafkas:') {
    // Kafka cannot say who wrote a record: running without identity must be asked for (docs/security.md §3).
    if (identity === 'required') {
      const said = pick('identity') === undefined ? '--identity (default required)' : where('identity');
      throw new UsageError(`${said}: kafka:// cannot vouch for senders, so identity cannot be required; pass --identity off to run without it`);
    }
    for (const flag of ['prefetch', 'max-queue-length'] as const) {
      if (pick(flag) !== undefined) throw new UsageError(`${where(flag)}: RabbitMQ only; the Kafka transport has no such bound`);
    }
  }
  const rateText = pick('principal-rate');
  const principalRate = rateText === undefined ? undefined : parseInteger(where('principal-rate'), rateText, 0, 1, 500_000_000);
  const tls = { ca: pick('tls-ca'), cert: pick('tls-cert'), key: pick('tls-key') };
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    const [given, missing] = tls.cert === undefined ? (['tls-key', 'tls-cert'] as const) : (['tls-cert', 'tls-key'] as const);
    throw new UsageError(`${where(given)}: given without --${missing} (a client certificate needs its private key, and the reverse)`);
  }
  const tlsUsed = scheme === 'amqps:' || scheme === 'kafkas:' || /^rediss:\/\//.test(pick('store') ?? '');
  if (!tlsUsed && (tls.ca !== undefined || tls.cert !== undefined)) {
    const flag = tls.ca !== undefined ? 'tls-ca' : 'tls-cert';
    throw new UsageError(`${where(flag)}: no connection uses TLS (use an amqps:// or kafkas:// --transport or a rediss:// --store)`);
  }
  const logLevel = pick('log-level') ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new UsageError(`${where('log-level')}: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);
  }
  return Object.freeze({
    transport,
    store: pick('store'),
    partitions,
    ownPartitions: ownPartitions === undefined ? undefined : Object.freeze(ownPartitions),
    adminHost,
    adminPort,
    prefix,
    prefetch,
    maxQueueLength,
    deadLetterMaxLength,
    logLevel,
    secretFile: pick('secret-file'),
    tls: Object.freeze(tls),
    identity,
    principalRate,
  });
}

/** A URL fit for a log line: the password, if any, replaced. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === '') return url;
    parsed.password = '***';
    return parsed.toString();
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//***@');
  }
}

/** A whole number from a flag or environment variable, in [min, max]; `fallback` when absent. */
export function parseInteger(name: string, text: string | undefined, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback;
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${name}: expected an integer from ${min} to ${max}, got ${JSON.stringify(text)}`);
  }
  return n;
}
