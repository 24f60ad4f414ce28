import { type CacheBackend, defineBackend, type MinimalBackend, ttlToMs } from '@cache/core'
import { isListedKey } from '@cache/core/backend'

/** A stored entry of a {@link mapBackend}: the value, and its expiry (epoch ms) if it has one. */
export interface MapRow {
  value: unknown
  expiresAt?: number
}

export interface MapBackendOptions {
  /** The backend's name, in errors and events. Default `'map'`. */
  name?: string
  /**
   * The Map the entries live in. Default: a new one. Backends built over one store share their
   * entries, as processes sharing one server do (each with its own flights and queues).
   */
  store?: Map<string, MapRow>
  /**
   * Isolates this backend's entries in a shared `store` (stored as `<namespace>:<key>`);
   * `clear()` removes only them. Default: none.
   */
  namespace?: string
  /** Lists its keys (`keys()`), as redis and disk do. Default `false`, as memcached cannot. */
  listsKeys?: boolean
}

/**
 * A backend over a Map, built with core's `defineBackend` as a user's own backend would be: for
 * tests that need a backend and not a particular store. It honours TTLs, reports `expiresAt`,
 * tells a stored `undefined` from a miss, and keeps values as they are (it serializes nothing).
 * Expiry follows `Date.now()`, so vitest's fake timers move it.
 * `add`, `incr`, `atomicUpdate` and `compareAndDelete` are defineBackend's fallbacks (atomic in
 * this process only). The Map is at `.store`.
 */
export function mapBackend(
  options: MapBackendOptions = {},
): CacheBackend & { readonly store: Map<string, MapRow> } {
  const store = options.store ?? new Map<string, MapRow>()
  // The namespace's length leads its prefix, so no namespace is another's prefix: `a` with key
  // `b:x` and `a:b` with key `x` stay apart (a plain `namespace:` prefix would share one entry).
  const prefix = options.namespace === undefined ? '' : `${options.namespace.length}:${options.namespace}:`
  const row = (key: string): MapRow | undefined => {
    const found = store.get(prefix + key)
    if (found?.expiresAt !== undefined && found.expiresAt <= Date.now()) {
      store.delete(prefix + key)
      return undefined
    }
    return found
  }
  const backend: MinimalBackend = {
    name: options.name ?? 'map',
    async get(key) {
      return row(key)?.value as never
    },
    async getEntry(key) {
      const found = row(key)
      return (found && { ...found }) as never
    },
    async set(key, value, ttl) {
      const ms = ttlToMs(ttl)
      store.set(prefix + key, ms === undefined ? { value } : { value, expiresAt: Date.now() + ms })
    },
    async delete(key) {
      return row(key) !== undefined && store.delete(prefix + key)
    },
    async clear() {
      for (const key of [...store.keys()]) if (key.startsWith(prefix)) store.delete(key)
    },
  }
  if (options.listsKeys)
    backend.keys = async function* (listing) {
      for (const stored of [...store.keys()]) {
        if (!stored.startsWith(prefix)) continue
        const key = stored.slice(prefix.length)
        if (row(key) !== undefined && isListedKey(key, listing?.prefix ?? '')) yield key
      }
    }
  return Object.assign(defineBackend(backend), { store })
}
