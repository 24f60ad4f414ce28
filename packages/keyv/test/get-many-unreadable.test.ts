import { CacheSerializationError, CacheUnavailableError } from '@cache/core'
import { Keyv } from 'keyv'
import { describe, expect, it } from 'vitest'
import { keyvBackend } from '../src/index.js'

/**
 * Keyv's own getMany over a store without a batch read (a Map, many adapters) reads key by key and
 * answers every failure as a miss: an entry it cannot parse, a store that is down. getMany must
 * fail as get does.
 */
describe('keyvBackend getMany fails as get does', () => {
  const unreadable = '{"value":"fi"ne' // what another client wrote, that nobody can parse

  for (const [label, make] of [
    [
      'a Map store',
      () => {
        const map = new Map<string, unknown>()
        return { map, cache: keyvBackend(map, { namespace: 'ns' }) }
      },
    ],
    [
      'a Keyv instance over a Map',
      () => {
        const map = new Map<string, unknown>()
        return { map, cache: keyvBackend(new Keyv({ store: map })) }
      },
    ],
  ] as const) {
    it(`rejects with CacheSerializationError for an entry it cannot parse (${label}), not a silent miss`, async () => {
      const { map, cache } = make()
      await cache.set('y', 'fine')
      await cache.set('z', 'ok')
      for (const key of map.keys()) if (key.endsWith('y')) map.set(key, unreadable)
      expect(await cache.get('y').catch((e) => e)).toBeInstanceOf(CacheSerializationError)
      expect(await cache.getMany(['y', 'z']).catch((e) => e)).toBeInstanceOf(CacheSerializationError)
      expect(await cache.getMany(['z', 'missing'])).toEqual(['ok', undefined])
      expect(cache.stats.errors).toBe(0) // the caller's error, as for get
    })
  }

  it('rejects with CacheUnavailableError, counted, when a store without getMany is down', async () => {
    const rows = new Map<string, unknown>()
    let down = false
    const store = {
      get: async (key: string) => {
        if (down) throw new Error('connect ECONNREFUSED')
        return rows.get(key)
      },
      set: async (key: string, value: unknown) => {
        rows.set(key, value)
        return true
      },
      delete: async (key: string) => rows.delete(key),
      clear: async () => rows.clear(),
      on: () => store,
    }
    const cache = keyvBackend(store as never, { namespace: 'ns', timeout: '1s' })
    const events: unknown[] = []
    cache.on('error', (event) => events.push(event))
    await cache.set('a', 1)
    expect(await cache.getMany(['a', 'b'])).toEqual([1, undefined])
    down = true
    expect(await cache.get('a').catch((e) => e)).toBeInstanceOf(CacheUnavailableError)
    expect(await cache.getMany(['a', 'b']).catch((e) => e)).toBeInstanceOf(CacheUnavailableError)
    expect(cache.stats.errors).toBe(2)
    expect(events).toHaveLength(2)
  })
})
