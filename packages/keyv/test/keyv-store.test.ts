import { CacheSerializationError, CacheUnavailableError } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { startRedis } from '@cache/test-servers'
import { Cacheable } from 'cacheable'
import { createCache } from 'cache-manager'
import { Keyv } from 'keyv'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { keyvBackend, toKeyvStore } from '../src/index.js'

afterEach(() => {
  vi.useRealTimers()
})

describe('toKeyvStore through Keyv 5', () => {
  it('gets, sets, deletes and reports misses', async () => {
    const backend = memoryBackend()
    const keyv = new Keyv({ store: toKeyvStore(backend) })
    expect(await keyv.set('user:1', { name: 'Ada', tags: ['x'] })).toBe(true)
    expect(await keyv.get('user:1')).toEqual({ name: 'Ada', tags: ['x'] })
    expect(await keyv.get('missing')).toBeUndefined()
    expect(await keyv.has('user:1')).toBe(true)
    expect(await keyv.delete('user:1')).toBe(true)
    expect(await keyv.get('user:1')).toBeUndefined()
    // Keyv prefixes keys with its namespace; the backend holds them.
    await keyv.set('k', 1)
    expect(await backend.has('keyv:k')).toBe(true)
  })

  it('refuses switches that are not true or false (text from a configuration file)', () => {
    for (const option of ['closeOnDisconnect', 'throwOnErrors'])
      expect(() => toKeyvStore(memoryBackend(), { [option]: 'false' })).toThrow(
        new RegExp(`${option}: expected true or false`),
      )
  })

  it('passes the TTL on to the backend, so entries expire there too', async () => {
    const backend = memoryBackend()
    const keyv = new Keyv({ store: toKeyvStore(backend) })
    await keyv.set('short', 'v', 5000)
    const entry = await backend.getEntry('keyv:short')
    expect(entry!.expiresAt).toBeGreaterThan(Date.now() + 4000)
    expect(entry!.expiresAt).toBeLessThanOrEqual(Date.now() + 5000)
    await keyv.set('forever', 'v')
    expect((await backend.getEntry('keyv:forever'))!.expiresAt).toBeUndefined()
  })

  it('expires through Keyv with fake timers', async () => {
    vi.useFakeTimers({ now: 1_700_000_000_000 })
    const keyv = new Keyv({ store: toKeyvStore(memoryBackend()) })
    await keyv.set('k', 'v', 1000)
    vi.advanceTimersByTime(999)
    expect(await keyv.get('k')).toBe('v')
    vi.advanceTimersByTime(2)
    expect(await keyv.get('k')).toBeUndefined()
  })

  it('supports getMany, setMany, deleteMany and clear', async () => {
    const keyv = new Keyv({ store: toKeyvStore(memoryBackend({ namespace: 'app' })) })
    await keyv.setMany([
      { key: 'a', value: 1 },
      { key: 'b', value: 2, ttl: 60_000 },
    ])
    expect(await keyv.getMany(['a', 'b', 'c'])).toEqual([1, 2, undefined])
    expect(await keyv.deleteMany(['a'])).toBe(true)
    expect(await keyv.get('a')).toBeUndefined()
    await keyv.clear()
    expect(await keyv.get('b')).toBeUndefined()
  })

  it('closes the backend on disconnect, unless told not to', async () => {
    let closed = 0
    const backend = { ...plain(), close: async () => void closed++ }
    await new Keyv({ store: toKeyvStore(backend) }).disconnect()
    expect(closed).toBe(1)
    await new Keyv({ store: toKeyvStore(backend, { closeOnDisconnect: false }) }).disconnect()
    expect(closed).toBe(1)
  })
})

describe('toKeyvStore namespaces', () => {
  it('maps each Keyv namespace to its own backend namespace: clear() of one leaves the others alone', async () => {
    const redis = await startRedis()
    const backends: ReturnType<typeof redisBackend>[] = []
    const byNamespace = (namespace: string | undefined) => {
      const backend = redisBackend(redis.url, { namespace: `app-${namespace}` })
      backends.push(backend)
      return backend
    }
    const users = new Keyv({ store: toKeyvStore(byNamespace), namespace: 'users' })
    const orders = new Keyv({ store: toKeyvStore(byNamespace), namespace: 'orders' })
    const view = redisBackend(redis.url, { namespace: 'app-users' })
    try {
      await users.set('1', 'Ada')
      await orders.set('1', 'order of Ada')
      await orders.set('2', 'another order')
      // Keys live in the backend namespace of their Keyv namespace, as Keyv hands them over.
      expect(await view.has('users:1')).toBe(true)
      await users.clear()
      expect(await users.get('1')).toBeUndefined()
      expect(await orders.get(['1', '2'])).toEqual(['order of Ada', 'another order'])
      expect(backends.map((backend) => backend.namespace)).toEqual(['app-users', 'app-orders'])
    } finally {
      await users.disconnect()
      await orders.disconnect()
      await view.close()
      await redis.stop()
    }
  })

  it('follows Keyv when it changes its namespace, and closes every backend it was given', async () => {
    const made = new Map<string | undefined, ReturnType<typeof memoryBackend>>()
    const closed: (string | undefined)[] = []
    const store = toKeyvStore((namespace) => {
      const backend = memoryBackend({ namespace })
      backend.close = async () => void closed.push(namespace)
      made.set(namespace, backend)
      return backend
    })
    const keyv = new Keyv({ store, namespace: 'a' })
    await keyv.set('k', 1)
    keyv.namespace = 'b'
    expect(await keyv.get('k')).toBeUndefined()
    await keyv.set('k', 2)
    expect([...made.keys()]).toEqual(['a', 'b'])
    await keyv.clear()
    expect(made.get('a')!.size).toBe(1)
    expect(made.get('b')!.size).toBe(0)
    await keyv.disconnect()
    expect(closed).toEqual(['a', 'b'])
  })
})

describe('toKeyvStore failures, reported as Keyv’s own adapters report them', () => {
  it('emits each failure once as a Keyv error event and answers a miss, while the Redis behind it is down', async () => {
    const redis = await startRedis({ spawn: true })
    const keyv = new Keyv({ store: toKeyvStore(redisBackend(redis.url, { namespace: 'down' })) })
    const errors: unknown[] = []
    keyv.on('error', (error) => errors.push(error))
    try {
      expect(await keyv.set('k', 'v')).toBe(true)
      await redis.process!.kill()
      expect(await keyv.get('k')).toBeUndefined()
      expect(await keyv.get(['k', 'other'])).toEqual([undefined, undefined])
      expect(await keyv.has('k')).toBe(false)
      expect(await keyv.has(['k', 'other'])).toEqual([false, false])
      expect(errors).toHaveLength(4)
      expect(await keyv.set('k', 'w')).toBe(false)
      expect(await keyv.delete('k')).toBe(false)
      await keyv.clear()
      expect(errors).toHaveLength(7)
      for (const error of errors) expect(error).toBeInstanceOf(CacheUnavailableError)
    } finally {
      await redis.stop()
      await keyv.disconnect()
    }
  })

  it('throws the failures when the adapter and Keyv are told to (throwOnErrors), still one event each', async () => {
    const failing = {
      name: 'failing',
      get: async () => {
        throw new Error('down')
      },
      set: async () => {
        throw new Error('down')
      },
      delete: async () => false,
      clear: async () => {},
    }
    const keyv = new Keyv({ store: toKeyvStore(failing, { throwOnErrors: true }), throwOnErrors: true })
    const errors: unknown[] = []
    keyv.on('error', (error) => errors.push(error))
    await expect(keyv.get('k')).rejects.toThrow('down')
    await expect(keyv.get(['k', 'j'])).rejects.toThrow('down')
    await expect(keyv.set('k', 1)).rejects.toThrow('down')
    expect(errors).toHaveLength(3)
  })

  it('throws failures to keyvBackend(toKeyvStore(backend)), which turns throwOnErrors on', async () => {
    const failing = {
      name: 'failing',
      get: async () => {
        throw new Error('down')
      },
      set: async () => {},
      delete: async () => false,
      clear: async () => {},
    }
    const store = toKeyvStore(failing)
    const again = keyvBackend(store, { namespace: 'again' })
    expect(store.throwOnErrors).toBe(true)
    await expect(again.get('k')).rejects.toBeInstanceOf(CacheUnavailableError)
    expect(again.stats.errors).toBe(1)
  })

  it('throws the caller’s errors whatever throwOnErrors says: a value the backend cannot store', async () => {
    const redis = await startRedis()
    // Without a Keyv serializer the backend serializes the envelope itself, and refuses a class instance.
    const keyv = new Keyv({
      store: toKeyvStore(redisBackend(redis.url, { namespace: 'caller' })),
      serialize: undefined,
      deserialize: undefined,
    })
    const errors: unknown[] = []
    keyv.on('error', (error) => errors.push(error))
    try {
      class Money {
        constructor(readonly cents: number) {}
      }
      // Keyv's contract for a write it could not do: `false` and one error event.
      expect(await keyv.set('price', new Money(5))).toBe(false)
      expect(errors).toHaveLength(1)
      expect(errors[0]).toBeInstanceOf(CacheSerializationError)
      keyv.throwOnErrors = true
      await expect(keyv.set('price', new Money(5))).rejects.toBeInstanceOf(CacheSerializationError)
    } finally {
      await keyv.disconnect()
      await redis.stop()
    }
  })
})

describe('toKeyvStore through cacheable 2', () => {
  it('serves as the secondary store behind cacheable’s in-memory primary', async () => {
    const backend = memoryBackend()
    const cache = new Cacheable({ secondary: toKeyvStore(backend) as never })
    await cache.set('k', { n: 1 }, '1m')
    expect(await cache.get('k')).toEqual({ n: 1 })
    expect(backend.size).toBe(1) // written through to the backend
    // A fresh cacheable sharing the backend reads it from the secondary.
    const other = new Cacheable({ secondary: toKeyvStore(backend) as never })
    expect(await other.get('k')).toEqual({ n: 1 })
    await other.delete('k')
    expect(await new Cacheable({ secondary: toKeyvStore(backend) as never }).get('k')).toBeUndefined()
  })

  it('serves as the primary store, with getOrSet', async () => {
    const cache = new Cacheable({ primary: toKeyvStore(memoryBackend()) as never })
    let calls = 0
    const load = async () => {
      calls++
      return 'loaded'
    }
    expect(await cache.getOrSet('k', load)).toBe('loaded')
    expect(await cache.getOrSet('k', load)).toBe('loaded')
    expect(calls).toBe(1)
    expect(await cache.getMany(['k', 'x'])).toEqual(['loaded', undefined])
  })
})

describe('toKeyvStore through cache-manager 7', () => {
  it('stores, expires, deletes and wraps', async () => {
    const backend = memoryBackend()
    const cache = createCache({ stores: [new Keyv({ store: toKeyvStore(backend) }) as never] })
    await cache.set('k', 'v', 60_000)
    expect(await cache.get('k')).toBe('v')
    expect(await cache.ttl('k')).toBeGreaterThan(Date.now() + 50_000)
    expect(await cache.mget(['k', 'missing'])).toEqual(['v', undefined])
    await cache.del('k')
    expect(await cache.get('k')).toBeUndefined()
    let calls = 0
    const fn = async () => ++calls
    expect(await cache.wrap('w', fn, 60_000)).toBe(1)
    expect(await cache.wrap('w', fn, 60_000)).toBe(1)
    expect(await backend.has('keyv:w')).toBe(true)
    await cache.clear()
    expect(await backend.has('keyv:w')).toBe(false)
  })
})

function plain() {
  const store = new Map<string, unknown>()
  return {
    name: 'plain',
    get: async (k: string) => store.get(k) as never,
    set: async (k: string, v: unknown) => void store.set(k, v),
    delete: async (k: string) => store.delete(k),
    clear: async () => store.clear(),
  }
}
