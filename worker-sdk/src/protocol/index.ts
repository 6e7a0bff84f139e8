export * from './codec.js';
export * from './codes.js';
export * from './limits.js';
export * from './messages.js';
export * from './topology.js';
