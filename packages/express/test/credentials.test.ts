/**
 * The credentials a client sent key (or bypass) the request, whatever middleware before the cache
 * did to `req.headers`: a session layer that takes `sid=` out of `Cookie`, an auth layer that
 * rewrites or deletes `Authorization`.
 */
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, memory, type Reply, serveEach } from './http.js'

const serve = serveEach()
const text = (reply: Reply) => reply.body.toString()

describe.each(EXPRESS)('credentials as the client sent them, on %s', (_name, express) => {
  /** A session layer (sid= out of Cookie into req.user) and an auth layer (token verified, rewritten). */
  function sessionApp(options: Parameters<typeof cacheResponse>[0]) {
    const app = express()
    app.use((req: any, _res: any, next: any) => {
      const parts = String(req.headers.cookie ?? '')
        .split(/;\s*/)
        .filter(Boolean)
      const sid = parts.find((p) => p.startsWith('sid='))
      if (sid) req.user = sid.slice(4)
      const rest = parts.filter((p) => !p.startsWith('sid=')).join('; ')
      if (rest) req.headers.cookie = rest
      else delete req.headers.cookie
      if (req.headers.authorization) {
        req.user = String(req.headers.authorization).split(' ')[1]
        req.headers.authorization = 'Bearer (verified)'
      }
      next()
    })
    app.get('/me', cacheResponse({ backend: memory(), ...(options as object) }), (req: any, res: any) =>
      res.send(`page of ${req.user ?? 'anonymous'}`),
    )
    return app
  }

  it('keys vary: cookie on the Cookie sent: a layer taking sid= out never gives Bob Alice’s page', async () => {
    const r = await serve(sessionApp({ allowCookies: true, vary: ['cookie'] }))
    expect(text(await r.request('/me', { headers: { cookie: 'sid=alice; theme=dark' } }))).toBe(
      'page of alice',
    )
    expect(text(await r.request('/me', { headers: { cookie: 'sid=bob; theme=dark' } }))).toBe('page of bob')
    // A client that sends exactly what the layer left of Alice's cookie is another client.
    expect(text(await r.request('/me', { headers: { cookie: 'theme=dark' } }))).toBe('page of anonymous')
    const again = await r.request('/me', { headers: { cookie: 'sid=alice; theme=dark' } })
    expect(text(again)).toBe('page of alice')
    expect(String(again.headers['cache-status'])).toMatch(/hit/)
  })

  it('keys vary: authorization on the token sent, not on the one a layer rewrote it to', async () => {
    const r = await serve(sessionApp({ allowAuthorized: true, vary: ['authorization'] }))
    expect(text(await r.request('/me', { headers: { authorization: 'Bearer alice' } }))).toBe('page of alice')
    expect(text(await r.request('/me', { headers: { authorization: 'Bearer bob' } }))).toBe('page of bob')
    // The value the layer rewrites to, sent as it is: a client with that token gets its own page.
    expect(text(await r.request('/me', { headers: { authorization: 'Bearer (verified)' } }))).toBe(
      'page of (verified)',
    )
  })

  it('refreshes a stale entry keyed on a rewritten cookie with the request the client sent', async () => {
    let now = 1_000_000
    const clock = () => now
    const app = express()
    const runs = { n: 0 }
    app.use((req: any, _res: any, next: any) => {
      const parts = String(req.headers.cookie ?? '').split(/;\s*/)
      const sid = parts.find((p) => p.startsWith('sid='))
      if (sid) req.user = sid.slice(4)
      req.headers.cookie = parts.filter((p) => !p.startsWith('sid=')).join('; ')
      next()
    })
    const cache = cacheResponse({
      backend: memory(clock),
      now: clock,
      ttl: 60,
      staleWhileRevalidate: 600,
      allowCookies: true,
      vary: ['cookie'],
    })
    app.get('/me', cache, (req: any, res: any) => res.send(`page of ${req.user ?? 'anonymous'} #${++runs.n}`))
    const r = await serve(app)
    const alice = { headers: { cookie: 'sid=alice; theme=dark' } }
    expect(text(await r.request('/me', alice))).toBe('page of alice #1')
    now += 61_000
    expect(text(await r.request('/me', alice))).toBe('page of alice #1')
    for (let i = 0; i < 300 && cache.stats.sets < 2; i++)
      await new Promise((resolve) => setTimeout(resolve, 10))
    expect(text(await r.request('/me', alice))).toBe('page of alice #2')
    expect(text(await r.request('/me', { headers: { cookie: 'theme=dark' } }))).toBe('page of anonymous #3')
  })

  describe.each([
    ['Authorization', { allowAuthorized: true }, { authorization: 'Bearer alice' }],
    ['Cookie', { allowCookies: true }, { cookie: 'sid=alice' }],
  ] as const)('a response that says Vary: %s, without the vary option', (header, allow, alice) => {
    it('never makes the page of a client whose credential a layer deleted the variant of clients without one', async () => {
      const app = express()
      app.use((req: any, _res: any, next: any) => {
        const value = req.headers.authorization ?? req.headers.cookie
        if (value !== undefined) req.user = String(value).split(/[= ]/)[1]
        delete req.headers.authorization
        delete req.headers.cookie
        next()
      })
      app.get('/me', cacheResponse({ backend: memory(), ...allow }), (req: any, res: any) => {
        res.vary(header)
        res.send(`page of ${req.user ?? 'anonymous'}`)
      })
      const r = await serve(app)
      expect(text(await r.request('/me', { headers: alice }))).toBe('page of alice')
      expect(text(await r.request('/me'))).toBe('page of anonymous')
      const hit = await r.request('/me', { headers: alice })
      expect(text(hit)).toBe('page of alice')
      expect(String(hit.headers['cache-status'])).toMatch(/hit/)
      expect(text(await r.request('/me'))).toBe('page of anonymous')
    })
  })
})
