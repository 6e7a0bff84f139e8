import type { Logger } from 'pino';
import { memoryBroker, memoryBrokerName, type TlsOptions } from '@lockq/protocol';
import { MemoryClientTransport } from './memory.js';
import type { ClientTransport, ClientTransportOptions } from './types.js';

/**
 * The client transport a URL names. Broker drivers are loaded only when their scheme is used,
 * so an application on `memory:` never loads amqplib, nor one on RabbitMQ kafkajs.
 */
export async function openTransport(
  url: string,
  options: ClientTransportOptions & { readonly logger: Logger; readonly tls?: TlsOptions; readonly partitions?: number },
): Promise<ClientTransport> {
  const scheme = url.slice(0, url.indexOf(':') + 1).toLowerCase();
  switch (scheme) {
    case 'memory:':
      if (options.tls !== undefined) throw new RangeError('tls: memory: has no connection to secure; use amqps:// or kafkas://');
      return new MemoryClientTransport(memoryBroker(memoryBrokerName(url)), options);
    case 'amqp:':
    case 'amqps:': {
      const { AmqpClientTransport } = await import('./amqp.js');
      return new AmqpClientTransport({ ...options, url });
    }
    case 'kafka:':
    case 'kafkas:': {
      // tls with kafka:// is refused by the link options, as amqp:// refuses it.
      const { KafkaClientTransport } = await import('./kafka.js');
      return new KafkaClientTransport({ ...options, url });
    }
    default:
      throw new RangeError(`url: unsupported scheme ${JSON.stringify(scheme)} (use memory:, amqp://, amqps://, kafka:// or kafkas://)`);
  }
}
