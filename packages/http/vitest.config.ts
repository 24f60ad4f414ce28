import { resolve } from 'node:path'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  // The README's programs import the package by its name: the sources, not a build.
  resolve: { alias: { '@cache/http': resolve(import.meta.dirname, 'src/index.ts') } },
  test: { include: ['test/**/*.test.ts'], testTimeout: 20_000 },
})
