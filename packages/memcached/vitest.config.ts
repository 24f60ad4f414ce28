import { defineConfig } from 'vitest/config'

export default defineConfig({
  // Most of these tests wait on servers, timeouts and reconnects rather than on the CPU: two files
  // at a time halve the suite's wall time on a 2-core machine (each starts its own servers).
  test: { include: ['test/**/*.test.ts'], testTimeout: 20_000, maxWorkers: 2 },
})
