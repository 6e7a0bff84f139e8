import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { Mutex, TimeoutError } from 'redis-semaphore';
import Redlock, { ExecutionError, type Settings } from 'redlock';
import { inBatches } from './lockq-amqp.js';
import type { Contender, LockSystem } from './workload.js';

/**
 * lockq's Redis peers on the local Redis, under the same workloads: npm `redlock` v5 on a single
 * instance, and `redis-semaphore`'s Mutex. Both wait by polling: an acquire that finds the lock
 * taken sleeps and tries again, until its retries run out and it gives up (the workload then
 * asks again). Each simulated worker has its own Redis connection; every command it sends is
 * counted.
 */

export const REDIS_URL = process.env.LOCKQ_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';

const TTL_MS = 10_000;

/**
 * Each library with its defaults, and with retries tuned for the hot lock: a retry about every
 * hold time (5 ms) instead of every 10-300 ms, and no giving up.
 */
export const PEER_VARIANTS = {
  redlockDefault: {
    label: 'redlock (default)',
    note: 'redlock v5 defaults: retryCount 10, retryDelay 200 ms, retryJitter 100 ms',
    redlock: {} as Partial<Settings>,
  },
  redlockTuned: {
    label: 'redlock (tuned)',
    note: 'redlock tuned: retryCount -1 (unbounded), retryDelay 5 ms, retryJitter 5 ms (retries every 0-10 ms)',
    redlock: { retryCount: -1, retryDelay: 5, retryJitter: 5 } as Partial<Settings>,
  },
  semaphoreDefault: {
    label: 'redis-semaphore (default)',
    note: 'redis-semaphore Mutex defaults: retryInterval 10 ms, acquireTimeout 10 s',
    mutex: {},
  },
  semaphoreTuned: {
    label: 'redis-semaphore (tuned)',
    note: 'redis-semaphore tuned: retryInterval 5 ms, acquireTimeout 60 s',
    mutex: { retryInterval: 5, acquireTimeout: 60_000 },
  },
} as const;

/** The peers' shared connections: one per simulated worker, each counting its commands. */
export interface RedisPeers {
  readonly prefix: string;
  readonly systems: {
    readonly redlockDefault: LockSystem;
    readonly redlockTuned: LockSystem;
    readonly semaphoreDefault: LockSystem;
    readonly semaphoreTuned: LockSystem;
  };
  readonly serverVersion: string;
  /** Closes the connections after deleting every key this run may have left. */
  close(): Promise<void>;
}

function countingRedis(count: { n: number }): Redis {
  const redis = new Redis(REDIS_URL, { connectionName: 'lockq-bench-peer', maxRetriesPerRequest: 1 });
  redis.on('error', () => {}); // failures surface as failed commands
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = ((...args: Parameters<Redis['sendCommand']>) => {
    count.n++;
    return send(...args);
  }) as Redis['sendCommand'];
  return redis;
}

function redlockSystem(label: string, prefix: string, conns: readonly Redis[], settings: Partial<Settings>, count: { n: number }): LockSystem {
  const workers: Contender[] = conns.map((redis) => {
    const redlock = new Redlock([redis], settings);
    // Every refused attempt is also emitted as an 'error', which would crash without a listener.
    redlock.on('error', () => {});
    return {
      async acquire(name) {
        try {
          const lock = await redlock.acquire([`${prefix}:${name}`], TTL_MS);
          return async () => {
            await lock.release();
          };
        } catch (err) {
          if (err instanceof ExecutionError) return null;
          throw err;
        }
      },
    };
  });
  return { label, workers, messages: () => count.n };
}

function mutexSystem(label: string, prefix: string, conns: readonly Redis[], options: { retryInterval?: number; acquireTimeout?: number }, count: { n: number }): LockSystem {
  const workers: Contender[] = conns.map((redis) => ({
    async acquire(name) {
      const mutex = new Mutex(redis, `${prefix}:${name}`, { ...options, lockTimeout: TTL_MS });
      try {
        await mutex.acquire();
      } catch (err) {
        if (err instanceof TimeoutError) return null;
        throw err;
      }
      return () => mutex.release();
    },
  }));
  return { label, workers, messages: () => count.n };
}

export async function openRedisPeers(workers: number): Promise<RedisPeers> {
  const prefix = `lockq-bench-peers-${Date.now().toString(36)}-${randomUUID().slice(0, 6)}`;
  const count = { n: 0 };
  const opened: Redis[] = [];
  let conns: Redis[];
  try {
    conns = await inBatches(workers, 16, async () => {
      const redis = countingRedis(count);
      opened.push(redis);
      await redis.ping();
      return redis;
    });
  } catch (err) {
    // ioredis would otherwise keep reconnecting, and keep the process alive, forever.
    for (const redis of opened) redis.disconnect();
    throw err;
  }
  const first = conns[0];
  const info = first === undefined ? '' : await first.info('server');
  const serverVersion = /^redis_version:(.*)$/m.exec(info)?.[1]?.trim() ?? '?';
  const v = PEER_VARIANTS;
  const systems = {
    redlockDefault: redlockSystem(v.redlockDefault.label, prefix, conns, v.redlockDefault.redlock, count),
    redlockTuned: redlockSystem(v.redlockTuned.label, prefix, conns, v.redlockTuned.redlock, count),
    semaphoreDefault: mutexSystem(v.semaphoreDefault.label, prefix, conns, v.semaphoreDefault.mutex, count),
    semaphoreTuned: mutexSystem(v.semaphoreTuned.label, prefix, conns, v.semaphoreTuned.mutex, count),
  };
  // Load each library's scripts into Redis (EVALSHA falls back to EVAL once) and warm the JIT.
  for (const s of Object.values(systems)) {
    await Promise.all(s.workers.map(async (w, i) => (await w.acquire(`warm-up:${i}`))?.()));
  }
  return {
    prefix,
    systems,
    serverVersion,
    async close() {
      if (first !== undefined) await deleteKeys(first, `*${prefix}:*`).catch(() => undefined);
      await Promise.all(conns.map((c) => c.quit().catch(() => c.disconnect())));
    },
  };
}

/** Deletes every key matching `pattern` (unique to this run, so nothing else is touched). */
export async function deleteKeys(redis: Redis, pattern: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.del(...keys);
  } while (cursor !== '0');
  return deleted;
}
