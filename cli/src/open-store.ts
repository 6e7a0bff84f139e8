import type { Logger } from 'pino';
import type { ServerTransport, StateStore } from '@lockq/coordinator';
import { type CoordinatorSettings, UsageError } from './settings.js';
import { readTlsFiles } from './tls-files.js';

/**
 * Checks `--store` (and, for `rediss://`, reads the `--tls-*` files) now and returns its opener,
 * which takes the opened transport, so a bad store URL or certificate fails before the admin
 * listener or the broker connection is opened. No `--store` = the coordinator's memory store
 * (not durable). `kafka:` keeps the state in the Kafka transport's brokers, through its
 * transactions, so it needs a `kafka://` transport. The Redis adapter is imported only when
 * asked for, so others never load ioredis.
 */
export function storeOpener(s: CoordinatorSettings, logger: Logger): (transport: ServerTransport) => Promise<StateStore | undefined> {
  const url = s.store;
  if (url === undefined) return async () => undefined;
  if (/^kafka:/i.test(url)) {
    if (!/^kafka:$/i.test(url)) throw new UsageError('--store: kafka: takes nothing after it; the store uses the --transport’s brokers');
    if (!/^kafkas?:\/\//i.test(s.transport)) {
      throw new UsageError('--store: kafka: needs a kafka:// or kafkas:// --transport (it writes through the transport’s transactions); use a redis:// store with other transports');
    }
    return async (transport) => {
      const { KafkaServerTransport, KafkaStore } = await import('@lockq/coordinator');
      if (!(transport instanceof KafkaServerTransport)) throw new UsageError('--store: kafka: needs the Kafka transport');
      return new KafkaStore({ transport, prefix: s.prefix, logger });
    };
  }
  if (!/^rediss?:\/\//i.test(url)) throw new UsageError('--store: expected a redis:// or rediss:// URL, or kafka: (with a kafka:// --transport)');
  const tls = url.startsWith('rediss://') ? readTlsFiles(s.tls) : undefined;
  return async () => {
    const { RedisStore } = await import('@lockq/coordinator');
    return new RedisStore({ url, keyPrefix: s.prefix, logger, ...(tls === undefined ? {} : { tls }) });
  };
}
