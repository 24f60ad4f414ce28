import { ServerResponse } from 'node:http'
import { pipeline, Readable } from 'node:stream'
import { memoryBackend } from '@cache/memory'
import type { HttpBindings } from '@hono/node-server'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import { Hono } from 'hono'
import onHeaders from 'on-headers'
import { describe, expect, it, vi } from 'vitest'
import { type CacheResponseOptions, cacheResponse } from '../src/index.js'
import { get, listen } from './serve.js'

/*
 * Code that works on Node's own response (`c.env.outgoing` on @hono/node-server) rather than on
 * Hono's: a session layer that adds its cookie as the headers leave, a `ServerResponse` subclass,
 * a handler that writes the response itself and returns `RESPONSE_ALREADY_SENT`.
 */

describe('a layer before the cache that adds headers as Node writes them (on-headers, as express-session does)', () => {
  /**
   * Every request is a new visitor with a session and a CSRF token that the page embeds; the
   * layer's `hook` runs on Node's response as its headers leave, as express-session's cookie does.
   */
  function sessionApp(
    hook: (res: ServerResponse, visitor: number) => void,
    options: Partial<CacheResponseOptions> = {},
  ) {
    let runs = 0
    let visitors = 0
    const app = new Hono<{ Bindings: HttpBindings; Variables: { csrf: string } }>()
    app.use('*', async (c, next) => {
      const visitor = ++visitors
      c.set('csrf', `csrf-${visitor}`)
      onHeaders(c.env.outgoing, function (this: ServerResponse) {
        hook(this, visitor)
      })
      await next()
    })
    app.get('/form', cacheResponse({ ttl: 60, backend: memoryBackend(), ...options }), (c) => {
      runs++
      return c.html(`<form><input name="csrf" value="${c.get('csrf')}"></form>`)
    })
    return { app, runs: () => runs }
  }

  it("never replays the page that carried a visitor's session cookie: visitor 2 never gets visitor 1's CSRF token", async () => {
    const { app, runs } = sessionApp((res, visitor) => res.setHeader('set-cookie', `sid=visitor-${visitor}`))
    const base = await listen(app)
    const first = await get(base, '/form')
    const second = await get(base, '/form')
    expect(first.headers['set-cookie']).toEqual(['sid=visitor-1'])
    expect(first.text).toContain('csrf-1')
    expect(second.headers['set-cookie']).toEqual(['sid=visitor-2'])
    expect(second.text).toContain('csrf-2')
    expect(second.text).not.toContain('csrf-1')
    expect(second.headers['cache-status']).not.toMatch(/hit/)
    expect(runs()).toBe(2)
  })

  it('never stores a response that it makes Cache-Control: private', async () => {
    const { app, runs } = sessionApp((res) => res.setHeader('cache-control', 'private'))
    const base = await listen(app)
    const first = await get(base, '/form')
    const second = await get(base, '/form')
    expect(first.headers['cache-control']).toBe('private')
    expect(second.text).toContain('csrf-2')
    expect(second.headers['cache-status']).not.toMatch(/hit/)
    expect(runs()).toBe(2)
  })

  it('never stores a response to which it adds Vary: *', async () => {
    const { app, runs } = sessionApp((res) => res.setHeader('vary', '*'))
    const base = await listen(app)
    const first = await get(base, '/form')
    const second = await get(base, '/form')
    expect(first.headers.vary).toBe('*')
    expect(second.text).toContain('csrf-2')
    expect(second.headers['cache-status']).not.toMatch(/hit/)
    expect(runs()).toBe(2)
  })

  it("leaves the cacheControl option's Cache-Control out of a miss to which it adds Set-Cookie", async () => {
    const { app } = sessionApp((res, visitor) => res.setHeader('set-cookie', `sid=visitor-${visitor}`), {
      cacheControl: true,
    })
    const base = await listen(app)
    const first = await get(base, '/form')
    expect(first.headers['set-cookie']).toEqual(['sid=visitor-1'])
    expect(first.headers['cache-control']).toBeUndefined()
  })

  it("leaves the cacheControl option's Cache-Control out of a hit to which it adds Set-Cookie", async () => {
    // Visitor 1 already has a session; visitor 2 is given one as the hit's headers leave.
    const { app, runs } = sessionApp(
      (res, visitor) => {
        if (visitor > 1) res.setHeader('set-cookie', `sid=visitor-${visitor}`)
      },
      { cacheControl: true },
    )
    const base = await listen(app)
    const first = await get(base, '/form')
    expect(first.headers['cache-control']).toMatch(/max-age/)
    const second = await get(base, '/form')
    expect(second.headers['cache-status']).toMatch(/hit/)
    expect(second.headers['set-cookie']).toEqual(['sid=visitor-2'])
    expect(second.headers['cache-control']).toBeUndefined()
    expect(runs()).toBe(1)
  })

  it('a ServerResponse subclass (serverOptions) that adds Set-Cookie in writeHead: never stored', async () => {
    let visitors = 0
    class SessionResponse extends ServerResponse {
      override writeHead(...args: unknown[]): this {
        this.setHeader('set-cookie', `sid=visitor-${++visitors}`)
        return (super.writeHead as (...a: unknown[]) => this)(...args)
      }
    }
    let runs = 0
    const app = new Hono()
    app.get('/form', cacheResponse({ ttl: 60, backend: memoryBackend() }), (c) => c.text(`page ${++runs}`))
    const base = await listen(app, { ServerResponse: SessionResponse as typeof ServerResponse })
    const first = await get(base, '/form')
    const second = await get(base, '/form')
    expect(first.headers['set-cookie']).toEqual(['sid=visitor-1'])
    expect(second.headers['set-cookie']).toEqual(['sid=visitor-2'])
    expect(second.text).toBe('page 2')
    expect(runs).toBe(2)
  })
})

describe('a handler that answers on Node’s response itself and returns RESPONSE_ALREADY_SENT', () => {
  /** A CSV body whose rows come one by one, as from a database cursor. */
  const rows = () =>
    Readable.from(
      (async function* () {
        for (let i = 0; i < 3; i++) {
          await new Promise((resolve) => setImmediate(resolve))
          yield `row${i};`
        }
      })(),
    )

  /** Both routes of the report: headers written at once, and everything written after an await. */
  function csvApp() {
    const runs = { now: 0, later: 0 }
    const failures: unknown[] = []
    const app = new Hono<{ Bindings: HttpBindings }>()
    app.use('*', cacheResponse({ ttl: 60, backend: memoryBackend() }))
    app.get('/now', (c) => {
      runs.now++
      const outgoing = c.env.outgoing
      outgoing.writeHead(200, { 'content-type': 'text/csv' })
      pipeline(rows(), outgoing, () => {})
      return RESPONSE_ALREADY_SENT
    })
    app.get('/later', (c) => {
      runs.later++
      const outgoing = c.env.outgoing
      setImmediate(() => {
        try {
          outgoing.writeHead(200, { 'content-type': 'text/csv' })
          pipeline(rows(), outgoing, () => {})
        } catch (error) {
          failures.push(error)
        }
      })
      return RESPONSE_ALREADY_SENT
    })
    return { app, runs, failures }
  }

  it('headers written at once, body piped later: every client gets the whole body, and none of it is replayed', async () => {
    // @hono/node-server logs the errors it meets while writing over a response already sent.
    const logged = vi.spyOn(console, 'error').mockImplementation(() => {})
    try {
      const { app, runs } = csvApp()
      const base = await listen(app)
      for (let i = 0; i < 2; i++) {
        const reply = await get(base, '/now')
        expect(reply.status).toBe(200)
        expect(reply.headers['content-type']).toBe('text/csv')
        expect(reply.text).toBe('row0;row1;row2;')
        expect(reply.headers['cache-status'] ?? '').not.toMatch(/hit/)
      }
      // A request the cache bypasses (credentials) gets it whole too.
      const bypassed = await get(base, '/now', 'GET', { authorization: 'Bearer a' })
      expect(bypassed.text).toBe('row0;row1;row2;')
      expect(runs.now).toBe(3)
      expect(logged).not.toHaveBeenCalled()
    } finally {
      logged.mockRestore()
    }
  })

  it('everything written after an await: every client gets the whole body, and Cache-Status says why it is not stored', async () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => {})
    try {
      const { app, runs, failures } = csvApp()
      const base = await listen(app)
      for (let i = 0; i < 2; i++) {
        const reply = await get(base, '/later')
        expect(reply.status).toBe(200)
        expect(reply.headers['content-type']).toBe('text/csv')
        expect(reply.text).toBe('row0;row1;row2;')
        expect(reply.headers['cache-status']).toMatch(/fwd=uri-miss; detail=response-already-sent/)
      }
      const bypassed = await get(base, '/later', 'GET', { authorization: 'Bearer a' })
      expect(bypassed.text).toBe('row0;row1;row2;')
      expect(bypassed.headers['cache-status']).toMatch(/fwd=request; detail=authorization/)
      expect(runs.later).toBe(3)
      expect(failures).toEqual([])
      expect(logged).not.toHaveBeenCalled()
    } finally {
      logged.mockRestore()
    }
  })
})

describe('headers that reach the client through Node’s response, not Hono’s', () => {
  it("a ServerResponse subclass that hands super.writeHead a new header object with Set-Cookie and private: Alice's cart never reaches an anonymous client", async () => {
    class SessionResponse extends ServerResponse {
      override writeHead(code: number, ...rest: unknown[]): this {
        const at = typeof rest[0] === 'string' ? 1 : 0
        const user = this.req.headers['x-user']
        const given = rest[at]
        if (user !== undefined && given && typeof given === 'object' && !Array.isArray(given))
          rest[at] = { ...given, 'set-cookie': `sid=${user}; HttpOnly`, 'cache-control': 'private' }
        return (super.writeHead as (...a: unknown[]) => this)(code, ...rest)
      }
    }
    const app = new Hono<{ Bindings: HttpBindings }>()
    app.get('/cart', cacheResponse({ ttl: 60, backend: memoryBackend() }), (c) =>
      c.text(`cart of ${c.env.incoming.headers['x-user'] ?? 'nobody'}`),
    )
    const base = await listen(app, { ServerResponse: SessionResponse as typeof ServerResponse })
    const alice = await get(base, '/cart', 'GET', { 'x-user': 'alice' })
    expect(alice.text).toBe('cart of alice')
    expect(alice.headers['set-cookie']).toEqual(['sid=alice; HttpOnly'])
    expect(alice.headers['cache-control']).toBe('private')
    const anonymous = await get(base, '/cart')
    expect(anonymous.text).toBe('cart of nobody')
    expect(anonymous.headers['cache-status'] ?? '').not.toMatch(/hit/)
  })

  /** A greeting in the client's language; `where` adds `Vary: Accept-Language` on Node's response. */
  function greetingApp(where: 'the handler' | 'a layer before the cache') {
    let runs = 0
    const app = new Hono<{ Bindings: HttpBindings }>()
    if (where === 'a layer before the cache')
      app.use('/greet', async (c, next) => {
        onHeaders(c.env.outgoing, function (this: ServerResponse) {
          this.appendHeader('Vary', 'Accept-Language')
        })
        await next()
      })
    app.get('/greet', cacheResponse({ ttl: 60, backend: memoryBackend() }), (c) => {
      runs++
      if (where === 'the handler') c.env.outgoing.appendHeader('Vary', 'Accept-Language')
      return c.text(c.req.header('accept-language')?.startsWith('fr') ? 'Bonjour' : 'Hello')
    })
    return { app, runs: () => runs }
  }

  it.each(['the handler', 'a layer before the cache'] as const)(
    'a Vary: Accept-Language set on c.env.outgoing by %s keys the entry: the French page never reaches an English client',
    async (where) => {
      const { app, runs } = greetingApp(where)
      const base = await listen(app)
      const fr = await get(base, '/greet', 'GET', { 'accept-language': 'fr' })
      expect(fr.text).toBe('Bonjour')
      expect(fr.headers.vary).toBe('Accept-Language')
      const en = await get(base, '/greet', 'GET', { 'accept-language': 'en' })
      expect(en.text).toBe('Hello')
      expect(en.headers.vary).toBe('Accept-Language')
      // Each language is stored, and a hit says Vary as its miss did.
      const frAgain = await get(base, '/greet', 'GET', { 'accept-language': 'fr' })
      expect(frAgain.text).toBe('Bonjour')
      expect(frAgain.headers['cache-status']).toMatch(/hit/)
      expect(frAgain.headers.vary).toMatch(/^accept-language$/i)
      const enAgain = await get(base, '/greet', 'GET', { 'accept-language': 'en' })
      expect(enAgain.text).toBe('Hello')
      expect(enAgain.headers['cache-status']).toMatch(/hit/)
      expect(runs()).toBe(2)
    },
  )

  it('a header the handler sets on c.env.outgoing is on the hits as it was on the miss', async () => {
    const app = new Hono<{ Bindings: HttpBindings }>()
    app.get('/page', cacheResponse({ ttl: 60, backend: memoryBackend() }), (c) => {
      c.env.outgoing.setHeader('x-robots-tag', 'noindex')
      return c.text('page')
    })
    const base = await listen(app)
    const miss = await get(base, '/page')
    expect(miss.headers['x-robots-tag']).toBe('noindex')
    const hit = await get(base, '/page')
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(hit.headers['x-robots-tag']).toBe('noindex')
  })

  it("a stale-while-revalidate refresh whose handler sets Vary on c.env.outgoing: Alice's page never reaches Bob", async () => {
    const app = new Hono<{ Bindings: HttpBindings }>()
    const cache = cacheResponse({ ttl: 0.3, staleWhileRevalidate: 60, backend: memoryBackend() })
    app.get('/account', cache, (c) => {
      c.env.outgoing.setHeader('Vary', 'X-User')
      return c.text(`account page of ${c.req.header('x-user') ?? 'nobody'}`)
    })
    const base = await listen(app)
    await get(base, '/account', 'GET', { 'x-user': 'alice' })
    await new Promise((resolve) => setTimeout(resolve, 400)) // stale
    expect((await get(base, '/account', 'GET', { 'x-user': 'alice' })).text).toBe('account page of alice')
    await new Promise((resolve) => setTimeout(resolve, 300)) // the refresh is over
    // Before: the refresh stored Alice's page with no Vary, and Bob got it.
    expect((await get(base, '/account', 'GET', { 'x-user': 'bob' })).text).toBe('account page of bob')
  })
})

describe('a layer before the cache that rewrites the body after await next()', () => {
  it('c.res = new Response(longer body, c.res): hits are whole, as the miss and the uncached page are', async () => {
    const app = new Hono()
    app.use('*', async (c, next) => {
      await next()
      const html = await c.res.text()
      c.res = new Response(html.replace('</body>', '<script src="/analytics.js"></script></body>'), c.res)
    })
    const page = '<html><body>hello</body></html>'
    app.get('/page', cacheResponse({ ttl: 60, backend: memoryBackend() }), (c) => c.html(page))
    app.get('/uncached', (c) => c.html(page))
    const base = await listen(app)
    const whole = '<html><body>hello<script src="/analytics.js"></script></body></html>'
    expect((await get(base, '/uncached')).text).toBe(whole)
    expect((await get(base, '/page')).text).toBe(whole)
    const hit = await get(base, '/page')
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(hit.text).toBe(whole)
    expect(hit.headers['content-length']).toBe(String(Buffer.byteLength(whole)))
  })
})
