export * from './coordinator.js';
export * from './options.js';
export type { ForbiddenReason, Identity, PrincipalRate } from './admission.js';
export * from './stats.js';
