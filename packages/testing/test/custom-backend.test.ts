import { deserialize, serialize } from 'node:v8'
import { defineBackend, type MinimalBackend, ttlToMs } from '@cache/core'
import { isListedKey } from '@cache/core/backend'
import { runConformance } from '../src/index.js'

/**
 * What a user writes to plug in their own store: only get/set/delete/clear. Values go through
 * v8 serialization so the toy behaves like a store outside the process.
 */
function toyBackend(
  shared: Map<string, { value: unknown; expiresAt?: number }>,
  namespace: string,
): MinimalBackend {
  const prefix = `${namespace}:`
  return {
    name: 'toy',
    async get(key) {
      const entry = shared.get(prefix + key)
      if (entry === undefined) return undefined
      if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
        shared.delete(prefix + key)
        return undefined
      }
      return deserialize(serialize(entry.value)) as never
    },
    async set(key, value, ttl) {
      const ms = ttlToMs(ttl)
      shared.set(prefix + key, {
        value: deserialize(serialize(value)),
        expiresAt: ms === undefined ? undefined : Date.now() + ms,
      })
    },
    async delete(key) {
      return shared.delete(prefix + key)
    },
    async clear() {
      for (const key of [...shared.keys()]) if (key.startsWith(prefix)) shared.delete(key)
    },
  }
}

const store = new Map<string, { value: unknown; expiresAt?: number }>()

runConformance('toy custom backend', {
  create: ({ namespace }) => defineBackend(toyBackend(store, namespace)),
  serializes: false,
  reportsExpiry: false,
  storesUndefined: false,
  ttlMs: 100,
  // Only get/set/delete/clear: listKeys() throws CacheUnsupportedError.
  listsKeys: false,
})

/** The toy with a `keys()` of its own, which `defineBackend` keeps. */
function listingToy(namespace: string): MinimalBackend {
  const prefix = `${namespace}:`
  return {
    ...toyBackend(store, namespace),
    async *keys(options) {
      for (const [stored, entry] of [...store.entries()]) {
        if (!stored.startsWith(prefix)) continue
        const key = stored.slice(prefix.length)
        const live = entry.expiresAt === undefined || entry.expiresAt > Date.now()
        if (live && isListedKey(key, options?.prefix ?? '')) yield key
      }
    },
  }
}

runConformance('toy custom backend that lists keys', {
  create: ({ namespace }) => defineBackend(listingToy(namespace)),
  serializes: false,
  reportsExpiry: false,
  storesUndefined: false,
  ttlMs: 100,
})
