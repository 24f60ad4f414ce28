/**
 * The `req.query` a handler reads decides which spellings of a URL are one request: each spelling
 * the cache stores must be reached by invalidating any other spelling the handler reads alike, or
 * the request bypasses the cache.
 */
import express4 from 'express4'
import { describe, expect, it } from 'vitest'
import { cacheResponse, invalidateResponse } from '../src/index.js'
import { EXPRESS, memory, type Reply, serveEach } from './http.js'

const serve = serveEach()
const json = (reply: Reply) => JSON.parse(reply.body.toString())
const status = (reply: Reply) => String(reply.headers['cache-status'])
const isHit = (reply: Reply) => /hit|collapsed/.test(status(reply))

/** `?ids=1,2` and `?ids=1&ids=2` alike, as `qs` with `comma: true` parses them. */
const commaParser = (query: string) => {
  const out: Record<string, string[]> = {}
  for (const [name, value] of new URLSearchParams(query)) (out[name] ??= []).push(...value.split(','))
  return out
}

describe("an app's own query parser on the main app, the cache in a mounted sub-app", () => {
  function app(express: typeof express4) {
    const main = express()
    main.set('query parser', commaParser)
    const api = express()
    const state = { version: 1 }
    const backend = memory()
    api.get('/items', cacheResponse({ ttl: 300, backend }), (req: any, res: any) =>
      res.json({ ids: req.query.ids, version: state.version }),
    )
    main.use('/api', api)
    return { main, state, backend }
  }

  it('Express 4 (which parses req.query once, in the main app): bypassed, and invalidating one spelling leaves no other served', async () => {
    const { main, state, backend } = app(express4)
    const r = await serve(main)
    const first = await r.request('/api/items?ids=1,2')
    // The main app's parser made req.query.
    expect(json(first).ids).toEqual(['1', '2'])
    expect(status(first)).toContain('detail=querystring-parser')
    await r.request('/api/items?ids=1,2')
    state.version = 2
    await invalidateResponse(`${r.url}/api/items?ids=1&ids=2`, { backend })
    expect(json(await r.request('/api/items?ids=1,2')).version).toBe(2)
  })

  it("Express 5 (which parses with the sub-app's parser): still cached", async () => {
    const [, express5] = EXPRESS[1]
    const { main } = app(express5)
    const r = await serve(main)
    expect(json(await r.request('/api/items?ids=1,2')).ids).toBe('1,2')
    // The first request tells the cache where it sits in the app; the next one is stored.
    await r.request('/api/items?ids=1,2')
    expect(isHit(await r.request('/api/items?ids=1,2'))).toBe(true)
  })
})

describe.each(EXPRESS)("spellings Express's own query parsers read alike, on %s", (_name, express) => {
  function app(parser: 'simple' | 'extended', route: string) {
    const a = express()
    a.set('query parser', parser)
    const state = { version: 1 }
    const backend = memory()
    a.get(route, cacheResponse({ ttl: 300, backend }), (req: any, res: any) =>
      res.json({ query: req.query, version: state.version }),
    )
    return { a, state, backend }
  }

  it("'simple': invalidating `?q=50%25+off%21` reaches `?q=50%+off%21`, which Node's querystring reads as the same '50% off!'", async () => {
    const { a, state, backend } = app('simple', '/search')
    const r = await serve(a)
    const sloppy = '/search?q=50%+off%21'
    const encoded = `/search?q=${encodeURIComponent('50% off!')}`
    expect(json(await r.request(sloppy)).query).toEqual({ q: '50% off!' })
    expect(isHit(await r.request(sloppy))).toBe(true)
    await r.request(encoded)
    state.version = 2
    await invalidateResponse(`${r.url}${encoded}`, { backend })
    expect(json(await r.request(encoded)).version).toBe(2)
    expect(json(await r.request(sloppy)).version).toBe(2)
  })

  it("'simple': invalidating `?q=%EF%BF%BD` reaches `?q=%E9` (invalid UTF-8, read as U+FFFD)", async () => {
    const { a, state, backend } = app('simple', '/search')
    const r = await serve(a)
    expect(json(await r.request('/search?q=%E9')).query).toEqual({ q: '\ufffd' })
    expect(isHit(await r.request('/search?q=%E9'))).toBe(true)
    state.version = 2
    await invalidateResponse(`${r.url}/search?q=%EF%BF%BD`, { backend })
    expect(json(await r.request('/search?q=%E9')).version).toBe(2)
  })

  it("'extended': invalidating `?q=50%+off%21` still reaches its own entry (qs keeps the value as sent)", async () => {
    const { a, state, backend } = app('extended', '/search')
    const r = await serve(a)
    const sloppy = '/search?q=50%+off%21'
    await r.request(sloppy)
    expect(isHit(await r.request(sloppy))).toBe(true)
    state.version = 2
    await invalidateResponse(`${r.url}${sloppy}`, { backend })
    expect(json(await r.request(sloppy)).version).toBe(2)
  })

  it("'extended': `?[page]=2` (qs reads it as `?page=2`) is not stored where invalidating `?page=2` cannot reach it", async () => {
    const { a, state, backend } = app('extended', '/list')
    const r = await serve(a)
    for (const odd of ['/list?[page]=2', '/list?page[x]y=1', '/list?a[b][c][d][e][f][g]=1']) {
      const first = await r.request(odd)
      expect(status(first), odd).toContain('detail=querystring-parser')
    }
    expect(json(await r.request('/list?[page]=2')).query).toEqual({ page: '2' })
    await r.request('/list?page=2')
    state.version = 2
    await invalidateResponse(`${r.url}/list?page=2`, { backend })
    expect(json(await r.request('/list?[page]=2')).version).toBe(2)
    expect(json(await r.request('/list?page=2')).version).toBe(2)
  })

  it("'extended': a `__proto__` name (qs drops it) is not stored where invalidating the query without it cannot reach it", async () => {
    const { a, state, backend } = app('extended', '/price')
    const r = await serve(a)
    const odd = [
      '/price?__proto__=1',
      '/price?%5F%5Fproto%5F%5F=1',
      '/price?__proto__',
      '/price?page=2&a[__proto__]=1',
    ]
    for (const target of odd) {
      const first = await r.request(target)
      expect(status(first), target).toContain('detail=querystring-parser')
    }
    expect(json(await r.request('/price?__proto__=1')).query).toEqual({})
    await r.request('/price')
    state.version = 2
    await invalidateResponse(`${r.url}/price`, { backend })
    for (const target of odd) expect(json(await r.request(target)).version, target).toBe(2)
  })

  it("'extended': a pair whose `]=` comes after its first `=` (qs splits there) is not stored under the name as spelled", async () => {
    const { a, state, backend } = app('extended', '/p')
    const r = await serve(a)
    const first = await r.request('/p?x=1]=2')
    expect(status(first)).toContain('detail=querystring-parser')
    expect(json(first).query).toEqual({ 'x=1]': '2' })
    state.version = 2
    await invalidateResponse(`${r.url}/p?x%3D1%5D=2`, { backend })
    expect(json(await r.request('/p?x=1]=2')).version).toBe(2)
  })

  it("'extended': names qs reads as spelled (`filter[status]`, `ids[]`, `a[b][c]`) are still cached", async () => {
    const { a } = app('extended', '/list')
    const r = await serve(a)
    for (const target of [
      '/list?filter[status]=open',
      '/list?ids[]=1&ids[]=2',
      '/list?a[b][c]=1',
      '/list?my__proto__x=1',
    ]) {
      await r.request(target)
      expect(isHit(await r.request(target)), target).toBe(true)
    }
  })

  it("'simple': a bracket is a plain character, `?[page]=2` is cached", async () => {
    const { a } = app('simple', '/list')
    const r = await serve(a)
    await r.request('/list?[page]=2')
    expect(isHit(await r.request('/list?[page]=2'))).toBe(true)
  })
})

describe.each(EXPRESS)('middleware before the cache that replaces req.query, on %s', (_name, express) => {
  /** hpp-style: the last value of a repeated parameter wins. */
  function lastValueWins(req: any, _res: unknown, next: () => void) {
    const query = { ...req.query }
    for (const name of Object.keys(query)) if (Array.isArray(query[name])) query[name] = query[name].at(-1)
    // Express 5 reads req.query through a getter: middleware must define it.
    Object.defineProperty(req, 'query', {
      value: query,
      configurable: true,
      writable: true,
      enumerable: true,
    })
    next()
  }

  it('bypasses a request whose req.query is not what the parser made of it, and caches one whose req.query is', async () => {
    const a = express()
    a.use(lastValueWins)
    const state = { version: 1 }
    const backend = memory()
    a.get('/x', cacheResponse({ ttl: 300, backend }), (req: any, res: any) =>
      res.json({ query: req.query, version: state.version }),
    )
    const r = await serve(a)
    const repeated = await r.request('/x?a=1&a=2')
    expect(json(repeated).query).toEqual({ a: '2' })
    expect(status(repeated)).toContain('detail=querystring-parser')
    await r.request('/x?a=2')
    await r.request('/x?a=2')
    expect(isHit(await r.request('/x?a=2'))).toBe(true)
    state.version = 2
    await invalidateResponse(`${r.url}/x?a=2`, { backend })
    expect(json(await r.request('/x?a=1&a=2')).version).toBe(2)
  })

  it('stores a response whose handler changed req.query itself (after the lookup)', async () => {
    const a = express()
    a.get('/y', cacheResponse({ ttl: 300, backend: memory() }), (req: any, res: any) => {
      const query = { ...req.query, seen: true }
      Object.defineProperty(req, 'query', { value: query, configurable: true, writable: true })
      res.json({ query: req.query })
    })
    const r = await serve(a)
    await r.request('/y?a=1')
    expect(isHit(await r.request('/y?a=1'))).toBe(true)
  })
})

describe.each(EXPRESS)(
  'behind a trusted proxy (X-Forwarded-Host differs from Host), on %s',
  (_name, express) => {
    it('invalidateResponse(public URL) deletes the entry and resolves true; responseIndex lists the public URL', async () => {
      const a = express()
      a.set('trust proxy', true)
      const backend = memory()
      const cache = cacheResponse({ ttl: 300, backend })
      a.get('/p', cache, (req: any, res: any) => res.json({ host: req.hostname }))
      const r = await serve(a)
      const headers = {
        host: 'internal:8080',
        'x-forwarded-host': 'shop.example',
        'x-forwarded-proto': 'https',
      }
      await r.request('/p', { headers })
      expect(isHit(await r.request('/p', { headers }))).toBe(true)
      const listed: string[] = []
      for await (const entry of cache.responseIndex()) listed.push(entry.url)
      expect(listed).toEqual(['https://shop.example/p'])
      expect(await entryKeys(backend)).toHaveLength(1)
      expect(await invalidateResponse('https://shop.example/p', { backend })).toBe(true)
      expect(await entryKeys(backend)).toEqual([])
      expect(isHit(await r.request('/p', { headers }))).toBe(false)
    })
  },
)

/** The keys of the entries stored for https://shop.example/p (the generations are not among them). */
async function entryKeys(backend: ReturnType<typeof memory>): Promise<string[]> {
  const keys: string[] = []
  for await (const key of backend.keys({ prefix: 'http:https://shop.example/p' })) keys.push(key)
  return keys
}
