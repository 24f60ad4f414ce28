import type { Contestant, Scenario } from '../contestant.js'
import { CAPACITY, ourMemory } from './memory.js'
import { CACHEABLE_MEMORY_FAST } from './peers.js'
import { IN_FLIGHT, ourRedis } from './redis.js'

/**
 * Reads that hit the first level of a memory → Redis chain (one key, and 100 a call). Every row
 * writes through both levels in the prefill, so a get is an L1 hit; the memory-only row is the
 * ceiling. bentocache has no getMany.
 */
const contestants: Contestant[] = [
  {
    id: 'cache-memory-only',
    label: '@cache/memory alone',
    role: 'limit',
    packages: ['@cache/memory', '@cache/core'],
    needs: '@cache/memory',
    workloads: ['get-hit', 'get-many'],
    create: async () => {
      const backend = await ourMemory()
      return {
        get: (key) => backend.get(key),
        set: (key, value, _index, ttl) => backend.set(key, value, ttl.seconds),
        getMany: (keys) => backend.getMany(keys),
        close: () => backend.close(),
      }
    },
  },
  ...[false, true].map(
    (fast): Contestant => ({
      id: fast ? 'bentocache-tiered-fast' : 'bentocache-tiered',
      label: fast
        ? 'bentocache L1 memory (`serialize: false`) + L2 redis'
        : 'bentocache L1 memory + L2 redis',
      role: 'peer',
      packages: ['bentocache', 'ioredis'],
      workloads: ['get-hit'],
      note: fast
        ? 'bentocache memory driver with `serialize: false` (bentocache docs, Cache drivers → Memory) over its redis driver, no bus.'
        : 'bentocache memory driver (default `serialize: true`) over its redis driver, no bus.',
      create: async (env) => {
        const { BentoCache, bentostore } = await import('bentocache')
        const { memoryDriver } = await import('bentocache/drivers/memory')
        const { redisDriver } = await import('bentocache/drivers/redis')
        const bento = new BentoCache({
          default: 'tiered',
          stores: {
            tiered: bentostore()
              .useL1Layer(memoryDriver({ maxItems: CAPACITY, ...(fast ? { serialize: false } : {}) }))
              .useL2Layer(
                redisDriver({ connection: { host: env.redisHost, port: env.redisPort, db: env.redisDb } }),
              ),
          },
        })
        return {
          get: (key) => bento.get({ key }),
          set: (key, value, _index, ttl) => bento.set({ key, value, ttl: ttl.ms }),
          close: () => bento.disconnectAll(),
        }
      },
    }),
  ),
  ...[false, true].map(
    (fast): Contestant => ({
      id: fast ? 'cacheable-tiered-fast' : 'cacheable-tiered',
      label: fast
        ? 'cacheable primary memory (`useClone: false`, one map) + secondary @keyv/redis'
        : 'cacheable primary memory + secondary @keyv/redis',
      role: 'peer',
      packages: ['cacheable', 'keyv', '@keyv/redis'],
      workloads: ['get-hit', 'get-many'],
      note: fast
        ? '`new Cacheable({ primary: createKeyv({ useClone: false, storeHashSize: 1 }), secondary: createKeyv(url) })` (@cacheable/memory and @keyv/redis READMEs).'
        : '`new Cacheable({ secondary: new KeyvRedis(url) })`.',
      create: async (env) => {
        const { Cacheable, createKeyv } = await import('cacheable')
        const { default: KeyvRedis, createKeyv: createKeyvRedis } = await import('@keyv/redis')
        const cache = fast
          ? new Cacheable({
              primary: createKeyv(CACHEABLE_MEMORY_FAST),
              secondary: createKeyvRedis(env.redisUrl),
            })
          : new Cacheable({ secondary: new KeyvRedis(env.redisUrl) })
        return {
          get: (key) => cache.get(key),
          set: (key, value, _index, ttl) => cache.set(key, value, ttl.ms),
          getMany: (keys) => cache.getMany(keys),
          close: () => cache.disconnect(),
        }
      },
    }),
  ),
  {
    id: 'cache-multi-level',
    label: '`multiLevel(memory, redis)`',
    role: 'ours',
    packages: ['@cache/multi-level', '@cache/memory', '@cache/redis', '@cache/core'],
    needs: '@cache/multi-level,@cache/redis',
    workloads: ['get-hit', 'get-many'],
    create: async (env) => {
      const { multiLevel } = await import('@cache/multi-level')
      const backend = multiLevel(await ourMemory(), await ourRedis(env))
      return {
        get: (key) => backend.get(key),
        set: (key, value, _index, ttl) => backend.set(key, value, ttl.seconds),
        getMany: (keys) => backend.getMany(keys),
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
        set: (key, value, _index, ttl) => backend.set(key, value, ttl.seconds),
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
