import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

/**
 * Fault tests kill and restart coordinators, Redis and RabbitMQ itself, so they run after every
 * other suite, one file at a time, with nothing else touching the brokers. (Built by spreading,
 * not mergeConfig, which would concatenate the base config's include and exclude lists.)
 */
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: ['test/faults/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 120_000,
  },
});
