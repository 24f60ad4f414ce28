import { Agent, createServer as createHttpServer, request as httpRequest, ServerResponse } from 'node:http'
import { connect as connectHttp2, createServer as createHttp2Server, Http2ServerResponse } from 'node:http2'
import type { AddressInfo } from 'node:net'
import type { CacheEvent } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { getRequestListener, type HttpBindings, type ServerType, serve } from '@hono/node-server'
import { type Context, Hono, type MiddlewareHandler } from 'hono'
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

  it('added by an Http2ServerResponse subclass (HTTP/2): the stale entry is refreshed by the request, French visitors get theirs', async () => {
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
      // Over HTTP/2 a stale entry is refreshed by the request itself, on its own response.
      const refresh = settled(cache)
      expect(await as('en')).toBe('lang=en #3')
      expect(await refresh).toBe('set')
      expect(await as('fr')).toMatch(/^lang=fr /)
      expect(await as('de')).toMatch(/^lang=de /)
      expect(await as('en')).toBe('lang=en #3')
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

describe('a stale entry keyed on the credentials the client sent is refreshed as that client', () => {
  type UserEnv = { Bindings: HttpBindings; Variables: { user: string } }

  /** Alice's page goes stale and is refreshed by her request; Alice then gets her own page again, from the cache. */
  async function aliceAfterRefresh(
    options: Parameters<typeof cacheResponse>[0] & object,
    layer: MiddlewareHandler<UserEnv>,
    alice: Record<string, string>,
    anonymous: Record<string, string>,
  ) {
    const time = clock()
    const cache = cacheResponse({ ...options, backend: memoryBackend(), now: time.now })
    const app = new Hono<UserEnv>()
    app.use('*', layer)
    let runs = 0
    app.get('/me', cache, (c) => c.text(`user=${c.get('user')} #${++runs}`))
    const base = await listen(app)
    expect((await get(base, '/me', 'GET', alice)).text).toBe('user=alice #1')
    expect((await get(base, '/me', 'GET', anonymous)).text).toBe('user=anonymous #2')
    time.pass(2_000)
    // An entry keyed on a credential is refreshed by the request itself (never by a copy in the
    // background, which could not run what code in front of Hono derived from it).
    const stale = await get(base, '/me', 'GET', alice)
    expect(stale.text).toBe('user=alice #3')
    expect(stale.headers['cache-status']).toMatch(/fwd=stale; stored; detail=refresh-in-request/)
    const after = await get(base, '/me', 'GET', alice)
    expect(after.headers['cache-status']).toMatch(/hit/)
    // Before: a refresh ran on the lines as the layer had left them, and stored the anonymous
    // page under Alice's entry.
    expect(after.text).toBe('user=alice #3')
    // Stale too: served stale, or refreshed by its own request when it carries a cookie or a layer
    // added a credential; an anonymous page either way.
    expect((await get(base, '/me', 'GET', anonymous)).text).toMatch(/^user=anonymous #[24]$/)
  }

  it('a session layer that takes sid= out of the Cookie, on the Request and in rawHeaders', async () => {
    await aliceAfterRefresh(
      { ttl: 1, staleWhileRevalidate: 30, allowCookies: true, vary: ['cookie'] },
      async (c, next) => {
        const cookie = c.req.header('cookie') ?? ''
        c.set('user', /(?:^|;\s*)sid=([^;]*)/.exec(cookie)?.[1] ?? 'anonymous')
        const rest = cookie
          .split(/;\s*/)
          .filter((part) => part !== '' && !part.startsWith('sid='))
          .join('; ')
        if (rest === '') c.req.raw.headers.delete('cookie')
        else c.req.raw.headers.set('cookie', rest)
        const lines = c.env.incoming.rawHeaders
        for (let i = 0; i < lines.length; i += 2) if (/^cookie$/i.test(lines[i]!)) lines[i + 1] = rest
        await next()
      },
      { cookie: 'sid=alice; theme=dark' },
      { cookie: 'theme=dark' },
    )
  })

  it('an auth layer that deletes the Authorization it verified, from the Request, rawHeaders and headers', async () => {
    await aliceAfterRefresh(
      { ttl: 1, staleWhileRevalidate: 30, allowAuthorized: true, vary: ['authorization'] },
      async (c, next) => {
        const token = c.req.header('authorization')
        c.set('user', token === undefined ? 'anonymous' : token.replace('Bearer ', ''))
        c.req.raw.headers.delete('authorization')
        const lines = c.env.incoming.rawHeaders
        for (let i = lines.length - 2; i >= 0; i -= 2)
          if (/^authorization$/i.test(lines[i]!)) lines.splice(i, 2)
        delete c.env.incoming.headers.authorization
        await next()
      },
      { authorization: 'Bearer alice' },
      {},
    )
  })

  it("an adapted Node auth layer that reads Authorization from c.env.incoming.headers and deletes it: Alice's entry keeps Alice's page", async () => {
    await aliceAfterRefresh(
      { ttl: 1, staleWhileRevalidate: 30, allowAuthorized: true, vary: ['authorization'] },
      async (c, next) => {
        const token = c.env.incoming.headers.authorization
        c.set('user', token === undefined ? 'anonymous' : token.replace('Bearer ', ''))
        delete c.env.incoming.headers.authorization
        await next()
      },
      { authorization: 'Bearer alice' },
      {},
    )
  })

  it("an adapted Node auth layer that swaps in a service token on c.env.incoming.headers: Alice's entry keeps Alice's page", async () => {
    await aliceAfterRefresh(
      { ttl: 1, staleWhileRevalidate: 30, allowAuthorized: true, vary: ['authorization'] },
      async (c, next) => {
        const token = c.env.incoming.headers.authorization
        c.set(
          'user',
          token === undefined
            ? 'anonymous'
            : token === 'Bearer svc'
              ? 'service'
              : token.replace('Bearer ', ''),
        )
        c.env.incoming.headers.authorization = 'Bearer svc'
        await next()
      },
      { authorization: 'Bearer alice' },
      {},
    )
  })
})

describe("a stale-while-revalidate refresh's own Node response ends as the server's responses do", () => {
  it('emits finish, then close, once its chain is over: an in-flight count before the cache goes back to 0', async () => {
    const time = clock()
    const cache = cacheResponse({ ttl: 1, staleWhileRevalidate: 30, backend: memoryBackend(), now: time.now })
    const app = new Hono<{ Bindings: HttpBindings }>()
    let inflight = 0
    const events: string[] = []
    const closed: Promise<void>[] = []
    app.use('*', async (c, next) => {
      if (inflight >= 2) return c.text('busy', 503)
      inflight++
      const outgoing = c.env.outgoing
      outgoing.once('finish', () => events.push('finish'))
      closed.push(
        new Promise((resolve) =>
          outgoing.once('close', () => {
            events.push('close')
            inflight--
            resolve()
          }),
        ),
      )
      await next()
    })
    let runs = 0
    app.get('/p', cache, (c) => c.text(`page #${++runs}`))
    const base = await listen(app)
    expect((await get(base, '/p')).text).toBe('page #1')
    for (let round = 0; round < 3; round++) {
      time.pass(2_000)
      const refresh = settled(cache)
      expect((await get(base, '/p')).status).toBe(200)
      expect(await refresh).toBe('set')
    }
    const timeout = new Promise<string>((resolve) => setTimeout(() => resolve('timed out'), 2_000))
    // Before: the refreshes' responses never closed, and the limiter answered 503 from then on.
    expect(await Promise.race([Promise.all(closed).then(() => 'closed'), timeout])).toBe('closed')
    expect(inflight).toBe(0)
    expect(events.filter((event) => event === 'finish')).toHaveLength(closed.length)
    const page = await get(base, '/p')
    expect(page.status).toBe(200)
    expect(page.text).toBe('page #4')
  })
})

describe("a stale-while-revalidate refresh's own Node request closes and never acts on the client's connection", () => {
  it("emits close once its chain is over: a gauge on c.env.incoming's close before the cache goes back to 0", async () => {
    const time = clock()
    const cache = cacheResponse({ ttl: 1, staleWhileRevalidate: 30, backend: memoryBackend(), now: time.now })
    const app = new Hono<{ Bindings: HttpBindings }>()
    let open = 0
    app.use('*', async (c, next) => {
      open++
      c.env.incoming.once('close', () => open--)
      await next()
    })
    let runs = 0
    app.get('/p', cache, (c) => c.text(`page #${++runs}`))
    const base = await listen(app)
    expect((await get(base, '/p')).text).toBe('page #1')
    for (let round = 0; round < 2; round++) {
      time.pass(2_000)
      const refresh = settled(cache)
      expect((await get(base, '/p')).status).toBe(200)
      expect(await refresh).toBe('set')
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
    // Before: each refresh's request never emitted close, and the gauge stayed at 1 per refresh.
    expect(open).toBe(0)
  })

  it("a request-timeout layer that destroys the slow refresh's request: the client's next request on its keep-alive connection is answered", async () => {
    const time = clock()
    const cache = cacheResponse({ ttl: 1, staleWhileRevalidate: 30, backend: memoryBackend(), now: time.now })
    const app = new Hono<{ Bindings: HttpBindings }>()
    app.use('/p', async (c, next) => {
      const incoming = c.env.incoming
      const timer = setTimeout(() => incoming.destroy(), 50)
      await next()
      clearTimeout(timer)
    })
    let runs = 0
    app.get('/p', cache, async (c) => {
      if (runs > 0) await new Promise((resolve) => setTimeout(resolve, 200))
      return c.text(`page #${++runs}`)
    })
    app.get('/q', async (c) => {
      await new Promise((resolve) => setTimeout(resolve, 150))
      return c.text('q')
    })
    const base = await listen(app)
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    const { hostname, port } = new URL(base)
    const ask = (path: string) =>
      new Promise<{ text: string; reused: boolean }>((resolve, reject) => {
        const req = httpRequest({ host: hostname, port, path, agent, timeout: 5_000 }, (res) => {
          let text = ''
          res.setEncoding('utf8')
          res.on('data', (chunk: string) => (text += chunk))
          res.on('end', () => resolve({ text, reused: req.reusedSocket }))
        })
        req.on('timeout', () => req.destroy(new Error(`${path} timed out`)))
        req.on('error', reject)
        req.end()
      })
    try {
      expect((await ask('/p')).text).toBe('page #1')
      time.pass(2_000)
      const refresh = settled(cache)
      expect((await ask('/p')).text).toBe('page #1')
      // Before: the refresh's request, destroyed unread, destroyed the client's socket: ECONNRESET.
      const next = await ask('/q')
      expect(next).toEqual({ text: 'q', reused: true })
      expect(await refresh).toBe('set')
    } finally {
      agent.destroy()
    }
  })
})

describe('a stale-while-revalidate refresh abandoned after revalidateTimeout ends its own Node response', () => {
  it('a handler that never settles: a per-client in-flight limiter before the cache goes back to 0 and lets the client in', async () => {
    const time = clock()
    const cache = cacheResponse({
      ttl: 1,
      staleWhileRevalidate: 30,
      revalidateTimeout: '200ms',
      backend: memoryBackend(),
      now: time.now,
    })
    const app = new Hono<{ Bindings: HttpBindings }>()
    let inflight = 0
    app.use('*', async (c, next) => {
      if (inflight >= 2) return c.text('too many requests in flight', 429)
      inflight++
      c.env.outgoing.once('close', () => inflight--)
      await next()
    })
    let runs = 0
    app.get('/p', cache, async (c) => {
      if (++runs > 1) await new Promise(() => {})
      return c.text(`page #${runs}`)
    })
    app.get('/other', (c) => c.text('other'))
    const base = await listen(app)
    expect((await get(base, '/p')).text).toBe('page #1')
    for (let round = 0; round < 2; round++) {
      time.pass(2_000)
      const refresh = settled(cache)
      expect((await get(base, '/p')).text).toBe('page #1')
      expect(await refresh).toMatch(/revalidateTimeout/)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
    // Before: each abandoned refresh kept its response open, and the limiter answered 429 for good.
    expect(inflight).toBe(0)
    const other = await get(base, '/other')
    expect(other.status).toBe(200)
    expect(other.text).toBe('other')
  })
})

describe('a stored empty body that was not null is replayed with the Content-Type the miss sent', () => {
  it.each([
    ['c.body(new ArrayBuffer(0))', (c: Context) => c.body(new ArrayBuffer(0))],
    [
      "c.body('', 200, { 'content-length': '0' })",
      (c: Context) => c.body('', 200, { 'content-length': '0' }),
    ],
    [
      'c.body(new ArrayBuffer(0), 200, { content-type: text/csv })',
      (c: Context) => c.body(new ArrayBuffer(0), 200, { 'content-type': 'text/csv' }),
    ],
  ] as const)('%s', async (_name, handler) => {
    const app = new Hono()
    app.get('/empty', cacheResponse({ ttl: 60, backend: memoryBackend() }), handler)
    const base = await listen(app)
    const miss = await get(base, '/empty')
    expect(miss.headers['content-type']).toBeDefined()
    const hit = await get(base, '/empty')
    expect(hit.headers['cache-status']).toMatch(/hit/)
    // Before: the hit had no Content-Type.
    expect(hit.headers['content-type']).toBe(miss.headers['content-type'])
    expect(hit.body.length).toBe(0)
  })
})

describe('a stale entry whose Node request carries what code in front of Hono put there is refreshed by the request', () => {
  type UserEnv = { Bindings: HttpBindings; Variables: { user: string } }
  type Authenticated = HttpBindings['incoming'] & { user?: string; session?: { plan: string } }

  it("a listener that authenticates before Hono (req.user, req.session): Alice's stale request is answered fresh as Alice, never a guest page under her entry", async () => {
    const time = clock()
    const cache = cacheResponse({
      ttl: 1,
      staleWhileRevalidate: 60,
      allowAuthorized: true,
      vary: ['authorization'],
      backend: memoryBackend(),
      now: time.now,
    })
    const app = new Hono<UserEnv>()
    app.use('*', async (c, next) => {
      c.set('user', (c.env.incoming as Authenticated).user ?? 'guest')
      await next()
    })
    let runs = 0
    app.get('/dashboard', cache, (c) => {
      const incoming = c.env.incoming as Authenticated & { res?: unknown }
      const plan = incoming.session?.plan ?? 'none'
      // Express's `req.res` is the exchange's own response, never the stale hit's on a refresh.
      const foreign = incoming.res !== undefined && incoming.res !== c.env.outgoing ? ' [the hit’s res]' : ''
      return c.text(`dashboard of ${c.get('user')} (${plan}) #${++runs}${foreign}`)
    })
    const listener = getRequestListener(app.fetch)
    const tokens: Record<string, string> = { 'Bearer t-alice': 'alice' }
    // As Express with passport would: the user and session are put on Node's request before Hono.
    const server = noteArrivals(
      createHttpServer((req, res) => {
        const user = tokens[req.headers.authorization ?? '']
        if (user !== undefined) Object.assign(req, { user, session: { plan: 'pro' } })
        // As Express does for every request.
        Object.assign(req, { res, next: () => {} })
        listener(req, res)
      }),
    )
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const alice = { authorization: 'Bearer t-alice' }
    try {
      expect((await get(base, '/dashboard', 'GET', alice)).text).toBe('dashboard of alice (pro) #1')
      expect((await get(base, '/dashboard')).text).toBe('dashboard of guest (none) #2')
      time.pass(5_000)
      const refresh = settled(cache)
      // Not a stale hit: a background copy could not run what the listener did for her.
      const stale = await get(base, '/dashboard', 'GET', alice)
      expect(stale.text).toBe('dashboard of alice (pro) #3')
      expect(stale.headers['cache-status']).toBe('@cache; fwd=stale; stored; detail=refresh-in-request')
      expect(await refresh).toBe('set')
      const after = await get(base, '/dashboard', 'GET', alice)
      expect(after.headers['cache-status']).toMatch(/hit/)
      // Before: 'dashboard of guest (none) #3', stored under Alice's variant.
      expect(after.text).toBe('dashboard of alice (pro) #3')
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})

describe("a request-timeout layer that destroys a refresh's own Node response", () => {
  it('emits close once (an in-flight gauge goes back to 0), and the refresh is not stored: it fails as a revalidate error', async () => {
    const time = clock()
    const cache = cacheResponse({ ttl: 1, staleWhileRevalidate: 60, backend: memoryBackend(), now: time.now })
    const errors: CacheEvent[] = []
    cache.on('error', (event) => errors.push(event))
    const app = new Hono<{ Bindings: HttpBindings }>()
    let open = 0
    let closes = 0
    app.use('*', async (c, next) => {
      const outgoing = c.env.outgoing
      open++
      outgoing.once('close', () => {
        open--
        closes++
      })
      // A slow response is destroyed, as a request-timeout layer does on a real socket.
      const timer = setTimeout(() => outgoing.destroy(), 50)
      try {
        await next()
      } finally {
        clearTimeout(timer)
      }
    })
    let runs = 0
    app.get('/p', cache, async (c) => {
      if (++runs > 1) await new Promise((resolve) => setTimeout(resolve, 200))
      return c.text(`page #${runs}`)
    })
    const base = await listen(app)
    expect((await get(base, '/p')).text).toBe('page #1')
    time.pass(5_000)
    const refresh = settled(cache)
    expect((await get(base, '/p')).text).toBe('page #1')
    // Before: 'set': the page the layer gave up on was stored.
    expect(await refresh).toMatch(/destroyed/)
    expect(errors.map((event) => event.operation)).toEqual(['revalidate'])
    await new Promise((resolve) => setTimeout(resolve, 300))
    // Before: the refresh's response never emitted close, and the gauge stayed at 1.
    expect(open).toBe(0)
    expect(closes).toBe(3)
    expect(cache.stats.sets).toBe(1)
  })
})
