import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The CI machine is shared: a test that takes 20 s alone may take three times as long under load.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
