export * from './core/index.js';
export * from './runtime/index.js';
export * from './store/index.js';
export * from './transport/index.js';
export * from './admin/metrics.js';
export * from './admin/server.js';
export * from './errors.js';
