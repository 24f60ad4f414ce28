/**
 * Routers of a copy of Express the cache has never seen (a plugin bundling its own Express, a
 * second version in a monorepo), reached through a plain function rather than mounted: the cache
 * cannot see into them, so nothing they may have run in is stored, from the first request on.
 * Every test loads a copy of its own, never seen before in this process.
 */
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, freshCopy, memory, type Reply, serveEach } from './http.js'

const serve = serveEach()
const text = (reply: Reply) => reply.body.toString()
const isHit = (reply: Reply) => /hit|collapsed/.test(String(reply.headers['cache-status']))

type Express = (typeof EXPRESS)[number][1]
const guard = (req: any, res: any, next: any) =>
  req.get('x-api-key') === 'admin-key' ? next() : res.status(401).send('login required')
const admin = { headers: { 'x-api-key': 'admin-key' } }
const COPIES = [
  ['a new copy of Express 4', () => freshCopy<Express>('express4')],
  ['a new copy of Express 5', () => freshCopy<Express>('express')],
] as const

describe.each(EXPRESS)('on %s', (_name, express) => {
  describe.each(COPIES)('%s', (_copy, load) => {
    it('a router of it called from a function after a global cache: its guard is never skipped', async () => {
      const other = load()
      const app = express()
      app.use(cacheResponse({ backend: memory() }))
      const adminRouter = other.Router()
      adminRouter.use(guard)
      adminRouter.get('/payroll', (_req: any, res: any) => res.json({ payroll: 'SECRET' }))
      app.use('/admin', (req: any, res: any, next: any) => adminRouter(req, res, next))
      const r = await serve(app)
      for (let i = 0; i < 2; i++) {
        const first = await r.request('/admin/payroll', admin)
        expect(text(first)).toBe('{"payroll":"SECRET"}')
        expect(first.headers['cache-status']).toBe('@cache; fwd=uri-miss; detail=middleware-after-cache')
        const anonymous = await r.request('/admin/payroll')
        expect(anonymous.status).toBe(401)
      }
    })

    it('a router of it called from a wrapped handler: its guard is never skipped', async () => {
      const other = load()
      const app = express()
      const adminRouter = other.Router()
      adminRouter.use(guard)
      adminRouter.get('/admin/payroll', (_req: any, res: any) => res.json({ payroll: 'SECRET' }))
      app.get(
        '/admin/payroll',
        cacheResponse({ backend: memory() })((req: any, res: any, next: any) => adminRouter(req, res, next)),
      )
      const r = await serve(app)
      expect(text(await r.request('/admin/payroll', admin))).toBe('{"payroll":"SECRET"}')
      expect((await r.request('/admin/payroll')).status).toBe(401)
    })

    it('a router of it whose guard passes and that hands the request back: still not stored', async () => {
      const other = load()
      const app = express()
      app.use(cacheResponse({ backend: memory() }))
      const guarded = other.Router()
      guarded.use(guard)
      // The router answers nothing itself: the function answers once it is through.
      app.get('/admin/payroll', (req: any, res: any, next: any) =>
        guarded(req, res, (error?: unknown) => (error ? next(error) : res.json({ payroll: 'SECRET' }))),
      )
      const r = await serve(app)
      expect(text(await r.request('/admin/payroll', admin))).toBe('{"payroll":"SECRET"}')
      expect((await r.request('/admin/payroll')).status).toBe(401)
    })

    // A copy of the request has neither the `req.next` accessor nor `req` in its prototype chain.
    const COPY_FORMS = [
      ['an object-spread copy', (req: any) => ({ ...req, url: '/report' })],
      [
        'an object-spread copy with its prototype',
        (req: any) => ({ ...req, url: '/report', __proto__: Object.getPrototypeOf(req) }),
      ],
      ['an Object.assign copy', (req: any) => Object.assign({}, req, { url: '/report' })],
    ] as const
    const LAYOUTS = [
      ['a route cache', 'mw'],
      ['a wrapped handler', 'wrap'],
      ['a global cache', 'global'],
    ] as const

    describe.each(COPY_FORMS)('called with %s of the request', (_form, copy) => {
      it.each(LAYOUTS)(
        'a router of it behind %s: its answer for admins is never replayed',
        async (_where, layout) => {
          const other = load()
          const plugin = other.Router()
          plugin.use((_req: any, res: any, next: any) => {
            res.set('x-admin', '1')
            next()
          })
          plugin.get('/report', (_req: any, res: any) => res.send('ADMIN-ONLY REPORT'))
          const app = express()
          const cache = cacheResponse({ ttl: 60, backend: memory() })
          const handler = (req: any, res: any, next: any) => {
            if (req.get('x-api-key') !== 'admin-key') return res.send('public report')
            plugin(copy(req), res, next)
          }
          if (layout === 'mw') app.get('/report', cache, handler)
          else if (layout === 'wrap') app.get('/report', cache(handler))
          else app.use(cache).get('/report', handler)
          const r = await serve(app)
          // The first request of the app, and one after it.
          for (const path of ['/report?first', '/report']) {
            const first = await r.request(path, admin)
            expect(text(first)).toBe('ADMIN-ONLY REPORT')
            expect(first.headers['cache-status']).toBe('@cache; fwd=uri-miss; detail=middleware-after-cache')
            expect(text(await r.request(path))).toBe('public report')
          }
        },
      )

      it('an app of it: its answer for admins is never replayed', async () => {
        const other = load()
        const plugin = other()
        plugin.get('/report', (_req: any, res: any) => res.send('ADMIN-ONLY REPORT'))
        const app = express()
        app.get('/report', cacheResponse({ ttl: 60, backend: memory() }), (req: any, res: any, next: any) => {
          if (req.get('x-api-key') !== 'admin-key') return res.send('public report')
          plugin(copy(req), res, next)
        })
        const r = await serve(app)
        await r.request('/report?warm')
        expect(text(await r.request('/report', admin))).toBe('ADMIN-ONLY REPORT')
        expect(text(await r.request('/report'))).toBe('public report')
      })
    })

    it('an app of it called with a request object built anew: its answer is never replayed', async () => {
      const other = load()
      const plugin = other()
      plugin.get('/report', (_req: any, res: any) => res.send('ADMIN-ONLY REPORT'))
      const app = express()
      app.get('/report', cacheResponse({ ttl: 60, backend: memory() }), (req: any, res: any, next: any) => {
        if (req.get('x-api-key') !== 'admin-key') return res.send('public report')
        const fresh: any = { url: '/report', method: req.method, headers: req.headers, socket: req.socket }
        plugin(fresh, res, next)
      })
      const r = await serve(app)
      await r.request('/report?warm')
      const first = await r.request('/report', admin)
      expect(text(first)).toBe('ADMIN-ONLY REPORT')
      expect(first.headers['cache-status']).toBe('@cache; fwd=uri-miss; detail=middleware-after-cache')
      expect(text(await r.request('/report'))).toBe('public report')
    })

    it('a route of it dispatched from a function: its guard is never skipped', async () => {
      const other = load()
      const app = express()
      app.use(cacheResponse({ backend: memory() }))
      const payroll: any = other.Router().route('/admin/payroll')
      payroll.get(guard, (_req: any, res: any) => res.json({ payroll: 'SECRET' }))
      app.use((req: any, res: any, next: any) => payroll.dispatch(req, res, next))
      const r = await serve(app)
      expect(text(await r.request('/admin/payroll', admin))).toBe('{"payroll":"SECRET"}')
      expect((await r.request('/admin/payroll')).status).toBe(401)
    })
  })

  it('a handler that reads the request and answers itself is stored as before', async () => {
    const app = express()
    let runs = 0
    app.get('/report', cacheResponse({ ttl: 60, backend: memory() }), (req: any, res: any) => {
      const { url, headers } = req
      res.send(`report ${++runs} for ${url} ${Object.keys(headers).length > 0}`)
    })
    const r = await serve(app)
    await r.request('/report?warm')
    expect((await r.request('/report')).headers['cache-status']).toBe('@cache; fwd=uri-miss; stored')
    const second = await r.request('/report')
    expect(isHit(second)).toBe(true)
    expect(text(second)).toBe('report 2 for /report true')
  })

  it('a copy of the request made before answering is not stored; one made once the response ended is', async () => {
    const app = express()
    const cache = cacheResponse({ ttl: 60, backend: memory() })
    const logged: unknown[] = []
    app.get('/before', cache, (req: any, res: any) => {
      logged.push({ ...req })
      res.send('before')
    })
    app.get('/after', cache, (req: any, res: any) => {
      res.send('after')
      logged.push({ ...req })
    })
    const r = await serve(app)
    await r.request('/before?warm')
    expect((await r.request('/before')).headers['cache-status']).toBe(
      '@cache; fwd=uri-miss; detail=middleware-after-cache',
    )
    expect((await r.request('/after')).headers['cache-status']).toBe('@cache; fwd=uri-miss; stored')
    expect(isHit(await r.request('/after'))).toBe(true)
    expect(logged.length).toBe(3)
  })

  it('routers of the same copy that answer nothing do not keep a global cache from storing', async () => {
    const app = express()
    app.use(cacheResponse({ backend: memory() }))
    app.use(express.Router())
    const api = express.Router()
    api.get('/other', (_req: any, res: any) => res.send('other'))
    app.use(api)
    app.use('/shop', express.Router())
    let runs = 0
    app.get('/shop/items', (_req: any, res: any) => res.send(`items ${++runs}`))
    const r = await serve(app)
    expect((await r.request('/shop/items')).headers['cache-status']).toBe('@cache; fwd=uri-miss; stored')
    const second = await r.request('/shop/items')
    expect(isHit(second)).toBe(true)
    expect(text(second)).toBe('items 1')
  })

  it('a cache in a router whose request falls through to the app still stores what the app answers', async () => {
    const app = express()
    const cached = express.Router()
    cached.use(cacheResponse({ backend: memory() }))
    app.use(cached)
    let runs = 0
    app.get('/items', (_req: any, res: any) => res.send(`items ${++runs}`))
    const r = await serve(app)
    expect((await r.request('/items')).headers['cache-status']).toBe('@cache; fwd=uri-miss; stored')
    expect(text(await r.request('/items'))).toBe('items 1')
  })
})
