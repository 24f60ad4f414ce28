import { createServer } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import { memoryBackend } from '@cache/memory'
import type { FastifyRequest } from 'fastify'
import { describe, expect, it } from 'vitest'
import { cachePlugin } from '../src/index.js'
import { get as httpGet } from './http-get.js'
import { app } from './apps.js'

/** A GET of `path` as given, from `options.from`, with `options.host` as its Host. */
const get = (base: string, path: string, options: { from?: string; host?: string } = {}) =>
  httpGet(base, options.host === undefined ? {} : { host: options.host }, {
    target: path,
    from: options.from,
  })

type Marked = { view?: string; preview?: boolean; legacy?: boolean }
const INTERNAL = '127.0.0.2'

describe('a target rewritten before the cache', () => {
  // `/admin/x` is `/x` in admin view, for the internal network only; `/fr/x` is `/x` in French.
  const rewriteUrl = (raw: { url?: string } & Marked) => {
    const match = /^\/(admin|fr|de)(\/.*)$/.exec(raw.url ?? '/')
    if (match === null) return raw.url ?? '/'
    raw.view = match[1]
    return match[2]!
  }
  const page = (raw: Marked) =>
    raw.view === 'admin' ? 'ADMIN: cost 3.10' : `lamp 16.90 [${raw.view ?? 'en'}]`

  it('rewriteUrl: the admin view is never stored under the public URL, nor one locale for another', async () => {
    const made = app({ rewriteUrl: rewriteUrl as never })
    made.addHook('onRequest', async (request, reply) => {
      const raw = request.raw as typeof request.raw & Marked
      if (raw.view === 'admin' && raw.socket.remoteAddress !== INTERNAL)
        return reply.code(403).send('forbidden')
    })
    await made.register(cachePlugin, { backend: memoryBackend() })
    made.get('/products', { config: { cache: true } }, async (request) => page(request.raw as Marked))
    const base = await made.listen({ port: 0, host: '127.0.0.1' })

    await get(base, '/products?ready=1')
    const admin = await get(base, '/admin/products', { from: INTERNAL })
    expect(admin.body).toBe('ADMIN: cost 3.10')
    expect(admin.cacheStatus).toContain('detail=rewritten-url')
    expect((await get(base, '/products')).body).toBe('lamp 16.90 [en]')
    expect((await get(base, '/admin/products')).status).toBe(403)
    await get(base, '/fr/products?x=1')
    expect((await get(base, '/de/products?x=1')).body).toBe('lamp 16.90 [de]')
    expect((await get(base, '/products?x=1')).body).toBe('lamp 16.90 [en]')
    // What is not rewritten is cached as before.
    expect((await get(base, '/products')).cacheStatus).toContain('hit')
  })

  it('rewriteUrl by a header (not by the URL): the rewritten requests bypass', async () => {
    const made = app({
      rewriteUrl: ((raw: { url?: string; headers: Record<string, unknown> } & Marked) => {
        if (raw.headers['x-staff'] !== '1') return raw.url ?? '/'
        raw.view = 'admin'
        return raw.url === '/home' ? '/products' : (raw.url ?? '/')
      }) as never,
    })
    await made.register(cachePlugin, { backend: memoryBackend() })
    made.get('/products', { config: { cache: true } }, async (request) => page(request.raw as Marked))
    const answer = await made.inject({ url: '/home', headers: { 'x-staff': '1' } })
    expect(answer.headers['cache-status']).toContain('detail=rewritten-url')
    expect((await made.inject({ url: '/products' })).body).toBe('lamp 16.90 [en]')
  })

  const strip = (raw: { url?: string } & Marked) => {
    if (/[?&]preview=1/.test(raw.url ?? '')) {
      raw.preview = true
      raw.url = (raw.url ?? '/').replace(/[?&]preview=1/, '').replace(/^([^?]*)&/, '$1?')
    }
  }
  const draft = (raw: Marked) => (raw.preview ? 'DRAFT 9.99' : 'price 16.90')

  it('a hook registered before the plugin that rewrites request.raw.url: keyed as sent, bypassed', async () => {
    const made = app()
    made.addHook('onRequest', async (request) => strip(request.raw))
    await made.register(cachePlugin, { backend: memoryBackend() })
    made.get('/products', { config: { cache: true } }, async (request) => draft(request.raw as Marked))
    const base = await made.listen({ port: 0, host: '127.0.0.1' })

    await get(base, '/products?ready=1')
    const editor = await get(base, '/products?preview=1')
    expect(editor.body).toBe('DRAFT 9.99')
    expect(editor.cacheStatus).toContain('detail=rewritten-url')
    expect((await get(base, '/products')).body).toBe('price 16.90')
    await get(base, '/products?a=1&preview=1')
    expect((await get(base, '/products?a=1')).body).toBe('price 16.90')
    expect((await get(base, '/products')).cacheStatus).toContain('hit')
  })

  it('the same rewrite in a child plugin, on the route, or in a later hook: bypassed', async () => {
    const made = app()
    await made.register(cachePlugin, { backend: memoryBackend() })
    await made.register(async (child) => {
      child.addHook('preValidation', async (request) => strip(request.raw))
      child.get('/a', { config: { cache: true } }, async (request) => draft(request.raw as Marked))
    })
    made.get(
      '/b',
      { config: { cache: true }, onRequest: async (request) => strip(request.raw) },
      async (request) => draft(request.raw as Marked),
    )
    made.addHook('preHandler', async (request) => strip(request.raw))
    made.get('/c', { config: { cache: true } }, async (request) => draft(request.raw as Marked))
    for (const path of ['/a', '/b', '/c']) {
      const editor = await made.inject({ url: `${path}?preview=1` })
      expect(editor.body).toBe('DRAFT 9.99')
      expect(editor.headers['cache-status']).toContain('detail=rewritten-url')
      expect((await made.inject({ url: path })).body).toBe('price 16.90')
    }
  })

  it('a server in front of Fastify (serverFactory) rewriting the URL: keyed as sent, bypassed', async () => {
    const made = app({
      serverFactory: (handler) =>
        createServer((req, res) => {
          strip(req)
          handler(req, res)
        }),
    })
    await made.register(cachePlugin, { backend: memoryBackend() })
    made.get('/products', { config: { cache: true } }, async (request) => draft(request.raw as Marked))
    const base = await made.listen({ port: 0, host: '127.0.0.1' })

    const editor = await get(base, '/products?preview=1')
    expect(editor.body).toBe('DRAFT 9.99')
    expect(editor.cacheStatus).toContain('detail=rewritten-url')
    expect((await get(base, '/products')).body).toBe('price 16.90')
    // What the server does not rewrite is cached as before, and inject() keeps its own rule.
    expect((await get(base, '/products')).cacheStatus).toContain('hit')
    expect((await made.inject({ url: '/products' })).headers['cache-status']).toContain('stored')
  })

  it.each([
    ['a request listener prepended', 'prependListener'],
    ['a request listener prepended once', 'prependOnceListener'],
    ["an emit wrapped around the server's", 'emit'],
  ] as const)(
    '%s on fastify.server after the cache, rewriting the URL: bypassed, never stored under the rewritten URL',
    async (_name, how) => {
      const made = app()
      await made.register(cachePlugin, { backend: memoryBackend() })
      made.get('/products', { config: { cache: true } }, async (request) => page(request.raw as Marked))
      const base = await made.listen({ port: 0, host: '127.0.0.1' })
      const rewrite = (req: { url?: string }) => {
        req.url = rewriteUrl(req as typeof req & Marked)
      }
      // Runs before every listener put on the server so far.
      if (how === 'emit') {
        const emit = made.server.emit
        made.server.emit = function (this: unknown, event: string | symbol, ...args: unknown[]) {
          if (event === 'request') rewrite(args[0] as { url?: string })
          return (emit as (...all: unknown[]) => boolean).call(this, event, ...args)
        } as typeof made.server.emit
      } else made.server[how]('request', rewrite)
      const french = await get(base, '/fr/products')
      expect(french.body).toBe('lamp 16.90 [fr]')
      expect(french.cacheStatus).toContain('detail=rewritten-url')
      const english = await get(base, '/products')
      expect(english.body).toBe('lamp 16.90 [en]')
    },
  )

  it("a server of the app's own that rewrites then calls fastify.routing or emits on fastify.server: bypassed", async () => {
    for (const via of ['routing', 'emit'] as const) {
      const made = app()
      await made.register(cachePlugin, { backend: memoryBackend() })
      made.get('/products', { config: { cache: true } }, async (request) => page(request.raw as Marked))
      await made.ready()
      // `/fr/products` is `/products` in French, told to the app by the server in front of it.
      const front = createServer((req, res) => {
        req.url = rewriteUrl(req as typeof req & Marked)
        if (via === 'routing') made.routing(req, res)
        else made.server.emit('request', req, res)
      })
      await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve))
      const address = front.address() as { port: number }
      const base = `http://127.0.0.1:${address.port}`
      try {
        const french = await get(base, '/fr/products')
        expect(french.body).toBe('lamp 16.90 [fr]')
        expect(french.cacheStatus, via).toContain('detail=rewritten-url')
        const english = await get(base, '/products')
        expect(english.body, via).toBe('lamp 16.90 [en]')
        // What Fastify's server did not accept cannot be told as sent: not stored either.
        expect(english.cacheStatus, via).toContain('detail=rewritten-url')
      } finally {
        await new Promise((resolve) => front.close(resolve))
      }
    }
  })

  it('a connection handed to fastify.server (emit connection, as sticky sessions do): cached as usual', async () => {
    const made = app()
    await made.register(cachePlugin, { backend: memoryBackend() })
    made.get('/products', { config: { cache: true } }, async (request) => page(request.raw as Marked))
    await made.ready()
    const front = createNetServer({ pauseOnConnect: true }, (socket) => {
      made.server.emit('connection', socket)
      socket.resume()
    })
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve))
    const base = `http://127.0.0.1:${(front.address() as { port: number }).port}`
    try {
      expect((await get(base, '/products')).cacheStatus).toContain('stored')
      expect((await get(base, '/products')).cacheStatus).toContain('hit')
    } finally {
      await new Promise((resolve) => front.close(resolve))
    }
  })

  it('a hook rewriting the Host header: the Host as sent is keyed too, and invalidation reaches it', async () => {
    const made = app()
    made.addHook('onRequest', async (request) => {
      const raw = request.raw as typeof request.raw & Marked
      if (raw.headers.host?.startsWith('old-brand.example')) {
        raw.legacy = true
        raw.headers.host = raw.headers.host.replace('old-brand', 'new-brand')
      }
    })
    await made.register(cachePlugin, { backend: memoryBackend() })
    let version = 1
    made.get('/', { config: { cache: true } }, async (request) =>
      (request.raw as Marked).legacy ? `coupon OLD50 v${version}` : `new-brand home v${version}`,
    )
    const base = await made.listen({ port: 0, host: '127.0.0.1' })
    expect((await get(base, '/', { host: 'old-brand.example' })).body).toBe('coupon OLD50 v1')
    expect((await get(base, '/', { host: 'new-brand.example' })).body).toBe('new-brand home v1')
    expect((await get(base, '/', { host: 'old-brand.example' })).cacheStatus).toContain('hit')
    version = 2
    await made.cache.invalidate('/', { host: 'new-brand.example' })
    expect((await get(base, '/', { host: 'old-brand.example' })).body).toBe('coupon OLD50 v2')
    expect((await get(base, '/', { host: 'new-brand.example' })).body).toBe('new-brand home v2')
  })

  it("a hook rewriting the Host line in rawHeaders too: the legacy domain's page is never served to the new one", async () => {
    const made = app()
    made.addHook('onRequest', async (request) => {
      const raw = request.raw as typeof request.raw & Marked
      if (raw.headers.host === 'old-brand.example') {
        raw.legacy = true
        raw.headers.host = 'new-brand.example'
        for (let i = 0; i < raw.rawHeaders.length; i += 2)
          if (raw.rawHeaders[i]!.toLowerCase() === 'host') raw.rawHeaders[i + 1] = 'new-brand.example'
      }
    })
    await made.register(cachePlugin, { backend: memoryBackend() })
    made.get('/', { config: { cache: true } }, async (request) =>
      (request.raw as Marked).legacy ? 'coupon OLD50' : 'new-brand home',
    )
    const base = await made.listen({ port: 0, host: '127.0.0.1' })
    expect((await get(base, '/', { host: 'old-brand.example' })).body).toBe('coupon OLD50')
    // Before: the coupon page, stored under new-brand.example.
    expect((await get(base, '/', { host: 'new-brand.example' })).body).toBe('new-brand home')
  })

  it("the same hook under app.inject(): the legacy domain's page is never served to the new one", async () => {
    const made = app()
    made.addHook('onRequest', async (request) => {
      const raw = request.raw as typeof request.raw & Marked
      if (raw.headers.host === 'old-brand.example') {
        raw.legacy = true
        raw.headers.host = 'new-brand.example'
        for (let i = 0; i < raw.rawHeaders.length; i += 2)
          if (raw.rawHeaders[i]!.toLowerCase() === 'host') raw.rawHeaders[i + 1] = 'new-brand.example'
      }
    })
    await made.register(cachePlugin, { backend: memoryBackend() })
    made.get('/', { config: { cache: true } }, async (request) =>
      (request.raw as Marked).legacy ? 'coupon OLD50' : 'new-brand home',
    )
    const inject = (host: string) => made.inject({ url: '/', headers: { host } })
    expect((await inject('old-brand.example')).body).toBe('coupon OLD50')
    // Before: the coupon page, stored under new-brand.example.
    expect((await inject('new-brand.example')).body).toBe('new-brand home')
    expect((await inject('old-brand.example')).headers['cache-status']).toContain('hit')
  })

  /**
   * An app behind a trusted proxy whose hook maps the legacy domain's `X-Forwarded-Host` to the
   * new one (`rewrite`) and flags the request; `proxied(host)` asks for `/` as the proxy would.
   */
  async function forwardedAlias(rewrite: (request: FastifyRequest) => void) {
    const made = app({ trustProxy: true })
    made.addHook('onRequest', async (request) => {
      if (request.headers['x-forwarded-host'] === 'old-brand.example') {
        ;(request.raw as typeof request.raw & Marked).legacy = true
        rewrite(request)
      }
    })
    await made.register(cachePlugin, { backend: memoryBackend() })
    made.get('/', { config: { cache: true } }, async (request) =>
      (request.raw as Marked).legacy ? 'coupon OLD50' : `home of ${request.host}`,
    )
    const base = await made.listen({ port: 0, host: '127.0.0.1' })
    return (forwarded: string) =>
      httpGet(base, { host: 'internal:8080', 'x-forwarded-host': forwarded, 'x-forwarded-proto': 'https' })
  }

  it("behind a trusted proxy, a hook replacing request.headers with another X-Forwarded-Host: the legacy domain's page is never served to the new one", async () => {
    const proxied = await forwardedAlias((request) => {
      // Fastify keeps a replaced object apart from request.raw.headers.
      request.headers = { ...request.headers, 'x-forwarded-host': 'new-brand.example' }
    })
    expect((await proxied('old-brand.example')).body).toBe('coupon OLD50')
    // Before: the coupon page (Node's headers untouched, the key the same as the new domain's).
    expect((await proxied('new-brand.example')).body).toBe('home of new-brand.example')
  })

  it("behind a trusted proxy, a hook rewriting X-Forwarded-Host: the legacy domain's page is never served to the new one", async () => {
    const proxied = await forwardedAlias((request) => {
      request.headers['x-forwarded-host'] = 'new-brand.example'
    })
    expect((await proxied('old-brand.example')).body).toBe('coupon OLD50')
    // Before: the coupon page (both keyed as new-brand.example behind the same proxy Host).
    expect((await proxied('new-brand.example')).body).toBe('home of new-brand.example')
    expect((await proxied('new-brand.example')).cacheStatus).toContain('hit')
    expect((await proxied('old-brand.example')).body).toBe('coupon OLD50')
  })
})
