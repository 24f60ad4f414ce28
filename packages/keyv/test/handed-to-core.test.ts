/**
 * A Keyv instance, a Keyv storage adapter or a Map handed to @cache/core as a backend of its own
 * (`configureCache({ backend })`, `cached(fn, { backend })`, `toBackend()`): core gives `set` a TTL
 * in seconds, which Keyv reads as milliseconds (a 60 s entry gone after 60 ms) and a Map ignores
 * (an entry that never expires). Each is refused, naming what to use instead.
 */
import { CacheConfigError, cached, configureCache, defineBackend, resetCache } from '@cache/core'
import { toBackend } from '@cache/core/backend'
import { type RedisServer, startRedis } from '@cache/test-servers'
import KeyvRedis from '@keyv/redis'
import { Keyv } from 'keyv'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { keyvBackend } from '../src/index.js'

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
}, 30_000)
afterAll(async () => {
  await redis?.stop()
})
afterEach(async () => {
  await resetCache()
})

describe('a store whose set does not take a TTL in seconds, handed to core as a backend', () => {
  it('a Keyv instance is refused by toBackend, defineBackend, configureCache and cached, naming keyvBackend()', async () => {
    const keyv = new Keyv()
    for (const hand of [
      () => toBackend(keyv as never),
      () => defineBackend(keyv as never),
      () => configureCache({ backend: keyv as never }),
      () => cached(async (n: number) => n, { name: 'double', backend: keyv as never }),
    ]) {
      expect(hand).toThrow(CacheConfigError)
      expect(hand).toThrow(/keyvBackend\(\) from @cache\/keyv/)
    }
    // Before: accepted, and a 60 s entry was gone 60 ms later.
    const backend = keyvBackend(keyv)
    await backend.set('k', 1, 60)
    await new Promise((resolve) => setTimeout(resolve, 120))
    expect(await backend.get('k')).toBe(1)
  })

  it('a Keyv storage adapter (KeyvRedis) is refused the same way', async () => {
    const store = new KeyvRedis(redis.url)
    try {
      expect(() => toBackend(store as never)).toThrow(/keyvBackend\(\) from @cache\/keyv/)
    } finally {
      await store.disconnect()
    }
  })

  it('a class extending Keyv is refused too', () => {
    class AppCache extends Keyv {}
    // Before: accepted; a 60 s entry was gone after 60 ms.
    expect(() => toBackend(new AppCache() as never)).toThrow(/a Keyv .*keyvBackend\(\) from @cache\/keyv/)
  })

  it('a Map is refused, naming memoryBackend()', () => {
    expect(() => toBackend(new Map() as never)).toThrow(CacheConfigError)
    expect(() => toBackend(new Map() as never)).toThrow(/memoryBackend\(\)/)
  })
})
