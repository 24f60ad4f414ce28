import { deserialize, serialize } from 'node:v8'
import { defineBackend, type MinimalBackend, ttlToMs } from '@cache/core'
import { isListedKey } from '@cache/core/backend'
import { runConformance } from '../src/index.js'

type Row = { value: unknown; expiresAt?: number }

/**
 * What a user writes to plug in their own store: only get/set/delete/clear. Values go through
 * v8 serialization so the toy behaves like a store outside the process. Each namespace has its
 * own Map in the shared store: a `namespace:key` string would let namespace `a` with key `b:x`
 * and namespace `a:b` with key `x` share an entry.
 */
function toyBackend(shared: Map<string, Map<string, Row>>, namespace: string): MinimalBackend {
  const rows = () => {
    let own = shared.get(namespace)
    if (own === undefined) shared.set(namespace, (own = new Map()))
    return own
  }
  return {
    name: 'toy',
    async get(key) {
      const entry = rows().get(key)
      if (entry === undefined) return undefined
      if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
        rows().delete(key)
        return undefined
      }
      return deserialize(serialize(entry.value)) as never
    },
    async set(key, value, ttl) {
      const ms = ttlToMs(ttl)
      rows().set(key, {
        value: deserialize(serialize(value)),
        expiresAt: ms === undefined ? undefined : Date.now() + ms,
      })
    },
    async delete(key) {
      return rows().delete(key)
    },
    async clear() {
      shared.delete(namespace)
    },
  }
}

const store = new Map<string, Map<string, Row>>()

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
  return {
    ...toyBackend(store, namespace),
    async *keys(options) {
      for (const [key, entry] of [...(store.get(namespace) ?? [])]) {
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
