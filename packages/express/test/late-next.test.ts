/**
 * `next(error)` or `next()` called by a function after the cache once the response was sent and
 * stored (a callback-style audit write that fails, a deferred `next`): an error handler or a later
 * route ran, which a hit would skip, so the entry is removed again (counted in `stats.deletes`).
 */
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, memory, type Reply, serveEach } from './http.js'

const serve = serveEach()
const status = (reply: Reply) => String(reply.headers['cache-status'])
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe.each(EXPRESS)('a late next after the response on %s', (_name, express) => {
  const LAYOUTS = [
    ['next(error) 20 ms later, cache as middleware', 'mw', 'error'],
    ['next(error) 20 ms later, cache as wrapper', 'wrap', 'error'],
    ['next() 20 ms later, cache as middleware', 'mw', 'next'],
    ['next() on setImmediate, cache as wrapper', 'wrap', 'immediate'],
  ] as const

  it.each(LAYOUTS)(
    '%s: the entry is removed, the next request runs the handler',
    async (_title, layout, late) => {
      const app = express()
      const cache = cacheResponse({ ttl: 60, backend: memory() })
      let runs = 0
      const seen: string[] = []
      const handler = (_req: any, res: any, next: any) => {
        res.json({ n: ++runs })
        if (late === 'error') setTimeout(() => next(new Error('audit write failed')), 20)
        else if (late === 'next') setTimeout(() => next(), 20)
        else setImmediate(next)
      }
      if (layout === 'mw') app.get('/x', cache, handler)
      else app.get('/x', cache(handler))
      app.get('/x', (_req: any, _res: any, next: any) => {
        seen.push('later route')
        next()
      })
      app.use((err: any, _req: any, res: any, next: any) => {
        seen.push(`error handler: ${err.message}`)
        if (res.headersSent) return next(err)
        res.status(500).end()
      })
      const r = await serve(app)
      await r.request('/x')
      await sleep(100)
      expect(seen.length).toBeGreaterThan(0)
      const second = await r.request('/x')
      expect(second.body.toString()).toBe('{"n":2}')
      expect(status(second)).not.toMatch(/hit/)
      expect(cache.stats.deletes).toBeGreaterThanOrEqual(1)
    },
  )
})

/**
 * The router's own `next`, as Express hands it out on the request (`req.next`, `res.req.next`) and
 * calls it itself (`res.sendFile` keeps it from the call, `res.render` reads it in its callback):
 * called once the response was stored, it passes the request on all the same.
 */
describe.each(EXPRESS)('a late req.next after the response on %s', (_name, express) => {
  const LATE = [
    ['req.next(error) 20 ms later, cache as middleware', 'mw', (req: any) => req.next(new Error('late'))],
    ['req.next(error) 20 ms later, cache as wrapper', 'wrap', (req: any) => req.next(new Error('late'))],
    ['res.req.next() 20 ms later, cache as middleware', 'mw', (_req: any, res: any) => res.req.next()],
    [
      'res.req.next(error) 20 ms later, cache as wrapper',
      'wrap',
      (_req: any, res: any) => res.req.next(new Error('late')),
    ],
    ["req.next('router') 20 ms later, cache as middleware", 'mw', (req: any) => req.next('router')],
  ] as const

  it.each(LATE)(
    '%s: the entry is removed, the next request runs the handler',
    async (_title, layout, late) => {
      const app = express()
      const cache = cacheResponse({ ttl: 60, backend: memory() })
      let runs = 0
      const seen: string[] = []
      const handler = (req: any, res: any) => {
        res.json({ n: ++runs })
        setTimeout(() => late(req, res), 20)
      }
      if (layout === 'mw') app.get('/x', cache, handler)
      else app.get('/x', cache(handler))
      app.use((_req: any, _res: any, next: any) => {
        seen.push('later middleware')
        next()
      })
      app.use((err: any, _req: any, res: any, next: any) => {
        seen.push(`error handler: ${err.message}`)
        if (res.headersSent) return next(err)
        res.status(500).end()
      })
      const r = await serve(app)
      await r.request('/x?warm')
      for (let i = 0; i < 2; i++) {
        const first = await r.request('/x')
        expect(first.body.toString()).toBe(`{"n":${2 + 2 * i}}`)
        expect(status(first)).toMatch(/stored/)
        await sleep(100)
        const second = await r.request('/x')
        expect(second.body.toString()).toBe(`{"n":${3 + 2 * i}}`)
        expect(status(second)).not.toMatch(/hit/)
        await sleep(100)
      }
      expect(cache.stats.deletes).toBeGreaterThanOrEqual(2)
    },
  )

  it.each([
    ['with an error handler after the route', true],
    ["with only Express's final handler after it", false],
  ])(
    'req.next kept from the call, as res.sendFile keeps it, called later with an error %s: the entry is removed',
    async (_title, errorHandler) => {
      const app = express()
      const cache = cacheResponse({ ttl: 60, backend: memory() })
      let runs = 0
      let errors = 0
      app.get('/x', cache, (req: any, res: any) => {
        const next = req.next
        res.json({ n: ++runs })
        setTimeout(() => next(new Error('the file went away')), 20)
      })
      if (errorHandler)
        app.use((err: any, _req: any, _res: any, next: any) => {
          errors++
          next(err)
        })
      // Express's final handler logs an error it is handed: a quiet one for the test.
      app.set('env', 'test')
      const r = await serve(app)
      await r.request('/x?warm')
      expect(status(await r.request('/x'))).toMatch(/stored/)
      await sleep(100)
      const second = await r.request('/x')
      expect(second.body.toString()).toBe('{"n":3}')
      expect(status(second)).not.toMatch(/hit/)
      if (errorHandler) expect(errors).toBeGreaterThanOrEqual(1)
    },
  )

  it('req.next() with nothing after the route (the final 404 handler): the entry is removed', async () => {
    const app = express()
    const cache = cacheResponse({ ttl: 60, backend: memory() })
    let runs = 0
    app.get('/x', cache, (req: any, res: any) => {
      res.json({ n: ++runs })
      setTimeout(() => req.next(), 20)
    })
    const r = await serve(app)
    await r.request('/x?warm')
    expect(status(await r.request('/x'))).toMatch(/stored/)
    await sleep(100)
    const second = await r.request('/x')
    expect(second.body.toString()).toBe('{"n":3}')
    expect(status(second)).not.toMatch(/hit/)
  })

  it('a response nothing calls next for after it was stored stays stored', async () => {
    const app = express()
    const cache = cacheResponse({ ttl: 60, backend: memory() })
    let runs = 0
    app.get('/x', cache, (req: any, res: any) => {
      res.json({ n: ++runs })
      // Read, never called.
      setTimeout(() => void req.next, 20)
    })
    app.use((_req: any, res: any) => res.status(404).end())
    const r = await serve(app)
    await r.request('/x?warm')
    expect(status(await r.request('/x'))).toMatch(/stored/)
    await sleep(100)
    const second = await r.request('/x')
    expect(second.body.toString()).toBe('{"n":2}')
    expect(status(second)).toMatch(/hit/)
    expect(cache.stats.deletes).toBe(0)
  })
})

describe.each(EXPRESS)('a late req.next in a mounted router or sub-app on %s', (_name, express) => {
  it.each([
    ['router', 'a route cache'],
    ['sub-app', 'a route cache'],
    ['router', 'a global cache of the app'],
  ] as const)('in a %s behind %s: the entry is removed', async (mount, where) => {
    const app = express()
    app.set('env', 'test')
    const cache = cacheResponse({ ttl: 60, backend: memory() })
    const inner: any = mount === 'router' ? express.Router() : express()
    let runs = 0
    const handler = (req: any, res: any) => {
      res.json({ n: ++runs })
      setTimeout(() => req.next(new Error('late')), 20)
    }
    if (where === 'a route cache') inner.get('/x', cache, handler)
    else {
      app.use(cache)
      inner.get('/x', handler)
    }
    app.use('/api', inner)
    const r = await serve(app)
    await r.request('/api/x?warm')
    expect(status(await r.request('/api/x'))).toMatch(/stored/)
    await sleep(100)
    const second = await r.request('/api/x')
    expect(second.body.toString()).toBe('{"n":3}')
    expect(status(second)).not.toMatch(/hit/)
  })
})
