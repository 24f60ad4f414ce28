import { memoryBackend } from '@cache/memory'
import { describeHttpCacheSafety } from '@cache/testing'
import { fastifyHarness } from './harness.js'

describeHttpCacheSafety('@cache/fastify on Fastify 5', fastifyHarness, {
  backend: () => memoryBackend({ maxKeys: 1000 }),
})
