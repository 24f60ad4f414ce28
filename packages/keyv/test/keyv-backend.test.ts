import { CacheSerializationError, CacheUnavailableError } from '@cache/core'
import { startRedis } from '@cache/test-servers'
import KeyvRedis from '@keyv/redis'
import { Keyv } from 'keyv'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { keyvBackend } from '../src/index.js'

afterEach(() => {
  vi.useRealTimers()
})

describe('keyvBackend', () => {
  it('reports expiresAt from Keyv’s { value, expires } envelope', async () => {
    vi.useFakeTimers({ now: 1_700_000_000_000 })
    const cache = keyvBackend(new Map())
    await cache.set('k', 'v', 30)
    expect(await cache.getEntry('k')).toEqual({ value: 'v', expiresAt: 1_700_000_030_000 })
    vi.advanceTimersByTime(30_001)
    expect(await cache.getEntry('k')).toBeUndefined()
  })

  it('keeps a counter’s original expiry across increments', async () => {
    vi.useFakeTimers({ now: 1_700_000_000_000 })
    const cache = keyvBackend(new Map())
    await cache.incr('n', 1, 10)
    vi.advanceTimersByTime(6000)
    expect(await cache.incr('n', 1, 3600)).toBe(2)
    expect((await cache.getEntry('n'))!.expiresAt).toBe(1_700_000_010_000)
  })

  it('applies defaultTtl when set is called without a TTL', async () => {
    vi.useFakeTimers({ now: 1_700_000_000_000 })
    const cache = keyvBackend(new Map(), { defaultTtl: '1m' })
    await cache.set('k', 1)
    expect((await cache.getEntry('k'))!.expiresAt).toBe(1_700_000_060_000)
  })

  it('writes plain values that a plain Keyv on the same store reads', async () => {
    const store = new Map()
    const cache = keyvBackend(store, { namespace: 'keyv' })
    await cache.set('user', { name: 'Ada', n: 1 })
    const plain = new Keyv({ store })
    expect(await plain.get('user')).toEqual({ name: 'Ada', n: 1 })
  })

  it('uses a Keyv instance as it is: its namespace and serializer', async () => {
    const store = new Map()
    const keyv = new Keyv({ store, namespace: 'app' })
    await keyv.set('written-by-keyv', [1, 2])
    const cache = keyvBackend(keyv)
    expect(cache.namespace).toBe('app')
    expect(await cache.get('written-by-keyv')).toEqual([1, 2])
    await cache.set('k', 'v')
    expect(await keyv.get('k')).toBe('v')
    store.set('other:x', 'kept')
    await cache.clear()
    expect(await keyv.get('k')).toBeUndefined()
    expect(store.get('other:x')).toBe('kept') // clear() of a Map removes this namespace only
  })

  it('never lets a Keyv instance mangle a value silently: exact round trip, or CacheSerializationError', async () => {
    class Money {
      constructor(readonly cents: number) {}
    }
    class When extends Date {}
    const cache = keyvBackend(new Keyv())
    for (const [label, value] of [
      ['a class instance', { price: new Money(150) }],
      ['an Error', { error: new Error('boom') }],
      ['a Date subclass', { at: new When(0) }],
    ] as const) {
      const error = await cache.set(label, value).catch((e) => e)
      expect(error, label).toBeInstanceOf(CacheSerializationError)
      expect(await cache.has(label)).toBe(false)
    }
    const rich = { at: new Date(5), map: new Map([['a', 1]]), set: new Set([1]), big: 1n, none: undefined }
    await cache.set('rich', rich)
    expect(await cache.get('rich')).toEqual(rich)
    await cache.set('plain', { a: [1, 'x'] })
    expect(await cache.keyv.get('plain')).toEqual({ a: [1, 'x'] })
  })

  it('counts the errors of a Keyv that swallows them', async () => {
    const broken = {
      opts: {},
      get: async () => undefined,
      set: async () => {
        throw new Error('store down')
      },
      delete: async () => false,
      clear: async () => {},
    }
    const keyv = new Keyv({ store: broken as never })
    const cache = keyvBackend(keyv)
    const events: unknown[] = []
    cache.on('error', (e) => events.push(e))
    await cache.set('k', 1) // Keyv turns the failure into an event, not an exception
    expect(cache.stats.errors).toBe(1)
    expect(events).toHaveLength(1)
  })

  it('rejects what is neither a Keyv, a store nor a Map', () => {
    expect(() => keyvBackend({} as never)).toThrow(TypeError)
    expect(() => keyvBackend(new Map(), { timeoutMs: -1 })).toThrow(RangeError)
  })

  it('fails fast with CacheUnavailableError when the Redis behind @keyv/redis is down', async () => {
    const redis = await startRedis({ spawn: true })
    const cache = keyvBackend(new KeyvRedis(redis.url), {
      namespace: 'down',
      timeoutMs: 500,
      closeStore: true,
    })
    try {
      await cache.set('k', 1)
      expect(await cache.get('k')).toBe(1)
      await redis.process!.kill()
      const started = Date.now()
      const error = await cache.get('k').catch((e) => e)
      expect(error).toBeInstanceOf(CacheUnavailableError)
      expect(Date.now() - started).toBeLessThan(3000)
      expect(cache.stats.errors).toBeGreaterThan(0)
    } finally {
      await redis.stop()
      await cache.close().catch(() => {})
    }
  })
})
