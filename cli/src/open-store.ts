import type { Logger } from 'pino';
import type { StateStore } from '@lockq/coordinator';
import { type CoordinatorSettings, UsageError } from './settings.js';

/**
 * Checks `--store` now and returns its opener, so a bad store URL fails before the admin listener
 * or the broker connection is opened. No `--store` = the coordinator's memory store (not durable).
 * The Redis adapter is imported only when asked for, so others never load ioredis.
 */
export function storeOpener(s: CoordinatorSettings, logger: Logger): () => Promise<StateStore | undefined> {
  const url = s.store;
  if (url === undefined) return async () => undefined;
  if (!/^rediss?:\/\//i.test(url)) throw new UsageError('--store: expected a redis:// or rediss:// URL');
  return async () => {
    const { RedisStore } = await import('@lockq/coordinator');
    return new RedisStore({ url, keyPrefix: s.prefix, logger });
  };
}
