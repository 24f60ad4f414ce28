import { createServer, type RequestListener } from 'node:http'
import { defineBackend } from '@cache/core'
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, memory, request, serveEach } from './http.js'

const serve = serveEach()

/** A node:http server whose listener is `cache.front(app)`, as a user would run it. */
async function listenFront(listener: RequestListener): Promise<number> {
  return (await serve({ listen: (...args: any[]) => createServer(listener).listen(...args) })).port
}

describe.each(EXPRESS)('cache.front(app) on %s, by default', (_name, express) => {
  function guarded() {
    const cache = cacheResponse({ ttl: 60, backend: memory() })
    const app = express()
    const requireApiKey = (req: any, res: any, next: any) => {
      if (req.get('x-api-key') !== 'admin-key') return res.status(401).json({ error: 'api key required' })
      next()
    }
    app.get('/admin/report', requireApiKey, cache, (_req: any, res: any) => res.json({ revenue: 1_000_000 }))
    return { cache, app }
  }

  it('never replays past a route guard: an admin fills the cache, an anonymous client still gets 401', async () => {
    const { cache, app } = guarded()
    const port = await listenFront(cache.front(app))
    const admin = await request(port, '/admin/report', { headers: { 'x-api-key': 'admin-key' } })
    expect(admin.status).toBe(200)
    const anonymous = await request(port, '/admin/report')
    expect(anonymous.status).toBe(401)
    expect(anonymous.body.toString()).not.toContain('revenue')
    // The entry still serves requests that pass the guard, through the middleware.
    const again = await request(port, '/admin/report', { headers: { 'x-api-key': 'admin-key' } })
    expect(again.headers['cache-status']).toMatch(/hit/)
  })

  it('never replays past app-level middleware either', async () => {
    const cache = cacheResponse({ ttl: 60, backend: memory() })
    const app = express()
    let seen = 0
    app.use((_req: any, res: any, next: any) => {
      seen++
      res.set('access-control-allow-origin', 'https://shop.example')
      next()
    })
    app.get('/items', cache, (_req: any, res: any) => res.json([1]))
    const port = await listenFront(cache.front(app))
    await request(port, '/items')
    const hit = await request(port, '/items')
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(hit.headers['access-control-allow-origin']).toBe('https://shop.example')
    expect(seen).toBe(2)
  })
})

describe.each(EXPRESS)('cache.front(app) on %s, with frontSkipsAllMiddleware', (_name, express) => {
  function setup(options: Parameters<typeof cacheResponse>[0] = {}) {
    const backend = memory()
    const cache = cacheResponse({ ttl: 60, backend, frontSkipsAllMiddleware: true, ...(options as object) })
    const app = express()
    const seen = { app: 0, handler: 0 }
    app.use((_req: any, res: any, next: any) => {
      seen.app++
      res.setHeader('x-app-middleware', 'ran')
      next()
    })
    app.get('/items', cache, (_req: any, res: any) => {
      seen.handler++
      res.json({ items: [1, 2, 3] })
    })
    app.get('/private', cache, (_req: any, res: any) => {
      seen.handler++
      res.setHeader('set-cookie', 'session=abc')
      res.json({ secret: true })
    })
    app.post('/items', (_req: any, res: any) => {
      seen.handler++
      res.json({ posted: true })
    })
    return { cache, app, seen, backend }
  }

  it('answers a fresh hit before the app runs, byte for byte, with the cache headers', async () => {
    const { cache, app, seen } = setup()
    const port = await listenFront(cache.front(app))
    const miss = await request(port, '/items?b=2&a=1')
    expect(miss.headers['cache-status']).toBe('@cache; fwd=uri-miss; stored')
    expect(seen).toEqual({ app: 1, handler: 1 })
    const hit = await request(port, '/items?a=1&b=2')
    expect(seen).toEqual({ app: 1, handler: 1 })
    expect(hit.status).toBe(200)
    expect(hit.body.equals(miss.body)).toBe(true)
    expect(hit.headers['cache-status']).toMatch(/^@cache; hit; ttl=/)
    expect(hit.headers.age).toBe('0')
    expect(hit.headers['content-type']).toBe(miss.headers['content-type'])
    expect(hit.headers.etag).toBe(miss.headers.etag)
    expect(cache.stats.hits).toBe(1)
    const notModified = await request(port, '/items?a=1&b=2', {
      headers: { 'if-none-match': String(miss.headers.etag) },
    })
    expect(notModified.status).toBe(304)
    expect(notModified.body.length).toBe(0)
    const head = await request(port, '/items?a=1&b=2', { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers['content-length']).toBe(String(miss.body.length))
    expect(seen.handler).toBe(1)
  })

  it('hands misses, other methods, credentials and forwarded hosts and protocols to the app', async () => {
    const { cache, app, seen } = setup()
    const port = await listenFront(cache.front(app))
    await request(port, '/items')
    await request(port, '/items', { method: 'POST' })
    expect(seen.handler).toBe(2)
    const withAuth = await request(port, '/items', { headers: { authorization: 'Bearer x' } })
    expect(withAuth.headers['x-app-middleware']).toBe('ran')
    const withCookie = await request(port, '/items', { headers: { cookie: 'a=b' } })
    expect(withCookie.headers['x-app-middleware']).toBe('ran')
    const forwarded = await request(port, '/items', { headers: { 'x-forwarded-host': 'evil.example' } })
    expect(forwarded.headers['x-app-middleware']).toBe('ran')
    const proto = await request(port, '/items', { headers: { 'x-forwarded-proto': 'https' } })
    expect(proto.headers['x-app-middleware']).toBe('ran')
    expect(seen.app).toBe(6)
  })

  it('never replays a response that the middleware would not store', async () => {
    const { cache, app, seen } = setup()
    const port = await listenFront(cache.front(app))
    const first = await request(port, '/private')
    const second = await request(port, '/private')
    expect(first.headers['set-cookie']).toBeDefined()
    expect(second.headers['set-cookie']).toBeDefined()
    expect(seen.handler).toBe(2)
  })

  it('keeps hosts apart: an entry of one Host is not served to another', async () => {
    const { cache, app, seen } = setup()
    const port = await listenFront(cache.front(app))
    await request(port, '/items', { headers: { host: 'a.example' } })
    await request(port, '/items', { headers: { host: 'b.example' } })
    expect(seen.handler).toBe(2)
    await request(port, '/items', { headers: { host: 'a.example' } })
    expect(seen.handler).toBe(2)
  })

  it('respects invalidation and expiry', async () => {
    const { cache, app, seen } = setup({ ttl: '200ms' })
    const port = await listenFront(cache.front(app))
    await request(port, '/items')
    await request(port, '/items')
    expect(seen.handler).toBe(1)
    await cache.clear()
    await request(port, '/items')
    expect(seen.handler).toBe(2)
    await new Promise((resolve) => setTimeout(resolve, 250))
    await request(port, '/items')
    expect(seen.handler).toBe(3)
  })

  it('passes every request to the app when the backend is not in-process', async () => {
    const map = new Map<string, unknown>()
    const remote = defineBackend({
      get: async (k) => map.get(k) as never,
      set: async (k, v) => void map.set(k, v),
      delete: async (k) => map.delete(k),
      clear: async () => map.clear(),
    })
    const cache = cacheResponse({ ttl: 60, backend: remote })
    const app = express()
    let appCalls = 0
    app.use((_req: any, _res: any, next: any) => {
      appCalls++
      next()
    })
    app.get('/x', cache, (_req: any, res: any) => res.send('x'))
    const port = await listenFront(cache.front(app))
    await request(port, '/x')
    const hit = await request(port, '/x')
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(appCalls).toBe(2)
  })
})
