import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    // A safety net for a hung test, never a measure of speed: integration tests boot servers,
    // databases and CLI processes, and on a busy 2-core machine one CLI start alone can take seconds.
    // Outcomes are decided by counts and events inside the tests, not by this budget.
    testTimeout: 240_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});
