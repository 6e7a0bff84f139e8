export * from './amqp.js';
export * from './memory.js';
export * from './types.js';
export * from './dead-letter.js';
export * from './kafka.js';
