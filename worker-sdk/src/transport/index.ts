export * from './memory.js';
export * from './types.js';
export * from './amqp.js';
export * from './kafka.js';
export { MemoryBroker, memoryBroker, memoryBrokerName } from '@lockq/protocol';
export { AmqpTransportError } from '@lockq/protocol/amqp';
export { KafkaTransportError } from '@lockq/protocol/kafka';
