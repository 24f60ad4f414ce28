import { CacheConfigError } from '@cache/core'
import { type MemcachedServer, startMemcached } from '@cache/test-servers'
import HashRing from 'hashring'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type MemcachedBackend, memcachedBackend } from '../src/index.js'
import { serverKeys } from './raw.js'

let servers: MemcachedServer[]
beforeAll(async () => {
  servers = await Promise.all([0, 1, 2, 3].map(() => startMemcached({ spawn: true })))
})
afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop()))
})

const KEYS = Array.from({ length: 1000 }, (_, i) => `user:${i}`)

/** Share of `KEYS` that `reader` cannot find (they live on another server for it). */
async function missing(reader: MemcachedBackend): Promise<number> {
  const values = await reader.getMany(KEYS)
  return values.filter((value) => value === undefined).length / KEYS.length
}

async function using<T>(caches: MemcachedBackend[], work: () => Promise<T>): Promise<T> {
  try {
    return await work()
  } finally {
    await Promise.all(caches.map((cache) => cache.close()))
  }
}

describe('placement over several servers', () => {
  it('moves about a quarter of the keys when a fourth server joins, and none when the list is reordered', async () => {
    const [a, b, c, d] = servers.map((server) => server.server)
    const writer = memcachedBackend([a!, b!, c!], { namespace: 'grow' })
    const grown = memcachedBackend([a!, b!, c!, d!], { namespace: 'grow' })
    const reordered = memcachedBackend([c!, a!, b!], { namespace: 'grow' })
    await using([writer, grown, reordered], async () => {
      await writer.setMany(KEYS.map((key) => ({ key, value: key })))
      const moved = await missing(grown)
      expect(moved).toBeGreaterThan(0.15)
      expect(moved).toBeLessThan(0.33)
      expect(await missing(reordered)).toBe(0)
    })
  })

  it('puts each key on the server another ketama client (libmemcached layout) picks for `<namespace>:<key>`', async () => {
    const names = servers.slice(0, 3).map((server) => server.server)
    const cache = memcachedBackend(names, { namespace: 'compat' })
    await using([cache], async () => {
      const sample = KEYS.slice(0, 200)
      await cache.setMany(sample.map((key) => ({ key, value: 1 })))
      const reference = new HashRing(names, 'md5', { 'default port': 11211 })
      for (const [i, server] of servers.slice(0, 3).entries()) {
        const held = (await serverKeys(server.port))
          .filter((k) => k.startsWith('compat#') && !k.endsWith('#g'))
          .map((k) => k.slice(k.indexOf(':') + 1))
        const expected = sample.filter((key) => reference.get(`compat:${key}`) === names[i])
        expect(held.sort()).toEqual(expected.sort())
        expect(cache.serverFor(expected[0]!)).toBe(names[i])
      }
    })
  })

  it('gives a server with weight 2 about half the keys of three', async () => {
    const [a, b, c] = servers.map((server) => server.server)
    const cache = memcachedBackend([a!, b!, c!], { namespace: 'weights', weights: { [b!]: 2 } })
    await using([cache], async () => {
      const onB = KEYS.filter((key) => cache.serverFor(key) === b).length / KEYS.length
      expect(onB).toBeGreaterThan(0.4)
      expect(onB).toBeLessThan(0.6)
    })
  })

  it('rejects weights that name no listed server, or are not positive whole numbers', () => {
    const [a, b] = servers.map((server) => server.server)
    expect(() => memcachedBackend([a!, b!], { weights: { '10.9.9.9:11211': 2 } })).toThrow(CacheConfigError)
    expect(() => memcachedBackend([a!, b!], { weights: { [a!]: 0 } })).toThrow(/weights/)
    expect(() => memcachedBackend([a!, b!], { weights: { [a!]: 1.5 } })).toThrow(/weights/)
  })
})
