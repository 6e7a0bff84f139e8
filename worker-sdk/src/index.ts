export * from './client.js';
export * from './errors.js';
export * from './helpers.js';
export * from './lease.js';
export * from './lock-api.js';
export * from './options.js';
export type { DroppedReason } from './reply-router.js';
export { backoffMs, DEFAULT_RETRY_POLICY, type RetryPolicy, resolveRetryPolicy } from '@lockq/protocol';
