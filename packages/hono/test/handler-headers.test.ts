/**
 * Headers the handler sets or removes are its own, whatever a layer before the cache had set on
 * the miss: a hit sends what the app would send that client, over real HTTP.
 */
import { memoryBackend } from '@cache/memory'
import type { HttpBindings } from '@hono/node-server'
import { type Context, Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { get, listen } from './serve.js'

type Env = { Bindings: HttpBindings }
type Handler = (c: Context<Env>) => Response | Promise<Response>

/** i18n before the cache: the client's language, on every request, as `set` puts it. */
function frenchOnly(set: 'c.header' | 'outgoing' | 'c.res', handler: Handler) {
  const app = new Hono<Env>()
  app.use('*', async (c, next) => {
    const lang = (c.req.header('accept-language') ?? 'en').slice(0, 2)
    if (set === 'c.header') c.header('Content-Language', lang)
    else if (set === 'outgoing') c.env.outgoing.setHeader('Content-Language', lang)
    // As hono/cors does: on `c.res`, whose headers Hono sets over those the handler returns.
    else c.res.headers.set('Content-Language', lang)
    await next()
  })
  app.get('/plain', handler)
  app.get('/fr-only', cacheResponse({ ttl: 60, backend: memoryBackend() }), handler)
  return app
}

async function frThenEn(app: Hono<Env>, path = '/fr-only') {
  const base = await listen(app)
  const miss = await get(base, path, 'GET', { 'accept-language': 'fr' })
  const hit = await get(base, path, 'GET', { 'accept-language': 'en' })
  expect(String(hit.headers['cache-status'])).toMatch(/hit/)
  return { base, miss, hit }
}

describe('a header the handler sets to the value a layer before the cache had set on the miss', () => {
  it('is replayed (c.header in the handler, c.header before the cache)', async () => {
    const { miss, hit } = await frThenEn(
      frenchOnly('c.header', (c) => {
        c.header('Content-Language', 'fr')
        return c.html('<p>Bonjour</p>')
      }),
    )
    expect(miss.headers['content-language']).toBe('fr')
    expect(hit.headers['content-language']).toBe('fr')
  })

  it('is replayed (headers given to c.html, c.header before the cache)', async () => {
    const { miss, hit } = await frThenEn(
      frenchOnly('c.header', (c) => c.html('<p>Bonjour</p>', 200, { 'Content-Language': 'fr' })),
    )
    expect(miss.headers['content-language']).toBe('fr')
    expect(hit.headers['content-language']).toBe('fr')
  })

  it('is replayed (c.env.outgoing.setHeader in the handler and before the cache)', async () => {
    const { miss, hit } = await frThenEn(
      frenchOnly('outgoing', (c) => {
        c.env.outgoing.setHeader('Content-Language', 'fr')
        return c.html('<p>Bonjour</p>')
      }),
    )
    expect(miss.headers['content-language']).toBe('fr')
    expect(hit.headers['content-language']).toBe('fr')
  })

  it("stays the layer's where Hono sets the layer's over the handler's (c.res before the cache), as without the cache", async () => {
    const { base, hit } = await frThenEn(
      frenchOnly('c.res', (c) => c.html('<p>Bonjour</p>', 200, { 'Content-Language': 'fr' })),
    )
    const plain = await get(base, '/plain', 'GET', { 'accept-language': 'en' })
    expect(plain.headers['content-language']).toBe('en')
    expect(hit.headers['content-language']).toBe('en')
  })
})

describe('a Response the handler builds itself from one the Context made', () => {
  it("does not make the layers' headers it copied the handler's (a request id)", async () => {
    const app = new Hono<Env>()
    let id = 0
    app.use('*', async (c, next) => {
      c.header('X-Request-Id', `req-${++id}`)
      await next()
    })
    app.get('/page', cacheResponse({ ttl: 60, backend: memoryBackend() }), (c) => {
      const made = c.text('page')
      return new Response(made.body, made)
    })
    const base = await listen(app)
    const miss = await get(base, '/page')
    expect(miss.headers['x-request-id']).toBe('req-1')
    const hit = await get(base, '/page')
    expect(String(hit.headers['cache-status'])).toMatch(/hit/)
    expect(hit.headers['x-request-id']).toBe('req-2')
  })
})

describe('a header the handler removes that was not there on the miss', () => {
  /** A layer before the cache adds a debug header for some clients only. */
  function debugApp(on: 'c.header' | 'outgoing') {
    const app = new Hono<Env>()
    app.use('*', async (c, next) => {
      if (c.req.header('x-debug') !== undefined) {
        if (on === 'c.header') c.header('X-Debug-Backend', 'node-7')
        else c.env.outgoing.setHeader('X-Debug-Backend', 'node-7')
      }
      await next()
    })
    app.get('/page', cacheResponse({ ttl: 60, backend: memoryBackend() }), (c) => {
      if (on === 'c.header') c.header('X-Debug-Backend', undefined)
      else c.env.outgoing.removeHeader('X-Debug-Backend')
      return c.text('page')
    })
    return app
  }

  it.each(['c.header', 'outgoing'] as const)('is removed on hits too (%s)', async (on) => {
    const base = await listen(debugApp(on))
    const miss = await get(base, '/page')
    expect(miss.headers['x-debug-backend']).toBeUndefined()
    const hit = await get(base, '/page', 'GET', { 'x-debug': '1' })
    expect(String(hit.headers['cache-status'])).toMatch(/hit/)
    expect(hit.headers['x-debug-backend']).toBeUndefined()
  })
})
