/**
 * On an in-process backend a hit reads its entry only: the generations of its URL read last are
 * kept while the backend says none of @cache's own keys changed. Every way an invalidation can
 * reach the backend must still turn the next request into a miss.
 */
import { configureCache, resetCache } from '@cache/core'
import { MemoryBackend } from '@cache/memory'
import { afterEach, describe, expect, it } from 'vitest'
import { HttpCache, type HttpRequestView, type LookupResult, type MissResult } from '../src/index.js'

function view(url: string): HttpRequestView<null> {
  return {
    method: 'GET',
    url,
    headers: { host: 'shop.test' },
    protocol: 'https',
    host: 'shop.test',
    site: '',
    raw: null,
  }
}

function asMiss(result: LookupResult): MissResult {
  if (result.kind !== 'miss') throw new Error(`expected a miss, got ${result.kind}`)
  return result
}

/** Looks `url` up; on a miss, stores `body` through the recorder. Returns what the lookup was. */
async function get(cache: HttpCache<null>, url: string, body = 'v'): Promise<string> {
  const result = await cache.lookup(view(url))
  if (result.kind !== 'miss') return result.kind
  const bytes = Buffer.from(body)
  result.recorder.head({ status: 200, headers: { 'content-length': String(bytes.length) }, body: bytes })
  result.recorder.end(bytes)
  result.recorder.finish()
  expect(await asMiss(result).recorder.outcome).toEqual({ stored: true })
  return 'miss'
}

/** Counts the keys read through the backend's synchronous access (`getEntry` and `get`). */
function countReads(backend: MemoryBackend): { keys: string[]; entries: string[] } {
  const sync = backend.sync
  const getEntry = sync.getEntry
  const get = sync.get!
  const seen = { keys: [] as string[], entries: [] as string[] }
  sync.getEntry = ((key: string) => {
    seen.keys.push(key)
    seen.entries.push(key)
    return getEntry(key)
  }) as typeof sync.getEntry
  sync.get = ((key: string) => {
    seen.keys.push(key)
    return get(key)
  }) as typeof get
  return seen
}

/** A cache on the default backend, set to a new one (`first`), with /a stored there (body `first`) and read back as a hit. */
async function storedOnDefault(): Promise<{ first: MemoryBackend; cache: HttpCache<null> }> {
  const first = new MemoryBackend()
  configureCache(first)
  const cache = new HttpCache<null>({ ttl: 60 })
  await get(cache, '/a', 'first')
  expect(await get(cache, '/a')).toBe('hit')
  return { first, cache }
}

afterEach(async () => {
  await resetCache()
})

describe('generations kept on an in-process backend', () => {
  it('a hit reads its entry only, once the generations were read', async () => {
    const backend = new MemoryBackend()
    const seen = countReads(backend)
    const cache = new HttpCache<null>({ backend, ttl: 60 })
    expect(await get(cache, '/a')).toBe('miss')
    expect(seen.keys.filter((key) => key.startsWith('__')).length).toBeGreaterThan(0)
    seen.keys.length = 0
    // Creating the generations on the miss was a change of the backend's own keys: it is not
    // taken as one that happened after they were read.
    expect(await get(cache, '/a')).toBe('hit')
    expect(await get(cache, '/a')).toBe('hit')
    expect(seen.keys).toEqual(['http:https://shop.test/a', 'http:https://shop.test/a'])
  })

  it('a hit reads the value of its entry alone (get), building no entry object', async () => {
    const backend = new MemoryBackend()
    const seen = countReads(backend)
    const cache = new HttpCache<null>({ backend, ttl: 60 })
    expect(await get(cache, '/a')).toBe('miss')
    seen.entries.length = 0
    expect(await get(cache, '/a')).toBe('hit')
    expect(seen.entries).toEqual([])
  })

  it('serves hits from a synchronous access without get (getEntry only), and misses after an invalidation', async () => {
    const backend = new MemoryBackend()
    // An in-process backend of another kind: `get` is optional in SyncAccess.
    ;(backend.sync as { get?: unknown }).get = undefined
    const cache = new HttpCache<null>({ backend, ttl: 60 })
    expect(await get(cache, '/a', 'first')).toBe('miss')
    const hit = await cache.lookup(view('/a'))
    expect(hit.kind).toBe('hit')
    expect(hit.kind === 'hit' && hit.body.toString()).toBe('first')
    await cache.invalidate('https://shop.test/a')
    expect(await get(cache, '/a')).toBe('miss')
    expect(await get(cache, '/a')).toBe('hit')
  })

  it('every invalidation that reaches the backend makes the next request a miss', async () => {
    const backend = new MemoryBackend()
    const seen = countReads(backend)
    const cache = new HttpCache<null>({ backend, ttl: 60 })
    const other = new HttpCache<null>({ backend, ttl: 60 })
    const primed = async () => {
      await get(cache, '/a')
      expect(await get(cache, '/a')).toBe('hit')
      expect(await get(cache, '/a')).toBe('hit')
    }
    await primed()
    await cache.invalidate('https://shop.test/a')
    expect(await get(cache, '/a')).toBe('miss')
    await primed()
    // Another cache (another keyPrefix or not) on the same backend.
    await other.invalidate('/a', { host: 'shop.test' })
    expect(await get(cache, '/a')).toBe('miss')
    await primed()
    await other.clear()
    expect(await get(cache, '/a')).toBe('miss')
    await primed()
    await backend.clear()
    expect(await get(cache, '/a')).toBe('miss')
    await primed()
    // A generation written straight to the backend (a bus delivering another process's invalidation).
    const urlKey = seen.keys.find((key) => key.includes('http-url'))!
    expect(urlKey).toBeDefined()
    backend.sync.set(urlKey, 42)
    expect(await get(cache, '/a')).toBe('miss')
    await primed()
    await backend.delete(urlKey)
    expect(await get(cache, '/a')).toBe('miss')
  })

  it('an invalidation of one URL leaves another URL cached, and another URL kept after it still misses its own', async () => {
    const backend = new MemoryBackend()
    const cache = new HttpCache<null>({ backend, ttl: 60 })
    await get(cache, '/a')
    await get(cache, '/b')
    expect(await get(cache, '/a')).toBe('hit')
    expect(await get(cache, '/b')).toBe('hit')
    await cache.invalidate('https://shop.test/b')
    expect(await get(cache, '/a')).toBe('hit')
    expect(await get(cache, '/b')).toBe('miss')
    expect(await get(cache, '/b')).toBe('hit')
  })

  it('a default cache replaced by another backend is read there, not through what the first one held', async () => {
    const { cache } = await storedOnDefault()
    const second = new MemoryBackend()
    const seen = countReads(second)
    configureCache(second)
    expect(await get(cache, '/a', 'second')).toBe('miss')
    expect(await get(cache, '/a')).toBe('hit')
    // The second backend's generations were read there (and created), not taken from the first.
    expect(seen.keys.filter((key) => key.includes('http-url')).length).toBeGreaterThan(0)
    await cache.invalidate('https://shop.test/a')
    expect(await get(cache, '/a')).toBe('miss')
  })

  it('the generations kept from one backend are never taken for another whose count of changes is the same', async () => {
    const { first, cache } = await storedOnDefault()
    const key = 'http:https://shop.test/a'
    // The second backend holds the entry as the first stored it, under generations it does not have.
    const second = new MemoryBackend()
    second.sync.set(key, first.sync.getEntry(key)!.value, 60)
    for (let i = 0; second.sync.internalVersion!() < first.sync.internalVersion!(); i++)
      second.sync.set(`__pad:${i}`, i)
    expect(second.sync.internalVersion!()).toBe(first.sync.internalVersion!())
    configureCache(second)
    expect(await get(cache, '/a')).toBe('miss')
  })

  it('an entry is not served after its TTL though the generations it was stored under are kept', async () => {
    let now = 1_000_000
    const backend = new MemoryBackend({ now: () => now })
    const cache = new HttpCache<null>({ backend, ttl: 10, now: () => now })
    await get(cache, '/a')
    expect(await get(cache, '/a')).toBe('hit')
    now += 10_001
    expect(await get(cache, '/a')).toBe('miss')
  })
})
