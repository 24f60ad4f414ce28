import { memoryBackend } from '@cache/memory'
import { describeHttpCacheSafety } from '@cache/testing'
import { expressHarness } from './support/safety-harness.js'

// The shared safety table every adapter passes (@cache/testing), on Express 5.
describeHttpCacheSafety('@cache/express on Express 5', expressHarness, {
  backend: () => memoryBackend({ maxKeys: 1000 }),
})
