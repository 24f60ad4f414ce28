import { type RedisServer, startRedis } from '@cache/test-servers'
import { redisBackend } from '@cache/redis'
import { describeHttpCacheSafety } from '@cache/testing'
import { afterAll, beforeAll } from 'vitest'
import { fastifyHarness } from './harness.js'

// On a remote backend every lookup is asynchronous: the plugin's hook waits for it.
let server: RedisServer
beforeAll(async () => {
  server = await startRedis()
})
afterAll(() => server?.stop())

describeHttpCacheSafety('@cache/fastify on Fastify 5, Redis backend', fastifyHarness, {
  // The rows test the adapter, not Redis timeouts: a loaded CI machine can hold one command past
  // the default 300 ms.
  backend: () =>
    redisBackend(server.url, {
      namespace: `fastify-safety-${Math.random().toString(36).slice(2)}`,
      timeout: '3s',
    }),
})
