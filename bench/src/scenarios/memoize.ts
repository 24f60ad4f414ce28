import { TTL_MS, TTL_SECONDS, values } from '../data.js'
import type { Contestant, Driver, Scenario } from '../contestant.js'
import { CAPACITY, ourMemory } from './memory.js'
import { CACHEABLE_MEMORY_FAST, keyvWithoutSerialization } from './peers.js'

/**
 * Memoized lookups of `loadProfile(id)`, an async function standing in for a database read.
 * Every row is prefilled by calling it once per id, then measured on hits only; `loads()` tells
 * the worker how often the real function ran, so a row that misses fails.
 */
function source() {
  let loads = 0
  const loadProfile = async (id: number): Promise<Record<string, unknown>> => {
    loads++
    return values[id]!
  }
  return { loadProfile, loads: () => loads }
}

/** A driver whose reads and prefill writes both call the memoized function. */
function memoDriver(call: (id: number) => unknown, loads: () => number, close?: () => unknown): Driver {
  return {
    get: (_key, index) => call(index),
    set: (_key, _value, index) => call(index),
    loads,
    close: close as Driver['close'],
  }
}

const contestants: Contestant[] = [
  {
    id: 'map-memo',
    label: 'hand-written Map memo',
    role: 'limit',
    packages: [],
    workloads: ['get-hit'],
    note: 'A Map from id to `{ value, expiresAt }` with the TTL checked against `Date.now()` on read, in an async function: the memoize hit target’s reference.',
    create: async () => {
      const { loadProfile, loads } = source()
      const memo = new Map<number, { value: unknown; expiresAt: number }>()
      const getProfile = async (id: number) => {
        const hit = memo.get(id)
        if (hit !== undefined && hit.expiresAt > Date.now()) return hit.value
        const value = await loadProfile(id)
        memo.set(id, { value, expiresAt: Date.now() + TTL_MS })
        return value
      }
      return memoDriver(getProfile, loads)
    },
  },
  ...[false, true].map(
    (fast): Contestant => ({
      id: fast ? 'cacheable-wrap-fast' : 'cacheable-wrap',
      label: fast ? 'cacheable `wrap` (`useClone: false`, one map)' : 'cacheable `wrap`',
      role: 'peer',
      packages: ['cacheable'],
      workloads: ['get-hit'],
      note: fast
        ? '`new Cacheable({ primary: createKeyv({ useClone: false, storeHashSize: 1 }) })` (@cacheable/memory README).'
        : 'Default `new Cacheable()`.',
      create: async () => {
        const { Cacheable, createKeyv } = await import('cacheable')
        const { loadProfile, loads } = source()
        const cache = new Cacheable(fast ? { primary: createKeyv(CACHEABLE_MEMORY_FAST) } : {})
        const getProfile = cache.wrap(loadProfile, { ttl: TTL_MS })
        return memoDriver(getProfile, loads)
      },
    }),
  ),
  ...[false, true].map(
    (fast): Contestant => ({
      id: fast ? 'cache-manager-wrap-fast' : 'cache-manager-wrap',
      label: fast ? 'cache-manager `wrap` (Keyv Map store, no serialization)' : 'cache-manager `wrap`',
      role: 'peer',
      packages: ['cache-manager', 'keyv'],
      workloads: ['get-hit'],
      note: fast
        ? '`createCache({ stores: [keyv] })` with Keyv’s serialization off (cache-manager README).'
        : 'Default `createCache()`.',
      create: async () => {
        const { createCache } = await import('cache-manager')
        const { loadProfile, loads } = source()
        const cache = createCache(fast ? { stores: [await keyvWithoutSerialization()] } : {})
        const getProfile = (id: number) => cache.wrap(`user:${id}:profile`, () => loadProfile(id), TTL_MS)
        return memoDriver(getProfile, loads)
      },
    }),
  ),
  ...[false, true].map(
    (fast): Contestant => ({
      id: fast ? 'bentocache-getorset-fast' : 'bentocache-getorset',
      label: fast ? 'bentocache `getOrSet` (`serialize: false`)' : 'bentocache `getOrSet`',
      role: 'peer',
      packages: ['bentocache'],
      workloads: ['get-hit'],
      note: fast
        ? 'bentocache `getOrSet` on its memory driver with `serialize: false` (bentocache docs, Cache drivers → Memory).'
        : 'bentocache `getOrSet` on its memory driver, default `serialize: true`.',
      create: async () => {
        const { BentoCache, bentostore } = await import('bentocache')
        const { memoryDriver } = await import('bentocache/drivers/memory')
        const { loadProfile, loads } = source()
        const bento = new BentoCache({
          default: 'memory',
          stores: {
            memory: bentostore().useL1Layer(
              memoryDriver({ maxItems: CAPACITY, ...(fast ? { serialize: false } : {}) }),
            ),
          },
        })
        const getProfile = (id: number) =>
          bento.getOrSet({ key: `user:${id}:profile`, factory: () => loadProfile(id), ttl: TTL_MS })
        return memoDriver(getProfile, loads, () => bento.disconnectAll())
      },
    }),
  ),
  {
    id: 'cache-decorator',
    label: '`@cache` decorator (memory)',
    role: 'ours',
    packages: ['@cache/core', '@cache/memory'],
    needs: '@cache/memory',
    workloads: ['get-hit'],
    create: async () => {
      const { cache } = await import('@cache/core')
      const backend = await ourMemory()
      const { loadProfile, loads } = source()
      class Profiles {
        @cache({ ttl: TTL_SECONDS, backend })
        async byId(id: number) {
          return loadProfile(id)
        }
      }
      const profiles = new Profiles()
      return memoDriver(
        (id) => profiles.byId(id),
        loads,
        () => backend.close(),
      )
    },
  },
  {
    id: 'cache-cached',
    label: '`cached()` (memory)',
    role: 'ours',
    packages: ['@cache/core', '@cache/memory'],
    needs: '@cache/memory',
    workloads: ['get-hit'],
    create: async () => {
      const { cached } = await import('@cache/core')
      const backend = await ourMemory()
      const { loadProfile, loads } = source()
      const getProfile = cached(loadProfile, { ttl: TTL_SECONDS, backend, name: 'loadProfile' })
      return memoDriver(getProfile, loads, () => backend.close())
    },
  },
]

export const memoize: Scenario = { id: 'memoize', title: 'Memoize (hit)', contestants }
