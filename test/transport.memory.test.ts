import { MemoryBroker, MemoryClientTransport } from '@lockq/worker-sdk/transport';
import { MemoryServerTransport } from '../coordinator/src/transport/index.js';
import { defineTransportContract } from './transport-contract.js';

defineTransportContract('memory', () => {
  const broker = new MemoryBroker();
  return {
    client: (workerId) => new MemoryClientTransport(broker, { workerId, instance: 'i' }),
    server: () => new MemoryServerTransport(broker),
    deadLetters: async () => broker.deadLetters.map(({ body, code }) => ({ body, code })),
    cleanup: async () => {},
  };
});
