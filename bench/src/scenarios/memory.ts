import { TTL_MS, TTL_SECONDS } from '../data.js'
import type { Contestant, Scenario } from '../contestant.js'

/** Every in-process cache holds up to this many entries: the 10 000 keys never evict. */
export const CAPACITY = 20_000

const ALL = ['get-hit', 'set', 'mixed'] as const

async function lruDriver() {
  const { LRUCache } = await import('lru-cache')
  const lru = new LRUCache<string, Record<string, unknown>>({ max: CAPACITY, ttl: TTL_MS })
  return {
    get: (key: string) => lru.get(key),
    set: (key: string, value: Record<string, unknown>) => lru.set(key, value),
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
    note: 'lru-cache with `max` and a 60 s `ttl`, called synchronously: the ceiling of any wrapper.',
    create: lruDriver,
  },
  {
    id: 'lru-cache-awaited',
    label: 'lru-cache (awaited)',
    role: 'limit',
    packages: ['lru-cache'],
    workloads: [...ALL],
    sync: true,
    awaited: true,
    note: 'The same calls with `await` in the loop: the ceiling of an async API.',
    create: lruDriver,
  },
  {
    id: 'keyv-memory',
    label: 'keyv (Map store)',
    role: 'peer',
    baseline: 'lru-cache-awaited',
    packages: ['keyv'],
    workloads: [...ALL],
    create: async () => {
      const { Keyv } = await import('keyv')
      const keyv = new Keyv()
      return { get: (key) => keyv.get(key), set: (key, value) => keyv.set(key, value, TTL_MS) }
    },
  },
  {
    id: 'cacheable-memory',
    label: 'cacheable (Cacheable, memory primary)',
    role: 'peer',
    baseline: 'lru-cache-awaited',
    packages: ['cacheable'],
    workloads: [...ALL],
    create: async () => {
      const { Cacheable } = await import('cacheable')
      const cache = new Cacheable()
      return { get: (key) => cache.get(key), set: (key, value) => cache.set(key, value, TTL_MS) }
    },
  },
  {
    id: 'cache-manager-memory',
    label: 'cache-manager (default memory store)',
    role: 'peer',
    baseline: 'lru-cache-awaited',
    packages: ['cache-manager', 'keyv'],
    workloads: [...ALL],
    create: async () => {
      const { createCache } = await import('cache-manager')
      const cache = createCache()
      return { get: (key) => cache.get(key), set: (key, value) => cache.set(key, value, TTL_MS) }
    },
  },
  {
    id: 'bentocache-memory',
    label: 'bentocache (memory driver)',
    role: 'peer',
    baseline: 'lru-cache-awaited',
    packages: ['bentocache'],
    workloads: [...ALL],
    note: 'bentocache memory driver with `serialize: false` (stores references, its fastest setting, as @cache/memory does).',
    create: async () => {
      const { BentoCache, bentostore } = await import('bentocache')
      const { memoryDriver } = await import('bentocache/drivers/memory')
      const bento = new BentoCache({
        default: 'memory',
        stores: { memory: bentostore().useL1Layer(memoryDriver({ maxItems: CAPACITY, serialize: false })) },
      })
      return {
        get: (key) => bento.get({ key }),
        set: (key, value) => bento.set({ key, value, ttl: TTL_MS }),
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
        set: (key, value) => backend.set(key, value, TTL_SECONDS),
        close: () => backend.close(),
      }
    },
  },
]

export const memory: Scenario = { id: 'memory', title: 'In-process memory cache', contestants }
