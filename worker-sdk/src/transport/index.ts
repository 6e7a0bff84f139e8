export * from './memory.js';
export * from './types.js';
export * from './amqp.js';
export { MemoryBroker, memoryBroker, memoryBrokerName } from '@lockq/protocol';
export { AmqpTransportError } from '@lockq/protocol/amqp';
