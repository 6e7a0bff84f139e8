import type { Logger } from 'pino';
import type { StateStore } from '@lockq/coordinator';
import { type CoordinatorSettings, UsageError } from './settings.js';
import { readTlsFiles } from './tls-files.js';

/**
 * Checks `--store` (and, for `rediss://`, reads the `--tls-*` files) now and returns its opener,
 * so a bad store URL or certificate fails before the admin listener or the broker connection is
 * opened. No `--store` = the coordinator's memory store (not durable).
 * The Redis adapter is imported only when asked for, so others never load ioredis.
 */
export function storeOpener(s: CoordinatorSettings, logger: Logger): () => Promise<StateStore | undefined> {
  const url = s.store;
  if (url === undefined) return async () => undefined;
  if (!/^rediss?:\/\//i.test(url)) throw new UsageError('--store: expected a redis:// or rediss:// URL');
  const tls = url.startsWith('rediss://') ? readTlsFiles(s.tls) : undefined;
  return async () => {
    const { RedisStore } = await import('@lockq/coordinator');
    return new RedisStore({ url, keyPrefix: s.prefix, logger, ...(tls === undefined ? {} : { tls }) });
  };
}
