import { CacheError, CacheNotANumberError, type CacheEvent, CacheConfigError } from '@cache/core'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RedisBackend, redisBackend } from '../src/index.js'

let server: RedisServer
let cache: RedisBackend
let raw: Redis

beforeAll(async () => {
  server = await startRedis()
  cache = redisBackend(server.url, { namespace: `unit${process.pid}` })
  raw = new Redis(server.url)
})
afterAll(async () => {
  await cache?.close()
  raw?.disconnect()
  await server?.stop()
})

describe('redis backend', () => {
  it('stores TTLs in ms with PX, including ones past 2^31 ms', async () => {
    // Seconds with a fraction, stored in ms; wide enough that a loaded machine's pause between the set
    // and the read does not matter.
    await cache.set('short', 1, 2.5)
    await cache.set('long', 1, '30d')
    const ns = cache.namespace
    expect(await raw.pttl(`${ns}:short`)).toBeGreaterThan(1500)
    expect(await raw.pttl(`${ns}:short`)).toBeLessThanOrEqual(2500)
    expect(await raw.pttl(`${ns}:long`)).toBeGreaterThan(2 ** 31)
  })

  it('applies defaultTtl when set() has none, and getEntry reports the expiry', async () => {
    const withDefault = redisBackend(server.url, { namespace: `dflt${process.pid}`, defaultTtl: '1h' })
    try {
      const before = Date.now()
      await withDefault.set('k', 'v')
      const entry = await withDefault.getEntry('k')
      expect(entry!.value).toBe('v')
      expect(entry!.expiresAt).toBeGreaterThanOrEqual(before + 3_600_000 - 50)
      expect(entry!.expiresAt).toBeLessThanOrEqual(Date.now() + 3_600_000)
    } finally {
      await withDefault.close()
    }
  })

  it('rejects a TTL Redis cannot hold with a RangeError', async () => {
    await expect(cache.set('k', 1, 1e20)).rejects.toThrow(RangeError)
  })

  it('stores counters as plain integers that get() reads back as numbers', async () => {
    expect(await cache.incr('hits', 3, 60)).toBe(3)
    expect(await raw.get(`${cache.namespace}:hits`)).toBe('3')
    expect(await raw.pttl(`${cache.namespace}:hits`)).toBeGreaterThan(59_000)
    await cache.set('num', 41)
    expect(await cache.incr('num')).toBe(42)
    expect(await raw.pttl(`${cache.namespace}:num`)).toBe(-1)
  })

  it('incr on a value that is not an integer is a CacheNotANumberError', async () => {
    await cache.set('text', 'abc')
    await cache.set('float', 1.5)
    await expect(cache.incr('text')).rejects.toBeInstanceOf(CacheNotANumberError)
    await expect(cache.incr('float')).rejects.toBeInstanceOf(CacheNotANumberError)
  })

  it('atomicUpdate gives up with CacheConflictError when another writer always wins', async () => {
    const stubborn = redisBackend(server.url, { namespace: cache.namespace, maxAttempts: 3 })
    try {
      let n = 0
      const error = await stubborn
        .atomicUpdate<number>('fought', async (v) => {
          await raw.set(`${cache.namespace}:fought`, String(++n * 1000))
          return (v ?? 0) + 1
        })
        .catch((e) => e)
      expect(error).toMatchObject({ code: 'CACHE_CONFLICT', key: 'fought' })
      expect(n).toBe(3)
    } finally {
      await stubborn.close()
    }
  })

  it('a reply error about the data is a CacheError, not an outage', async () => {
    await raw.rpush(`${cache.namespace}:list`, 'x')
    const error = (await cache.get('list').catch((e: unknown) => e)) as CacheError
    expect(error).toBeInstanceOf(CacheError)
    expect(error.code).toBe('CACHE_ERROR')
    expect(error.message).toMatch(/WRONGTYPE/)
  })

  it('counts hits, misses, sets and latency, and emits events', async () => {
    const observed = redisBackend(server.url, { namespace: `stats${process.pid}` })
    const events: string[] = []
    const record = (event: CacheEvent) => events.push(`${event.key}`)
    observed.on('hit', record).on('miss', record)
    try {
      await observed.set('a', 1)
      await observed.get('a')
      await observed.get('b')
      await observed.getMany(['a', 'b'])
      expect(observed.stats).toMatchObject({ hits: 2, misses: 2, sets: 1 })
      expect(observed.stats.operations).toBeGreaterThanOrEqual(4)
      expect(observed.stats.totalLatencyMs).toBeGreaterThan(0)
      expect(events).toEqual(['a', 'b', 'a', 'b'])
    } finally {
      await observed.close()
    }
  })

  it('reads values another client wrote compressed, and the other way round', async () => {
    const namespace = cache.namespace
    const compressing = redisBackend(server.url, { namespace, compressThreshold: 64 })
    try {
      const big = { text: 'x'.repeat(10_000), when: new Date(5) }
      await compressing.set('packed', big)
      expect((await raw.getBuffer(`${namespace}:packed`))![0]).toBe(0)
      expect(await cache.get('packed')).toEqual(big)
      expect(await compressing.get('packed')).toEqual(big)
      await cache.set('plain', { a: [1, 'b'], big: 2n })
      expect(await compressing.get('plain')).toEqual({ a: [1, 'b'], big: 2n })
    } finally {
      await compressing.close()
    }
  })

  it('reports bytes it cannot decode as a CacheSerializationError', async () => {
    await raw.set(`${cache.namespace}:binary`, Buffer.from([0xff, 0x0d, 0x6f]))
    await expect(cache.get('binary')).rejects.toMatchObject({ code: 'CACHE_SERIALIZATION' })
  })

  it('validates its options', () => {
    expect(() => redisBackend(server.url, { timeout: 0 })).toThrow(CacheConfigError)
    expect(() => redisBackend(server.url, { maxAttempts: 0 })).toThrow(CacheConfigError)
    expect(() => redisBackend(server.url, { defaultTtl: -1 })).toThrow(CacheConfigError)
    expect(() => redisBackend('memcached://x')).toThrow(/not a Redis URL/)
  })
})
