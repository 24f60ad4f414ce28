import { runConformance } from '@cache/testing'
import { memoryBackend } from '../src/index.js'

runConformance('memory', {
  create: ({ namespace }) => memoryBackend({ namespace }),
  serializes: true,
  ttlMs: 100,
  sharesStore: false,
})
runConformance('memory (clone)', {
  create: ({ namespace }) => memoryBackend({ namespace, clone: true }),
  // A structured clone keeps cycles and an array's own properties: not the JSON rules.
  serializes: false,
  ttlMs: 100,
  sharesStore: false,
})
runConformance('memory (maxSize)', {
  create: ({ namespace }) => memoryBackend({ namespace, maxSize: '64MB' }),
  serializes: true,
  ttlMs: 100,
  sharesStore: false,
})
