export * from './deadline-heap.js';
export * from './fifo-index.js';
export * from './lock-core.js';
export type { LockDetail } from './lock-view.js';
export * from './options.js';
export type { Decision } from './replies.js';
export type { CoreSnapshot, LockSnapshot, MemoSnapshot, SessionSnapshot } from './snapshot.js';
