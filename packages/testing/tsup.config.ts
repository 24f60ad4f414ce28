import { defineConfig } from 'tsup'

// vitest cannot be required, so the suite ships as an ES module only; `require` gets
// esm-only.cjs, which says so (copied by the build script).
export default defineConfig({
  entry: { index: 'src/index.ts' },
  format: ['esm'],
  dts: true,
  sourcemap: true,
  target: 'node20',
  external: ['vitest', '@cache/core'],
})
