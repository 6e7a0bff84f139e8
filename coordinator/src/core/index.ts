export * from './deadline-heap.js';
export * from './lock-core.js';
export * from './options.js';
