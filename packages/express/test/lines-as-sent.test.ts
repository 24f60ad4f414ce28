/**
 * The lines a client sent decide, whatever a layer before the cache removed from both `req.headers`
 * and `req.rawHeaders`: an auth layer that verifies the credential and strips it so that nothing
 * downstream logs it, a body parser that marks a GET's body consumed.
 */
import { createServer, type IncomingMessage } from 'node:http'
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, memory, type Reply, serveEach } from './http.js'

const serve = serveEach()
const text = (reply: Reply) => reply.body.toString()

/** Verifies the credential, puts its user on the request, and removes it from headers and rawHeaders. */
function stripCredentials(req: IncomingMessage & { user?: string }): void {
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!.toLowerCase()
    if (name !== 'authorization' && name !== 'cookie') continue
    const value = req.rawHeaders[i + 1]!
    req.user = name === 'authorization' ? value.replace(/^Bearer /, '') : value.replace(/^sid=/, '')
    req.rawHeaders.splice(i, 2)
    i -= 2
  }
  delete req.headers.authorization
  delete req.headers.cookie
}

describe.each(EXPRESS)('lines the client sent, removed before the cache, on %s', (_name, express) => {
  function accountApp(options: Parameters<typeof cacheResponse>[0] = {}) {
    const app = express()
    app.get(
      '/account',
      cacheResponse({ ttl: 60, backend: memory(), ...(options as object) }),
      (req: any, res: any) => res.send(req.user ? `private page of ${req.user}` : 'please log in'),
    )
    return app
  }

  describe.each([
    ['Authorization', { authorization: 'Bearer alice' }],
    ['Cookie', { cookie: 'sid=alice' }],
  ] as const)('%s stripped from headers and rawHeaders', (_header, alice) => {
    it('by middleware before the cache: an anonymous client never gets Alice’s page', async () => {
      const app = express()
      app.use((req: any, _res: any, next: any) => {
        stripCredentials(req)
        next()
      })
      app.use(accountApp())
      const r = await serve(app)
      expect(text(await r.request('/account', { headers: alice }))).toBe('private page of alice')
      const alone = await r.request('/account', { headers: alice })
      expect(String(alone.headers['cache-status'])).toMatch(/fwd=request; detail=(authorization|cookie)/)
      // Before: Alice's page, a hit.
      expect(text(await r.request('/account'))).toBe('please log in')
    })

    it('by a request listener put first on the server: an anonymous client never gets Alice’s page', async () => {
      const server = createServer(accountApp())
      server.prependListener('request', (req) => stripCredentials(req))
      const r = await serve({ listen: (...args: any[]) => server.listen(...args) })
      expect(text(await r.request('/account', { headers: alice }))).toBe('private page of alice')
      expect(text(await r.request('/account', { headers: alice }))).toBe('private page of alice')
      // Before: Alice's page, a hit.
      expect(text(await r.request('/account'))).toBe('please log in')
    })
  })

  it('allowCookies with vary: cookie keys on the Cookie sent: a layer stripping sid= from rawHeaders never makes Bob share Alice’s entry', async () => {
    const app = express()
    app.use((req: any, _res: any, next: any) => {
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        if (req.rawHeaders[i].toLowerCase() !== 'cookie') continue
        const parts = String(req.rawHeaders[i + 1]).split(/;\s*/)
        const sid = parts.find((p) => p.startsWith('sid='))
        if (sid) req.user = sid.slice(4)
        req.rawHeaders[i + 1] = parts.filter((p) => !p.startsWith('sid=')).join('; ')
        req.headers.cookie = req.rawHeaders[i + 1]
      }
      next()
    })
    app.use(accountApp({ allowCookies: true, vary: ['cookie'] }))
    const r = await serve(app)
    expect(text(await r.request('/account', { headers: { cookie: 'sid=alice; theme=dark' } }))).toBe(
      'private page of alice',
    )
    // Before: Alice's page (both keyed on `theme=dark`).
    expect(text(await r.request('/account', { headers: { cookie: 'sid=bob; theme=dark' } }))).toBe(
      'private page of bob',
    )
    expect(text(await r.request('/account', { headers: { cookie: 'theme=dark' } }))).toBe('please log in')
    const again = await r.request('/account', { headers: { cookie: 'sid=alice; theme=dark' } })
    expect(text(again)).toBe('private page of alice')
    expect(String(again.headers['cache-status'])).toMatch(/hit/)
  })

  it('refreshes a stale entry keyed on the Cookie sent with that Cookie, though a layer stripped sid= from rawHeaders', async () => {
    let now = 1_000_000
    const clock = () => now
    const app = express()
    app.use((req: any, _res: any, next: any) => {
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        if (req.rawHeaders[i].toLowerCase() !== 'cookie') continue
        const parts = String(req.rawHeaders[i + 1]).split(/;\s*/)
        const sid = parts.find((p) => p.startsWith('sid='))
        if (sid) req.user = sid.slice(4)
        req.rawHeaders[i + 1] = parts.filter((p) => !p.startsWith('sid=')).join('; ')
        req.headers.cookie = req.rawHeaders[i + 1]
      }
      next()
    })
    let runs = 0
    const cache = cacheResponse({
      backend: memory(clock),
      now: clock,
      ttl: 60,
      staleWhileRevalidate: 600,
      allowCookies: true,
      vary: ['cookie'],
    })
    app.get('/me', cache, (req: any, res: any) => res.send(`page of ${req.user ?? 'anonymous'} #${++runs}`))
    const r = await serve(app)
    const alice = { headers: { cookie: 'sid=alice; theme=dark' } }
    expect(text(await r.request('/me', alice))).toBe('page of alice #1')
    now += 61_000
    expect(text(await r.request('/me', alice))).toBe('page of alice #1')
    for (let i = 0; i < 300 && cache.stats.sets < 2; i++)
      await new Promise((resolve) => setTimeout(resolve, 10))
    // Not the page of a client without sid= stored as Alice's.
    expect(text(await r.request('/me', alice))).toBe('page of alice #2')
  })

  /** `/me` behind an auth layer put before the cache, `ttl: 60` then stale for 600 s on the clock it returns. */
  function staleAccount(strip: (req: any) => void) {
    let now = 1_000_000
    const clock = () => now
    const app = express()
    app.use((req: any, _res: any, next: any) => {
      strip(req)
      next()
    })
    let runs = 0
    const cache = cacheResponse({
      backend: memory(clock),
      now: clock,
      ttl: 60,
      staleWhileRevalidate: 600,
      allowAuthorized: true,
      vary: ['authorization'],
    })
    app.get('/me', cache, (req: any, res: any) => res.send(`hello ${req.user ?? 'guest'} #${++runs}`))
    return { app, cache, expire: () => (now += 61_000) }
  }

  it.each([
    ['empties rawHeaders', (req: any) => (req.rawHeaders = [])],
    ['deletes rawHeaders', (req: any) => delete req.rawHeaders],
  ])('refreshes Alice’s stale entry with her token, though the auth layer %s', async (_how, clear) => {
    const { app, cache, expire } = staleAccount((req) => {
      const auth = req.headers.authorization
      if (auth === undefined) return
      req.user = auth.slice(7)
      delete req.headers.authorization
      clear(req)
    })
    const r = await serve(app)
    const alice = { headers: { authorization: 'Bearer alice' } }
    expect(text(await r.request('/me', alice))).toBe('hello alice #1')
    expire()
    expect(text(await r.request('/me', alice))).toBe('hello alice #1')
    for (let i = 0; i < 300 && cache.stats.sets < 2; i++)
      await new Promise((resolve) => setTimeout(resolve, 10))
    // Before: "hello guest #2", a hit under Alice's key.
    expect(text(await r.request('/me', alice))).toBe('hello alice #2')
  })

  it('refreshes a legacy domain’s stale entry as the legacy page, though a layer maps its Host to the new domain', async () => {
    let now = 1_000_000
    const clock = () => now
    const app = express()
    app.use((req: any, _res: any, next: any) => {
      if (req.headers.host === 'old.shop.test') {
        req.headers.host = 'shop.test'
        for (let i = 0; i < req.rawHeaders.length; i += 2)
          if (req.rawHeaders[i].toLowerCase() === 'host') req.rawHeaders[i + 1] = 'shop.test'
        req.legacy = true
      }
      next()
    })
    let runs = 0
    const cache = cacheResponse({ backend: memory(clock), now: clock, ttl: 60, staleWhileRevalidate: 600 })
    app.get('/', cache, (req: any, res: any) => res.send(`${req.legacy ? 'legacy' : 'main'} page #${++runs}`))
    const r = await serve(app)
    const legacy = { headers: { host: 'old.shop.test' } }
    expect(text(await r.request('/', legacy))).toBe('legacy page #1')
    now += 61_000
    expect(text(await r.request('/', legacy))).toBe('legacy page #1')
    for (let i = 0; i < 300 && cache.stats.sets < 2; i++)
      await new Promise((resolve) => setTimeout(resolve, 10))
    // Before: "main page #2", stored under old.shop.test's key.
    expect(text(await r.request('/', legacy))).toBe('legacy page #2')
  })

  it('a GET whose body a parser read and whose Content-Length a layer deleted still bypasses: Bob never gets Alice’s results', async () => {
    const app = express()
    app.use(express.json({ type: () => true }))
    app.use((req: any, _res: any, next: any) => {
      delete req.headers['content-length']
      delete req.headers['transfer-encoding']
      next()
    })
    app.get('/search', cacheResponse({ ttl: 60, backend: memory() }), (req: any, res: any) =>
      res.send(`results for ${req.body?.q ?? '-'}`),
    )
    const r = await serve(app)
    const search = (q: string) => {
      const body = JSON.stringify({ q })
      const length = String(Buffer.byteLength(body))
      return r.request('/search', {
        headers: { 'content-type': 'application/json', 'content-length': length },
        body,
      })
    }
    expect(text(await search('alice-secret'))).toBe('results for alice-secret')
    // Before: Alice's results, a hit.
    const bob = await search('bob')
    expect(text(bob)).toBe('results for bob')
    expect(String(bob.headers['cache-status'])).toMatch(/detail=body/)
  })

  it('Set-Cookie set to an empty list (no line sent): Cache-Status tells the response stored, and it is', async () => {
    const app = express()
    let runs = 0
    app.get('/p', cacheResponse({ ttl: 60, backend: memory() }), (_req: any, res: any) => {
      runs++
      res.setHeader('Set-Cookie', [])
      res.send('page')
    })
    const r = await serve(app)
    const miss = await r.request('/p')
    expect(miss.headers['set-cookie']).toBeUndefined()
    // Before: `detail=set-cookie`, yet the next request was a hit.
    expect(String(miss.headers['cache-status'])).toMatch(/stored/)
    const hit = await r.request('/p')
    expect(String(hit.headers['cache-status'])).toMatch(/hit/)
    expect(hit.headers['set-cookie']).toBeUndefined()
    expect(runs).toBe(1)
  })
})
