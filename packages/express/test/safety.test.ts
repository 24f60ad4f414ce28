/**
 * The response cache from the seat of a hostile or unlucky client: middleware before the cache
 * that makes a response private, a proxy in front of the app, handlers that lie about their
 * length or die mid-response. Every test asserts what another client receives.
 */
import { PassThrough, pipeline, Readable } from 'node:stream'
import { createGzip, gunzipSync } from 'node:zlib'
import compression from 'compression'
import session from 'express-session'
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { attempt, EXPRESS, memory, type Reply, serveEach } from './http.js'

const serve = serveEach()
const text = (reply: Reply) => reply.body.toString()
const isHit = (reply: Reply) => /hit|collapsed/.test(String(reply.headers['cache-status']))

describe.each(EXPRESS)('decided on the final response, on %s', (_name, express) => {
  it('never replays a response that earlier middleware made Cache-Control: private', async () => {
    const app = express()
    app.use((req: any, res: any, next: any) => {
      // A session layer that knows the user from its own header and marks the response private.
      req.user = req.get('x-session')
      if (req.user) res.set('cache-control', 'private')
      next()
    })
    app.get('/account', cacheResponse({ backend: memory() }), (req: any, res: any) => {
      res.json({ account: req.user ?? 'anonymous' })
    })
    const r = await serve(app)
    expect(text(await r.request('/account', { headers: { 'x-session': 'alice' } }))).toBe(
      '{"account":"alice"}',
    )
    expect(text(await r.request('/account', { headers: { 'x-session': 'bob' } }))).toBe('{"account":"bob"}')
    expect(text(await r.request('/account'))).toBe('{"account":"anonymous"}')
  })

  it('never replays a response that earlier middleware marked no-store', async () => {
    const app = express()
    let n = 0
    app.use((_req: any, res: any, next: any) => {
      res.set('cache-control', 'no-store')
      next()
    })
    app.get('/n', cacheResponse({ backend: memory() }), (_req: any, res: any) => res.send(`n=${++n}`))
    const r = await serve(app)
    await r.request('/n')
    expect(text(await r.request('/n'))).toBe('n=2')
  })

  it("never replays one visitor's session cookie and CSRF token to another (cookie set before the cache)", async () => {
    const app = express()
    let visitors = 0
    app.use((req: any, res: any, next: any) => {
      visitors++
      req.csrf = `token-${visitors}`
      res.cookie('sid', `visitor-${visitors}`)
      next()
    })
    app.get('/form', cacheResponse({ backend: memory() }), (req: any, res: any) => {
      res.send(`<input name="csrf" value="${req.csrf}">`)
    })
    const r = await serve(app)
    const first = await r.request('/form')
    const second = await r.request('/form')
    expect(String(second.headers['set-cookie'])).toMatch(/^sid=visitor-2/)
    expect(text(second)).toBe('<input name="csrf" value="token-2">')
    expect(text(second)).not.toBe(text(first))
  })

  it('never replays a session cookie that express-session sets as the headers go out', async () => {
    const app = express()
    app.use(session({ secret: 'test', resave: false, saveUninitialized: true }))
    app.get('/page', cacheResponse({ backend: memory() }), (req: any, res: any) => {
      res.send(`session ${req.sessionID}`)
    })
    const r = await serve(app)
    const first = await r.request('/page')
    const second = await r.request('/page')
    expect(first.headers['set-cookie']).toBeDefined()
    expect(isHit(second)).toBe(false)
    expect(text(second)).not.toBe(text(first))
    expect(String(second.headers['set-cookie'])).not.toBe(String(first.headers['set-cookie']))
  })

  it('keys on Vary set by earlier middleware: an en client never gets the fr body', async () => {
    const app = express()
    app.use((req: any, res: any, next: any) => {
      req.locale = req.acceptsLanguages('fr', 'en') || 'en'
      res.vary('Accept-Language')
      next()
    })
    app.get('/hello', cacheResponse({ backend: memory() }), (req: any, res: any) => {
      res.send(req.locale === 'fr' ? 'bonjour' : 'hello')
    })
    const r = await serve(app)
    expect(text(await r.request('/hello', { headers: { 'accept-language': 'fr' } }))).toBe('bonjour')
    expect(text(await r.request('/hello', { headers: { 'accept-language': 'en' } }))).toBe('hello')
    const fr = await r.request('/hello', { headers: { 'accept-language': 'fr' } })
    expect(text(fr)).toBe('bonjour')
    expect(isHit(fr)).toBe(true)
  })

  it('sees headers that middleware after the cache sets (private) and does not store', async () => {
    const app = express()
    let n = 0
    app.use(cacheResponse({ backend: memory() }))
    app.use((_req: any, res: any, next: any) => {
      res.set('cache-control', 'private, max-age=10')
      next()
    })
    app.get('/after', (_req: any, res: any) => res.send(`n=${++n}`))
    const r = await serve(app)
    await r.request('/after')
    expect(text(await r.request('/after'))).toBe('n=2')
  })

  it('keeps per-request headers of earlier middleware out of the entry, and replays the rest', async () => {
    const app = express()
    let id = 0
    app.use((_req: any, res: any, next: any) => {
      res.set('x-request-id', String(++id))
      next()
    })
    app.get('/r', cacheResponse({ backend: memory() }), (_req: any, res: any) => {
      res.set('x-handler', 'yes').send('r')
    })
    const r = await serve(app)
    await r.request('/r')
    const hit = await r.request('/r')
    expect(isHit(hit)).toBe(true)
    expect(hit.headers['x-request-id']).toBe('2')
    expect(hit.headers['x-handler']).toBe('yes')
  })

  it('stores per Accept-Encoding when compression runs before the cache, and never sends gzip to a client without it', async () => {
    const app = express()
    let n = 0
    app.use(compression({ threshold: 0 }))
    app.get('/t', cacheResponse({ backend: memory() }), (_req: any, res: any) => {
      n++
      res.type('text').send('squeeze '.repeat(300))
    })
    const r = await serve(app)
    const gzip = await r.request('/t', { headers: { 'accept-encoding': 'gzip' } })
    expect(gzip.headers['content-encoding']).toBe('gzip')
    const plain = await r.request('/t', { headers: { 'accept-encoding': 'identity' } })
    expect(plain.headers['content-encoding']).toBeUndefined()
    expect(text(plain)).toBe('squeeze '.repeat(300))
    const again = await r.request('/t', { headers: { 'accept-encoding': 'gzip' } })
    expect(isHit(again)).toBe(true)
    expect(again.headers['content-encoding']).toBe('gzip')
    expect(n).toBe(2)
  })
})

describe.each(EXPRESS)('a custom key keeps every other safety rule, on %s', (_name, express) => {
  it('still refuses private, Set-Cookie and incomplete responses, and still splits on Vary', async () => {
    const app = express()
    app.use((req: any, res: any, next: any) => {
      if (req.get('x-session')) res.set('cache-control', 'private')
      if (req.query.cookie) res.cookie('sid', String(req.query.cookie))
      res.vary('Accept-Language')
      next()
    })
    let n = 0
    app.get('/k', cacheResponse({ backend: memory(), key: (req: any) => req.path }), (req: any, res: any) => {
      n++
      if (req.query.lie) res.set('content-length', '999')
      res.send(`${req.get('x-session') ?? 'anon'} ${req.get('accept-language') ?? '-'} ${n}`)
    })
    const r = await serve(app)
    expect(text(await r.request('/k', { headers: { 'x-session': 'alice' } }))).toBe('alice - 1')
    expect(text(await r.request('/k?cookie=alice'))).toBe('anon - 2')
    await attempt(r.port, '/k?lie=1', { timeout: 300 })
    expect(text(await r.request('/k', { headers: { 'accept-language': 'fr' } }))).toBe('anon fr 4')
    expect(text(await r.request('/k', { headers: { 'accept-language': 'en' } }))).toBe('anon en 5')
    expect(text(await r.request('/k', { headers: { 'accept-language': 'fr' } }))).toBe('anon fr 4')
    expect(text(await r.request('/k', { headers: { authorization: 'Bearer bob' } }))).toBe('anon - 6')
  })

  it('bypasses a request whose custom key holds a line feed, which separates variants in keys', async () => {
    const app = express()
    const mw = cacheResponse({ backend: memory(), key: (req: any) => `page ${req.query.page}` })
    app.get('/k', mw, (req: any, res: any) => res.send(`page ${req.query.page}`))
    const r = await serve(app)
    await r.request('/k?page=1')
    expect((await r.request('/k?page=1')).headers['cache-status']).toMatch(/hit/)
    const crafted = await r.request('/k?page=1%0A%23id%0Aaccept-language=%22fr%22')
    expect(crafted.headers['cache-status']).toBe('@cache; fwd=request; detail=key')
  })
})

describe.each(EXPRESS)('middleware after the cache, on %s', (_name, express) => {
  const requireApiKey = (req: any, res: any, next: any) =>
    req.get('x-api-key') === 'admin-key' ? next() : res.status(401).json({ error: 'api key required' })
  const report = (_req: any, res: any) => res.json({ revenue: 1_000_000 })

  it('as global middleware, never stores what a route guard after it let through', async () => {
    const app = express()
    app.use(cacheResponse({ backend: memory() }))
    app.get('/admin/report', requireApiKey, report)
    app.get('/public', (_req: any, res: any) => res.send('public'))
    const r = await serve(app)
    expect((await r.request('/admin/report', { headers: { 'x-api-key': 'admin-key' } })).status).toBe(200)
    expect((await r.request('/admin/report')).status).toBe(401)
    // Routes without middleware of their own are still cached.
    await r.request('/public')
    expect(isHit(await r.request('/public'))).toBe(true)
  })

  it('on a route, never stores what a guard listed after it let through', async () => {
    const app = express()
    app.get('/admin/report', cacheResponse({ backend: memory() }), requireApiKey, report)
    const r = await serve(app)
    expect((await r.request('/admin/report', { headers: { 'x-api-key': 'admin-key' } })).status).toBe(200)
    expect((await r.request('/admin/report')).status).toBe(401)
  })

  it('as global middleware, still stores what routing structure alone leads to: params, routers, sub-apps, app.route', async () => {
    const app = express()
    const cache = cacheResponse({ backend: memory() })
    app.use(cache)
    const v1 = express.Router()
    v1.get('/items/:id', report)
    const api = express()
    api.use('/v1', v1)
    app.use('/api', api)
    app.route('/route').get(report)
    app.get('/twice', cache, report)
    app.use((_error: unknown, _req: any, res: any, _next: any) => res.status(500).end())
    const r = await serve(app)
    for (const path of ['/api/v1/items/7', '/route', '/twice']) {
      expect((await r.request(path)).headers['cache-status'], path).toBe('@cache; fwd=uri-miss; stored')
      expect(isHit(await r.request(path)), path).toBe(true)
    }
  })

  it('a wrapped handler that calls next() is not stored, whatever answers after it', async () => {
    const app = express()
    app.get(
      '/page',
      cacheResponse({ backend: memory() })((_req: any, _res: any, next: any) => next()),
    )
    app.get('/page', (_req: any, res: any) => res.send('the next route'))
    const r = await serve(app)
    const first = await r.request('/page')
    expect(first.body.toString()).toBe('the next route')
    expect(first.headers['cache-status']).toBe('@cache; fwd=uri-miss; detail=next')
  })

  it('a global cache never replays what a route cache after a guard stored under the same key', async () => {
    const backend = memory()
    const app = express()
    app.use(cacheResponse({ backend }))
    const inner = cacheResponse({ backend })
    app.get('/admin/report', requireApiKey, inner, report)
    const r = await serve(app)
    const admin = { headers: { 'x-api-key': 'admin-key' } }
    const first = await r.request('/admin/report', admin)
    expect(first.status).toBe(200)
    expect(first.headers['cache-status']).not.toMatch(/stored/)
    expect(inner.stats.sets).toBe(0)
    for (let i = 0; i < 2; i++) {
      expect((await r.request('/admin/report', admin)).status).toBe(200)
      const anonymous = await r.request('/admin/report')
      expect(anonymous.status).toBe(401)
      expect(text(anonymous)).not.toContain('revenue')
    }
  })

  it('a global cache that passed a request through (Authorization) never replays what a route cache stored for it', async () => {
    const backend = memory()
    const app = express()
    app.use(cacheResponse({ backend }))
    const requireBearer = (req: any, res: any, next: any) =>
      req.get('authorization') === 'Bearer admin' ? next() : res.status(401).send('login required')
    app.get('/admin/report', requireBearer, cacheResponse({ backend, allowAuthorized: true }), report)
    const r = await serve(app)
    expect((await r.request('/admin/report', { headers: { authorization: 'Bearer admin' } })).status).toBe(
      200,
    )
    expect((await r.request('/admin/report', { headers: { authorization: 'Bearer admin' } })).status).toBe(
      200,
    )
    const anonymous = await r.request('/admin/report')
    expect(anonymous.status).toBe(401)
    expect(text(anonymous)).not.toContain('revenue')
  })

  it('a route cache with nothing between it and a global cache of the same key still stores, with its own ttl', async () => {
    let now = 1_000_000
    const backend = memory(() => now)
    const app = express()
    app.use(cacheResponse({ backend, ttl: 600, now: () => now }))
    const route = cacheResponse({ backend, ttl: 5, now: () => now })
    let runs = 0
    app.get('/news', route, (_req: any, res: any) => res.send(`news ${++runs}`))
    const r = await serve(app)
    expect(text(await r.request('/news'))).toBe('news 1')
    expect(route.stats.sets).toBe(1)
    expect(text(await r.request('/news'))).toBe('news 1')
    now += 6_000
    expect(text(await r.request('/news'))).toBe('news 2')
  })

  it('nested caches with their own keyPrefix: the route cache stores after the guard, the global one never replays it', async () => {
    const backend = memory()
    const app = express()
    app.use(cacheResponse({ backend }))
    let runs = 0
    app.get(
      '/admin/report',
      requireApiKey,
      cacheResponse({ backend, keyPrefix: 'admin' }),
      (_req: any, res: any) => res.json({ revenue: 1_000_000, run: ++runs }),
    )
    const r = await serve(app)
    const admin = { headers: { 'x-api-key': 'admin-key' } }
    await r.request('/admin/report', admin)
    const hit = await r.request('/admin/report', admin)
    expect(isHit(hit)).toBe(true)
    expect(JSON.parse(text(hit)).run).toBe(1)
    expect((await r.request('/admin/report')).status).toBe(401)
  })

  it('on a route after its guard, caches and still answers every anonymous request with 401', async () => {
    const app = express()
    app.get('/admin/report', requireApiKey, cacheResponse({ backend: memory() }), report)
    const r = await serve(app)
    await r.request('/admin/report', { headers: { 'x-api-key': 'admin-key' } })
    expect(isHit(await r.request('/admin/report', { headers: { 'x-api-key': 'admin-key' } }))).toBe(true)
    expect((await r.request('/admin/report')).status).toBe(401)
  })
})

describe.each(EXPRESS)('request properties Express exposes are in the key, on %s', (_name, express) => {
  function linkApp(trustProxy: boolean) {
    const app = express()
    if (trustProxy) app.set('trust proxy', true)
    app.get('/link', cacheResponse({ backend: memory() }), (req: any, res: any) => {
      res.send(`${req.protocol}://${req.get('host')}/next secure=${req.secure}`)
    })
    return app
  }

  it('keeps http and https apart behind a proxy with trust proxy (X-Forwarded-Proto)', async () => {
    const r = await serve(linkApp(true))
    const planted = await r.request('/link', {
      headers: { host: 'shop.example', 'x-forwarded-proto': 'http' },
    })
    expect(text(planted)).toBe('http://shop.example/next secure=false')
    const victim = await r.request('/link', {
      headers: { host: 'shop.example', 'x-forwarded-proto': 'https' },
    })
    expect(text(victim)).toBe('https://shop.example/next secure=true')
    const again = await r.request('/link', {
      headers: { host: 'shop.example', 'x-forwarded-proto': 'https' },
    })
    expect(isHit(again)).toBe(true)
  })

  it('ignores X-Forwarded-Proto without trust proxy, as Express does', async () => {
    const r = await serve(linkApp(false))
    await r.request('/link', { headers: { host: 'shop.example', 'x-forwarded-proto': 'https' } })
    const plain = await r.request('/link', { headers: { host: 'shop.example' } })
    expect(text(plain)).toBe('http://shop.example/next secure=false')
  })

  it('keeps ports apart: Host a.example:8080 never plants its links for a.example', async () => {
    const r = await serve(linkApp(false))
    expect(text(await r.request('/link', { headers: { host: 'a.example:8080' } }))).toBe(
      'http://a.example:8080/next secure=false',
    )
    expect(text(await r.request('/link', { headers: { host: 'a.example' } }))).toBe(
      'http://a.example/next secure=false',
    )
  })

  it('keeps forwarded ports apart under trust proxy', async () => {
    const app = express()
    app.set('trust proxy', true)
    app.get('/link', cacheResponse({ backend: memory() }), (req: any, res: any) => {
      // Express 5's req.host; what Express 4 apps read by hand.
      res.send(`https://${req.get('x-forwarded-host')}/next`)
    })
    const r = await serve(app)
    await r.request('/link', { headers: { host: 'in', 'x-forwarded-host': 'shop.example:444' } })
    const victim = await r.request('/link', { headers: { host: 'in', 'x-forwarded-host': 'shop.example' } })
    expect(text(victim)).toBe('https://shop.example/next')
  })

  it('bypasses a GET that carries a body, which a body parser could make the response depend on', async () => {
    const app = express()
    app.use(express.text({ type: '*/*' }))
    app.get('/search', cacheResponse({ backend: memory() }), (req: any, res: any) => {
      res.send(`results for ${typeof req.body === 'string' && req.body !== '' ? req.body : 'everything'}`)
    })
    const r = await serve(app)
    const { request: raw } = await import('node:http')
    await new Promise<void>((resolve, reject) => {
      const req = raw(
        { host: '127.0.0.1', port: r.port, path: '/search', method: 'GET', agent: false },
        (res) => {
          res.resume()
          res.on('end', resolve)
        },
      )
      req.on('error', reject)
      req.setHeader('content-type', 'text/plain')
      req.setHeader('content-length', '4')
      req.end('evil')
    })
    expect(text(await r.request('/search'))).toBe('results for everything')
  })

  it('does not store a response after middleware behind the cache changed the method', async () => {
    const app = express()
    let n = 0
    app.use(cacheResponse({ backend: memory() }))
    app.use((req: any, _res: any, next: any) => {
      if (req.query.as === 'delete') req.method = 'DELETE'
      next()
    })
    app.all('/thing', (req: any, res: any) => res.send(`${req.method} ${++n}`))
    const r = await serve(app)
    expect(text(await r.request('/thing?as=delete'))).toBe('DELETE 1')
    expect(text(await r.request('/thing?as=delete'))).toBe('DELETE 2')
  })
})

describe.each(EXPRESS)('a body that did not complete is never stored, on %s', (_name, express) => {
  function app(handler: (req: any, res: any) => void) {
    const a = express()
    const calls = { n: 0 }
    a.get('/x', cacheResponse({ backend: memory(), maxBodySize: '16MB' }), (req: any, res: any) => {
      calls.n++
      handler(req, res)
    })
    return { a, calls }
  }

  it('declares Content-Length 4000 and sends 100 bytes: not stored', async () => {
    const { a, calls } = app((_req, res) => {
      res.set('content-length', '4000').type('text')
      res.end('x'.repeat(100))
    })
    const r = await serve(a)
    await attempt(r.port, '/x', { timeout: 300 })
    const second = await attempt(r.port, '/x', { headersOnly: true })
    expect(second).not.toBeInstanceOf(Error)
    expect(isHit(second as Reply)).toBe(false)
    expect(calls.n).toBe(2)
  })

  it('declares Content-Length 3 and sends 10 bytes: not stored', async () => {
    const { a, calls } = app((_req, res) => {
      res.set('content-length', '3').type('text')
      res.end('0123456789')
    })
    const r = await serve(a)
    await attempt(r.port, '/x', { timeout: 300 })
    await attempt(r.port, '/x', { timeout: 300 })
    expect(calls.n).toBe(2)
  })

  it('destroys the response and then calls end(): not stored', async () => {
    const { a, calls } = app((_req, res) => {
      res.type('text').write('partial ')
      res.destroy()
      res.end('rest')
    })
    const r = await serve(a)
    expect(await attempt(r.port, '/x')).toBeInstanceOf(Error)
    expect(await attempt(r.port, '/x')).toBeInstanceOf(Error)
    expect(calls.n).toBe(2)
  })

  it('ends and then destroys the socket before the response finished: not stored', async () => {
    const { a, calls } = app((_req, res) => {
      // Too much for the socket to take at once: the end of it is still queued when it goes.
      res.type('text').end(Buffer.alloc(8 * 1024 * 1024, 'y'))
      res.socket.destroy()
    })
    const r = await serve(a)
    await attempt(r.port, '/x')
    await attempt(r.port, '/x')
    expect(calls.n).toBe(2)
  })

  it('streams a body whose source fails half-way: not stored, the next client gets a full answer', async () => {
    let fail = true
    const { a, calls } = app((_req, res) => {
      const chunks = ['a'.repeat(1000), 'b'.repeat(1000)]
      const source = new Readable({
        read() {
          const next = chunks.shift()
          if (next !== undefined) this.push(next)
          else if (fail) this.destroy(new Error('disk read failed'))
          else this.push(null)
        },
      })
      res.type('text')
      source.on('error', () => res.destroy())
      source.pipe(res)
    })
    const r = await serve(a)
    expect(await attempt(r.port, '/x')).toBeInstanceOf(Error)
    fail = false
    const full = await attempt(r.port, '/x')
    expect(full).not.toBeInstanceOf(Error)
    expect((full as Reply).body.length).toBe(2000)
    expect(calls.n).toBe(2)
  })

  /** A source that sends two chunks, then fails (or, once `fail` is false, ends). */
  function failingSource(state: { fail: boolean }, how: 'error' | 'destroy' = 'error') {
    const chunks = ['{"items":[1,2,', '3]}']
    return new Readable({
      read() {
        if (chunks.length > (state.fail ? 1 : 0)) return void this.push(chunks.shift())
        if (!state.fail) return void this.push(null)
        setTimeout(() => (how === 'error' ? this.destroy(new Error('disk read failed')) : this.destroy()), 10)
      },
    })
  }

  it.each(['error', 'destroy'] as const)(
    'a piped source that fails half-way (%s), ended by the handler itself: not stored',
    async (how) => {
      const state = { fail: true }
      const { a, calls } = app((_req, res) => {
        res.type('json')
        const source = failingSource(state, how)
        // The failure is swallowed: the handler ends the response as if the body were whole.
        source.on('error', () => res.end())
        source.on('close', () => res.end())
        source.pipe(res)
      })
      const r = await serve(a)
      const cut = await attempt(r.port, '/x')
      expect(text(cut as Reply)).toBe('{"items":[1,2,')
      state.fail = false
      expect(text((await attempt(r.port, '/x')) as Reply)).toBe('{"items":[1,2,3]}')
      const hit = await attempt(r.port, '/x')
      expect(text(hit as Reply)).toBe('{"items":[1,2,3]}')
      expect(isHit(hit as Reply)).toBe(true)
      expect(calls.n).toBe(2)
    },
  )

  it('a source that fails before a transform piped into the response, ended by the handler: not stored', async () => {
    const state = { fail: true }
    const { a, calls } = app((_req, res) => {
      res.type('json')
      const source = failingSource(state)
      const through = new PassThrough()
      source.on('error', () => res.end())
      source.pipe(through).pipe(res)
    })
    const r = await serve(a)
    expect(text((await attempt(r.port, '/x')) as Reply)).toBe('{"items":[1,2,')
    state.fail = false
    expect(text((await attempt(r.port, '/x')) as Reply)).toBe('{"items":[1,2,3]}')
    expect(calls.n).toBe(2)
  })

  // What the response can see of a transform piped into it: whether the transform ended, failed or
  // was destroyed. Not the streams piped into the transform (a writable does not know its sources):
  // a handler that ends the transform itself after its source failed (`source.on('error', () =>
  // gz.end())`) makes a cut body look whole, and it is stored (see the README).
  it.each([
    [
      'stream.pipeline(source, gzip, res)',
      (source: Readable, gz: ReturnType<typeof createGzip>, res: any) => pipeline(source, gz, res, () => {}),
    ],
    [
      'a gzip the handler destroys when its source fails, then ends the response',
      (source: Readable, gz: ReturnType<typeof createGzip>, res: any) => {
        source.on('error', () => {
          gz.destroy()
          res.end()
        })
        source.pipe(gz).pipe(res)
      },
    ],
  ])('a source that fails half-way behind a transform, through %s: not stored', async (_how, wire) => {
    const state = { fail: true }
    const { a, calls } = app((_req, res) => {
      res.type('json').set('content-encoding', 'gzip')
      wire(failingSource(state), createGzip(), res)
    })
    const r = await serve(a)
    await attempt(r.port, '/x').catch(() => undefined)
    state.fail = false
    const whole = await attempt(r.port, '/x')
    expect(gunzipSync((whole as Reply).body).toString()).toBe('{"items":[1,2,3]}')
    expect(String((whole as Reply).headers['cache-status'])).toMatch(/stored/)
    const hit = await attempt(r.port, '/x')
    expect(isHit(hit as Reply)).toBe(true)
    expect(gunzipSync((hit as Reply).body).toString()).toBe('{"items":[1,2,3]}')
    expect(calls.n).toBe(2)
  })

  it('a source piped with stream.pipeline that completes is stored', async () => {
    const { a, calls } = app((_req, res) => {
      res.type('json')
      pipeline(failingSource({ fail: false }), res, () => {})
    })
    const r = await serve(a)
    await attempt(r.port, '/x')
    const hit = await attempt(r.port, '/x')
    expect(isHit(hit as Reply)).toBe(true)
    expect(text(hit as Reply)).toBe('{"items":[1,2,3]}')
    expect(calls.n).toBe(1)
  })

  it('the client aborts mid-stream: not stored', async () => {
    const { a, calls } = app(async (_req, res) => {
      res.type('text').write('first ')
      await new Promise((resolve) => setTimeout(resolve, 150))
      res.end('second')
    })
    const r = await serve(a)
    await attempt(r.port, '/x', { timeout: 50 })
    await new Promise((resolve) => setTimeout(resolve, 200))
    const full = await attempt(r.port, '/x')
    expect(text(full as Reply)).toBe('first second')
    expect(calls.n).toBe(2)
  })
})

describe.each(EXPRESS)('headers given to writeHead as [name, value] pairs, on %s', (_name, express) => {
  /** The same handler behind the cache and without it, on an app with or without X-Powered-By. */
  function pairsApp(poweredBy: boolean, pairs: () => [string, string][]) {
    const app = express()
    app.set('x-powered-by', poweredBy)
    let calls = 0
    const handler = (_req: any, res: any, next: any) => {
      calls++
      try {
        res.writeHead(200, pairs())
        res.end(`page ${calls}`)
      } catch (error) {
        next(error)
      }
    }
    app.get('/plain', handler)
    app.get('/cached', cacheResponse({ backend: memory() }), handler)
    app.use((_error: unknown, _req: any, res: any, _next: any) => {
      res.status(500).send('failed')
    })
    return app
  }

  it('answers them as it would without the cache, and stores them (X-Powered-By off)', async () => {
    const r = await serve(
      pairsApp(false, () => [
        ['Content-Type', 'text/plain'],
        ['X-B', '2'],
        ['X-Many', 'one'],
        ['X-Many', 'two'],
      ]),
    )
    const plain = await r.request('/plain')
    expect(plain.status).toBe(200)
    const cached = await r.request('/cached')
    expect(cached.status).toBe(200)
    expect(cached.headers['content-type']).toBe('text/plain')
    expect(cached.headers['x-b']).toBe('2')
    expect(cached.headers['x-many']).toBe(plain.headers['x-many'])
    expect(cached.headers['cache-status']).toBe('@cache; fwd=uri-miss; stored')
    const hit = await r.request('/cached')
    expect(hit.headers['cache-status']).toMatch(/^@cache; hit/)
    expect(text(hit)).toBe(text(cached))
    expect(hit.headers['x-b']).toBe('2')
    expect(hit.headers['x-many']).toBe(plain.headers['x-many'])
  })

  it('fails as it would without the cache when a header was set before (X-Powered-By on): not stored', async () => {
    const r = await serve(pairsApp(true, () => [['Content-Type', 'text/plain']]))
    expect((await r.request('/plain')).status).toBe(500)
    const cached = await r.request('/cached')
    expect(cached.status).toBe(500)
    expect(String(cached.headers['cache-status'] ?? '')).not.toContain('stored')
  })

  it.each([
    ['Set-Cookie', [['Set-Cookie', 'sid=alice']]],
    ['Cache-Control: private', [['Cache-Control', 'private']]],
    [
      'Cache-Control: private, then max-age',
      [
        ['Cache-Control', 'private'],
        ['Cache-Control', 'max-age=60'],
      ],
    ],
    [
      'Vary: *, then another Vary',
      [
        ['Vary', '*'],
        ['Vary', 'Accept'],
      ],
    ],
  ] as [string, [string, string][]][])(
    'never stores a response whose pairs carry %s',
    async (_what, pairs) => {
      const r = await serve(pairsApp(false, () => [['Content-Type', 'text/plain'], ...pairs]))
      const first = await r.request('/cached')
      expect(first.status).toBe(200)
      expect(String(first.headers['cache-status'])).not.toContain('stored')
      expect(text(await r.request('/cached'))).toBe('page 2')
    },
  )

  it('a flat list naming Cache-Control: private, then another Cache-Control: sent whole, never stored', async () => {
    const app = express()
    app.set('x-powered-by', false)
    let calls = 0
    const handler = (_req: any, res: any) => {
      res.writeHead(200, ['Cache-Control', 'private', 'Cache-Control', 'max-age=60'])
      res.end(`page ${++calls}`)
    }
    app.get('/plain', handler)
    app.get('/flat', cacheResponse({ backend: memory() }), handler)
    const r = await serve(app)
    const plain = await r.request('/plain')
    expect(plain.headers['cache-control']).toBe('private, max-age=60')
    const first = await r.request('/flat')
    expect(first.headers['cache-control']).toBe(plain.headers['cache-control'])
    expect(String(first.headers['cache-status'])).not.toContain('stored')
    expect(text(await r.request('/flat'))).toBe('page 3')
  })
})

describe.each(EXPRESS)('headers given to writeHead as an object or a flat list, on %s', (_name, express) => {
  /** The same handler behind the cache and without it, on an app without X-Powered-By. */
  function objectApp(headers: (req: any) => Record<string, string>) {
    const app = express()
    app.set('x-powered-by', false)
    let calls = 0
    const handler = (req: any, res: any) => {
      calls++
      res.writeHead(200, { 'content-type': 'text/plain', ...headers(req) })
      res.end(`page ${calls} of ${req.get('x-user') ?? 'nobody'}`)
    }
    app.get('/plain', handler)
    app.get('/cached', cacheResponse({ backend: memory() }), handler)
    return app
  }

  it('a name given twice in two cases (cache-control: private, Cache-Control: max-age=60) goes out twice, never stored', async () => {
    // A header object merged from two sources: without the cache Node sends both lines.
    const r = await serve(objectApp(() => ({ 'cache-control': 'private', 'Cache-Control': 'max-age=60' })))
    const plain = await r.request('/plain', { headers: { 'x-user': 'alice' } })
    expect(plain.headers['cache-control']).toBe('private, max-age=60')
    const alice = await r.request('/cached', { headers: { 'x-user': 'alice' } })
    expect(alice.headers['cache-control']).toBe(plain.headers['cache-control'])
    expect(String(alice.headers['cache-status'])).not.toContain('stored')
    const bob = await r.request('/cached', { headers: { 'x-user': 'bob' } })
    expect(text(bob)).toBe('page 3 of bob')
  })

  it('a Vary given twice in two cases (Vary: X-User, vary: Accept) keys on both', async () => {
    const r = await serve(objectApp(() => ({ Vary: 'X-User', vary: 'Accept' })))
    const plain = await r.request('/plain', { headers: { 'x-user': 'alice' } })
    expect(plain.headers.vary).toBe('X-User, Accept')
    const alice = await r.request('/cached', { headers: { 'x-user': 'alice' } })
    expect(alice.headers.vary).toBe(plain.headers.vary)
    expect(text(alice)).toBe('page 2 of alice')
    const bob = await r.request('/cached', { headers: { 'x-user': 'bob' } })
    expect(text(bob)).toBe('page 3 of bob')
    const again = await r.request('/cached', { headers: { 'x-user': 'alice' } })
    expect(isHit(again)).toBe(true)
    expect(text(again)).toBe('page 2 of alice')
    expect(again.headers.vary).toBe(plain.headers.vary)
  })

  it('a flat list repeating a name after X-Powered-By: the hit sends the one value the miss sent', async () => {
    const app = express()
    const handler = (_req: any, res: any) => {
      res.writeHead(200, ['Content-Type', 'text/plain', 'X-Variant', 'old', 'X-Variant', 'new'])
      res.end('page')
    }
    app.get('/plain', handler)
    app.get('/cached', cacheResponse({ backend: memory() }), handler)
    const r = await serve(app)
    const plain = await r.request('/plain')
    expect(plain.headers['x-variant']).toBe('new')
    const miss = await r.request('/cached')
    expect(miss.headers['x-variant']).toBe('new')
    const hit = await r.request('/cached')
    expect(isHit(hit)).toBe(true)
    expect(hit.headers['x-variant']).toBe('new')
  })
})

describe.each(EXPRESS)('a header the handler removed, on %s', (_name, express) => {
  it('does not come back on hits when middleware before the cache set it (X-Robots-Tag, Cache-Control: no-store)', async () => {
    const app = express()
    app.use((_req: any, res: any, next: any) => {
      res.setHeader('X-Robots-Tag', 'noindex')
      res.setHeader('Cache-Control', 'no-store')
      next()
    })
    const handler = (_req: any, res: any) => {
      res.removeHeader('X-Robots-Tag')
      res.removeHeader('Cache-Control')
      res.removeHeader('X-Powered-By')
      res.send('public page')
    }
    app.get('/plain', handler)
    app.get('/cached', cacheResponse({ backend: memory() }), handler)
    const r = await serve(app)
    const plain = await r.request('/plain')
    for (const name of ['x-robots-tag', 'cache-control', 'x-powered-by'])
      expect(plain.headers[name]).toBeUndefined()
    await r.request('/cached')
    const hit = await r.request('/cached')
    expect(isHit(hit)).toBe(true)
    for (const name of ['x-robots-tag', 'cache-control', 'x-powered-by'])
      expect(hit.headers[name]).toBeUndefined()
    // The 304 of a revalidation carries what the 200 did.
    const revalidated = await r.request('/cached', { headers: { 'if-none-match': String(hit.headers.etag) } })
    expect(revalidated.status).toBe(304)
    expect(revalidated.headers['x-robots-tag']).toBeUndefined()
  })

  it('the cacheControl option offers its Cache-Control on hits as on the miss, once the no-store before it was removed', async () => {
    const app = express()
    app.use((_req: any, res: any, next: any) => {
      res.setHeader('Cache-Control', 'no-store')
      next()
    })
    const handler = (_req: any, res: any) => {
      res.removeHeader('Cache-Control')
      res.send('public page')
    }
    app.get('/cached', cacheResponse({ backend: memory(), ttl: 60, cacheControl: true }), handler)
    const r = await serve(app)
    const miss = await r.request('/cached')
    expect(miss.headers['cache-control']).toMatch(/max-age/)
    const hit = await r.request('/cached')
    expect(isHit(hit)).toBe(true)
    expect(hit.headers['cache-control']).toBe(miss.headers['cache-control'])
  })
})
