import { createServer } from 'node:http'
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, memory, serveEach } from './http.js'

const serve = serveEach()

describe.each(EXPRESS)('%s: HEAD with a cache before the routes', (_name, express) => {
  it("answers HEAD with the app's own HEAD route, not from the GET entry", async () => {
    const app = express()
    app.use(cacheResponse({ ttl: 60, backend: memory() }))
    app.head('/doc', (_req: any, res: any) => {
      res.status(403).set('x-head', 'denied').end()
    })
    app.get('/doc', (_req: any, res: any) => res.send('public doc'))
    const r = await serve(app)
    expect((await r.request('/doc', { method: 'HEAD' })).status).toBe(403)
    await r.request('/doc')
    expect((await r.request('/doc')).headers['cache-status']).toMatch(/hit/)
    const head = await r.request('/doc', { method: 'HEAD' })
    expect(head.status).toBe(403)
    expect(head.headers['x-head']).toBe('denied')
  })

  it('answers HEAD from the GET entry when the HEAD route comes after the GET route (Express routes HEAD to GET)', async () => {
    const app = express()
    app.use(cacheResponse({ ttl: 60, backend: memory() }))
    let runs = 0
    app.get('/doc', (_req: any, res: any) => res.send(`public doc ${++runs}`))
    app.head('/doc', (_req: any, res: any) => {
      res.status(403).end()
    })
    const r = await serve(app)
    await r.request('/doc')
    const head = await r.request('/doc', { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers['cache-status']).toMatch(/hit/)
    expect(runs).toBe(1)
  })

  it('answers HEAD from the GET entry when a HEAD route exists for another path only', async () => {
    const app = express()
    app.use(cacheResponse({ ttl: 60, backend: memory() }))
    app.head('/other', (_req: any, res: any) => {
      res.status(403).end()
    })
    app.get('/doc', (_req: any, res: any) => res.send('public doc'))
    const r = await serve(app)
    await r.request('/doc')
    const head = await r.request('/doc', { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers['cache-status']).toMatch(/hit/)
  })

  it('answers HEAD with the app when its path reaches a sub-app with a HEAD route of its own', async () => {
    const app = express()
    app.use(cacheResponse({ ttl: 60, backend: memory() }))
    const docs = express()
    docs.head('/:id', (_req: any, res: any) => {
      res.status(403).set('x-head', 'denied').end()
    })
    docs.get('/:id', (_req: any, res: any) => res.send('public doc'))
    app.use('/docs', docs)
    const r = await serve(app)
    await r.request('/docs/1')
    expect((await r.request('/docs/1')).headers['cache-status']).toMatch(/hit/)
    const head = await r.request('/docs/1', { method: 'HEAD' })
    expect(head.status).toBe(403)
    expect(head.headers['x-head']).toBe('denied')
  })

  it('answers HEAD with a HEAD route of a mounted router', async () => {
    const app = express()
    app.use(cacheResponse({ ttl: 60, backend: memory() }))
    const docs = express.Router()
    docs.head('/:id', (_req: any, res: any) => {
      res.status(403).end()
    })
    docs.get('/:id', (req: any, res: any) => res.send(`doc ${req.params.id}`))
    app.use('/docs', docs)
    const r = await serve(app)
    await r.request('/docs/1')
    expect((await r.request('/docs/1')).headers['cache-status']).toMatch(/hit/)
    expect((await r.request('/docs/1', { method: 'HEAD' })).status).toBe(403)
  })

  it.each(['get', 'all'] as const)(
    'answers HEAD with the HEAD handler of a router used as the handler of app.%s',
    async (method) => {
      const app = express()
      app.use(cacheResponse({ ttl: 60, backend: memory() }))
      const inner = express.Router()
      inner.head('/b', (_req: any, res: any) => {
        res.set('x-who', 'router-head').end()
      })
      inner.get('/b', (_req: any, res: any) => res.set('x-who', 'router-get').send('body'))
      app[method]('/b', inner)
      const r = await serve(app)
      await r.request('/b')
      expect((await r.request('/b')).headers['cache-status']).toMatch(/hit/)
      // Before: a hit replaying the GET handler's headers.
      expect((await r.request('/b', { method: 'HEAD' })).headers['x-who']).toBe('router-head')
    },
  )
})

describe.each(EXPRESS)('%s: HEAD at cache.front(app) with frontSkipsAllMiddleware', (_name, express) => {
  it("answers HEAD with the app's own HEAD route, not from the GET entry", async () => {
    const cache = cacheResponse({ ttl: 60, backend: memory(), frontSkipsAllMiddleware: true })
    const app = express()
    app.head('/doc', (_req: any, res: any) => {
      res.status(403).set('x-head', 'denied').end()
    })
    app.get('/doc', cache, (_req: any, res: any) => res.send('public doc'))
    app.get('/other', cache, (_req: any, res: any) => res.send('other doc'))
    const listener = cache.front(app)
    const r = await serve({ listen: (...args: any[]) => createServer(listener).listen(...args) })
    await r.request('/doc')
    expect((await r.request('/doc')).headers['cache-status']).toMatch(/hit/)
    const head = await r.request('/doc', { method: 'HEAD' })
    expect(head.status).toBe(403)
    expect(head.headers['x-head']).toBe('denied')
    // A path without a HEAD route of its own is still answered from its GET entry.
    await r.request('/other')
    const other = await r.request('/other', { method: 'HEAD' })
    expect(other.status).toBe(200)
    expect(other.headers['cache-status']).toMatch(/hit/)
  })

  it('answers HEAD with the HEAD handler of a router used as a route handler', async () => {
    const cache = cacheResponse({ ttl: 60, backend: memory(), frontSkipsAllMiddleware: true })
    const app = express()
    app.use(cache)
    const inner = express.Router()
    inner.head('/b', (_req: any, res: any) => {
      res.set('x-who', 'router-head').end()
    })
    inner.get('/b', (_req: any, res: any) => res.set('x-who', 'router-get').send('body'))
    app.get('/b', inner)
    const listener = cache.front(app)
    const r = await serve({ listen: (...args: any[]) => createServer(listener).listen(...args) })
    await r.request('/b')
    expect((await r.request('/b')).headers['cache-status']).toMatch(/hit/)
    // Before: a hit replaying the GET handler's headers.
    expect((await r.request('/b', { method: 'HEAD' })).headers['x-who']).toBe('router-head')
  })
})
