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
