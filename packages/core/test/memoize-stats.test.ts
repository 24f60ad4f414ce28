import { describe, expect, it } from 'vitest'
import { type CacheBackend, type CacheEntry, type CacheEvent, cached, defineBackend } from '../src/index.js'
import { mapBackend } from './map-backend.js'

/** An in-process backend with sync access, as @cache/memory is. */
function syncBackend(): CacheBackend {
  const rows = new Map<string, unknown>()
  const sync = {
    getEntry: <T>(key: string): CacheEntry<T> | undefined =>
      rows.has(key) ? { value: rows.get(key) as T } : undefined,
    set: (key: string, value: unknown) => void rows.set(key, value),
  }
  return defineBackend({
    name: 'sync-map',
    get: async (key: string) => rows.get(key) as never,
    set: async (key: string, value: unknown) => void rows.set(key, value),
    delete: async (key: string) => rows.delete(key),
    clear: async () => rows.clear(),
    sync,
  })
}

describe.each([
  ['a shared backend', () => mapBackend() as CacheBackend],
  ['an in-process backend', syncBackend],
])('memoize stats on %s', (label, make) => {
  it('counts each invalidate() in stats.deletes and emits a delete event', async () => {
    const backend = make()
    const price = cached(async (id: number) => id * 10, { backend, name: `price-stats ${label}`, ttl: 60 })
    const events: CacheEvent[] = []
    price.on('delete', (event) => events.push(event))
    await price(1)
    await price(2)
    await price.invalidate(1)
    await price.invalidate(2)
    await price.invalidate(3) // never computed: still an invalidation the caller asked for
    expect(price.stats.deletes).toBe(3)
    expect(events.map((event) => event.key)).toEqual([price.keyFor(1), price.keyFor(2), price.keyFor(3)])
    expect(price.stats.sets).toBe(2)
  })

  it('does not count an invalidate() that the backend refused', async () => {
    const backend = make()
    const price = cached(async (id: number) => id, { backend, name: `price-refused ${label}`, ttl: 60 })
    await price(1)
    backend.deleteMany = async () => {
      throw new Error('down')
    }
    backend.set = async () => {
      throw new Error('down')
    }
    backend.setMany = backend.set as never
    await expect(price.invalidate(1)).rejects.toThrow('down')
    expect(price.stats.deletes).toBe(0)
  })
})
