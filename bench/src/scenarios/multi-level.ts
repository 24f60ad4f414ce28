import type { Contestant, Scenario } from '../contestant.js'
import { TTL_MS, TTL_SECONDS } from '../data.js'
import { CAPACITY, ourMemory } from './memory.js'
import { IN_FLIGHT, ourRedis } from './redis.js'

/**
 * Reads that hit the first level of a memory → Redis chain. Every row writes through both levels
 * in the prefill, so a get is an L1 hit; the memory-only row is the ceiling.
 */
const contestants: Contestant[] = [
  {
    id: 'cache-memory-only',
    label: '@cache/memory alone',
    role: 'limit',
    packages: ['@cache/memory', '@cache/core'],
    needs: '@cache/memory',
    workloads: ['get-hit'],
    create: async () => {
      const backend = await ourMemory()
      return {
        get: (key) => backend.get(key),
        set: (key, value) => backend.set(key, value, TTL_SECONDS),
        close: () => backend.close(),
      }
    },
  },
  {
    id: 'bentocache-tiered',
    label: 'bentocache L1 memory + L2 redis',
    role: 'peer',
    packages: ['bentocache', 'ioredis'],
    workloads: ['get-hit'],
    note: 'bentocache memory driver (`serialize: false`) over its redis driver, no bus.',
    create: async (env) => {
      const { BentoCache, bentostore } = await import('bentocache')
      const { memoryDriver } = await import('bentocache/drivers/memory')
      const { redisDriver } = await import('bentocache/drivers/redis')
      const bento = new BentoCache({
        default: 'tiered',
        stores: {
          tiered: bentostore()
            .useL1Layer(memoryDriver({ maxItems: CAPACITY, serialize: false }))
            .useL2Layer(
              redisDriver({ connection: { host: env.redisHost, port: env.redisPort, db: env.redisDb } }),
            ),
        },
      })
      return {
        get: (key) => bento.get({ key }),
        set: (key, value) => bento.set({ key, value, ttl: TTL_MS }),
        close: () => bento.disconnectAll(),
      }
    },
  },
  {
    id: 'cacheable-tiered',
    label: 'cacheable primary memory + secondary @keyv/redis',
    role: 'peer',
    packages: ['cacheable', 'keyv', '@keyv/redis'],
    workloads: ['get-hit'],
    create: async (env) => {
      const { Cacheable } = await import('cacheable')
      const { default: KeyvRedis } = await import('@keyv/redis')
      const cache = new Cacheable({ secondary: new KeyvRedis(env.redisUrl) })
      return {
        get: (key) => cache.get(key),
        set: (key, value) => cache.set(key, value, TTL_MS),
        close: () => cache.disconnect(),
      }
    },
  },
  {
    id: 'cache-multi-level',
    label: '`multiLevel(memory, redis)`',
    role: 'ours',
    packages: ['@cache/multi-level', '@cache/memory', '@cache/redis', '@cache/core'],
    needs: '@cache/multi-level,@cache/redis',
    workloads: ['get-hit'],
    create: async (env) => {
      const { multiLevel } = await import('@cache/multi-level')
      const backend = multiLevel(await ourMemory(), await ourRedis(env))
      return {
        get: (key) => backend.get(key),
        set: (key, value) => backend.set(key, value, TTL_SECONDS),
        close: () => backend.close(),
      }
    },
  },
]

/** Writes through memory → Redis without and with the invalidation bus: what publishing costs. */
function chainWriter(id: string, label: string, withBus: boolean, concurrency?: number): Contestant {
  return {
    id,
    label,
    role: withBus ? 'ours' : 'limit',
    ...(concurrency === undefined ? {} : { concurrency }),
    ...(withBus
      ? { baseline: concurrency === undefined ? 'cache-multi-level-set' : 'cache-multi-level-set-64' }
      : {}),
    packages: ['@cache/multi-level', '@cache/memory', '@cache/redis', '@cache/core', 'ioredis'],
    needs: '@cache/multi-level,@cache/redis',
    workloads: ['set'],
    ...(withBus
      ? {
          note: 'The bus publishes each write’s key after the write resolves, batched, on a channel of its own (only this process subscribes); × limit is the same chain without a bus.',
        }
      : {}),
    create: async (env) => {
      const { multiLevel, redisBus } = await import('@cache/multi-level')
      // A channel of its own: the other rows' processes do not wake up for this row's messages.
      const bus = withBus ? redisBus(env.redisUrl!, { channel: `bench:${id}` }) : undefined
      await bus?.ready()
      const backend = multiLevel({ levels: [await ourMemory(), await ourRedis(env)], bus })
      return {
        get: (key) => backend.get(key),
        set: (key, value) => backend.set(key, value, TTL_SECONDS),
        close: async () => {
          await backend.close()
          await bus?.close()
        },
      }
    },
  }
}

contestants.push(
  chainWriter('cache-multi-level-set', '`multiLevel(memory, redis)`, no bus', false),
  chainWriter('cache-multi-level-bus', '`multiLevel(memory, redis)` + `redisBus`', true),
  chainWriter('cache-multi-level-set-64', '`multiLevel(memory, redis)`, no bus ×64', false, IN_FLIGHT),
  chainWriter('cache-multi-level-bus-64', '`multiLevel(memory, redis)` + `redisBus` ×64', true, IN_FLIGHT),
)

export const multiLevel: Scenario = {
  id: 'multi-level',
  title: 'Multi-level: L1 hit, and writes with and without the invalidation bus (memory → redis)',
  servers: ['redis'],
  contestants,
}
