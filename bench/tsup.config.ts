import { defineConfig } from 'tsup'

// Each entry is a process: the runner, the per-row worker and the HTTP server under test.
export default defineConfig({
  entry: {
    run: 'src/run.ts',
    worker: 'src/worker.ts',
    'http-server': 'src/http-server.ts',
    readme: 'src/readme.ts',
  },
  format: ['esm'],
  target: 'node20',
  sourcemap: true,
  clean: true,
})
