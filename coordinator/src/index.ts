export * from './core/index.js';
export * from './runtime/index.js';
export * from './store/index.js';
export { MemoryServerTransport } from './transport/memory.js';
export type { Outbound, ServerTransport } from './transport/types.js';
export * from './admin/metrics.js';
export * from './admin/server.js';
