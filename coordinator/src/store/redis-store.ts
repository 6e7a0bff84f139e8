import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { checkInteger, type ResolvedTlsOptions, resolveTlsOptions, type TlsOptions } from '@lockq/protocol';
import { Redis } from 'ioredis';
import { pino, type Logger } from 'pino';
import type { CoreSnapshot } from '../core/snapshot.js';
import { clockSeedMs, SEED_TOKENS_PER_MS } from './clock-seed.js';
import { type ClaimedPartition, type JournalEntry, StaleEpochError, type StateStore } from './types.js';

/** Options of {@link RedisStore}. Every one is optional. */
export interface RedisStoreOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://…`. @defaultValue 'redis://127.0.0.1:6379' */
  readonly url?: string;
  /**
   * First part of every key; keys of partition p are `{<prefix>:p<p>}:<name>`, so a partition's
   * keys share one Redis Cluster slot. @defaultValue 'lockq'
   */
  readonly keyPrefix?: string;
  /**
   * How long a connection attempt may take, and the longest an operation waits for the
   * connection to be ready before it fails. @defaultValue 2000
   */
  readonly connectTimeoutMs?: number;
  /** How long an operation waits for Redis's answer on a live connection. @defaultValue 5000 */
  readonly commandTimeoutMs?: number;
  /**
   * TLS for a `rediss://` URL: the CA to verify Redis against and this client's certificate and
   * key (for `tls-auth-clients yes`), as PEM contents. Refused with a `redis://` URL. The server's
   * certificate is always verified. @defaultValue Node's CAs, no client certificate
   */
  readonly tls?: TlsOptions;
  /** @defaultValue a silent logger */
  readonly logger?: Logger;
  /**
   * The wall clock, in ms since 1970, that seeds each claim's epoch and token ceiling (see
   * `clock-seed.ts`), so a partition moved here from a coordinator without a durable store still
   * continues above its epochs and tokens; one that reads before 2025 seeds nothing.
   * @defaultValue `Date.now`
   */
  readonly wallClockMs?: () => number;
}

export interface ResolvedRedisStoreOptions {
  readonly url: string;
  readonly keyPrefix: string;
  readonly connectTimeoutMs: number;
  readonly commandTimeoutMs: number;
  /** The TLS socket options for `rediss://`; undefined for `redis://`. */
  readonly tls: ResolvedTlsOptions | undefined;
  readonly logger: Logger;
}

export const DEFAULT_REDIS_STORE_OPTIONS = Object.freeze({
  url: 'redis://127.0.0.1:6379',
  keyPrefix: 'lockq',
  connectTimeoutMs: 2000,
  commandTimeoutMs: 5000,
});

/** Validates options (naming the bad field), fills in defaults, freezes. */
export function resolveRedisStoreOptions(options: RedisStoreOptions = {}): ResolvedRedisStoreOptions {
  const url = options.url ?? DEFAULT_REDIS_STORE_OPTIONS.url;
  if (!/^rediss?:\/\//.test(url)) throw new RangeError(`url: expected redis:// or rediss://, got ${JSON.stringify(url)}`);
  const keyPrefix = options.keyPrefix ?? DEFAULT_REDIS_STORE_OPTIONS.keyPrefix;
  // Braces would break the hash tag that keeps a partition's keys in one slot.
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(keyPrefix)) throw new RangeError('keyPrefix: 1 to 64 of A-Z a-z 0-9 _ . : -');
  const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_REDIS_STORE_OPTIONS.connectTimeoutMs;
  checkInteger('connectTimeoutMs', connectTimeoutMs, 1, 600_000);
  const commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_REDIS_STORE_OPTIONS.commandTimeoutMs;
  checkInteger('commandTimeoutMs', commandTimeoutMs, 1, 600_000);
  // On redis:// the material would be silently unused (or, in ioredis, switch TLS on unasked).
  const secure = url.startsWith('rediss://');
  if (!secure && options.tls !== undefined) {
    throw new RangeError('tls: given for a redis:// URL, which does not use TLS; use rediss://');
  }
  return Object.freeze({
    url,
    keyPrefix,
    connectTimeoutMs,
    commandTimeoutMs,
    tls: secure ? resolveTlsOptions(options.tls) : undefined,
    logger: options.logger ?? pino({ level: 'silent' }),
  });
}

/** The keys of one partition. The `{…}` hash tag puts all of them in one Redis Cluster slot. */
export function partitionKeys(keyPrefix: string, partition: number) {
  const tag = `{${keyPrefix}:p${partition}}`;
  return {
    /** Integer: the current term. */
    epoch: `${tag}:epoch`,
    /** Integer: the highest token ceiling ever reserved. */
    ceiling: `${tag}:ceiling`,
    /** String: JSON of the latest {@link CoreSnapshot}. */
    snapshot: `${tag}:snapshot`,
    /** List: JSON {@link JournalEntry} per committed batch since the snapshot, oldest first. */
    journal: `${tag}:journal`,
  } as const;
}

/** One Lua script from `./lua`, run by EVALSHA with a fallback to EVAL after a Redis restart (NOSCRIPT). */
class LuaScript {
  readonly #source: string;
  readonly #sha: string;
  readonly #keys: number;

  constructor(file: string) {
    const keys = /-(\d+)\.lua$/.exec(file)?.[1];
    if (keys === undefined) throw new Error(`${file}: a script's name ends with its key count`);
    this.#source = readFileSync(luaPath(file), 'utf8');
    this.#sha = createHash('sha1').update(this.#source).digest('hex');
    this.#keys = Number(keys);
  }

  async run(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    if (keys.length !== this.#keys) throw new Error(`script expects ${this.#keys} keys, got ${keys.length}`);
    try {
      return await redis.evalsha(this.#sha, this.#keys, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return await redis.eval(this.#source, this.#keys, ...keys, ...args);
    }
  }
}

/**
 * `tsc` does not copy `.lua` files, so the scripts stay in `src/store/lua` (shipped with the
 * package): next to this module when it runs from source (tests), two levels up from `dist`.
 */
function luaPath(file: string): string {
  for (const relative of [`./lua/${file}`, `../../src/store/lua/${file}`]) {
    const path = fileURLToPath(new URL(relative, import.meta.url));
    if (existsSync(path)) return path;
  }
  throw new Error(`Lua script ${file} not found next to ${fileURLToPath(import.meta.url)} or in src/store/lua`);
}

let scripts: { readonly claim: LuaScript; readonly append: LuaScript; readonly snapshot: LuaScript } | undefined;

function loadScripts(): NonNullable<typeof scripts> {
  scripts ??= {
    claim: new LuaScript('claim-4.lua'),
    append: new LuaScript('append-3.lua'),
    snapshot: new LuaScript('snapshot-3.lua'),
  };
  return scripts;
}

/**
 * Keeps each partition's epoch, token ceiling, snapshot and journal in Redis; every state change
 * is one Lua script, so it is atomic and conditional on the caller's epoch.
 *
 * Failure behaviour, chosen so the runtime's "any commit failure drops state, the redelivery
 * reloads it" holds: an operation either reaches Redis now or fails, it is never queued for later.
 * ioredis would otherwise park commands issued while disconnected in its offline queue and send
 * them after a reconnect, and re-send commands whose connection died — a write the coordinator
 * has already given up on could then land afterwards. So the offline queue and the re-send are
 * off, in-flight commands fail as soon as their connection closes (`maxRetriesPerRequest: 0`),
 * and an operation issued while the connection is down waits for it at most `connectTimeoutMs`.
 * The client keeps reconnecting in the background (backoff capped at 1 s), so the same instance
 * works again once Redis is back.
 *
 * A write acknowledged by Redis survives a Redis crash only as far as Redis's `appendfsync`
 * allows: `always` loses nothing, `everysec` up to about a second (see docs/durability.md).
 *
 * @example
 * const store = new RedisStore({ url: 'redis://127.0.0.1:6379', keyPrefix: 'lockq' });
 * const coordinator = await Coordinator.start({ transport, store });
 */
export class RedisStore implements StateStore {
  readonly durable = true;
  readonly journals = true;
  readonly options: ResolvedRedisStoreOptions;
  readonly #redis: Redis;
  readonly #log: Logger;
  readonly #scripts = loadScripts();
  #closing: Promise<void> | undefined;
  #reconnected: Promise<void> | undefined;
  #stopWaiting: ((err: Error) => void) | undefined;
  #wasReady = false;
  #warnedUnreachable = false;
  #connected = false;
  readonly #wallClockMs: () => number;

  constructor(options: RedisStoreOptions = {}) {
    this.options = resolveRedisStoreOptions(options);
    this.#wallClockMs = options.wallClockMs ?? (() => Date.now());
    this.#log = this.options.logger.child({ component: 'redis-store' });
    this.#redis = new Redis(this.options.url, {
      connectTimeout: this.options.connectTimeoutMs,
      commandTimeout: this.options.commandTimeoutMs,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      retryStrategy: (attempt) => Math.min(attempt * 100, 1000),
      connectionName: 'lockq-coordinator',
      ...(this.options.tls === undefined ? {} : { tls: this.options.tls }),
    });
    this.#redis.on('ready', () => {
      if (this.#wasReady) this.#log.info('reconnected to Redis');
      else void this.#checkServer();
      this.#wasReady = true;
      this.#connected = true;
    });
    this.#redis.on('error', (err: Error) => {
      // ioredis reports every failed reconnect; one line per outage is enough at warn.
      // 'connect': the socket (and TLS handshake) is up but Redis has not answered yet; a server
      // refusing the client certificate drops the connection then, on every attempt.
      const status = this.#redis.status;
      if (status === 'reconnecting' || status === 'connecting' || status === 'connect') {
        // Partitions are claimed on their first request, so the process says ready without Redis:
        // the first failure to ever reach it (wrong address, untrusted certificate) must be seen.
        if (!this.#wasReady && !this.#warnedUnreachable) {
          const hint = tlsHint(this.options.tls, err);
          this.#log.warn({ err, ...(hint === undefined ? {} : { hint }) }, 'cannot reach Redis yet; retrying');
        }
        else this.#log.debug({ err }, 'Redis connection failed');
        this.#warnedUnreachable = true;
      } else {
        this.#log.warn({ err }, 'Redis connection error');
      }
    });
    this.#redis.on('close', () => {
      // Once per lost connection, not once per failed reconnect.
      if (this.#connected && this.#closing === undefined) this.#log.warn('lost the connection to Redis; reconnecting');
      this.#connected = false;
    });
  }

  async claim(partition: number): Promise<ClaimedPartition> {
    const k = partitionKeys(this.options.keyPrefix, partition);
    const redis = await this.#ready();
    const seedMs = await clockSeedMs(this.#wallClockMs);
    const seed = [String(seedMs), String(seedMs * SEED_TOKENS_PER_MS)];
    const result = await this.#scripts.claim.run(redis, [k.epoch, k.ceiling, k.snapshot, k.journal], seed);
    if (!Array.isArray(result) || result.length !== 4) throw new Error(`claim of partition ${partition}: unexpected reply from Redis`);
    const [epoch, ceiling, snapshot, journal] = result as [unknown, unknown, unknown, unknown];
    if (typeof epoch !== 'number' || typeof ceiling !== 'string' || !Array.isArray(journal)) {
      throw new Error(`claim of partition ${partition}: unexpected reply from Redis`);
    }
    return {
      epoch,
      tokenCeiling: Number(ceiling),
      snapshot: typeof snapshot === 'string' ? (JSON.parse(snapshot) as CoreSnapshot) : null,
      journal: journal.map((entry) => JSON.parse(String(entry)) as JournalEntry),
    };
  }

  async append(partition: number, epoch: number, entry: JournalEntry): Promise<void> {
    const k = partitionKeys(this.options.keyPrefix, partition);
    const redis = await this.#ready();
    const ceiling = entry.tokenCeiling === undefined ? '' : String(entry.tokenCeiling);
    const done = await this.#scripts.append.run(redis, [k.epoch, k.ceiling, k.journal], [String(epoch), JSON.stringify(entry), ceiling]);
    if (done !== 1) throw new StaleEpochError(`partition ${partition}: epoch ${epoch} is stale`);
  }

  async snapshot(partition: number, epoch: number, snapshot: CoreSnapshot): Promise<void> {
    const k = partitionKeys(this.options.keyPrefix, partition);
    const redis = await this.#ready();
    const done = await this.#scripts.snapshot.run(redis, [k.epoch, k.snapshot, k.journal], [String(epoch), JSON.stringify(snapshot)]);
    if (done !== 1) throw new StaleEpochError(`partition ${partition}: epoch ${epoch} is stale`);
  }

  /** Closes the connection; operations after this fail. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stopWaiting?.(new Error('RedisStore is closed'));
      if (this.#redis.status === 'ready') {
        await this.#redis.quit().catch(() => this.#redis.disconnect());
      } else {
        this.#redis.disconnect();
      }
    })();
    return this.#closing;
  }

  /** The connection, once ready; waits at most `connectTimeoutMs` for it (see the class comment). */
  async #ready(): Promise<Redis> {
    const redis = this.#redis;
    if (redis.status === 'ready') return redis;
    if (this.#closing !== undefined || redis.status === 'end') throw new Error('RedisStore is closed');
    // One wait shared by every operation that arrives while the connection is down.
    this.#reconnected ??= new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        clearTimeout(timer);
        redis.off('ready', onReady);
        redis.off('end', onEnd);
        this.#reconnected = undefined;
        this.#stopWaiting = undefined;
        if (err === undefined) resolve();
        else reject(err);
      };
      const onReady = (): void => done();
      const onEnd = (): void => done(new Error('RedisStore is closed'));
      const timer = setTimeout(
        () => done(new Error(`Redis is unavailable (no connection within ${this.options.connectTimeoutMs} ms)`)),
        this.options.connectTimeoutMs,
      );
      redis.on('ready', onReady);
      redis.on('end', onEnd);
      this.#stopWaiting = done;
    });
    await this.#reconnected;
    return redis;
  }

  /** Says at start-up when Redis is configured so that acknowledged state can be lost. */
  async #checkServer(): Promise<void> {
    try {
      const info = `${await this.#redis.info('persistence')}\n${await this.#redis.info('memory')}`;
      const field = (name: string): string | undefined => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
      if (field('aof_enabled') === '0') {
        this.#log.warn('Redis has appendonly off: a Redis restart loses lockq state (see docs/durability.md)');
      }
      const policy = field('maxmemory_policy');
      if (policy !== undefined && policy !== 'noeviction') {
        this.#log.warn({ policy }, 'Redis maxmemory-policy is not noeviction: Redis may evict lockq state');
      }
    } catch (err) {
      this.#log.debug({ err }, 'could not read Redis settings');
    }
  }
}

/**
 * What a failed TLS connection most likely means when the error alone does not say. A Redis with
 * `tls-auth-clients yes` closes a connection whose client certificate is missing or not signed by
 * its CA; ioredis writes as soon as the handshake ends, so it usually sees only the reset, not the
 * alert that says why.
 */
function tlsHint(tls: ResolvedTlsOptions | undefined, err: Error): string | undefined {
  if (tls === undefined) return undefined;
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (code !== 'ECONNRESET' && code !== 'EPIPE' && !code.startsWith('ERR_SSL_')) return undefined;
  return tls.cert === undefined
    ? 'Redis may require a client certificate (tls-auth-clients yes): give the store tls.cert and tls.key (lockq coordinator --tls-cert, --tls-key)'
    : 'Redis may not accept this client certificate: it must be signed by a CA in its tls-ca-cert-file';
}
