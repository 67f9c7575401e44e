import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    environment: 'node',
    testTimeout: 30_000,
    // The default output, plus a line on stderr naming any file still running after 3 minutes
    // (a stalled run then says where it is stuck; see scripts/ci-watchdog.ts).
    reporters: ['default', './test/helpers/stall-reporter.ts'],
    hookTimeout: 60_000,
    // Integration tests start servers and child processes; two forks keep a 2-core machine busy
    // without starving the servers under test.
    pool: 'forks',
    poolOptions: { forks: { minForks: 1, maxForks: 2 } },
    coverage: {
      provider: 'v8',
      include: ['src/**/*.ts'],
      exclude: ['src/**/*.test.ts', 'src/**/__fixtures__/**', 'src/dashboard/public/**'],
      reporter: ['text-summary', 'json-summary'],
      // Seed 002 asks for at least 90% coverage: the run fails below 90% of lines over src/.
      thresholds: { lines: 90 },
    },
  },
});
