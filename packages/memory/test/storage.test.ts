/**
 * What the way entries are stored must not change: values as they were set (`undefined`
 * included), expiries to the millisecond whatever the clock reads, counters that keep theirs,
 * and byte limits that refuse only what is too large.
 */
import { CacheValueTooLargeError } from '@cache/core'
import { describe, expect, it } from 'vitest'
import { memoryBackend } from '../src/index.js'

describe('stored entries', () => {
  it('keeps a stored undefined apart from a miss, through every read', async () => {
    const cache = memoryBackend()
    await cache.set('u', undefined, 60)
    expect(await cache.has('u')).toBe(true)
    expect(await cache.getEntry('u')).toMatchObject({ value: undefined })
    expect(await cache.getEntry('missing')).toBeUndefined()
    expect(cache.sync.getEntry('u')).toMatchObject({ value: undefined })
    expect(await cache.get('u')).toBeUndefined()
    expect(await cache.getMany(['u', 'missing'])).toEqual([undefined, undefined])
    expect(await cache.add('u', 1)).toBe(false)
    expect(
      await cache.atomicUpdate('u', (current) => (current === undefined ? 'was undefined' : 'other')),
    ).toBe('was undefined')
    await cache.set('u2', undefined)
    const listed: string[] = []
    for await (const key of cache.keys()) listed.push(key)
    expect(listed.sort()).toEqual(['u', 'u2'])
    expect(await cache.delete('u2')).toBe(true)
    expect(await cache.has('u2')).toBe(false)
    // Counted as any other value: a hit for each read of 'u', a miss for each of 'missing'.
    expect(cache.stats).toMatchObject({ hits: 4, misses: 2 })
  })

  it('counts a stored undefined as one entry of its size under maxSize', async () => {
    const cache = memoryBackend({ maxSize: 100, sizeOf: (value) => (value === undefined ? 30 : 10) })
    await cache.set('a', undefined)
    expect(cache.calculatedSize).toBe(30 + 2)
  })

  it('expires an entry at its expiry to the millisecond, with a clock at 0 and with fractions', async () => {
    let now = 0
    const cache = memoryBackend({ now: () => now })
    await cache.set('one-ms', 'v', 0.001)
    await cache.set('quarter', 'v', 0.25)
    expect(await cache.getEntry('one-ms')).toEqual({ value: 'v', expiresAt: 1 })
    expect(await cache.getEntry('quarter')).toEqual({ value: 'v', expiresAt: 250 })
    now = 1
    expect(await cache.get('one-ms')).toBeUndefined()
    now = 249
    expect(await cache.get('quarter')).toBe('v')
    now = 250
    expect(await cache.get('quarter')).toBeUndefined()

    now = 1_700_000_000_000.5
    await cache.set('late', 'v', 2)
    expect((await cache.getEntry('late'))?.expiresAt).toBe(1_700_000_002_000.5)
    now = 1_700_000_001_999.5
    expect(await cache.get('late')).toBe('v')
    now = 1_700_000_002_000.5
    expect(await cache.get('late')).toBeUndefined()
  })

  it('reports the exact expiry of entries whose TTL is over 2^31-1 ms, and none for Infinity', async () => {
    const now = 1_700_000_000_000
    const cache = memoryBackend({ now: () => now })
    await cache.set('long', 1, 40 * 24 * 3600)
    await cache.set('forever', 2, Number.POSITIVE_INFINITY)
    expect(await cache.getEntry('long')).toEqual({ value: 1, expiresAt: now + 40 * 24 * 3600 * 1000 })
    expect(await cache.getEntry('forever')).toEqual({ value: 2 })
  })

  it('writes a value without a TTL over one with a TTL: it no longer expires', async () => {
    let now = 1_000
    const cache = memoryBackend({ now: () => now })
    await cache.set('k', 1, 1)
    await cache.set('k', 2)
    now += 10_000
    expect(await cache.getEntry('k')).toEqual({ value: 2 })
  })

  it('keeps a counter expiry through increments, and a new counter after it expired gets its own', async () => {
    let now = 5_000
    const cache = memoryBackend({ now: () => now })
    await cache.incr('c', 1, 10)
    now += 4_000
    expect(await cache.incr('c', 1, 3600)).toBe(2)
    expect((await cache.getEntry('c'))?.expiresAt).toBe(15_000)
    now = 15_000
    expect(await cache.get('c')).toBeUndefined()
    expect(await cache.incr('c', 1, 60)).toBe(1)
    expect((await cache.getEntry('c'))?.expiresAt).toBe(75_000)
  })

  it('stores what an atomicUpdate returns past the expiry it was given as expired, not as too large', async () => {
    let now = 1_000
    const cache = memoryBackend({ now: () => now, maxSize: '1KB' })
    const result = await cache.atomicUpdate(
      'k',
      () => {
        now += 5_000
        return 'late'
      },
      1,
    )
    expect(result).toBe('late')
    expect(await cache.get('k')).toBeUndefined()
  })

  it('refuses a value over maxSize and drops what the key held, even when it is the same value', async () => {
    let size = 10
    const cache = memoryBackend({ maxSize: 100, sizeOf: () => size })
    const value = { grows: true }
    await cache.set('k', value)
    size = 1000
    await expect(cache.set('k', value)).rejects.toThrow(CacheValueTooLargeError)
    expect(await cache.has('k')).toBe(false)
    expect(cache.calculatedSize).toBe(0)
  })

  it('lists only live keys and leaves expired ones to be dropped when read', async () => {
    let now = 1_000
    const cache = memoryBackend({ now: () => now })
    await cache.set('short', 1, 1)
    await cache.set('long', 2, 60)
    now += 1_000
    const listed: string[] = []
    for await (const key of cache.keys()) listed.push(key)
    expect(listed).toEqual(['long'])
    expect(cache.size).toBe(2)
    expect(await cache.get('short')).toBeUndefined()
    expect(cache.size).toBe(1)
  })
})
