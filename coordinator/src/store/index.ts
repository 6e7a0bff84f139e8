export * from './memory-store.js';
export * from './redis-store.js';
export * from './kafka-store.js';
export * from './types.js';
export * from './clock-seed.js';
