import { runConformance } from '@cache/testing'
import { memoryBackend } from '@cache/memory'
import { type RedisServer, startRedis } from '@cache/test-servers'
import KeyvRedis from '@keyv/redis'
import { Keyv } from 'keyv'
import { afterAll, beforeAll } from 'vitest'
import { keyvBackend, toKeyvStore } from '../src/index.js'

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
})

// One Map shared by every namespace, as one server would be.
const map = new Map()
runConformance('keyv (Map store)', {
  create: ({ namespace }) => keyvBackend(map, { namespace }),
  ttlMs: 100,
})

// Longer TTLs than the in-process stores: incr here is a read and a write over the network, and
// 100 ms left a loaded machine too little room to increment a counter before it expired.
runConformance('keyv (@keyv/redis store)', {
  create: ({ namespace }) => keyvBackend(new KeyvRedis(redis.url), { namespace, closeStore: true }),
  ttlMs: 300,
})

// A Keyv instance as it is: its own namespace and serializer (JSON). Keyv stores `namespace:key`,
// so its namespaces nest at `:` (`a` with key `b:x` is `a:b` with key `x`); every other pair of
// namespaces stays apart.
const shared = new Map()
runConformance('keyv (Keyv instance)', {
  create: ({ namespace }) => keyvBackend(new Keyv({ store: shared, namespace })),
  ttlMs: 100,
  namespaceSeparator: ':',
})

// Both directions at once: a @cache backend as a Keyv store, used as a @cache backend again.
runConformance('keyv (toKeyvStore(memory) round trip)', {
  create: ({ namespace }) => keyvBackend(toKeyvStore(memoryBackend()), { namespace }),
  ttlMs: 100,
  sharesStore: false,
})
