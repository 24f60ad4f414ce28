import { ServerResponse } from 'node:http'
import { connect as connectHttp2, createServer as createHttp2Server, Http2ServerResponse } from 'node:http2'
import type { AddressInfo } from 'node:net'
import type { CacheEvent } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { type HttpBindings, type ServerType, serve } from '@hono/node-server'
import { Hono, type MiddlewareHandler } from 'hono'
import onHeaders from 'on-headers'
import { describe, expect, it } from 'vitest'
import { cacheResponse, noteArrivals, type ResponseCacheMiddleware } from '../src/index.js'
import { get, listen } from './serve.js'

/*
 * A stale-while-revalidate refresh on @hono/node-server, where layers before the cache work on
 * Node's response (`c.env.outgoing`): what they add there must count for the refresh as it counts
 * for a miss, and what the stale hit's own layers do there must not count for the refresh.
 */

type Env = { Bindings: HttpBindings; Variables: { lang: string } }

/** How the refresh ended: `set` (stored) or the `error` event's message. */
function settled(cache: ResponseCacheMiddleware): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the refresh did not settle in 5 s')), 5_000)
    const done = (outcome: string) => {
      clearTimeout(timer)
      cache.off('set', onSet)
      cache.off('error', onError)
      resolve(outcome)
    }
    const onSet = () => done('set')
    const onError = (event: CacheEvent) =>
      done(String((event.error as Error | undefined)?.message ?? event.error))
    cache.on('set', onSet)
    cache.on('error', onError)
  })
}

/** A clock the cache reads, moved by the test. */
function clock() {
  let now = Date.now()
  return { now: () => now, pass: (ms: number) => void (now += ms) }
}

describe("a stale-while-revalidate refresh keeps the Vary a layer before the cache puts on Node's response", () => {
  /** An app whose layer before the cache (`layer`) makes the page vary on Accept-Language on Node. */
  async function languageApp(
    layer: MiddlewareHandler<Env>,
    serverOptions?: { ServerResponse: typeof ServerResponse },
  ) {
    const time = clock()
    const cache = cacheResponse({ ttl: 1, staleWhileRevalidate: 30, backend: memoryBackend(), now: time.now })
    const app = new Hono<Env>()
    app.use('*', async (c, next) => {
      c.set('lang', c.req.header('accept-language') ?? 'en')
      await next()
    })
    app.use('*', layer)
    let runs = 0
    app.get('/page', cache, (c) => c.text(`lang=${c.get('lang')} #${++runs}`))
    const base = await listen(app, serverOptions)
    const as = (lang: string) => get(base, '/page', 'GET', { 'accept-language': lang })
    return { cache, time, as }
  }

  async function expectEveryLanguageServedItsOwnPage(app: Awaited<ReturnType<typeof languageApp>>) {
    const { cache, time, as } = app
    expect((await as('en')).text).toBe('lang=en #1')
    expect((await as('fr')).text).toBe('lang=fr #2')
    const hit = await as('fr')
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(hit.headers.vary).toBe('Accept-Language')
    time.pass(2_000)
    const refresh = settled(cache)
    expect((await as('en')).text).toBe('lang=en #1')
    expect(await refresh).toBe('set')
    // Before: the refresh of the English page was stored without Vary and answered every language.
    expect((await as('fr')).text).toMatch(/^lang=fr /)
    expect((await as('de')).text).toMatch(/^lang=de /)
    const en = await as('en')
    expect(en.text).toBe('lang=en #3')
    expect(en.headers['cache-status']).toMatch(/hit/)
    expect(en.headers.vary).toBe('Accept-Language')
  }

  it('added as the headers leave (on-headers): French and German visitors never get the English page', async () => {
    const app = await languageApp(async (c, next) => {
      onHeaders(c.env.outgoing, function (this: ServerResponse) {
        this.setHeader('Vary', 'Accept-Language')
      })
      await next()
    })
    await expectEveryLanguageServedItsOwnPage(app)
  })

  it('set with c.env.outgoing.setHeader before await next(): French and German visitors never get the English page', async () => {
    const app = await languageApp(async (c, next) => {
      c.env.outgoing.setHeader('Vary', 'Accept-Language')
      await next()
    })
    await expectEveryLanguageServedItsOwnPage(app)
  })

  it('added by a ServerResponse subclass given to the server: French and German visitors never get the English page', async () => {
    class I18nResponse extends ServerResponse {
      override writeHead(...args: unknown[]): this {
        this.setHeader('Vary', 'Accept-Language')
        return (super.writeHead as (...a: unknown[]) => this)(...args)
      }
    }
    const app = await languageApp(async (_c, next) => next(), {
      ServerResponse: I18nResponse as typeof ServerResponse,
    })
    await expectEveryLanguageServedItsOwnPage(app)
  })

  it('added by an Http2ServerResponse subclass (HTTP/2), which a refresh cannot see: the refresh is not stored, French visitors get theirs', async () => {
    class I18nResponse extends Http2ServerResponse {
      override writeHead(...args: unknown[]): this {
        this.setHeader('Vary', 'Accept-Language')
        return (super.writeHead as (...a: unknown[]) => this)(...args)
      }
    }
    const time = clock()
    const cache = cacheResponse({ ttl: 1, staleWhileRevalidate: 30, backend: memoryBackend(), now: time.now })
    const app = new Hono<Env>()
    let runs = 0
    app.get('/page', cache, (c) => c.text(`lang=${c.req.header('accept-language')} #${++runs}`))
    const server: ServerType = noteArrivals(
      serve({
        fetch: app.fetch,
        port: 0,
        hostname: '127.0.0.1',
        createServer: createHttp2Server,
        serverOptions: { Http2ServerResponse: I18nResponse as typeof Http2ServerResponse },
      }),
    )
    await new Promise((resolve) => server.once('listening', resolve))
    const client = connectHttp2(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)
    const as = (lang: string) =>
      new Promise<string>((resolve, reject) => {
        const stream = client.request({ ':path': '/page', 'accept-language': lang })
        let text = ''
        stream.setEncoding('utf8')
        stream.on('data', (chunk: string) => (text += chunk))
        stream.on('end', () => resolve(text))
        stream.on('error', reject)
      })
    try {
      expect(await as('en')).toBe('lang=en #1')
      expect(await as('fr')).toBe('lang=fr #2')
      expect(await as('fr')).toBe('lang=fr #2')
      time.pass(2_000)
      const refresh = settled(cache)
      expect(await as('en')).toBe('lang=en #1')
      expect(await refresh).toMatch(/no Vary: accept-language/)
      expect(await as('fr')).toMatch(/^lang=fr /)
      expect(await as('de')).toMatch(/^lang=de /)
    } finally {
      client.close()
      await new Promise((resolve) => server.close(resolve))
    }
  })

  it("a refresh that a layer makes private on Node's response (on-headers) is not stored, and the error says why", async () => {
    const time = clock()
    const cache = cacheResponse({ ttl: 1, staleWhileRevalidate: 30, backend: memoryBackend(), now: time.now })
    let privateNow = false
    const app = new Hono<Env>()
    app.use('*', async (c, next) => {
      const personal = privateNow
      onHeaders(c.env.outgoing, function (this: ServerResponse) {
        if (personal) this.setHeader('Set-Cookie', 'sid=visitor')
      })
      await next()
    })
    let runs = 0
    app.get('/page', cache, (c) => c.text(`page #${++runs}`))
    const base = await listen(app)
    expect((await get(base, '/page')).text).toBe('page #1')
    privateNow = true
    time.pass(2_000)
    const refresh = settled(cache)
    expect((await get(base, '/page')).text).toBe('page #1')
    const outcome = await refresh
    expect(outcome).toMatch(/set-cookie/i)
    privateNow = false
    const after = await get(base, '/page')
    expect(after.text).toBe('page #1')
    // The stale page, not the refresh made for the visitor with a cookie.
    expect(after.headers['set-cookie']).toBeUndefined()
  })
})

describe("a stale-while-revalidate refresh is not disturbed by what the stale hit's layers write on Node's response", () => {
  it('a timing layer writing X-Response-Time after await next(): the first stale hit refreshes the page', async () => {
    const time = clock()
    const cache = cacheResponse({ ttl: 1, staleWhileRevalidate: 30, backend: memoryBackend(), now: time.now })
    const app = new Hono<Env>()
    app.use('*', async (c, next) => {
      const start = performance.now()
      await next()
      const outgoing = c.env.outgoing
      if (!outgoing.headersSent)
        outgoing.setHeader('X-Response-Time', `${(performance.now() - start).toFixed(1)}ms`)
    })
    let version = 1
    app.get('/page', cache, async (c) => {
      await new Promise((resolve) => setTimeout(resolve, 20))
      return c.text(`v${version}`)
    })
    const base = await listen(app)
    expect((await get(base, '/page')).text).toBe('v1')
    version = 2
    time.pass(2_000)
    const refresh = settled(cache)
    expect((await get(base, '/page')).text).toBe('v1')
    // Before: "was not stored: it did not finish", on every stale hit.
    expect(await refresh).toBe('set')
    const after = await get(base, '/page')
    expect(after.text).toBe('v2')
    expect(after.headers['cache-status']).toMatch(/hit/)
  })
})

describe('a stored empty body is replayed as no body: hits carry no Content-Type the miss did not', () => {
  it.each([
    ['200 c.body(null)', 200, {}],
    ['204', 204, { statuses: [200, 204] }],
    ['301 redirect', 301, { statuses: [200, 301] }],
  ] as const)('%s', async (_name, status, options) => {
    const app = new Hono()
    app.get('/empty', cacheResponse({ ttl: 60, backend: memoryBackend(), ...options }), (c) =>
      status === 301 ? c.redirect('/elsewhere', 301) : c.body(null, status),
    )
    const base = await listen(app)
    const miss = await get(base, '/empty')
    expect(miss.status).toBe(status)
    expect(miss.headers['content-type']).toBeUndefined()
    for (const method of ['GET', 'HEAD']) {
      const hit = await get(base, '/empty', method)
      expect(hit.headers['cache-status']).toMatch(/hit/)
      expect(hit.status).toBe(status)
      expect(hit.headers['content-type']).toBeUndefined()
      expect(hit.body.length).toBe(0)
      if (status === 301) expect(hit.headers.location).toBe('/elsewhere')
    }
  })

  it('a body with bytes keeps the Content-Type the miss had', async () => {
    const app = new Hono()
    app.get('/bin', cacheResponse({ ttl: 60, backend: memoryBackend() }), (c) =>
      c.body(new Uint8Array([1, 2, 3])),
    )
    const base = await listen(app)
    const miss = await get(base, '/bin')
    const hit = await get(base, '/bin')
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(hit.headers['content-type']).toBe(miss.headers['content-type'])
    expect([...hit.body]).toEqual([1, 2, 3])
  })
})
