import { hostname } from 'node:os';
import { memoryBroker, memoryBrokerName } from '@lockq/protocol';
import type { Logger } from 'pino';
import { MemoryServerTransport } from '@lockq/coordinator';
import type { ServerTransport } from '@lockq/coordinator';
import type { CoordinatorSettings } from './settings.js';
import { readTlsFiles } from './tls-files.js';

/** Transport events the service acts on. */
export interface TransportHooks {
  /** The broker connection was re-established and consuming resumed (counted in metrics). */
  reconnected(): void;
  /** The transport gave up reconnecting: this process can no longer answer anyone. */
  failed(err: Error): void;
}

/**
 * The server transport `--transport` names. The RabbitMQ adapter is imported only for `amqp://`
 * and `amqps://`, so `memory:` users never load amqplib; the Kafka adapter loads kafkajs only for
 * `kafka://` and `kafkas://`. The `--tls-*` files are read for `amqps://` and `kafkas://`.
 */
export async function openServerTransport(
  s: CoordinatorSettings,
  logger: Logger,
  hooks: TransportHooks,
): Promise<ServerTransport> {
  const scheme = s.transport.slice(0, s.transport.indexOf(':') + 1).toLowerCase();
  if (scheme === 'memory:') {
    // The process-wide named broker, the one LockClient.connect('memory:…') finds: only workers
    // inside this process can reach it.
    // memory: has no request queue to bound (--max-queue-length applies to brokers only).
    const bounds = s.deadLetterMaxLength === undefined ? {} : { deadLetterMaxLength: s.deadLetterMaxLength };
    return new MemoryServerTransport(memoryBroker(memoryBrokerName(s.transport)), { ...bounds, prefix: s.prefix });
  }
  const tls = scheme === 'amqps:' || scheme === 'kafkas:' ? readTlsFiles(s.tls) : undefined;
  if (scheme === 'kafka:' || scheme === 'kafkas:') {
    const { KafkaServerTransport } = await import('@lockq/coordinator');
    return new KafkaServerTransport({
      url: s.transport,
      ...(tls === undefined ? {} : { tls }),
      prefix: s.prefix,
      partitions: s.partitions,
      ...(s.deadLetterMaxLength === undefined ? {} : { deadLetterMaxLength: s.deadLetterMaxLength }),
      // Names this process in the broker's logs, unless the URL's clientId does.
      ...(/[?&]clientId=/.test(s.transport) ? {} : { clientId: `lockq-coordinator ${hostname()} pid ${process.pid}` }),
      logger,
      onReconnect: () => hooks.reconnected(),
      onError: (err) => hooks.failed(err),
    });
  }
  const { AmqpServerTransport } = await import('@lockq/coordinator');
  return new AmqpServerTransport({
    url: s.transport,
    prefix: s.prefix,
    ...(s.prefetch === undefined ? {} : { prefetch: s.prefetch }),
    ...(s.maxQueueLength === undefined ? {} : { maxLength: s.maxQueueLength }),
    ...(s.deadLetterMaxLength === undefined ? {} : { deadLetterMaxLength: s.deadLetterMaxLength }),
    // Names this process in the broker's management UI, next to the partitions it consumes.
    connectionName: `lockq coordinator ${hostname()} pid ${process.pid}`,
    ...(tls === undefined ? {} : { tls }),
    logger,
    onReconnect: () => hooks.reconnected(),
    onError: (err) => hooks.failed(err),
  });
}
