import { defineConfig } from 'tsup'

const common = {
  dts: true,
  shims: true,
  sourcemap: true,
  keepNames: true,
  target: 'node20',
  external: ['vitest'],
} as const

export default defineConfig([
  { ...common, entry: { index: 'src/index.ts' }, format: ['esm', 'cjs'] },
  // vitest cannot be required, so the conformance suite ships as ESM only.
  { ...common, entry: { 'testing/index': 'src/testing/index.ts' }, format: ['esm'] },
])
