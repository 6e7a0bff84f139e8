export * from './client-config.js';
export * from './errors.js';
export * from './log.js';
export * from './options.js';
export * from './records.js';
