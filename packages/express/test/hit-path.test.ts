/**
 * What a cached request's hit path reads cheaply must still be what Express resolves: the host
 * (Express's `trust proxy` function is asked only when `X-Forwarded-Host` is sent), and the caches
 * the request passed (kept in its dispatch state), which decide `nested-cache` and a cache
 * mounted twice.
 */
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, memory, type Reply, serveEach } from './http.js'

const serve = serveEach()
const text = (reply: Reply) => reply.body.toString()
const status = (reply: Reply) => String(reply.headers['cache-status'])

describe.each(EXPRESS)('%s', (_name, express) => {
  it.each([
    ['forwarded first', true],
    ['plain first', false],
  ])(
    'under trust proxy, a request with X-Forwarded-Host and one without keep their own entries (%s)',
    async (_order, forwardedFirst) => {
      const app = express()
      app.set('trust proxy', (address: string) => address === '127.0.0.1')
      app.get('/link', cacheResponse({ backend: memory() }), (req: any, res: any) => {
        res.send(`https://${req.hostname}/next`)
      })
      const r = await serve(app)
      const forwarded = { headers: { host: 'in.test', 'x-forwarded-host': 'shop.test' } }
      const plain = { headers: { host: 'in.test' } }
      const order = forwardedFirst
        ? [forwarded, plain, forwarded, plain]
        : [plain, forwarded, plain, forwarded]
      const bodies = []
      const statuses = []
      for (const options of order) {
        const reply = await r.request('/link', options)
        bodies.push(text(reply))
        statuses.push(status(reply).includes('hit'))
      }
      const expected = (options: typeof plain) =>
        options === forwarded ? 'https://shop.test/next' : 'https://in.test/next'
      expect(bodies).toEqual(order.map(expected))
      // Both are stored: each repeat is a hit of its own entry.
      expect(statuses).toEqual([false, false, true, true])
    },
  )

  it('an X-Forwarded-Host from a peer the trust proxy function refuses keys on Host', async () => {
    const app = express()
    app.set('trust proxy', (address: string) => address === '10.0.0.1')
    app.get('/link', cacheResponse({ backend: memory() }), (req: any, res: any) => {
      res.send(`https://${req.hostname}/next`)
    })
    const r = await serve(app)
    await r.request('/link', { headers: { host: 'in.test' } })
    const spoofed = await r.request('/link', {
      headers: { host: 'in.test', 'x-forwarded-host': 'evil.test' },
    })
    expect(text(spoofed)).toBe('https://in.test/next')
    expect(status(spoofed)).toMatch(/hit/)
  })

  it('a route cache of the same entries behind a guard after a global one stores nothing, on every request', async () => {
    const backend = memory()
    const app = express()
    app.use(cacheResponse({ backend }))
    let runs = 0
    const guard = (req: any, res: any, next: any) =>
      req.get('x-api-key') === 'k' ? next() : res.status(401).send('no')
    app.get('/admin', guard, cacheResponse({ backend }), (_req: any, res: any) => res.send(`run ${++runs}`))
    const r = await serve(app)
    const key = { headers: { 'x-api-key': 'k' } }
    for (let i = 1; i <= 3; i++) {
      const reply = await r.request('/admin', key)
      expect(text(reply)).toBe(`run ${i}`)
      expect(status(reply)).toMatch(/middleware-after-cache|nested-cache/)
    }
    expect((await r.request('/admin')).status).toBe(401)
  })

  it('two caches of the same entries with nothing between them: the second request is a hit', async () => {
    const backend = memory()
    const app = express()
    const outer = cacheResponse({ backend })
    const inner = cacheResponse({ backend, ttl: 30 })
    app.use(outer)
    let runs = 0
    app.get('/page', inner, (_req: any, res: any) => res.send(`run ${++runs}`))
    const r = await serve(app)
    expect(text(await r.request('/page'))).toBe('run 1')
    const hit = await r.request('/page')
    expect(text(hit)).toBe('run 1')
    expect(status(hit)).toMatch(/hit/)
    expect(outer.stats.hits + inner.stats.hits).toBe(1)
  })

  it('a router entered with a request derived from the cached one (Object.create(req)) after a global cache: nothing stored', async () => {
    const app = express()
    app.use(cacheResponse({ backend: memory() }))
    const inner = express.Router()
    inner.use((req: any, res: any, next: any) =>
      req.get('x-api-key') === 'k' ? next() : res.status(401).send('no'),
    )
    let runs = 0
    inner.get('/x', (_req: any, res: any) => res.send(`run ${++runs}`))
    app.use((req: any, res: any, next: any) => inner(Object.create(req), res, next))
    const r = await serve(app)
    const key = { headers: { 'x-api-key': 'k' } }
    expect(text(await r.request('/x', key))).toBe('run 1')
    const again = await r.request('/x', key)
    expect(text(again)).toBe('run 2')
    expect(status(again)).not.toMatch(/hit|stored/)
    expect((await r.request('/x')).status).toBe(401)
  })

  describe.each([
    ['url and originalUrl', true],
    ['url only', false],
  ])(
    'a handler re-dispatching a copy of req (Object.assign(Object.create(req), req)) with another %s through the app to a guarded route',
    (_how, both) => {
      const derive = (req: any, to: string) => {
        const r = Object.assign(Object.create(req), req)
        r.url = to
        if (both) r.originalUrl = to
        return r
      }
      const guard = (req: any, res: any, next: any) =>
        req.get('x-api-key') === 'secret' ? next() : res.sendStatus(401)
      const forward = (target: any, to: string) => (req: any, res: any, next: any) => {
        const r = derive(req, to)
        target.handle(r, res, next)
      }
      const key = { headers: { 'x-api-key': 'secret' } }
      const check = async (app: any, path: string) => {
        const r = await serve(app)
        await r.request('/open')
        await r.request('/open')
        const first = await r.request(path, key)
        expect(text(first)).toBe('report')
        expect(status(first)).toMatch(/detail=(middleware-after-cache|next)/)
        expect((await r.request(path)).status).toBe(401)
      }

      it('cache as route middleware, as handler wrapper, as global middleware', async () => {
        for (const layout of ['route', 'wrapper', 'global']) {
          const app = express()
          const cache = cacheResponse({ backend: memory() })
          if (layout === 'global') app.use(cache)
          app.get('/legacy/report', guard, (_req: any, res: any) => res.send('report'))
          const h = forward(app, '/legacy/report')
          if (layout === 'route') app.get('/report', cache, h)
          else if (layout === 'wrapper') app.get('/report', cache(h))
          else app.get('/report', h)
          app.get(
            '/open',
            layout === 'global' ? (_req: any, res: any) => res.send('open') : cache,
            (_req: any, res: any) => res.send('open'),
          )
          await check(app, '/report')
        }
      })

      it('into a sub-app guarded by its own use()', async () => {
        const app = express()
        const sub = express()
        sub.use(guard)
        sub.get('/report', (_req: any, res: any) => res.send('report'))
        const cache = cacheResponse({ backend: memory() })
        app.get('/report', cache, forward(sub, '/report'))
        app.get('/open', cache, (_req: any, res: any) => res.send('open'))
        await check(app, '/report')
      })
    },
  )

  it('the same cache mounted twice on a route runs through the second time and stores once', async () => {
    const app = express()
    const cache = cacheResponse({ backend: memory() })
    let runs = 0
    app.get('/twice', cache, cache, (_req: any, res: any) => res.send(`run ${++runs}`))
    const r = await serve(app)
    expect(text(await r.request('/twice'))).toBe('run 1')
    expect(text(await r.request('/twice'))).toBe('run 1')
    expect(cache.stats.sets).toBe(1)
    expect(cache.stats.hits).toBe(1)
  })
})
