import { memoryBackend } from '@cache/memory'
import { describeHttpCacheSafety } from '../src/http-safety.js'
import { expressHarness } from './harness/express.js'

describeHttpCacheSafety('@cache/express on Express 5', expressHarness, {
  backend: () => memoryBackend({ maxKeys: 1000 }),
})
