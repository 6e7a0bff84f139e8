export * from './memory.js';
export * from './types.js';
export * from './amqp.js';
