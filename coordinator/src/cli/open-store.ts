import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import type { StateStore } from '../store/types.js';
import { type CoordinatorSettings, UsageError } from './settings.js';

/** Built next to this file's directory; present once the Redis store lands. */
const REDIS_STORE_MODULE = new URL('../store/redis-store.js', import.meta.url);

/**
 * Checks `--store` now, opens it later: returns the opener, so a store that cannot be used fails
 * before the admin listener or the broker connection is opened. No `--store` = the memory store.
 */
export async function openStateStore(
  s: CoordinatorSettings,
  logger: Logger,
): Promise<() => Promise<StateStore | undefined>> {
  const url = s.store;
  if (url === undefined) return async () => undefined;
  if (!existsSync(REDIS_STORE_MODULE)) {
    throw new UsageError('--store is not supported yet (a durable Redis store is coming); run without it');
  }
  if (!/^rediss?:\/\//i.test(url)) throw new UsageError('--store: expected a redis:// or rediss:// URL');
  // A variable specifier keeps the compiler from requiring the module before it exists.
  const mod = (await import(REDIS_STORE_MODULE.href)) as {
    openRedisStore?: (url: string, options: { prefix: string; logger: Logger }) => Promise<StateStore>;
  };
  const open = mod.openRedisStore;
  if (typeof open !== 'function') {
    throw new Error('store/redis-store.js does not export openRedisStore(url, { prefix, logger })');
  }
  return () => open(url, { prefix: s.prefix, logger: logger.child({ component: 'store' }) });
}
