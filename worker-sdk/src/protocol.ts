/** The wire contract, re-exported from `@lockq/protocol` so SDK users need one dependency. */
export * from '@lockq/protocol';
