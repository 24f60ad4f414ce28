import { defineConfig } from 'vitest/config'

export default defineConfig({
  // One file at a time: `pnpm demo` (pnpm-demo.test.ts) and demo.test.ts both write dist/.
  test: { include: ['test/**/*.test.ts'], testTimeout: 20_000, fileParallelism: false },
})
