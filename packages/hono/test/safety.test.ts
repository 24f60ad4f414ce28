import { memoryBackend } from '@cache/memory'
import { describeHttpCacheSafety } from '@cache/testing'
import { honoHarness } from './harness.js'

describeHttpCacheSafety('@cache/hono on @hono/node-server', honoHarness, {
  backend: () => memoryBackend({ maxKeys: 1000 }),
})
