/**
 * A memoize hit must never bring back a result from before an invalidation, whichever handle made
 * it and whatever the backend keeps: on a backend of another process (generations read on every
 * hit) and on an in-process one that offers `internalVersion` (generations kept between hits until
 * it changes). How the memory backend bumps its own `internalVersion` is tested in @cache/memory.
 */
import { describe, expect, it } from 'vitest'
import { cached, invalidateTags } from '../src/index.js'
import { mapBackend } from './map-backend.js'

function counted(backend: ReturnType<typeof mapBackend>, name: string, options: { tags?: string[] } = {}) {
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

const backends = [
  ['a backend of another process', () => mapBackend()],
  ['an in-process backend with internalVersion', () => mapBackend({ sync: true, internalVersion: true })],
] as const

describe.each(backends)('memoize hits on %s', (_label, make) => {
  it('see clear() made through another handle of the same name after a run of hits', async () => {
    const backend = make()
    const a = counted(backend, 'shared-name')
    const b = counted(backend, 'shared-name')
    for (let i = 0; i < 3; i++) expect(await a.fn(1)).toBe('1 v0')
    a.bump()
    await b.fn.clear()
    expect(await a.fn(1)).toBe('1 v1')
    expect(a.runs()).toBe(2)
  })

  it('see a cleared backend, and a tag invalidated after a run of hits', async () => {
    const backend = make()
    const { fn, bump } = counted(backend, 'tagged', { tags: ['users'] })
    expect(await fn(1)).toBe('1 v0')
    expect(await fn(1)).toBe('1 v0')
    bump()
    await backend.clear()
    expect(await fn(1)).toBe('1 v1')
    expect(await fn(1)).toBe('1 v1')
    bump()
    await invalidateTags(['users'], { backend })
    expect(await fn(1)).toBe('1 v2')
  })
})

// On an in-process backend, sync reads are counted by the backend itself: memory's own test.
describe('backend stats count what the caller asked for', () => {
  it('a memoized miss, hits, an invalidation: one miss, hits per hit, no reads of generations', async () => {
    const backend = mapBackend()
    const stats = backend.stats! // defineBackend counts for a store that keeps no stats
    const on = backend.on!.bind(backend)
    const seen: string[] = []
    on('hit', (event) => seen.push(event.key!))
    on('miss', (event) => seen.push(event.key!))
    on('set', (event) => seen.push(event.key!))
    const double = cached(async (x: number) => x * 2, {
      name: 'stats-double',
      backend,
      ttl: 60,
      tags: ['stats'],
    })
    await double(1)
    await double(1)
    await double(1)
    expect({ hits: stats.hits, misses: stats.misses, sets: stats.sets }).toEqual({
      hits: 2,
      misses: 1,
      sets: 1,
    })
    await invalidateTags(['stats'], { backend })
    await double(1)
    await double(1)
    // The entry from before the invalidation is still there (a read that finds it, then refuses
    // it for its generation): one hit, the new result written, then one hit.
    expect({ hits: stats.hits, misses: stats.misses, sets: stats.sets }).toEqual({
      hits: 4,
      misses: 1,
      sets: 2,
    })
    expect(seen.filter((key) => key.startsWith('__'))).toEqual([])
    await backend.close()
  })
})
