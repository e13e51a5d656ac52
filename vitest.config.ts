import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // expect(result).toExit(code): an exit code, and on failure what the command said.
    setupFiles: ['test/setup.ts'],
    // The CI machine is shared: a test that takes 20 s alone may take three times as long under load.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Vitest's default is one file per core less one: on this project's two-core machines, one file at a
    // time. Most of a file's time is spent waiting on the processes and disks it drives (servers, fio,
    // radosgw, fsync), so two files at once took the suite from 683 s to 388 s there; every file owns
    // its ports, directories and mounts, so they run side by side as they would on a loaded machine.
    maxWorkers: Math.max(2, availableParallelism()),
  },
});
