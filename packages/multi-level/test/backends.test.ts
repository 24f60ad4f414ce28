import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runConformance } from '@cache/testing'
import { diskBackend } from '@cache/disk'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll } from 'vitest'
import { multiLevel } from '../src/index.js'

let redis: RedisServer
const dir = mkdtempSync(join(tmpdir(), 'cache-multi-level-'))
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
  rmSync(dir, { recursive: true, force: true })
})

runConformance('multi-level (memory, disk)', {
  create: ({ namespace }) =>
    multiLevel(memoryBackend({ namespace }), diskBackend({ path: join(dir, 'disk'), namespace })),
  ttlMs: 150,
})

// Redis stores `namespace:key`: its namespaces nest at `:` (see @cache/redis), and so do those of
// a chain with a Redis level; every other pair of namespaces stays apart.
runConformance('multi-level (memory, redis)', {
  create: ({ namespace }) => multiLevel(memoryBackend({ namespace }), redisBackend(redis.url, { namespace })),
  ttlMs: 150,
  namespaceSeparator: ':',
})

runConformance('multi-level (memory, disk, redis)', {
  create: ({ namespace }) =>
    multiLevel(
      memoryBackend({ namespace }),
      diskBackend({ path: join(dir, 'disk3'), namespace }),
      redisBackend(redis.url, { namespace }),
    ),
  ttlMs: 150,
  namespaceSeparator: ':',
})
