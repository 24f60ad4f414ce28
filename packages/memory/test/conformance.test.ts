import { manualClock, runConformance } from '@cache/testing'
import { memoryBackend } from '../src/index.js'

// Real time once: lru-cache's own timers and the default clock.
runConformance('memory', {
  create: ({ namespace }) => memoryBackend({ namespace }),
  serializes: true,
  ttlMs: 100,
  sharesStore: false,
})
// The other configurations on a clock the expiry cases move: no sleeping.
const clonedClock = manualClock()
const sizedClock = manualClock()
runConformance('memory (clone)', {
  create: ({ namespace }) => memoryBackend({ namespace, clone: true, now: clonedClock.now }),
  clock: clonedClock,
  // A structured clone keeps cycles and an array's own properties: not the JSON rules.
  serializes: false,
  ttlMs: 100,
  sharesStore: false,
})
runConformance('memory (maxSize)', {
  create: ({ namespace }) => memoryBackend({ namespace, maxSize: '64MB', now: sizedClock.now }),
  clock: sizedClock,
  serializes: true,
  ttlMs: 100,
  sharesStore: false,
})
