import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: fileURLToPath(new URL('..', import.meta.url)),
    include: ['services/**/*.test.ts', 'scripts/**/*.test.ts'],
    globalSetup: ['services/testing/global-setup.ts'],
    reporters: ['default', './scripts/vitest-summary-reporter.ts'],
    // Files run in parallel, each with its own database; inside a file tests run in order.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
