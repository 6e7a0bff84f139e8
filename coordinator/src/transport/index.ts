export * from './amqp.js';
export * from './memory.js';
export * from './types.js';
