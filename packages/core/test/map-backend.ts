import { type CacheEntry, defineBackend, ttlToMs } from '../src/index.js'
import type { SyncAccess } from '../src/backend.js'

export interface MapBackendOptions {
  /** Each read is answered after its own delay (in ms, varying per call), as over a network. */
  latency?: (call: number) => number
  /**
   * Offer synchronous access, as an in-process backend does (`@cache/memory`): memoized sync
   * functions stay sync on it. Default `false`: a backend of another process.
   */
  sync?: boolean
  /**
   * With `sync`, also offer `internalVersion` (bumped on every write or delete of a key of
   * @cache's own, and on `clear()`), so memoize keeps the generations it read between hits.
   */
  internalVersion?: boolean
}

/**
 * Core's own test backend: a Map with asynchronous reads, as a server's are, built with
 * {@link defineBackend}. It honours TTLs by `Date.now()` (so fake timers move it), tells a stored
 * `undefined` from a miss and reports `expiresAt`. With `latency`, concurrent reads come back at
 * different times. `rows` holds the values as stored, `expiries` their expiry times.
 */
export function mapBackend(options: MapBackendOptions = {}) {
  const rows = new Map<string, unknown>()
  const expiries = new Map<string, number>()
  let reads = 0
  let internalWrites = 0
  const wait = async () => {
    const ms = options.latency?.(reads++) ?? 0
    if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms))
  }
  const live = (key: string): boolean => {
    const expiresAt = expiries.get(key)
    if (expiresAt !== undefined && expiresAt <= Date.now()) {
      rows.delete(key)
      expiries.delete(key)
    }
    return rows.has(key)
  }
  const entry = <T>(key: string): CacheEntry<T> | undefined => {
    if (!live(key)) return undefined
    const expiresAt = expiries.get(key)
    return { value: rows.get(key) as T, ...(expiresAt === undefined ? {} : { expiresAt }) }
  }
  const touched = (key: string) => {
    if (key.startsWith('_')) internalWrites++
  }
  /** `ttl` in seconds or a duration string; `undefined` and `Infinity`: never expires. */
  const write = (key: string, value: unknown, ttl?: number | string) => {
    const ms = ttlToMs(ttl)
    rows.set(key, value)
    if (ms === undefined) expiries.delete(key)
    else expiries.set(key, Date.now() + ms)
    touched(key)
  }
  const sync: SyncAccess = {
    getEntry: entry,
    get: <T>(key: string) => entry<T>(key)?.value,
    set: write,
    ...(options.internalVersion ? { internalVersion: () => internalWrites } : {}),
  }
  return Object.assign(
    defineBackend({
      name: options.sync ? 'sync-map' : 'map',
      get: async <T>(key: string) => {
        await wait()
        return entry<T>(key)?.value
      },
      getEntry: async <T>(key: string) => {
        await wait()
        return entry<T>(key)
      },
      getMany: async <T>(keys: readonly string[]) => {
        await wait()
        return keys.map((key) => entry<T>(key)?.value)
      },
      set: async (key: string, value: unknown, ttl?: number) => write(key, value, ttl),
      delete: async (key: string) => {
        const found = live(key)
        rows.delete(key)
        expiries.delete(key)
        touched(key)
        return found
      },
      clear: async () => {
        rows.clear()
        expiries.clear()
        internalWrites++
      },
      ...(options.sync ? { sync } : {}),
    }),
    { rows, expiries },
  )
}
