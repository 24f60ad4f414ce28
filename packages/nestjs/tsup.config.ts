import { defineConfig } from 'tsup'

export default defineConfig({
  entry: { index: 'src/index.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  target: 'node20',
  // The sources use no decorator syntax (they call Nest's decorators as functions): built the
  // same for applications in either decorator mode.
  tsconfig: 'tsconfig.build.json',
})
