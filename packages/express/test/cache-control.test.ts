/**
 * `cacheControl`: the `Cache-Control` the cache gives browsers and CDNs, seen from a client and
 * from a CDN in front of the app. Only responses the cache stores carry it; it never replaces the
 * handler's own, and never reaches a response a shared cache must not keep.
 */
import session from 'express-session'
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, memory, type Reply, serveEach } from './http.js'

const serve = serveEach()
const text = (reply: Reply) => reply.body.toString()

describe.each(EXPRESS)('cacheControl on %s', (_name, express) => {
  function clocked(
    options: object,
    handler: (req: any, res: any) => void,
    before?: (req: any, res: any, next: any) => void,
  ) {
    let now = 1_000_000
    const clock = () => now
    const app = express()
    if (before) app.use(before)
    app.get('/r', cacheResponse({ backend: memory(clock), now: clock, ...options }), handler)
    return { app, advance: (seconds: number) => void (now += seconds * 1000) }
  }

  it('sends nothing of its own by default', async () => {
    const { app } = clocked({ ttl: 60 }, (_req, res) => res.send('x'))
    const r = await serve(app)
    expect((await r.request('/r')).headers['cache-control']).toBeUndefined()
    expect((await r.request('/r')).headers['cache-control']).toBeUndefined()
  })

  it('derives Cache-Control from ttl and staleWhileRevalidate with true, and counts it down with Age on hits', async () => {
    const { app, advance } = clocked({ ttl: 60, staleWhileRevalidate: 30, cacheControl: true }, (_req, res) =>
      res.send('x'),
    )
    const r = await serve(app)
    const miss = await r.request('/r')
    expect(miss.headers['cache-control']).toBe('public, max-age=60, stale-while-revalidate=30')
    expect(miss.headers.age).toBeUndefined()
    advance(20)
    const hit = await r.request('/r')
    expect(hit.headers['cache-status']).toMatch(/^@cache; hit; ttl=40/)
    // RFC 9111 §4.2.3: a downstream cache's remaining freshness is max-age minus Age (40 s here).
    expect(hit.headers['cache-control']).toBe('public, max-age=60, stale-while-revalidate=30')
    expect(hit.headers.age).toBe('20')
  })

  it('sends the directives it is given, on the miss, the hit and a 304', async () => {
    const { app } = clocked(
      { ttl: 60, cacheControl: { maxAge: '1m', sMaxAge: '1h', staleWhileRevalidate: 10, public: false } },
      (_req, res) => res.send('x'),
    )
    const r = await serve(app)
    const miss = await r.request('/r')
    expect(miss.headers['cache-control']).toBe('max-age=60, s-maxage=3600, stale-while-revalidate=10')
    expect((await r.request('/r')).headers['cache-control']).toBe(miss.headers['cache-control'])
    const notModified = await r.request('/r', { headers: { 'if-none-match': String(miss.headers.etag) } })
    expect(notModified.status).toBe(304)
    expect(notModified.headers['cache-control']).toBe(miss.headers['cache-control'])
  })

  it("never replaces the handler's own Cache-Control, on the miss or the hit", async () => {
    const { app } = clocked({ ttl: 60, cacheControl: true }, (_req, res) => {
      res.set('cache-control', 'public, max-age=5')
      res.send('x')
    })
    const r = await serve(app)
    expect((await r.request('/r')).headers['cache-control']).toBe('public, max-age=5')
    const hit = await r.request('/r')
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(hit.headers['cache-control']).toBe('public, max-age=5')
  })

  it('sends none on a response it does not store: Set-Cookie, private, error status, Vary: *', async () => {
    const app = express()
    const cache = cacheResponse({ backend: memory(), cacheControl: true })
    app.get('/cookie', cache, (_req: any, res: any) => res.cookie('sid', '1').send('x'))
    app.get('/private', cache, (_req: any, res: any) => res.set('cache-control', 'private').send('x'))
    app.get('/missing', cache, (_req: any, res: any) => res.status(404).send('no'))
    app.get('/star', cache, (_req: any, res: any) => res.set('vary', '*').send('x'))
    app.get('/boom', cache, () => {
      throw new Error('boom')
    })
    const r = await serve(app)
    expect((await r.request('/cookie')).headers['cache-control']).toBeUndefined()
    expect((await r.request('/private')).headers['cache-control']).toBe('private')
    expect((await r.request('/missing')).headers['cache-control']).toBeUndefined()
    expect((await r.request('/star')).headers['cache-control']).toBeUndefined()
    expect((await r.request('/boom')).headers['cache-control']).toBeUndefined()
  })

  it('sends none to requests the cache passes through (Authorization, Cookie, bypass)', async () => {
    const { app } = clocked(
      { cacheControl: true, bypass: (req: any) => req.query.preview === '1' },
      (_req, res) => res.send('x'),
    )
    const r = await serve(app)
    expect(
      (await r.request('/r', { headers: { authorization: 'Bearer a' } })).headers['cache-control'],
    ).toBeUndefined()
    expect((await r.request('/r', { headers: { cookie: 'sid=1' } })).headers['cache-control']).toBeUndefined()
    expect((await r.request('/r?preview=1')).headers['cache-control']).toBeUndefined()
  })

  it('withdraws it when middleware before the cache adds Set-Cookie as the headers go out', async () => {
    // As express-session (on-headers) does: a hook on writeHead, installed before the cache.
    const before = (_req: any, res: any, next: any) => {
      const writeHead = res.writeHead
      res.writeHead = function (this: any, ...args: any[]) {
        this.setHeader('set-cookie', 'sid=new-visitor')
        return writeHead.apply(this, args)
      }
      next()
    }
    const { app } = clocked({ cacheControl: true }, (_req, res) => res.send('x'), before)
    const r = await serve(app)
    const reply = await r.request('/r')
    expect(reply.headers['set-cookie']).toEqual(['sid=new-visitor'])
    expect(reply.headers['cache-control']).toBeUndefined()
  })

  it('sends none when express-session before the cache gives a new visitor a cookie', async () => {
    const app = express()
    app.use(session({ secret: 's', resave: false, saveUninitialized: true }))
    app.get('/r', cacheResponse({ backend: memory(), cacheControl: true }), (_req: any, res: any) =>
      res.send('x'),
    )
    const r = await serve(app)
    const reply = await r.request('/r')
    expect(reply.headers['set-cookie']).toHaveLength(1)
    expect(reply.headers['cache-control']).toBeUndefined()
  })

  it('withdraws it on a hit to which middleware before the cache adds Set-Cookie', async () => {
    let assign = false
    const before = (_req: any, res: any, next: any) => {
      if (assign) res.cookie('ab', 'b')
      next()
    }
    const { app } = clocked({ cacheControl: true }, (_req, res) => res.send('x'), before)
    const r = await serve(app)
    expect((await r.request('/r')).headers['cache-control']).toBe('public, max-age=60')
    assign = true
    const hit = await r.request('/r')
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(hit.headers['set-cookie']).toEqual(['ab=b; Path=/'])
    expect(hit.headers['cache-control']).toBeUndefined()
  })

  it('says private, without s-maxage, when the key holds request headers a CDN cannot see (vary option, custom key)', async () => {
    const app = express()
    const byLanguage = cacheResponse({
      backend: memory(),
      vary: ['accept-language'],
      cacheControl: { maxAge: 30, sMaxAge: 300 },
    })
    const byUser = cacheResponse({
      backend: memory(),
      key: (req: any) => `u:${req.get('x-user')}`,
      cacheControl: true,
    })
    app.get('/lang', byLanguage, (req: any, res: any) => res.send(String(req.get('accept-language'))))
    app.get('/me', byUser, (req: any, res: any) => res.send(String(req.get('x-user'))))
    const r = await serve(app)
    const lang = await r.request('/lang', { headers: { 'accept-language': 'fr' } })
    expect(text(lang)).toBe('fr')
    expect(lang.headers['cache-control']).toBe('private, max-age=30')
    expect((await r.request('/me', { headers: { 'x-user': 'alice' } })).headers['cache-control']).toBe(
      'private, max-age=60',
    )
  })

  it('rejects malformed cacheControl options, naming them', () => {
    expect(() => cacheResponse({ backend: memory(), cacheControl: { maxAge: -1 } })).toThrow(
      /cacheControl.maxAge/,
    )
    expect(() => cacheResponse({ backend: memory(), cacheControl: 'yes' as never })).toThrow(/cacheControl/)
  })
})
