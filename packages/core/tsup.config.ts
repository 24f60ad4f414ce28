import { defineConfig } from 'tsup'

export default defineConfig({
  entry: { index: 'src/index.ts', backend: 'src/kit.ts' },
  // One copy of each module for both entries, in CJS too: a class (CacheError, CacheObserver) must
  // be the same class whichever entry a package imports it through.
  splitting: true,
  format: ['esm', 'cjs'],
  dts: true,
  shims: true,
  sourcemap: true,
  target: 'node20',
})
