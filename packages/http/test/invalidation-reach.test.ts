/**
 * Invalidations called without a `backend` reach every cache of the process, including the ones
 * given their own backend; and a response relayed with an `Age` is as old as it says.
 */
import { CacheConfigError, type CacheEvent, cached, invalidateTags } from '@cache/core'
import { MemoryBackend } from '@cache/memory'
import { afterEach, describe, expect, it } from 'vitest'
import {
  HttpCache,
  type HttpCacheOptions,
  invalidateResponse,
  invalidateResponsePrefix,
} from '../src/index.js'
import { type Handler, type Served, send, serve } from './node-adapter.js'

const running: Served[] = []
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()))
})

async function start(handler: Handler, options: HttpCacheOptions = {}) {
  const backend = new MemoryBackend()
  const cache = new HttpCache({ backend, ...options })
  const served = await serve(cache, handler)
  running.push(served)
  return { ...served, cache, backend }
}

/** Answers the current price: a change shows whether the next request ran the handler. */
function priced() {
  const state = { price: 1 }
  const handler: Handler = (_req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ price: state.price }))
  }
  return { state, handler }
}

// Before: a string was taken as a list of one-letter tags (`'products'` → `p`, `r`, `o`…), so
// invalidateTags(['products']) left the page served, silently; invalidateTags('products') threw a
// raw TypeError.
describe('tags given as a string, not a list', () => {
  it('a static string is refused when the cache is built, naming `tags`', () => {
    for (const tags of ['products', [1], ['products', null], new Set(['products'])])
      expect(() => new HttpCache({ backend: new MemoryBackend(), tags: tags as never })).toThrow(
        expect.objectContaining({ name: 'CacheConfigError', setting: 'tags' }),
      )
  })

  it('a tags function answering a string: the request bypasses (key-error), reported, nothing stored', async () => {
    const { state, handler } = priced()
    const errors: unknown[] = []
    const app = await start(handler, { ttl: 60, tags: (() => 'products') as never })
    app.cache.on('error', (event: CacheEvent) => errors.push(event.error))
    const first = await send(`${app.url}/p`)
    expect(first.headers['cache-status']).toContain('detail=key-error')
    state.price = 2
    await invalidateTags(['products'])
    expect(JSON.parse((await send(`${app.url}/p`)).body.toString())).toEqual({ price: 2 })
    expect(app.calls()).toBe(2)
    expect(errors[0]).toBeInstanceOf(CacheConfigError)
    expect(String(errors[0])).toContain('tags')
  })

  it('invalidateTags() with a string rejects with CacheConfigError', async () => {
    await expect(invalidateTags('products' as never)).rejects.toBeInstanceOf(CacheConfigError)
    await expect(invalidateTags(['products', 7] as never)).rejects.toBeInstanceOf(CacheConfigError)
  })
})

describe('invalidations without a backend reach a cache given its own', () => {
  it("invalidateTags(['products']) renews the responses of a cache with its own backend", async () => {
    const { state, handler } = priced()
    const app = await start(handler, { ttl: 60, tags: ['products'] })
    expect(JSON.parse((await send(`${app.url}/p`)).body.toString())).toEqual({ price: 1 })
    state.price = 2
    await invalidateTags(['products'])
    expect(JSON.parse((await send(`${app.url}/p`)).body.toString())).toEqual({ price: 2 })
    expect(app.calls()).toBe(2)
  })

  it('invalidateResponse(url) renews the response of a cache with its own backend', async () => {
    const { state, handler } = priced()
    const app = await start(handler, { ttl: 60 })
    await send(`${app.url}/p?page=1`)
    state.price = 2
    await invalidateResponse(`${app.url}/p?page=1`)
    expect(JSON.parse((await send(`${app.url}/p?page=1`)).body.toString())).toEqual({ price: 2 })
  })

  it("invalidateResponsePrefix('http') renews the responses of a cache with its own backend", async () => {
    const { state, handler } = priced()
    const app = await start(handler, { ttl: 60 })
    await send(`${app.url}/p`)
    state.price = 2
    await invalidateResponsePrefix('http')
    expect(JSON.parse((await send(`${app.url}/p`)).body.toString())).toEqual({ price: 2 })
  })

  it('invalidateTags() reaches a memoized function given its own backend', async () => {
    const backend = new MemoryBackend()
    let price = 1
    const getPrice = cached(async (id: number) => ({ id, price }), {
      name: 'invalidation-reach-price',
      backend,
      tags: ['prices'],
    })
    expect(await getPrice(1)).toEqual({ id: 1, price: 1 })
    price = 2
    await invalidateTags(['prices'])
    expect(await getPrice(1)).toEqual({ id: 1, price: 2 })
  })

  it('a closed backend of another cache does not make invalidateTags() fail', async () => {
    const { handler } = priced()
    const app = await start(handler, { ttl: 60, tags: ['closed'] })
    await send(`${app.url}/p`)
    await app.backend.close()
    await expect(invalidateTags(['closed'])).resolves.toBeUndefined()
  })
})

describe('a relayed response with an Age', () => {
  it("ttl 'from-response' counts the Age the response came with, and replays report it", async () => {
    let now = 1_000_000
    const upstream: Handler = (_req, res) => {
      res.setHeader('cache-control', 'public, max-age=60')
      res.setHeader('age', '50')
      res.end('relayed')
    }
    const app = await start(upstream, { ttl: 'from-response', now: () => now })
    await send(`${app.url}/r`)
    now += 5_000
    const hit = await send(`${app.url}/r`)
    expect(hit.headers.age).toBe('55')
    expect(hit.headers['cache-status']).toBe('@cache; hit; ttl=5')
    now += 6_000 // 61 s old: past its 60 s lifetime
    await send(`${app.url}/r`)
    expect(app.calls()).toBe(2)
  })

  it("ttl 'from-response' never stores a response that arrives older than its max-age", async () => {
    const stale: Handler = (_req, res) => {
      res.setHeader('cache-control', 'public, max-age=60')
      res.setHeader('age', '70')
      res.end('old')
    }
    const app = await start(stale, { ttl: 'from-response' })
    await send(`${app.url}/s`)
    await send(`${app.url}/s`)
    expect(app.calls()).toBe(2)
  })

  it('a fixed ttl keeps its own lifetime, and the replay still counts the Age it came with', async () => {
    let now = 2_000_000
    const upstream: Handler = (_req, res) => {
      res.setHeader('age', '30')
      res.end('relayed')
    }
    const app = await start(upstream, { ttl: 60, now: () => now })
    await send(`${app.url}/f`)
    now += 10_000
    const hit = await send(`${app.url}/f`)
    expect(hit.headers.age).toBe('40')
    expect(app.calls()).toBe(1)
  })
})

describe('with cacheControl, max-age − Age is this cache freshness left, for a response that came with an Age', () => {
  /** The freshness a downstream cache computes (RFC 9111 §4.2.3), and the one Cache-Status reports. */
  function freshness(reply: { headers: Record<string, string> }, directive = 'max-age') {
    const lifetime = Number(new RegExp(`${directive}=(\\d+)`).exec(reply.headers['cache-control'] ?? '')?.[1])
    return {
      downstream: lifetime - Number(reply.headers.age ?? 0),
      here: Number(/ttl=(-?\d+)/.exec(reply.headers['cache-status'] ?? '')?.[1]),
    }
  }

  function relay(age: string, cacheControl?: string): Handler {
    return (_req, res) => {
      res.setHeader('age', age)
      if (cacheControl !== undefined) res.setHeader('cache-control', cacheControl)
      res.end('relayed from upstream')
    }
  }

  it('a fixed ttl: on the miss, on a hit 20 s later and on its 304', async () => {
    let now = 3_000_000
    const app = await start(relay('50'), { ttl: 60, cacheControl: true, now: () => now })
    const miss = await send(`${app.url}/r`)
    expect(miss.headers.age).toBe('50')
    expect(freshness(miss).downstream).toBe(60)
    now += 20_000
    const hit = await send(`${app.url}/r`)
    expect(hit.headers.age).toBe('70')
    expect(freshness(hit)).toEqual({ downstream: 40, here: 40 })
    const notModified = await send(`${app.url}/r`, { headers: { 'if-none-match': hit.headers.etag! } })
    expect(notModified.status).toBe(304)
    expect(freshness(notModified).downstream).toBe(40)
  })

  it("ttl 'from-response' with a default, for a response without Cache-Control", async () => {
    let now = 4_000_000
    const app = await start(relay('30'), {
      ttl: { fromResponse: true, default: 60 },
      cacheControl: true,
      now: () => now,
    })
    expect(freshness(await send(`${app.url}/d`)).downstream).toBe(60)
    now += 15_000
    expect(freshness(await send(`${app.url}/d`))).toEqual({ downstream: 45, here: 45 })
  })

  it('an explicit maxAge and sMaxAge count from when this cache stored the response, too', async () => {
    let now = 5_000_000
    const app = await start(relay('50'), {
      ttl: 60,
      cacheControl: { maxAge: 30, sMaxAge: 60 },
      now: () => now,
    })
    await send(`${app.url}/e`)
    now += 20_000
    const hit = await send(`${app.url}/e`)
    expect(freshness(hit, 's-maxage')).toEqual({ downstream: 40, here: 40 })
    expect(freshness(hit, 'max-age').downstream).toBe(10)
  })
})

describe('invalidating a URL reaches its entries under every keyPrefix', () => {
  it('invalidateResponse(url) without keyPrefix reaches a cache under keyPrefix api', async () => {
    const { state, handler } = priced()
    const app = await start(handler, { ttl: 60, keyPrefix: 'api' })
    await send(`${app.url}/p`)
    state.price = 2
    await invalidateResponse(`${app.url}/p`)
    expect(JSON.parse((await send(`${app.url}/p`)).body.toString())).toEqual({ price: 2 })
  })

  it('from a process that never built that cache: a backend of its own on the same store', async () => {
    const { state, handler } = priced()
    const app = await start(handler, { ttl: 60, keyPrefix: 'api:v2' })
    await send(`${app.url}/p?page=1`)
    state.price = 2
    // Nothing of this process's caches is needed: the URL's generation names no keyPrefix.
    await invalidateResponse(`${app.url}/p?page=1`, { backend: app.backend, keyPrefix: 'other' })
    expect(JSON.parse((await send(`${app.url}/p?page=1`)).body.toString())).toEqual({ price: 2 })
  })

  it("cache.invalidate(url) of one keyPrefix reaches another cache's entry of the URL", async () => {
    const { state, handler } = priced()
    const backend = new MemoryBackend()
    const shop = await start(handler, { ttl: 60, keyPrefix: 'shop', backend })
    const other = new HttpCache({ backend, keyPrefix: 'admin' })
    await send(`${shop.url}/p`)
    state.price = 2
    await other.invalidate(`${shop.url}/p`)
    expect(JSON.parse((await send(`${shop.url}/p`)).body.toString())).toEqual({ price: 2 })
  })
})

describe('invalidating a URL reaches the spellings routers send to it', () => {
  const SPELLINGS = ['/a/b', '/a//b', '//a/b', '/a/b/', '/A/b', '/a/b;jsessionid=x', '/a//b;s=1?']

  it.each(['invalidateResponse', 'cache.invalidate'] as const)(
    '%s(/a/b) reaches //, trailing-slash, upper-case and ;param spellings',
    async (how) => {
      const { state, handler } = priced()
      const app = await start(handler, { ttl: 60 })
      for (const s of SPELLINGS) await send(`${app.url}${s}`)
      expect(app.calls()).toBe(SPELLINGS.length)
      state.price = 2
      if (how === 'invalidateResponse') await invalidateResponse(`${app.url}/a/b`)
      else await app.cache.invalidate(`${app.url}/a/b`)
      for (const s of SPELLINGS)
        expect(JSON.parse((await send(`${app.url}${s}`)).body.toString()), s).toEqual({ price: 2 })
    },
  )

  it('a ;param spelling is reached from the query useSemicolonDelimiter reads it as', async () => {
    const { state, handler } = priced()
    const app = await start(handler, { ttl: 60 })
    const spellings = ['/a;page=2', '/a?page=2', '/a//;page=2']
    for (const s of spellings) await send(`${app.url}${s}`)
    state.price = 2
    await invalidateResponse(`${app.url}/a?page=2`)
    for (const s of spellings)
      expect(JSON.parse((await send(`${app.url}${s}`)).body.toString()), s).toEqual({ price: 2 })
    // `/a` is another URL: its entry stays.
    await send(`${app.url}/a`)
    state.price = 3
    await invalidateResponse(`${app.url}/a?page=2`)
    expect(JSON.parse((await send(`${app.url}/a`)).body.toString())).toEqual({ price: 2 })
  })
})

describe('invalidating a URL reaches every variant of the vary option', () => {
  const greeting = () => {
    const state = { version: 1 }
    const handler: Handler = (req, res) => {
      res.setHeader('content-type', 'text/plain')
      res.end(`${req.headers['accept-language'] ?? 'none'} v${state.version}`)
    }
    return { state, handler }
  }
  const read = async (url: string, language?: string) =>
    (
      await send(url, { headers: language === undefined ? {} : { 'accept-language': language } })
    ).body.toString()

  it.each([
    [
      'cache.invalidate(url)',
      (app: { url: string; cache: HttpCache }) => app.cache.invalidate(`${app.url}/greeting`),
    ],
    [
      'cache.invalidate(url, { headers }) of another value',
      (app: { url: string; cache: HttpCache }) =>
        app.cache.invalidate(`${app.url}/greeting`, { headers: { 'accept-language': 'en' } }),
    ],
    ['invalidateResponse(url)', (app: { url: string }) => invalidateResponse(`${app.url}/greeting`)],
    [
      'invalidateResponse(url) under another keyPrefix',
      (app: { url: string }) => invalidateResponse(`${app.url}/greeting`, { keyPrefix: 'other' }),
    ],
  ])('%s: no value of the header keeps the old response', async (_, invalidate) => {
    const { state, handler } = greeting()
    const app = await start(handler, { ttl: 60, vary: ['accept-language'] })
    const url = `${app.url}/greeting`
    for (const language of ['fr', 'de', undefined]) {
      await read(url, language)
      expect(await read(url, language)).toMatch(/ v1$/)
    }
    state.version = 2
    await invalidate(app)
    for (const language of ['fr', 'de', undefined]) expect(await read(url, language)).toMatch(/ v2$/)
  })
})
