import { defineConfig, mergeConfig } from 'vitest/config';
import base from './vitest.config.js';

/**
 * Fault tests kill and restart coordinators, Redis and RabbitMQ itself, so they run after every
 * other suite, one file at a time, with nothing else touching the brokers.
 */
export default mergeConfig(
  base,
  defineConfig({
    test: {
      include: ['test/faults/**/*.test.ts'],
      fileParallelism: false,
      testTimeout: 300_000,
      hookTimeout: 120_000,
    },
  }),
);
