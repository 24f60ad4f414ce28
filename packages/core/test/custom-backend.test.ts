import { deserialize, serialize } from 'node:v8'
import { describe, expect, it } from 'vitest'
import {
  CacheUnsupportedError,
  cached,
  configureCache,
  defineBackend,
  type MinimalBackend,
  resetCache,
  ttlToMs,
} from '../src/index.js'
import { toBackend } from '../src/kit.js'

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

describe('a custom backend with only get/set/delete/clear', () => {
  it('works with cached() once completed by defineBackend', async () => {
    const backend = defineBackend(toyBackend(store, 'memo-test'))
    let calls = 0
    const double = cached(
      async (n: number) => {
        calls++
        return n * 2
      },
      { backend, name: 'double', ttl: 60 },
    )
    expect(await double(21)).toBe(42)
    expect(await double(21)).toBe(42)
    expect(calls).toBe(1)
    await double.invalidate(21)
    expect(await double(21)).toBe(42)
    expect(calls).toBe(2)
  })
})

/** The smallest store people write: a dict with get, set(key, value, ttl) and delete. */
class DictStore {
  readonly data = new Map<string, { value: unknown; until: number | undefined }>()
  readonly ttls: unknown[] = []
  get(key: string) {
    const entry = this.data.get(key)
    return entry === undefined || (entry.until !== undefined && entry.until <= Date.now())
      ? undefined
      : entry.value
  }
  set(key: string, value: unknown, ttl?: number) {
    this.ttls.push(ttl)
    this.data.set(key, { value, until: ttl === undefined ? undefined : Date.now() + ttl * 1000 })
  }
  delete(key: string) {
    return this.data.delete(key)
  }
}

describe('a custom backend with only get, set and delete', () => {
  it('is accepted by toBackend, cached(), configureCache() and multiLevel-style composition', async () => {
    const store = new DictStore()
    const backend = toBackend(store)
    await backend.set('a', 1, '2m')
    expect(await backend.get('a')).toBe(1)
    expect(await backend.getMany(['a', 'b'])).toEqual([1, undefined])
    expect(await backend.add('a', 2)).toBe(false)
    expect(await backend.incr('n', 5)).toBe(5)
    expect(await backend.delete('a')).toBe(true)
    let calls = 0
    const square = cached(
      async (n: number) => {
        calls++
        return n * n
      },
      { backend: store, name: 'dict-square', ttl: '1m30s' },
    )
    expect(await square(3)).toBe(9)
    expect(await square(3)).toBe(9)
    expect(calls).toBe(1)
    expect(configureCache(store).name).toBe('DictStore')
    await resetCache()
  })

  it('receives the TTL as a number of seconds (Infinity: no expiry; undefined: its default), whatever form the caller used', async () => {
    const store = new DictStore()
    const backend = toBackend(store)
    await backend.set('a', 1, '2m')
    await backend.set('b', 1, 90)
    await backend.set('c', 1, '250ms')
    await backend.set('d', 1)
    await backend.set('e', 1, Number.POSITIVE_INFINITY)
    expect(store.ttls).toEqual([120, 90, 0.25, undefined, Number.POSITIVE_INFINITY])
  })

  it('throws a typed "not supported" error from clear(), and only when it is called', async () => {
    const backend = toBackend(new DictStore())
    const error = await backend.clear().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CacheUnsupportedError)
    expect(error).toMatchObject({ code: 'CACHE_UNSUPPORTED', operation: 'clear', backend: 'DictStore' })
    expect((error as Error).message).toBe(
      'DictStore: clear() is not supported: the backend has no clear method (add one to use cacheFlush() or clear a multi-level chain)',
    )
  })

  it('names a plain object "custom" in that error, and a class instance by its class', async () => {
    const plain = toBackend({ get() {}, set() {}, delete() {} })
    await expect(plain.clear()).rejects.toThrow(/^custom: clear\(\) is not supported/)
    expect(plain.name).toBe('custom')
    expect(toBackend(new DictStore()).name).toBe('DictStore')
  })

  it('still rejects an object without get, set and delete, saying what it needs', () => {
    expect(() => toBackend({ get() {}, set() {} } as never)).toThrow(
      'expected a cache backend: an object with get, set and delete methods (clear optional)',
    )
  })
})
