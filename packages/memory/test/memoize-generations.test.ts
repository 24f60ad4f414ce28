/**
 * A memoize hit on the memory backend keeps the generations it read until the backend says one
 * of its own keys changed (`sync.internalVersion`): whatever changes them in memory (a direct
 * write or delete of the state through any method, eviction followed by an invalidation) must
 * still turn the next call into a miss, and never bring back a result from before. Invalidation
 * through handles, tags and clear() on any backend is tested in @cache/core.
 */
import { cached, invalidateTags } from '@cache/core'
import { generationKey } from '@cache/core/backend'
import { describe, expect, it } from 'vitest'
import { memoryBackend } from '../src/index.js'

function counted(backend: ReturnType<typeof memoryBackend>, name: string, options: { tags?: string[] } = {}) {
  let version = 0
  let runs = 0
  const fn = cached(
    async (id: number) => {
      runs++
      return `${id} v${version}`
    },
    { backend, name, ...options },
  )
  return {
    fn,
    runs: () => runs,
    bump: () => {
      version++
    },
  }
}

describe('memoize hits on the memory backend', () => {
  it('read only their entry: one backend read per hit once the generation is known', async () => {
    const backend = memoryBackend()
    const { fn } = counted(backend, 'one-read')
    await fn(1)
    await fn(1)
    const before = backend.stats.hits
    for (let i = 0; i < 10; i++) expect(await fn(1)).toBe('1 v0')
    expect(backend.stats.hits - before).toBe(10)
  })

  it('see the invalidation state written, incremented or deleted directly in the backend', async () => {
    const backend = memoryBackend()
    const { fn, bump, runs } = counted(backend, 'direct')
    const state = generationKey('fn', 'memo', 'direct')
    expect(await fn(1)).toBe('1 v0')
    expect(await fn(1)).toBe('1 v0')

    bump()
    await backend.delete(state)
    expect(await fn(1)).toBe('1 v1')

    bump()
    await backend.incr(state)
    expect(await fn(1)).toBe('1 v2')

    bump()
    backend.sync.set(state, 42)
    expect(await fn(1)).toBe('1 v3')

    bump()
    await backend.setMany([{ key: state, value: 43 }])
    expect(await fn(1)).toBe('1 v4')

    bump()
    await backend.deleteMany([state])
    expect(await fn(1)).toBe('1 v5')
    expect(runs()).toBe(6)
  })

  it('never serve a result from before clear() when the state was evicted after the hits began', async () => {
    const backend = memoryBackend({ maxKeys: 4 })
    const { fn, bump } = counted(backend, 'evicted-after')
    expect(await fn(1)).toBe('1 v0')
    expect(await fn(1)).toBe('1 v0')
    // Keep the entry recently used while other keys push the state out of the LRU.
    for (let i = 0; i < 4; i++) {
      await backend.get(fn.keyFor(1))
      await backend.set(`filler:${i}`, i)
    }
    bump()
    await fn.clear()
    for (let i = 0; i < 4; i++) {
      await backend.get(fn.keyFor(1))
      await backend.set(`filler:${i}`, i)
    }
    expect(await fn(1)).toBe('1 v1')
  })
})

describe("backend stats count what the caller asked for, on memory's sync fast path", () => {
  it('a memoized miss, hits, an invalidation: one miss, hits per hit, no reads of generations', async () => {
    const backend = memoryBackend()
    const seen: string[] = []
    backend.on('hit', (event) => seen.push(event.key!))
    backend.on('miss', (event) => seen.push(event.key!))
    backend.on('set', (event) => seen.push(event.key!))
    const double = cached(async (x: number) => x * 2, {
      name: 'stats-double',
      backend,
      ttl: 60,
      tags: ['stats'],
    })
    await double(1)
    await double(1)
    await double(1)
    expect({ hits: backend.stats.hits, misses: backend.stats.misses, sets: backend.stats.sets }).toEqual({
      hits: 2,
      misses: 1,
      sets: 1,
    })
    await invalidateTags(['stats'])
    await double(1)
    await double(1)
    // The entry from before the invalidation is still there (a read that finds it, then refuses
    // it for its generation): one hit, the new result written, then one hit.
    expect({ hits: backend.stats.hits, misses: backend.stats.misses, sets: backend.stats.sets }).toEqual({
      hits: 4,
      misses: 1,
      sets: 2,
    })
    expect(seen.filter((key) => key.startsWith('__'))).toEqual([])
    await backend.close()
  })
})
