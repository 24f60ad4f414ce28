/**
 * A header that middleware before the cache sets on every request and that a handler removes:
 * a hit sends what the miss sent (the middleware runs again on hits), over real HTTP.
 */
import { memoryBackend } from '@cache/memory'
import type { HttpBindings } from '@hono/node-server'
import { Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import { type CacheResponseOptions, cacheResponse } from '../src/index.js'
import { get, listen } from './serve.js'

describe('a header set before the cache and removed by the handler', () => {
  function defaultsApp(options: Partial<CacheResponseOptions> = {}) {
    let runs = 0
    const app = new Hono()
    app.use('*', async (c, next) => {
      c.header('X-Robots-Tag', 'noindex')
      c.header('Cache-Control', 'no-store')
      await next()
    })
    const handler = (c: any) => {
      c.header('X-Robots-Tag', undefined)
      c.header('Cache-Control', undefined)
      return c.text(`public page ${++runs}`)
    }
    app.get('/plain', handler)
    app.get('/page', cacheResponse({ ttl: 60, backend: memoryBackend(), ...options }), handler)
    return app
  }

  it('does not come back on hits (X-Robots-Tag: noindex, Cache-Control: no-store)', async () => {
    const base = await listen(defaultsApp())
    const plain = await get(base, '/plain')
    expect(plain.headers['x-robots-tag']).toBeUndefined()
    expect(plain.headers['cache-control']).toBeUndefined()
    const miss = await get(base, '/page')
    expect(miss.headers['x-robots-tag']).toBeUndefined()
    const hit = await get(base, '/page')
    expect(String(hit.headers['cache-status'])).toMatch(/hit/)
    expect(hit.body.toString()).toBe('public page 2')
    expect(hit.headers['x-robots-tag']).toBeUndefined()
    expect(hit.headers['cache-control']).toBeUndefined()
    const revalidated = await get(base, '/page', 'GET', { 'if-none-match': String(hit.headers.etag) })
    expect(revalidated.status).toBe(304)
    expect(revalidated.headers['x-robots-tag']).toBeUndefined()
  })

  it("set by a layer on Node's response (c.env.outgoing) and removed there by the handler: not on hits either", async () => {
    const app = new Hono<{ Bindings: HttpBindings }>()
    app.use('*', async (c, next) => {
      c.env.outgoing.setHeader('X-Robots-Tag', 'noindex')
      await next()
    })
    let runs = 0
    app.get('/page', cacheResponse({ ttl: 60, backend: memoryBackend() }), (c) => {
      c.env.outgoing.removeHeader('X-Robots-Tag')
      return c.text(`public page ${++runs}`)
    })
    const base = await listen(app)
    expect((await get(base, '/page')).headers['x-robots-tag']).toBeUndefined()
    const hit = await get(base, '/page')
    expect(String(hit.headers['cache-status'])).toMatch(/hit/)
    // Before: noindex on every hit.
    expect(hit.headers['x-robots-tag']).toBeUndefined()
  })

  it('the cacheControl option offers its Cache-Control on hits as on the miss', async () => {
    const base = await listen(defaultsApp({ cacheControl: true }))
    const miss = await get(base, '/page')
    expect(miss.headers['cache-control']).toMatch(/max-age/)
    const hit = await get(base, '/page')
    expect(String(hit.headers['cache-status'])).toMatch(/hit/)
    expect(hit.headers['cache-control']).toBe(miss.headers['cache-control'])
  })
})
