import { memoryBroker, memoryBrokerName } from '@lockq/worker-sdk/transport';
import type { Logger } from 'pino';
import { MemoryServerTransport } from '../transport/memory.js';
import type { ServerTransport } from '../transport/types.js';
import type { CoordinatorSettings } from './settings.js';

/** Transport events the service counts in its metrics. */
export interface TransportHooks {
  reconnected(): void;
}

/**
 * The server transport `--transport` names. amqplib is loaded only for `amqp://` and `amqps://`,
 * so `memory:` users never load a broker driver.
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
    return new MemoryServerTransport(memoryBroker(memoryBrokerName(s.transport)));
  }
  const spec = '../transport/amqp.js';
  const { AmqpServerTransport } = (await import(spec)) as {
    AmqpServerTransport: new (options: Record<string, unknown>) => ServerTransport;
  };
  void hooks;
  return new AmqpServerTransport({
    url: s.transport,
    prefix: s.prefix,
    partitions: s.partitions,
    ...(s.prefetch === undefined ? {} : { prefetch: s.prefetch }),
    logger: logger.child({ component: 'transport' }),
  });
}
