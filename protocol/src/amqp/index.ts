export * from './connection.js';
export * from './errors.js';
export * from './link.js';
export * from './options.js';
