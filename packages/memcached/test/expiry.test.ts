import { startMemcached } from '@cache/test-servers'
import { afterAll, describe, expect, it } from 'vitest'
import { expiryFor, isExpired, keepExpiry, MAX_RELATIVE_SECONDS } from '../src/expiry.js'
import { memcachedBackend } from '../src/index.js'
import { serverKeys, serverTtl, storedKey } from './raw.js'

const server = await startMemcached({ spawn: true })
afterAll(() => server.stop())

const NOW = Date.UTC(2025, 0, 1, 0, 0, 0, 300)
const DAY = 86_400_000

describe('expiryFor', () => {
  it('rounds a sub-second TTL up to a whole second, plus one for memcached clock tick', () => {
    expect(expiryFor(1, NOW)).toEqual({ flags: Math.ceil((NOW + 1) / 1000), exptime: 2 })
    expect(expiryFor(200, NOW).exptime).toBe(2)
    expect(expiryFor(1000, NOW).exptime).toBe(2)
    expect(expiryFor(1001, NOW).exptime).toBe(3)
  })

  it('never sends 0 (which memcached reads as "forever")', () => {
    for (const ms of [1, 10, 999]) expect(expiryFor(ms, NOW).exptime).toBeGreaterThan(0)
  })

  it('records the expiry, rounded up to the second, in the flags', () => {
    const { flags } = expiryFor(1500, NOW)
    expect(flags * 1000).toBeGreaterThanOrEqual(NOW + 1500)
    expect(flags * 1000).toBeLessThan(NOW + 2500)
  })

  it('keeps TTLs up to 30 days relative and sends longer ones as absolute unix time', () => {
    expect(expiryFor(MAX_RELATIVE_SECONDS * 1000 - 1000, NOW).exptime).toBe(MAX_RELATIVE_SECONDS)
    const long = expiryFor(31 * DAY, NOW)
    expect(long.exptime).toBe(Math.ceil((NOW + 31 * DAY) / 1000) + 1)
    expect(long.exptime).toBeGreaterThan(MAX_RELATIVE_SECONDS)
  })

  it('caps expiries past 2106 at the largest 32-bit time', () => {
    const far = expiryFor(200 * 365 * DAY, NOW)
    expect(far.flags).toBeLessThanOrEqual(0xffffffff)
    expect(far.exptime).toBeLessThanOrEqual(0xffffffff)
  })

  it('treats an item as expired from its recorded second on', () => {
    const { flags } = expiryFor(1500, NOW)
    expect(isExpired(flags, NOW + 1400)).toBe(false)
    expect(isExpired(flags, flags * 1000)).toBe(true)
    expect(isExpired(0, NOW + 100 * DAY)).toBe(false)
  })

  it('rewrites keep the original expiry as an absolute time', () => {
    expect(keepExpiry(0)).toEqual({ flags: 0, exptime: 0 })
    expect(keepExpiry(1_800_000_000)).toEqual({ flags: 1_800_000_000, exptime: 1_800_000_001 })
  })
})

describe('TTLs on a real server', () => {
  async function rawKey(namespace: string): Promise<string> {
    const keys = (await serverKeys(server.port)).filter(
      (k) => k.startsWith(`${namespace}#`) && !k.endsWith('#g'),
    )
    expect(keys).toHaveLength(1)
    return keys[0]!
  }

  it('sends a 200 ms TTL as 2 s and reads it back at once', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'short' })
    try {
      // The key is addressed directly and read right after the write: on a busy machine the
      // 2 s may run out before a listing of the server's keys would show it.
      await cache.set('other', 'v')
      const key = await storedKey(server.port, 'short', 'k')
      await cache.set('k', 'v', 0.2)
      const ttl = await serverTtl(server.port, key)
      expect(await cache.get('k')).toBe('v')
      expect(ttl).toBeGreaterThanOrEqual(1)
      expect(ttl).toBeLessThanOrEqual(2)
    } finally {
      await cache.close()
    }
  })

  it('stores a 40-day TTL as an absolute time that memcached honours', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'long' })
    try {
      await cache.set('k', 'v', '40d')
      const ttl = (await serverTtl(server.port, await rawKey('long')))!
      expect(ttl).toBeGreaterThan(40 * 86_400 - 60)
      expect(ttl).toBeLessThan(40 * 86_400 + 60)
      const entry = await cache.getEntry('k')
      expect(entry!.expiresAt).toBeGreaterThanOrEqual(Date.now() + 40 * DAY - 1000)
    } finally {
      await cache.close()
    }
  })

  it('stores no expiry without a TTL, and the defaultTtl otherwise', async () => {
    const plain = memcachedBackend(server.server, { namespace: 'none' })
    const withDefault = memcachedBackend(server.server, { namespace: 'dflt', defaultTtl: '1h' })
    try {
      await plain.set('k', 1)
      expect(await serverTtl(server.port, await rawKey('none'))).toBe(-1)
      expect((await plain.getEntry('k'))!.expiresAt).toBeUndefined()
      await withDefault.set('k', 1)
      expect(await serverTtl(server.port, await rawKey('dflt'))).toBeGreaterThan(3590)
    } finally {
      await Promise.all([plain.close(), withDefault.close()])
    }
  })

  it('hides an entry once its recorded expiry has passed (injected clock)', async () => {
    let now = Date.now()
    const cache = memcachedBackend(server.server, { namespace: 'clock', now: () => now })
    try {
      await cache.set('k', 'v', 60)
      await cache.incr('n', 1, 60)
      expect((await cache.getEntry('k'))!.expiresAt).toBeGreaterThanOrEqual(now + 60_000)
      now += 61_000
      expect(await cache.get('k')).toBeUndefined()
      expect(await cache.has('n')).toBe(false)
      // add() and atomicUpdate() treat it as absent too, although memcached still holds it.
      expect(await cache.add('k', 'again', 60)).toBe(true)
      expect(await cache.atomicUpdate<number>('n', (v) => (v ?? 100) + 1)).toBe(101)
    } finally {
      await cache.close()
    }
  })
})
