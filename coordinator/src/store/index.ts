export * from './memory-store.js';
export * from './types.js';
