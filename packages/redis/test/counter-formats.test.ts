import { CacheNotANumberError } from '@cache/core'
import type { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RedisBackend, type RedisBackendOptions, redisBackend } from '../src/index.js'
import { openWithRaw, useSingleAndCluster } from './servers.js'

/*
 * `incr` adds to every integer `get` reads, whatever wrote it: a counter of its own (a plain
 * decimal, added to by the script), a number `set`/`add`/`setMany`/`atomicUpdate` wrote with any
 * serializer (v8 bytes, JSON's tagged -0 or 1e+21), or text another client wrote that the codec
 * reads as an integer. The rule is core's `addToCounter`: not an integer → CacheNotANumberError,
 * past ±MAX_SAFE_INTEGER → RangeError; either way the stored bytes are left as they were.
 */

const servers = useSingleAndCluster()

const MAX = Number.MAX_SAFE_INTEGER

const modes: { name: string; url: () => string; options: RedisBackendOptions }[] = [
  { name: 'v8, one node', url: servers.singleUrl, options: { serializer: 'v8' } },
  {
    name: 'v8, one node, exactlyOnceWindow off',
    url: servers.singleUrl,
    options: { serializer: 'v8', exactlyOnceWindow: false },
  },
  { name: 'v8, cluster', url: servers.clusterUrl, options: { serializer: 'v8' } },
  { name: 'json, one node', url: servers.singleUrl, options: {} },
  { name: 'json compressed, cluster', url: servers.clusterUrl, options: { compressThreshold: 1 } },
]

describe.each(modes)('incr on numbers in every stored form ($name)', ({ name, url, options }) => {
  let cache: RedisBackend
  let other: RedisBackend
  let raw: Redis | Cluster
  let n = 0
  const namespace = `forms-${name.replace(/\W+/g, '-')}`
  beforeAll(async () => {
    ;({ cache, raw } = await openWithRaw(url(), namespace, { timeout: '3s', ...options }))
    other = redisBackend(url(), { namespace, timeout: '3s', ...options })
    await other.ready()
  })
  afterAll(async () => {
    await Promise.all([cache?.close(), other?.close()])
    raw?.disconnect()
  })
  const key = () => `k${n++}`
  const stored = (k: string) => raw.getBuffer(`${namespace}:${k}`)
  const pttl = (k: string) => raw.pttl(`${namespace}:${k}`)

  it('adds to a number written by set, add, setMany and atomicUpdate', async () => {
    const [a, b, c, d] = [key(), key(), key(), key()]
    await cache.set(a, 5)
    await cache.add(b, -5)
    await cache.setMany([{ key: c, value: 123_456_789 }])
    await cache.incr(d)
    await cache.atomicUpdate<number>(d, (v) => (v ?? 0) + 1)
    expect(await cache.incr(a)).toBe(6)
    expect(await cache.incr(b, 3)).toBe(-2)
    expect(await cache.incr(c, 2)).toBe(123_456_791)
    expect(await cache.incr(d)).toBe(3)
    expect(await cache.getMany([a, b, c, d])).toEqual([6, -2, 123_456_791, 3])
    // Now in the counter's own form: the next step is the script's alone.
    expect((await stored(a))?.toString()).toBe('6')
    expect(await other.incr(a, 10)).toBe(16)
  })

  it('keeps the expiry of the number it adds to (a ttl only creates)', async () => {
    const [timed, lasting] = [key(), key()]
    await cache.set(timed, 5, 60)
    await cache.set(lasting, 5)
    expect(await cache.incr(timed, 1, 3600)).toBe(6)
    expect(await cache.incr(lasting, 1, 60)).toBe(6)
    const left = await pttl(timed)
    expect(left).toBeGreaterThan(50_000)
    expect(left).toBeLessThanOrEqual(60_000)
    expect(await pttl(lasting)).toBe(-1)
  })

  it('adds to -0 (written by set, or as text by another client)', async () => {
    const [mine, theirs] = [key(), key()]
    await cache.set(mine, -0)
    await raw.set(`${namespace}:${theirs}`, '-0')
    expect(await cache.incr(mine)).toBe(1)
    expect(await cache.incr(theirs, -1)).toBe(-1)
    expect(await cache.get(mine)).toBe(1)
  })

  it('refuses a stored number past ±MAX_SAFE_INTEGER with RangeError, leaving its bytes and expiry', async () => {
    for (const value of [1e21, -(2 ** 60), MAX + 1]) {
      const k = key()
      await cache.set(k, value, 60)
      const before = await stored(k)
      await expect(cache.incr(k), String(value)).rejects.toThrow(RangeError)
      await expect(cache.incr(k, -1), String(value)).rejects.toThrow(RangeError)
      expect(await stored(k)).toEqual(before)
      expect(await pttl(k)).toBeGreaterThan(50_000)
      expect(await cache.get(k)).toBe(value)
    }
    const edge = key()
    await cache.set(edge, MAX - 1)
    expect(await cache.incr(edge)).toBe(MAX)
    await expect(cache.incr(edge)).rejects.toThrow(RangeError)
    expect(await cache.get(edge)).toBe(MAX)
  })

  it('refuses what is not an integer with CacheNotANumberError, leaving it', async () => {
    for (const value of [5.5, '7', true, null, [1], { n: 1 }, Number.NaN]) {
      const k = key()
      await cache.set(k, value)
      const before = await stored(k)
      await expect(cache.incr(k), JSON.stringify(value)).rejects.toThrow(CacheNotANumberError)
      expect(await stored(k)).toEqual(before)
    }
  })

  it('exact across clients while another keeps rewriting the number in its serializer', async () => {
    const k = key()
    await cache.set(k, 1000)
    const rounds = 60
    const results = await Promise.all([
      ...Array.from({ length: rounds }, () => cache.incr(k)),
      ...Array.from({ length: rounds }, () => other.incr(k, 2)),
      ...Array.from({ length: rounds }, () => other.atomicUpdate<number>(k, (v) => (v as number) + 3)),
    ])
    expect(await cache.get(k)).toBe(1000 + rounds * (1 + 2 + 3))
    // Every step raises the counter, so no two calls may answer the same value.
    expect(new Set(results).size).toBe(results.length)
  })
})

describe('incr on text another client wrote (JSON serializer)', () => {
  let cache: RedisBackend
  let raw: Redis | Cluster
  let n = 0
  const namespace = 'forms-text'
  beforeAll(async () => {
    ;({ cache, raw } = await openWithRaw(servers.singleUrl(), namespace, { timeout: '3s' }))
  })
  afterAll(async () => {
    await cache?.close()
    raw?.disconnect()
  })
  const key = () => `k${n++}`

  it('adds to what get() reads as an integer, and writes it back as a plain counter', async () => {
    for (const [text, read] of [
      [' 7', 7],
      ['7 ', 7],
      ['7.0', 7],
      ['1e3', 1000],
      ['-0', -0],
    ] as const) {
      const k = key()
      await raw.set(`${namespace}:${k}`, text)
      expect(await cache.get(k), text).toBe(read)
      expect(await cache.incr(k), text).toBe(read + 1)
      expect(await raw.get(`${namespace}:${k}`), text).toBe(String(read + 1))
    }
  })

  it('refuses what get() does not read as an integer, leaving it', async () => {
    for (const text of ['0x10', '1.5', 'abc', '+7', '', '"7"', '1e21', '{"$c":"n","v":"NaN"}']) {
      const k = key()
      await raw.set(`${namespace}:${k}`, text)
      const error = text === '1e21' ? RangeError : CacheNotANumberError
      await expect(cache.incr(k), text).rejects.toThrow(error)
      expect(await raw.get(`${namespace}:${k}`), text).toBe(text)
    }
  })
})
