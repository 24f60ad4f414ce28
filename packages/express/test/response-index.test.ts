/**
 * `cache.responseIndex()`: what a developer sees when asking which responses are stored, with
 * their age and remaining TTL, after real requests over HTTP.
 */
import { CacheUnsupportedError, defineBackend, invalidateTags } from '@cache/core'
import type { MemoryBackend } from '@cache/memory'
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, memory, serveEach } from './http.js'

const serve = serveEach()

/**
 * Stand-in until `CacheBackend.keys()` lands in @cache/core and @cache/memory: a real
 * `MemoryBackend` whose writes are recorded, listing the recorded keys it still holds. Only
 * `keys` is added; every read and write goes to the real backend.
 */
function memoryWithKeysStandIn(clock: () => number): MemoryBackend & {
  keys(options?: { prefix?: string }): AsyncIterableIterator<string>
} {
  const real = memory(clock)
  const written = new Set<string>()
  const listing = Object.create(real) as MemoryBackend & {
    keys(options?: { prefix?: string }): AsyncIterableIterator<string>
  }
  Object.assign(listing, {
    set: (key: string, value: unknown, ttl?: number) => {
      written.add(key)
      return real.set(key, value, ttl)
    },
    setMany: (items: { key: string; value: unknown; ttl?: number }[]) => {
      for (const item of items) written.add(item.key)
      return real.setMany(items)
    },
    add: (key: string, value: unknown, ttl?: number) => {
      written.add(key)
      return real.add(key, value, ttl)
    },
    sync: {
      getEntry: real.sync.getEntry,
      set: (key: string, value: unknown, ttl?: number) => {
        written.add(key)
        real.sync.set(key, value, ttl)
      },
    },
    async *keys(options: { prefix?: string } = {}) {
      for (const key of [...written]) {
        if (!key.startsWith(options.prefix ?? '')) continue
        if (await real.has(key)) yield key
        else written.delete(key)
      }
    },
  })
  return listing
}

async function collect<T>(iterator: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of iterator) out.push(item)
  return out
}

describe.each(EXPRESS)('responseIndex on %s', (_name, express) => {
  function indexedApp() {
    let now = 1_000_000
    const clock = () => now
    const backend = memoryWithKeysStandIn(clock)
    const cache = cacheResponse({
      backend,
      now: clock,
      ttl: 60,
      tags: (req: any) => [`page:${req.path}`],
    })
    const app = express()
    app.get('/a', cache, (_req: any, res: any) => res.send('aaaa'))
    app.get('/b', cache, (_req: any, res: any) => res.status(203).json({ b: true }))
    app.get('/v', cache, (req: any, res: any) =>
      res.vary('accept-language').send(`v-${req.get('accept-language')}`),
    )
    return { app, cache, backend, advance: (seconds: number) => void (now += seconds * 1000) }
  }

  it('lists every stored response with its URL, status, age, remaining TTL, tags and size', async () => {
    const { app, cache, advance } = indexedApp()
    const r = await serve(app)
    await r.request('/a')
    advance(10)
    await r.request('/b?x=1')
    advance(5)
    const entries = (await collect(cache.responseIndex())).sort((x, y) => x.url.localeCompare(y.url))
    expect(entries).toEqual([
      {
        key: expect.any(String),
        url: `http://127.0.0.1:${r.port}/a`,
        method: 'GET',
        status: 200,
        storedAt: 1_000_000,
        ageSeconds: 15,
        ttlSeconds: 45,
        tags: ['page:/a'],
        bytes: 4,
      },
      {
        key: expect.any(String),
        url: `http://127.0.0.1:${r.port}/b?x=1`,
        method: 'GET',
        status: 203,
        storedAt: 1_010_000,
        ageSeconds: 5,
        ttlSeconds: 55,
        tags: ['page:/b'],
        bytes: 10,
      },
    ])
  })

  it('lists each variant of a response that varies, and no Vary record or generation key', async () => {
    const { app, cache, backend } = indexedApp()
    const r = await serve(app)
    await r.request('/v', { headers: { 'accept-language': 'fr' } })
    await r.request('/v', { headers: { 'accept-language': 'de' } })
    const entries = await collect(cache.responseIndex())
    expect(entries.map((e) => e.url)).toEqual([
      `http://127.0.0.1:${r.port}/v`,
      `http://127.0.0.1:${r.port}/v`,
    ])
    expect(entries.map((e) => e.bytes).sort()).toEqual([4, 4])
    // The backend holds more than that: the Vary record and the generations.
    expect((await collect(backend.keys())).length).toBeGreaterThan(2)
  })

  it('leaves out what was invalidated or expired', async () => {
    const { app, cache, advance } = indexedApp()
    const r = await serve(app)
    await r.request('/a')
    await r.request('/b')
    await cache.invalidate(`http://127.0.0.1:${r.port}/a`)
    expect((await collect(cache.responseIndex())).map((e) => e.url)).toEqual([`http://127.0.0.1:${r.port}/b`])
    advance(61)
    expect(await collect(cache.responseIndex())).toEqual([])
  })

  it('leaves out responses invalidated by tag or by clear()', async () => {
    const { app, cache, backend } = indexedApp()
    const r = await serve(app)
    await r.request('/a')
    await r.request('/b')
    await invalidateTags(['page:/a'], { backend })
    expect((await collect(cache.responseIndex())).map((e) => e.url)).toEqual([`http://127.0.0.1:${r.port}/b`])
    await cache.clear()
    expect(await collect(cache.responseIndex())).toEqual([])
  })

  it('throws CacheUnsupportedError on a backend that cannot list its keys', async () => {
    // A custom backend of get/set/delete only: nothing to list with.
    const store = new Map<string, unknown>()
    const backend = defineBackend({
      get: (key: string) => store.get(key) as any,
      set: (key: string, value: unknown) => void store.set(key, value),
      delete: (key: string) => store.delete(key),
    })
    const cache = cacheResponse({ backend })
    await expect(collect(cache.responseIndex())).rejects.toThrow(CacheUnsupportedError)
  })
})
