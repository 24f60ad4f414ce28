import { runConformance } from '@cache/core/testing'
import { memoryBackend } from '../src/index.js'

runConformance('memory', {
  create: ({ namespace }) => memoryBackend({ namespace }),
  serializes: false,
  ttlMs: 100,
})
runConformance('memory (clone)', {
  create: ({ namespace }) => memoryBackend({ namespace, clone: true }),
  serializes: false,
  ttlMs: 100,
})
runConformance('memory (maxSize)', {
  create: ({ namespace }) => memoryBackend({ namespace, maxSize: '64MB' }),
  serializes: false,
  ttlMs: 100,
})
