/**
 * The key names the URL Express routes, and only that one: middleware before the cache that
 * rewrites `req.url` (an internal rewrite of anonymous requests, a history-API fallback), a raw `#`
 * in the request target, and mounting, which legitimately strips the mount path from `req.url`.
 */
import { connect } from 'node:net'
import { beforeAll, describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, listen, memory, type Reply, serveEach } from './http.js'

const serve = serveEach()
const text = (reply: Reply) => reply.body.toString()
const isHit = (reply: Reply) => /hit|collapsed/.test(String(reply.headers['cache-status']))

type Handler = (req: any, res: any, next: any) => unknown
const POSITIONS = ['global middleware', 'route middleware', 'wrapper'] as const

/** Registers `handler` on `path` with the cache in `position` (global: `app.use(cache)` first). */
function route(app: any, position: (typeof POSITIONS)[number], cache: any, path: string, handler: Handler) {
  if (position === 'global middleware') app.get(path, handler)
  else if (position === 'route middleware') app.get(path, cache, handler)
  else app.get(path, cache(handler))
}

/**
 * An app that mounts at /admin a router whose first middleware hands a request without the member
 * key to `rewrite`, then the cache: /report answers members, /teaser everyone else.
 */
function membersMount(express: any, rewrite: (req: any) => void) {
  const app = express()
  const admin = express.Router()
  admin.use((req: any, _res: any, next: any) => {
    if (req.get('x-api-key') !== 'member-key') rewrite(req)
    next()
  })
  admin.use(cacheResponse({ backend: memory() }))
  admin.get('/report', (_req: any, res: any) => res.send('MEMBERS ONLY'))
  admin.get('/teaser', (_req: any, res: any) => res.send('subscribe'))
  app.use('/admin', admin)
  return app
}

/** A request target sent byte for byte (Node's client would not send a raw `#` as it is). */
function raw(port: number, target: string): Promise<{ status: number; cacheStatus: string; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () =>
      socket.write(`GET ${target} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n`),
    )
    let data = ''
    socket.setEncoding('latin1')
    socket.on('data', (chunk) => {
      data += chunk
    })
    socket.on('end', () => {
      const [head = '', body = ''] = data.split('\r\n\r\n')
      resolve({
        status: Number(head.split(' ')[1]),
        cacheStatus: /cache-status: (.*)/i.exec(head)?.[1] ?? '',
        body,
      })
    })
    socket.on('error', reject)
    socket.setTimeout(5_000, () => socket.destroy(new Error(`GET ${target} timed out`)))
  })
}

describe.each(EXPRESS)('a rewrite of req.url before the cache, on %s', (_name, express) => {
  describe.each(POSITIONS)('cache as %s', (position) => {
    function reportApp() {
      const app = express()
      const cache = cacheResponse({ backend: memory() })
      let runs = 0
      // An auth layer that shows anyone without the member key the public teaser instead.
      app.use((req: any, _res: any, next: any) => {
        if (req.get('x-api-key') !== 'member-key') req.url = '/teaser'
        next()
      })
      if (position === 'global middleware') app.use(cache)
      route(app, position, cache, '/report', (_req, res) => res.json({ report: 'MEMBERS ONLY', run: ++runs }))
      route(app, position, cache, '/teaser', (_req, res) => res.send('subscribe to read the report'))
      return app
    }
    const member = { headers: { 'x-api-key': 'member-key' } }

    it('an anonymous request rewritten to the teaser never gets the report a member stored', async () => {
      const r = await serve(reportApp())
      expect(JSON.parse(text(await r.request('/report', member)))).toEqual({ report: 'MEMBERS ONLY', run: 1 })
      expect(isHit(await r.request('/report', member))).toBe(true)
      const anonymous = await r.request('/report')
      expect(text(anonymous)).toBe('subscribe to read the report')
      expect(anonymous.headers['cache-status']).toBe('@cache; fwd=request; detail=rewritten-url')
      // Nor does the teaser's own URL.
      expect(text(await r.request('/teaser'))).toBe('subscribe to read the report')
    })

    it('a member never gets the teaser an anonymous request planted under the report URL', async () => {
      const r = await serve(reportApp())
      expect(text(await r.request('/report'))).toBe('subscribe to read the report')
      expect(text(await r.request('/report'))).toBe('subscribe to read the report')
      expect(JSON.parse(text(await r.request('/report', member)))).toEqual({ report: 'MEMBERS ONLY', run: 1 })
    })

    it('a history-API fallback that rewrites HTML navigations never mixes the shell and the API answer', async () => {
      const app = express()
      const cache = cacheResponse({ backend: memory() })
      app.use((req: any, _res: any, next: any) => {
        if (req.method === 'GET' && req.headers.accept?.includes('text/html')) req.url = '/index.html'
        next()
      })
      if (position === 'global middleware') app.use(cache)
      route(app, position, cache, '/index.html', (_req, res) => res.type('html').send('<div id=app></div>'))
      route(app, position, cache, '/orders', (_req, res) => res.json({ orders: [1, 2] }))
      const r = await serve(app)
      const html = { headers: { accept: 'text/html' } }
      const json = { headers: { accept: 'application/json' } }
      expect(text(await r.request('/orders', html))).toBe('<div id=app></div>')
      expect(text(await r.request('/orders', json))).toBe('{"orders":[1,2]}')
      expect(text(await r.request('/orders', html))).toBe('<div id=app></div>')
      expect(isHit(await r.request('/orders', json))).toBe(true)
    })
  })

  it('still stores under a mount, where Express strips the mount path from req.url', async () => {
    const app = express()
    const cache = cacheResponse({ backend: memory() })
    let runs = 0
    const admin = express.Router()
    admin.use(cache)
    admin.get('/', (req: any, res: any) => res.json({ url: req.originalUrl, run: ++runs }))
    admin.get('/users', (req: any, res: any) => res.json({ url: req.originalUrl, run: ++runs }))
    app.use('/admin', admin)
    const sub = express()
    sub.get('/items', cache, (req: any, res: any) => res.json({ url: req.originalUrl, run: ++runs }))
    app.use('/shop', sub)
    const r = await serve(app)
    for (const path of [
      '/admin',
      '/admin/',
      '/admin?x=1',
      '/admin/?x=1',
      '/admin/users?b=2&a=1',
      '/shop/items',
    ]) {
      const first = await r.request(path)
      expect(first.headers['cache-status'], path).toBe('@cache; fwd=uri-miss; stored')
      const second = await r.request(path)
      expect(isHit(second), path).toBe(true)
      expect(JSON.parse(text(second)).url, path).toBe(path)
    }
  })

  it('a rewrite inside a mount (baseUrl no longer leads to the URL sent) bypasses', async () => {
    const app = membersMount(express, (req) => {
      req.url = '/teaser'
    })
    const r = await serve(app)
    expect(text(await r.request('/admin/report', { headers: { 'x-api-key': 'member-key' } }))).toBe(
      'MEMBERS ONLY',
    )
    const anonymous = await r.request('/admin/report')
    expect(text(anonymous)).toBe('subscribe')
    expect(anonymous.headers['cache-status']).toMatch(/detail=rewritten-url/)
  })

  it('a stale-while-revalidate refresh whose copy is rewritten is abandoned at once, and the stale entry stays', async () => {
    let now = 1_000_000
    let calls = 0
    const errors: Error[] = []
    const cache = cacheResponse({
      backend: memory(),
      ttl: 1,
      staleWhileRevalidate: 600,
      revalidateTimeout: '20s',
      now: () => now,
    })
    cache.on('error', (event) => errors.push(event.error as Error))
    const app = express()
    // A rewrite rule that only takes effect from the third request on (rules loaded while running).
    app.use((req: any, _res: any, next: any) => {
      if (++calls >= 3) req.url = '/moved'
      next()
    })
    app.use(cache)
    app.get('/page', (_req: any, res: any) => res.send('page v1'))
    app.get('/moved', (_req: any, res: any) => res.send('moved'))
    const r = await serve(app)
    expect(text(await r.request('/page'))).toBe('page v1')
    now += 2_000
    // A stale hit (second request), whose background refresh is the third.
    expect(text(await r.request('/page'))).toBe('page v1')
    for (let i = 0; i < 300 && errors.length === 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 10))
    expect(errors).toHaveLength(1)
    expect(errors[0]!.message).toMatch(/rewritten-url/)
    expect(cache.stats.sets).toBe(1)
  })
})

describe.each(EXPRESS)('a rewrite of req.url and req.originalUrl together, on %s', (_name, express) => {
  // The URL as sent is captured as Express starts dispatching a request, once this package
  // observes that copy of Express (from its first request on): warm each copy up first.
  beforeAll(async () => {
    const app = express()
    app.get('/warm', cacheResponse({ backend: memory() }), (_req: any, res: any) => res.send('warm'))
    const warm = await listen(app)
    await warm.request('/warm')
    await warm.close()
  })

  describe.each(POSITIONS)('cache as %s', (position) => {
    function localeApp() {
      const app = express()
      const cache = cacheResponse({ backend: memory() })
      // Strips a locale prefix, hiding it from req.originalUrl (and so from logs) too.
      app.use((req: any, _res: any, next: any) => {
        const m = /^\/(fr|de)(\/.*)$/.exec(req.url)
        req.lang = m ? m[1] : 'en'
        if (m) {
          req.url = m[2]
          req.originalUrl = m[2]
        }
        next()
      })
      if (position === 'global middleware') app.use(cache)
      route(app, position, cache, '/x', (req, res) => res.send(`lang=${req.lang}`))
      return app
    }

    it('never stores /fr/x under /x', async () => {
      const r = await serve(localeApp())
      const fr = await r.request('/fr/x')
      expect(text(fr)).toBe('lang=fr')
      expect(fr.headers['cache-status']).toBe('@cache; fwd=request; detail=rewritten-url')
      expect(text(await r.request('/x'))).toBe('lang=en')
      expect(text(await r.request('/de/x'))).toBe('lang=de')
      expect(isHit(await r.request('/x'))).toBe(true)
      expect(text(await r.request('/fr/x'))).toBe('lang=fr')
    })

    it('never answers /fr/x with the entry of /x', async () => {
      const r = await serve(localeApp())
      expect(text(await r.request('/x'))).toBe('lang=en')
      expect(isHit(await r.request('/x'))).toBe(true)
      const fr = await r.request('/fr/x')
      expect(text(fr)).toBe('lang=fr')
      expect(fr.headers['cache-status']).toBe('@cache; fwd=request; detail=rewritten-url')
    })
  })

  it('detects a rewrite of both inside a mount, where baseUrl + url still lead to originalUrl', async () => {
    const app = membersMount(express, (req) => {
      req.url = '/teaser'
      req.originalUrl = '/admin/teaser'
    })
    const r = await serve(app)
    const anonymous = await r.request('/admin/report')
    expect(text(anonymous)).toBe('subscribe')
    expect(anonymous.headers['cache-status']).toMatch(/detail=rewritten-url/)
    expect(text(await r.request('/admin/teaser'))).toBe('subscribe')
    const member = { headers: { 'x-api-key': 'member-key' } }
    expect(text(await r.request('/admin/report', member))).toBe('MEMBERS ONLY')
    expect(isHit(await r.request('/admin/report', member))).toBe(true)
  })

  it('detects a rewrite of the query alone', async () => {
    const app = express()
    app.use((req: any, _res: any, next: any) => {
      req.plan = req.query.plan === 'pro' ? 'pro' : 'free'
      if (req.plan === 'pro') req.url = req.originalUrl = '/pricing'
      next()
    })
    app.get('/pricing', cacheResponse({ backend: memory() }), (req: any, res: any) => res.send(req.plan))
    const r = await serve(app)
    const pro = await r.request('/pricing?plan=pro')
    expect(text(pro)).toBe('pro')
    expect(pro.headers['cache-status']).toMatch(/detail=rewritten-url/)
    expect(text(await r.request('/pricing'))).toBe('free')
  })

  it('still stores when middleware assigns req.originalUrl its own value', async () => {
    const app = express()
    app.use((req: any, _res: any, next: any) => {
      req.originalUrl = `${req.originalUrl}`
      next()
    })
    app.get('/same', cacheResponse({ backend: memory() }), (_req: any, res: any) => res.send('same'))
    const r = await serve(app)
    expect((await r.request('/same?a=1')).headers['cache-status']).toBe('@cache; fwd=uri-miss; stored')
    expect(isHit(await r.request('/same?a=1'))).toBe(true)
  })
})

describe.each(EXPRESS)('a raw # in the request target, on %s', (_name, express) => {
  it('never lets two targets that Express parses into different queries share an entry', async () => {
    const app = express()
    app.get('/p', cacheResponse({ backend: memory() }), (req: any, res: any) => res.json(req.query))
    const r = await serve(app)
    const attacker = await raw(r.port, '/p?b=2&a=1#')
    expect(JSON.parse(attacker.body)).toEqual({ b: '2', a: '1' })
    expect(attacker.cacheStatus).toBe('@cache; fwd=request; detail=url')
    const victim = await raw(r.port, '/p?a=1#&b=2')
    expect(JSON.parse(victim.body)).toEqual({ a: '1' })
    // Targets without one are cached as before.
    await raw(r.port, '/p?b=2&a=1')
    const hit = await raw(r.port, '/p?a=1&b=2')
    expect(hit.cacheStatus).toMatch(/hit/)
    expect(JSON.parse(hit.body)).toEqual({ a: '1', b: '2' })
  })
})
