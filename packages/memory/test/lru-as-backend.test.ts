import { CacheConfigError, cached } from '@cache/core'
import { toBackend } from '@cache/core/backend'
import { LRUCache } from 'lru-cache'
import { describe, expect, it } from 'vitest'

/*
 * An lru-cache LRUCache handed to core as a backend of its own: its `set(key, value, options)`
 * takes an options object, so the TTL in seconds core gives a backend's `set` was dropped and
 * entries never expired. It is refused, naming memoryBackend() (built on lru-cache).
 */
describe('an lru-cache LRUCache given as a backend', () => {
  it('is refused by toBackend and cached(), naming memoryBackend()', () => {
    const lru = new LRUCache<string, {}>({ max: 100 })
    // Before: accepted; a result memoized for 0.1 s was still served 400 ms later.
    expect(() => toBackend(lru as never)).toThrow(CacheConfigError)
    expect(() => cached(async (n: number) => n, { name: 'n', backend: lru as never, ttl: 0.1 })).toThrow(
      /LRUCache.*memoryBackend\(\)/,
    )
  })
})
