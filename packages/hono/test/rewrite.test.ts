import { memoryBackend } from '@cache/memory'
import { type Context, Hono, type Next } from 'hono'
import { setCookie } from 'hono/cookie'
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { get, listen } from './serve.js'

describe('a layer before the cache that hands on a Request with another URL', () => {
  /** Preview mode: `preview=1` noted on the context and taken out of the URL the handler reads. */
  function previewApp() {
    let runs = 0
    const app = new Hono<{ Variables: { preview: boolean } }>()
    app.use(async (c, next) => {
      const url = new URL(c.req.url)
      if (url.searchParams.get('preview') === '1') {
        c.set('preview', true)
        url.searchParams.delete('preview')
        c.req.raw = new Request(url, c.req.raw)
      }
      await next()
    })
    app.get('/products', cacheResponse({ ttl: 60, backend: memoryBackend() }), (c) => {
      runs++
      return c.text(c.get('preview') ? `DRAFT ${c.req.url}` : `price 16.90 ${c.req.query('a') ?? ''}`)
    })
    return { app, runs: () => runs }
  }

  it("on Node's server, the editor's draft is never stored under the public URL", async () => {
    const { app, runs } = previewApp()
    const base = await listen(app)
    const editor = await get(base, '/products?preview=1')
    expect(editor.text).toMatch(/^DRAFT/)
    expect(editor.headers['cache-status']).toBe('@cache; fwd=request; detail=rewritten-url')
    expect((await get(base, '/products')).text).toBe('price 16.90 ')
    expect((await get(base, '/products?a=1&preview=1')).text).toMatch(/^DRAFT/)
    const publicA = await get(base, '/products?a=1')
    expect(publicA.text).toBe('price 16.90 1')
    expect(publicA.headers['cache-status']).toMatch(/fwd=uri-miss; stored/)
    // A request the layer leaves as it came is cached as before.
    expect((await get(base, '/products?a=1')).headers['cache-status']).toMatch(/^@cache; hit/)
    expect(runs()).toBe(4)
  })

  it('a rewrite made from a request header (a language added to the query) is never keyed as sent', async () => {
    let runs = 0
    const app = new Hono()
    app.use(async (c, next) => {
      const url = new URL(c.req.url)
      url.searchParams.set('lang', c.req.header('accept-language') ?? 'en')
      c.req.raw = new Request(url, c.req.raw)
      await next()
    })
    app.get('/home', cacheResponse({ ttl: 60, backend: memoryBackend() }), (c) => {
      runs++
      return c.text(`home in ${c.req.query('lang')}`)
    })
    const base = await listen(app)
    expect((await get(base, '/home', 'GET', { 'accept-language': 'fr' })).text).toBe('home in fr')
    expect((await get(base, '/home', 'GET', { 'accept-language': 'de' })).text).toBe('home in de')
    expect((await get(base, '/home?x=1', 'GET', { 'accept-language': 'fr' })).text).toBe('home in fr')
    expect((await get(base, '/home?x=1', 'GET', { 'accept-language': 'de' })).text).toBe('home in de')
    expect(runs).toBe(4)
  })

  it('a layer that moves the request to another host (URL and Host header together) is never keyed as sent', async () => {
    const app = new Hono()
    app.use(async (c, next) => {
      if (c.req.header('x-legacy') === '1') {
        const headers = new Headers(c.req.raw.headers)
        headers.set('host', 'new-brand.test')
        c.req.raw = new Request(`http://new-brand.test${new URL(c.req.url).pathname}`, { headers })
      }
      await next()
    })
    app.get('/coupon', cacheResponse({ ttl: 60, backend: memoryBackend() }), (c) =>
      c.text(`coupon of ${new URL(c.req.url).host}`),
    )
    const base = await listen(app)
    const legacy = await get(base, '/coupon', 'GET', { host: 'old-brand.test', 'x-legacy': '1' })
    expect(legacy.text).toBe('coupon of new-brand.test')
    expect(legacy.headers['cache-status']).toMatch(/detail=(rewritten-url|url)/)
    expect((await get(base, '/coupon', 'GET', { host: 'old-brand.test' })).text).toBe(
      'coupon of old-brand.test',
    )
  })

  it("a fetch of yours that hands app.fetch another URL, with the server's env, bypasses: the draft is never stored", async () => {
    const previews = new WeakSet<Request>()
    const app = new Hono().get('/page', cacheResponse({ ttl: 60, backend: memoryBackend() }), (c) =>
      c.text(previews.has(c.req.raw) ? 'DRAFT' : 'published'),
    )
    const base = await listen({
      fetch: (request: Request, env?: unknown) => {
        const url = new URL(request.url)
        if (url.searchParams.get('preview') !== '1') return app.fetch(request, env)
        url.searchParams.delete('preview')
        const rewritten = new Request(url, request)
        previews.add(rewritten)
        return app.fetch(rewritten, env)
      },
    })
    const editor = await get(base, '/page?preview=1')
    expect(editor.text).toBe('DRAFT')
    expect(editor.headers['cache-status']).toBe('@cache; fwd=request; detail=rewritten-url')
    expect((await get(base, '/page')).text).toBe('published')
    expect((await get(base, '/page')).headers['cache-status']).toMatch(/^@cache; hit/)
  })

  it('an app mounted with app.mount() bypasses (the mount strips its path); with app.route() it is cached', async () => {
    const inner = () =>
      new Hono().get('/products', cacheResponse({ ttl: 60, backend: memoryBackend() }), (c) =>
        c.text(`products at ${new URL(c.req.url).pathname}`),
      )
    const app = new Hono().mount('/mounted', inner().fetch).route('/routed', inner())
    const base = await listen(app)
    const mounted = await get(base, '/mounted/products')
    expect(mounted.text).toBe('products at /products')
    expect(mounted.headers['cache-status']).toBe('@cache; fwd=request; detail=rewritten-url')
    expect((await get(base, '/routed/products')).headers['cache-status']).toMatch(/stored/)
    expect((await get(base, '/routed/products')).headers['cache-status']).toMatch(/^@cache; hit/)
  })

  it('a URL the server spells otherwise than it was sent (escapes, dot segments) is not a rewrite', async () => {
    let runs = 0
    const app = new Hono()
    app.get('/shop/*', cacheResponse({ ttl: 60, backend: memoryBackend() }), (c) => c.text(`page ${++runs}`))
    const base = await listen(app)
    // Targets the URL parser respells: `'`, `<`, `>`, `{` in the query escaped, a `..` segment resolved.
    for (const path of ["/shop/a%20b?q='x'", '/shop/x/../caf%C3%A9?k=<v>', '/shop/item?f={1}', '/shop/item'])
      expect((await get(base, path)).headers['cache-status']).toMatch(/stored/)
    expect((await get(base, "/shop/a%20b?q='x'")).headers['cache-status']).toMatch(/^@cache; hit/)
    expect((await get(base, '/shop/caf%C3%A9?k=<v>')).headers['cache-status']).toMatch(/^@cache; hit/)
  })
})

describe('cacheControl on a hit, with a layer before the cache', () => {
  const crawler = { 'user-agent': 'crawler' }
  const visitor = { 'user-agent': 'visitor' }
  const isCrawler = (c: Context) => c.req.header('user-agent') === 'crawler'

  function app(layer: (c: Context, next: Next) => Promise<void>) {
    const hono = new Hono()
    hono.use(layer)
    hono.get('/home', cacheResponse({ ttl: 60, backend: memoryBackend(), cacheControl: true }), (c) =>
      c.text('home page'),
    )
    return hono
  }

  it('a Set-Cookie it adds before await next() leaves Cache-Control out of the hit', async () => {
    const base = await listen(
      app(async (c, next) => {
        if (!isCrawler(c)) setCookie(c, 'vid', 'alice')
        await next()
      }),
    )
    expect((await get(base, '/home', 'GET', crawler)).headers['cache-control']).toBe('public, max-age=60')
    const hit = await get(base, '/home', 'GET', visitor)
    expect(hit.headers['cache-status']).toMatch(/^@cache; hit/)
    expect(hit.headers['set-cookie']).toEqual(['vid=alice; Path=/'])
    expect(hit.headers['cache-control']).toBeUndefined()
  })

  it("on Node's server, a Set-Cookie it adds after await next() leaves Cache-Control out of the hit", async () => {
    const base = await listen(
      app(async (c, next) => {
        await next()
        if (!isCrawler(c)) setCookie(c, 'vid', 'alice')
      }),
    )
    expect((await get(base, '/home', 'GET', crawler)).headers['cache-control']).toBe('public, max-age=60')
    const hit = await get(base, '/home', 'GET', visitor)
    expect(hit.headers['cache-status']).toMatch(/^@cache; hit/)
    expect(hit.headers['set-cookie']).toEqual(['vid=alice; Path=/'])
    expect(hit.headers['cache-control']).toBeUndefined()
  })

  it("on Node's server, a Vary: * it adds after await next() leaves Cache-Control out of the hit", async () => {
    const base = await listen(
      app(async (c, next) => {
        await next()
        if (!isCrawler(c)) c.header('Vary', '*')
      }),
    )
    expect((await get(base, '/home', 'GET', crawler)).headers['cache-control']).toBe('public, max-age=60')
    const hit = await get(base, '/home', 'GET', visitor)
    expect(hit.headers['cache-status']).toMatch(/^@cache; hit/)
    expect(hit.headers.vary).toBe('*')
    expect(hit.headers['cache-control']).toBeUndefined()
  })

  it("on Node's server, a miss to which it adds Set-Cookie after await next() goes out without Cache-Control", async () => {
    const base = await listen(
      app(async (c, next) => {
        await next()
        setCookie(c, 'vid', 'alice')
      }),
    )
    const miss = await get(base, '/home', 'GET', visitor)
    expect(miss.headers['set-cookie']).toEqual(['vid=alice; Path=/'])
    expect(miss.headers['cache-control']).toBeUndefined()
    expect(miss.headers['cache-status']).not.toMatch(/stored/)
  })

  it('a Cache-Control it sets before await next() (no-store, its own max-age) is never replaced on a hit', async () => {
    const base = await listen(
      app(async (c, next) => {
        if (c.req.header('user-agent') === 'api') c.header('Cache-Control', 'no-store')
        if (c.req.header('user-agent') === 'cdn') c.header('Cache-Control', 'public, max-age=5')
        await next()
      }),
    )
    expect((await get(base, '/home', 'GET', crawler)).headers['cache-control']).toBe('public, max-age=60')
    const api = await get(base, '/home', 'GET', { 'user-agent': 'api' })
    expect(api.headers['cache-status']).toMatch(/^@cache; hit/)
    expect(api.headers['cache-control']).toBe('no-store')
    expect((await get(base, '/home', 'GET', { 'user-agent': 'cdn' })).headers['cache-control']).toBe(
      'public, max-age=5',
    )
    expect((await get(base, '/home', 'GET', crawler)).headers['cache-control']).toBe('public, max-age=60')
  })

  it('without Node (app.request), a Set-Cookie or Cache-Control it sets before await next() is kept on a hit', async () => {
    const hono = app(async (c, next) => {
      if (c.req.header('user-agent') === 'visitor') setCookie(c, 'vid', 'alice')
      if (c.req.header('user-agent') === 'api') c.header('Cache-Control', 'no-store')
      await next()
    })
    const request = (ua: string) =>
      hono.request('http://shop.test/home', { headers: { host: 'shop.test', 'user-agent': ua } })
    const first = await request('crawler')
    await first.text()
    expect(first.headers.get('cache-control')).toBe('public, max-age=60')
    const hit = await request('visitor')
    expect(hit.headers.get('cache-status')).toMatch(/^@cache; hit/)
    expect(hit.headers.get('set-cookie')).toBe('vid=alice; Path=/')
    expect(hit.headers.get('cache-control')).toBeNull()
    expect((await request('api')).headers.get('cache-control')).toBe('no-store')
  })
})
