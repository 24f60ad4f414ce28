import { CacheError, type CacheEvent, CacheNotANumberError, isUnavailable } from '@cache/core'
import type { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RedisBackend, RedisBackendOptions } from '../src/index.js'
import { openWithRaw, useSingleAndCluster } from './servers.js'

const servers = useSingleAndCluster()

const MAX = Number.MAX_SAFE_INTEGER
const MIN = Number.MIN_SAFE_INTEGER

const modes: { name: string; url: () => string; options: RedisBackendOptions }[] = [
  { name: 'one node', url: servers.singleUrl, options: {} },
  { name: 'one node, exactlyOnceWindow off', url: servers.singleUrl, options: { exactlyOnceWindow: false } },
  { name: 'one node, coalesce off', url: servers.singleUrl, options: { coalesce: false } },
  { name: 'cluster', url: servers.clusterUrl, options: {} },
  { name: 'cluster, exactlyOnceWindow off', url: servers.clusterUrl, options: { exactlyOnceWindow: false } },
]

describe.each(modes)('values at the edges ($name)', ({ name, url, options }) => {
  let cache: RedisBackend
  let raw: Redis | Cluster
  let n = 0
  const namespace = `edges-${name.replace(/\W+/g, '-')}`
  beforeAll(async () => {
    ;({ cache, raw } = await openWithRaw(url(), namespace, options))
  })
  afterAll(async () => {
    await cache?.close()
    raw?.disconnect()
  })
  const key = () => `k${n++}`
  const stored = (k: string) => raw.get(`${namespace}:${k}`)

  describe('incr past the safe integers', () => {
    it('refuses with RangeError and leaves the counter unchanged, also when retried', async () => {
      const k = key()
      await cache.set(k, MAX)
      for (let i = 0; i < 3; i++) await expect(cache.incr(k)).rejects.toThrow(RangeError)
      expect(await stored(k)).toBe(String(MAX))
      expect(await cache.incr(k, -1)).toBe(MAX - 1)
    })

    it('refuses a negative step past Number.MIN_SAFE_INTEGER without applying it', async () => {
      const k = key()
      await cache.set(k, MIN + 2)
      expect(await cache.incr(k, -2)).toBe(MIN)
      await expect(cache.incr(k, -1)).rejects.toThrow(RangeError)
      await expect(cache.incr(k, MIN)).rejects.toThrow(RangeError)
      expect(await stored(k)).toBe(String(MIN))
    })

    it('refuses a step that would cross from one end past the other', async () => {
      const k = key()
      await cache.set(k, 10)
      await expect(cache.incr(k, MAX)).rejects.toThrow(RangeError)
      expect(await stored(k)).toBe('10')
      expect(await cache.incr(k, MAX - 10)).toBe(MAX)
    })

    it('refuses a counter another client stored past 2^53 (by 0 too) without touching it or its TTL', async () => {
      const k = key()
      await raw.set(`${namespace}:${k}`, '9007199254740993', 'PX', 60_000)
      await expect(cache.incr(k)).rejects.toThrow(RangeError)
      await expect(cache.incr(k, 0)).rejects.toThrow(RangeError)
      await expect(cache.incr(k, -5)).rejects.toThrow(RangeError)
      // 2^53 + 1 is 2^53 as a double: minus 1 would look safe, but the result 2^53 is not.
      await expect(cache.incr(k, -1)).rejects.toThrow(RangeError)
      expect(await stored(k)).toBe('9007199254740993')
      expect(await raw.pttl(`${namespace}:${k}`)).toBeGreaterThan(50_000)
    })

    it('reads a counter another client wrote with leading zeros alike in get, getMany, getEntry and incr', async () => {
      for (const [text, value] of [
        ['007', 7],
        ['-007', -7],
        ['00', 0],
      ] as const) {
        const k = key()
        await raw.set(`${namespace}:${k}`, text)
        const [got, many, entry] = await Promise.all([cache.get(k), cache.getMany([k]), cache.getEntry(k)])
        expect([got, many, entry?.value], text).toEqual([value, [value], value])
        expect(await cache.get(k), text).toBe(value)
        expect(await cache.incr(k), text).toBe(value + 1)
        expect(await stored(k)).toBe(String(value + 1))
      }
    })

    it('still reports text that is not an integer as CacheNotANumberError', async () => {
      for (const text of ['0x10', '1.5', 'abc', '+7', '', '1e3x']) {
        const k = key()
        await raw.set(`${namespace}:${k}`, text)
        await expect(cache.incr(k), text).rejects.toThrow(CacheNotANumberError)
        expect(await stored(k)).toBe(text)
      }
    })

    it('keeps the TTL-on-create rule: a counter created at a safe edge gets the TTL, a refused step sets none', async () => {
      const k = key()
      expect(await cache.incr(k, MAX, 60)).toBe(MAX)
      expect(await raw.pttl(`${namespace}:${k}`)).toBeGreaterThan(50_000)
      await expect(cache.incr(k, 1, 1)).rejects.toThrow(RangeError)
      expect(await raw.pttl(`${namespace}:${k}`)).toBeGreaterThan(50_000)
    })

    it('does not count a refused incr as a set', async () => {
      const k = key()
      await cache.set(k, MAX)
      const sets = cache.stats.sets
      await expect(cache.incr(k)).rejects.toThrow(RangeError)
      expect(cache.stats.sets).toBe(sets)
    })
  })

  describe("the caller's errors", () => {
    it('throws a non-integer incr and every call on a key of another type to the caller, counting none', async () => {
      const [text, list, fine] = [key(), key(), key()]
      await raw.set(`${namespace}:${text}`, 'not a number')
      await raw.rpush(`${namespace}:${list}`, 'job1')
      await cache.set(fine, 'F')
      const events: CacheEvent[] = []
      const listener = (event: CacheEvent) => events.push(event)
      cache.on('error', listener)
      const { errors, timeouts } = cache.stats
      try {
        const calls: [string, () => Promise<unknown>][] = [
          ['incr of text', () => cache.incr(text)],
          ['incr of a list', () => cache.incr(list)],
          ['get of a list', () => cache.get(list)],
          ['getEntry of a list', () => cache.getEntry(list)],
          ['getMany with a list', () => cache.getMany([fine, list])],
          ['atomicUpdate of a list', () => cache.atomicUpdate(list, () => 1)],
        ]
        for (const [label, call] of calls) {
          const error = await call().then(
            () => undefined,
            (e: unknown) => e,
          )
          expect(error, label).toBeInstanceOf(CacheError)
          expect(isUnavailable(error), label).toBe(false)
        }
        await expect(cache.incr(text)).rejects.toThrow(CacheNotANumberError)
        expect(cache.stats.errors).toBe(errors)
        expect(cache.stats.timeouts).toBe(timeouts)
        expect(events).toEqual([])
        expect(await stored(text)).toBe('not a number')
      } finally {
        cache.off('error', listener)
      }
    })
  })

  describe('getMany on a key of another Redis type', () => {
    it("rejects the whole call with the error get throws (WRONGTYPE), not counted (the caller's error)", async () => {
      const [a, list, c] = [key(), key(), key()]
      await cache.set(a, 'A')
      await cache.set(c, 'C')
      await raw.rpush(`${namespace}:${list}`, 'job1')
      const fromGet = await cache.get(list).then(
        () => undefined,
        (error: unknown) => error,
      )
      expect(fromGet).toBeInstanceOf(CacheError)
      const errors = cache.stats.errors
      const fromGetMany = await cache.getMany([a, list, c]).then(
        () => undefined,
        (error: unknown) => error,
      )
      expect(fromGetMany).toBeInstanceOf((fromGet as object).constructor)
      expect(String((fromGetMany as Error).message)).toMatch(/WRONGTYPE/)
      expect(cache.stats.errors).toBe(errors)
      expect(await cache.getMany([a, c])).toEqual(['A', 'C'])
    })

    it('reads a key of another type that a set called after it in the same tick replaces as a miss, never as the value of that set (call order)', async () => {
      const [a, list] = [key(), key()]
      await cache.set(a, 'A')
      await raw.rpush(`${namespace}:${list}`, 'job1')
      const errors = cache.stats.errors
      // getMany is called before the set: it reads the list (a miss to MGET), never the set's value.
      const [many, set] = await Promise.all([cache.getMany([a, list]), cache.set(list, 'B')])
      expect(set).toBeUndefined()
      expect(many).toEqual(['A', undefined])
      expect(cache.stats.errors).toBe(errors)
      expect(await cache.getMany([a, list])).toEqual(['A', 'B'])
    })

    it('reads and checks thousands of keys of one hash slot in one call', async () => {
      // Past what one Lua `unpack` takes (about 8000 values): the keys share a slot on a cluster too.
      const keys = Array.from({ length: 9000 }, (_, i) => `{many-${n}}:${i}`)
      n++
      for (let from = 0; from < 8500; from += 500)
        await cache.setMany(keys.slice(from, from + 500).map((k, i) => ({ key: k, value: from + i })))
      const expected = keys.map((_, i) => (i < 8500 ? i : undefined))
      expect(await cache.getMany(keys)).toEqual(expected)
      await raw.sadd(`${namespace}:${keys[8800]}`, 'member')
      await expect(cache.getMany(keys)).rejects.toThrow(/WRONGTYPE/)
    })

    it('rejects when the wrong-type key is one of many spread over every slot', async () => {
      const keys = Array.from({ length: 200 }, () => key())
      await cache.setMany(keys.map((k, i) => ({ key: k, value: i })))
      await raw.del(`${namespace}:${keys[150]}`)
      await raw.sadd(`${namespace}:${keys[150]}`, 'member')
      await expect(cache.getMany(keys)).rejects.toThrow(/WRONGTYPE/)
      expect(await cache.getMany(keys.slice(0, 150))).toEqual(keys.slice(0, 150).map((_, i) => i))
    })
  })
})
