import type { Contestant, Scenario } from '../contestant.js'
import { TTL_MS } from '../data.js'
import { CACHEABLE_MEMORY_FAST, keyvWithoutSerialization } from './peers.js'

/** Every in-process cache holds up to this many entries: the 10 000 keys never evict. */
export const CAPACITY = 20_000

const SINGLE = ['get-hit', 'set', 'mixed'] as const
/** getMany rows read 100 keys a call: lru-cache's is a loop of gets (it has no batch read). */
const ALL = [...SINGLE, 'get-many'] as const

/**
 * lru-cache as its README recommends for speed: `max` (storage allocated up front) and no `ttl`
 * ("Do not use a `dispose` function, size tracking, or especially ttl behavior … unless absolutely
 * needed"). With `ttl`, every set reads the clock and every get checks the age.
 */
async function lruDriver(ttl?: number) {
  const { LRUCache } = await import('lru-cache')
  const lru = new LRUCache<string, Record<string, unknown>>({ max: CAPACITY, ...(ttl ? { ttl } : {}) })
  return {
    get: (key: string) => lru.get(key),
    set: (key: string, value: Record<string, unknown>) => lru.set(key, value),
    // lru-cache has no batch read: the fastest batch is a loop of gets.
    getMany: (keys: string[]) => {
      const out = new Array<unknown>(keys.length)
      for (let i = 0; i < keys.length; i++) out[i] = lru.get(keys[i]!)
      return out
    },
  }
}

/** `@cache/memory` with the settings every memory row shares. */
export async function ourMemory() {
  const { memoryBackend } = await import('@cache/memory')
  return memoryBackend({ maxKeys: CAPACITY })
}

const contestants: Contestant[] = [
  {
    id: 'lru-cache-sync',
    label: 'lru-cache (sync)',
    role: 'limit',
    baseline: 'lru-cache-awaited',
    packages: ['lru-cache'],
    workloads: [...ALL],
    sync: true,
    note:
      'lru-cache with `max` and no `ttl`, as its README recommends for speed ("Do not use … especially ttl behavior … unless absolutely needed"), ' +
      'called synchronously: the ceiling of any wrapper.',
    create: () => lruDriver(),
  },
  {
    id: 'lru-cache-awaited',
    label: 'lru-cache (awaited)',
    role: 'limit',
    packages: ['lru-cache'],
    workloads: [...ALL],
    sync: true,
    awaited: true,
    note: 'The same calls with `await` in the loop: the ceiling of an async API, and the memory targets’ reference.',
    create: () => lruDriver(),
  },
  {
    id: 'lru-cache-ttl-awaited',
    label: 'lru-cache with `ttl` (awaited)',
    role: 'limit',
    baseline: 'lru-cache-awaited',
    packages: ['lru-cache'],
    workloads: [...ALL],
    sync: true,
    awaited: true,
    note: 'lru-cache with `max` and a constructor `ttl` (default `ttlResolution`: the clock read at most once a millisecond on get): what TTL tracking costs lru-cache itself.',
    create: () => lruDriver(TTL_MS),
  },
  {
    id: 'keyv-memory',
    label: 'keyv (Map store)',
    role: 'peer',
    baseline: 'lru-cache-awaited',
    packages: ['keyv'],
    workloads: [...ALL],
    note: 'Default `new Keyv()`: every value goes through `@keyv/serialize`.',
    create: async () => {
      const { Keyv } = await import('keyv')
      const keyv = new Keyv()
      return {
        get: (key) => keyv.get(key),
        set: (key, value, _index, ttl) => keyv.set(key, value, ttl.ms),
        getMany: (keys) => keyv.getMany(keys),
      }
    },
  },
  {
    id: 'keyv-memory-fast',
    label: 'keyv (Map store, no serialization)',
    role: 'peer',
    baseline: 'lru-cache-awaited',
    packages: ['keyv'],
    workloads: [...ALL],
    note: '`keyv.serialize = undefined; keyv.deserialize = undefined` (keyv README, "Custom Serializers"): values stored by reference.',
    create: async () => {
      const keyv = await keyvWithoutSerialization()
      return {
        get: (key) => keyv.get(key),
        set: (key, value, _index, ttl) => keyv.set(key, value, ttl.ms),
        getMany: (keys) => keyv.getMany(keys),
      }
    },
  },
  {
    id: 'cacheable-memory',
    label: 'cacheable (Cacheable, memory primary)',
    role: 'peer',
    baseline: 'lru-cache-awaited',
    packages: ['cacheable'],
    workloads: [...ALL],
    note: 'Default `new Cacheable()`: its primary is `createKeyv()` from @cacheable/memory (values cloned, keys hashed over 16 maps).',
    create: async () => {
      const { Cacheable } = await import('cacheable')
      const cache = new Cacheable()
      return {
        get: (key) => cache.get(key),
        set: (key, value, _index, ttl) => cache.set(key, value, ttl.ms),
        getMany: (keys) => cache.getMany(keys),
      }
    },
  },
  {
    id: 'cacheable-memory-fast',
    label: 'cacheable (Cacheable, `useClone: false`, one map)',
    role: 'peer',
    baseline: 'lru-cache-awaited',
    packages: ['cacheable'],
    workloads: [...ALL],
    note: '`new Cacheable({ primary: createKeyv({ useClone: false, storeHashSize: 1 }) })` (@cacheable/memory README: `useClone`, `storeHashSize`).',
    create: async () => {
      const { Cacheable, createKeyv } = await import('cacheable')
      const cache = new Cacheable({ primary: createKeyv(CACHEABLE_MEMORY_FAST) })
      return {
        get: (key) => cache.get(key),
        set: (key, value, _index, ttl) => cache.set(key, value, ttl.ms),
        getMany: (keys) => cache.getMany(keys),
      }
    },
  },
  {
    id: 'cacheable-cacheablememory',
    label: 'cacheable `CacheableMemory` (sync API, awaited)',
    role: 'peer',
    baseline: 'lru-cache-awaited',
    packages: ['cacheable'],
    workloads: [...ALL],
    sync: true,
    awaited: true,
    note: 'cacheable’s in-memory class used standalone (its README: "You can use this as a standalone cache"), `useClone: false, storeHashSize: 1`; its API is synchronous, awaited here like lru-cache.',
    create: async () => {
      const { CacheableMemory } = await import('cacheable')
      const cache = new CacheableMemory(CACHEABLE_MEMORY_FAST)
      return {
        get: (key) => cache.get(key),
        set: (key, value, _index, ttl) => cache.set(key, value, ttl.ms),
        getMany: (keys) => cache.getMany(keys),
      }
    },
  },
  {
    id: 'cache-manager-memory',
    label: 'cache-manager (default memory store)',
    role: 'peer',
    baseline: 'lru-cache-awaited',
    packages: ['cache-manager', 'keyv'],
    workloads: [...ALL],
    note: 'Default `createCache()`: a Keyv Map store with Keyv’s serialization.',
    create: async () => {
      const { createCache } = await import('cache-manager')
      const cache = createCache()
      return {
        get: (key) => cache.get(key),
        set: (key, value, _index, ttl) => cache.set(key, value, ttl.ms),
        getMany: (keys) => cache.mget(keys),
      }
    },
  },
  {
    id: 'cache-manager-memory-fast',
    label: 'cache-manager (Keyv Map store, no serialization)',
    role: 'peer',
    baseline: 'lru-cache-awaited',
    packages: ['cache-manager', 'keyv'],
    workloads: [...ALL],
    note:
      '`createCache({ stores: [keyv] })` with `keyv.serialize = keyv.deserialize = undefined` (cache-manager README). ' +
      'Faster here than its other documented store, `createKeyv()` from cacheable, even with `useClone: false, storeHashSize: 1`.',
    create: async () => {
      const { createCache } = await import('cache-manager')
      const cache = createCache({ stores: [await keyvWithoutSerialization()] })
      return {
        get: (key) => cache.get(key),
        set: (key, value, _index, ttl) => cache.set(key, value, ttl.ms),
        getMany: (keys) => cache.mget(keys),
      }
    },
  },
  {
    id: 'bentocache-memory',
    label: 'bentocache (memory driver)',
    role: 'peer',
    baseline: 'lru-cache-awaited',
    packages: ['bentocache'],
    workloads: [...SINGLE],
    note: 'bentocache memory driver with its default `serialize: true` (values stored as JSON). It has no getMany.',
    create: async () => {
      const { BentoCache, bentostore } = await import('bentocache')
      const { memoryDriver } = await import('bentocache/drivers/memory')
      const bento = new BentoCache({
        default: 'memory',
        stores: { memory: bentostore().useL1Layer(memoryDriver({ maxItems: CAPACITY })) },
      })
      return {
        get: (key) => bento.get({ key }),
        set: (key, value, _index, ttl) => bento.set({ key, value, ttl: ttl.ms }),
        close: () => bento.disconnectAll(),
      }
    },
  },
  {
    id: 'bentocache-memory-fast',
    label: 'bentocache (memory driver, `serialize: false`)',
    role: 'peer',
    baseline: 'lru-cache-awaited',
    packages: ['bentocache'],
    workloads: [...SINGLE],
    note: 'bentocache memory driver with `serialize: false` ("allows for a much faster throughput", bentocache docs, Cache drivers → Memory): values stored by reference.',
    create: async () => {
      const { BentoCache, bentostore } = await import('bentocache')
      const { memoryDriver } = await import('bentocache/drivers/memory')
      const bento = new BentoCache({
        default: 'memory',
        stores: { memory: bentostore().useL1Layer(memoryDriver({ maxItems: CAPACITY, serialize: false })) },
      })
      return {
        get: (key) => bento.get({ key }),
        set: (key, value, _index, ttl) => bento.set({ key, value, ttl: ttl.ms }),
        close: () => bento.disconnectAll(),
      }
    },
  },
  {
    id: 'cache-memory',
    label: '@cache/memory',
    role: 'ours',
    baseline: 'lru-cache-awaited',
    packages: ['@cache/memory', '@cache/core'],
    needs: '@cache/memory',
    workloads: [...ALL],
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
]

export const memory: Scenario = { id: 'memory', title: 'In-process memory cache', contestants }
