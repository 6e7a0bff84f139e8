import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  resolve: {
    // Tests run against the TypeScript sources, so a test never sees a stale build.
    alias: [
      { find: /^@lockq\/protocol\/amqp$/, replacement: src('./protocol/src/amqp/index.ts') },
      { find: /^@lockq\/protocol\/kafka$/, replacement: src('./protocol/src/kafka/index.ts') },
      { find: /^@lockq\/protocol$/, replacement: src('./protocol/src/index.ts') },
      { find: /^@lockq\/worker-sdk\/protocol$/, replacement: src('./worker-sdk/src/protocol.ts') },
      { find: /^@lockq\/worker-sdk\/transport$/, replacement: src('./worker-sdk/src/transport/index.ts') },
      { find: /^@lockq\/worker-sdk$/, replacement: src('./worker-sdk/src/index.ts') },
      { find: /^@lockq\/coordinator\/core$/, replacement: src('./coordinator/src/core/index.ts') },
      { find: /^@lockq\/coordinator$/, replacement: src('./coordinator/src/index.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts', 'protocol/test/**/*.test.ts', 'coordinator/test/**/*.test.ts', 'worker-sdk/test/**/*.test.ts'],
    exclude: ['test/faults/**', '**/node_modules/**', '**/dist/**'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
