export * from './deadline-heap.js';
export * from './lock-core.js';
export * from './options.js';
export * from './snapshot.js';
export * from './fifo-index.js';
