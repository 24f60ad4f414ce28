import { runConformance } from '@cache/core/testing'
import { type RedisCluster, type RedisServer, startRedis, startRedisCluster } from '@cache/test-servers'
import { afterAll, beforeAll } from 'vitest'
import { redisBackend } from '../src/index.js'

let single: RedisServer
let cluster: RedisCluster

beforeAll(async () => {
  ;[single, cluster] = await Promise.all([startRedis(), startRedisCluster(3)])
}, 60_000)

afterAll(async () => {
  await Promise.all([single?.stop(), cluster?.stop()])
})

runConformance('redis (single node)', {
  create: ({ namespace }) => redisBackend(single.url, { namespace }),
  ttlMs: 100,
})

runConformance('redis (3-master cluster)', {
  create: ({ namespace }) =>
    redisBackend(`redis+cluster://${cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',')}`, {
      namespace,
    }),
  ttlMs: 100,
})

runConformance('redis (values as bytes, compressed from 1 KB)', {
  create: ({ namespace }) => redisBackend(single.url, { namespace, compressThreshold: '1KB' }),
  ttlMs: 100,
})
