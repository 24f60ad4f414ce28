import { CacheConfigError, CacheUnavailableError, defineBackend, invalidateTags } from '@cache/core'
import express from 'express'
import { describe, expect, it } from 'vitest'
import { cache, cacheResponse, invalidateResponse, invalidateResponsePrefix } from '../src/index.js'
import { decoratorArity, legacyController } from './fixtures/legacy/controller.js'
import { bytesBackend, EXPRESS, memory, serveEach } from './http.js'

const serve = serveEach()

describe('as a handler wrapper and a decorator', () => {
  it('wraps a handler', async () => {
    const app = express()
    let calls = 0
    app.get(
      '/w',
      cacheResponse({ backend: memory() })((_req: any, res: any) => {
        calls++
        res.send('wrapped')
      }),
    )
    const r = await serve(app)
    await r.request('/w')
    expect((await r.request('/w')).headers['cache-status']).toMatch(/hit/)
    expect(calls).toBe(1)
  })

  it('decorates a controller method as a TC39 standard decorator, keeping `this`', async () => {
    const backend = memory()
    class UsersController {
      calls = 0
      @cache({ ttl: 60, backend })
      async list(_req: any, res: any) {
        this.calls++
        res.json({ users: ['ada'], calls: this.calls })
      }
    }
    const controller = new UsersController()
    const app = express()
    app.get('/users', (req, res) => controller.list(req, res))
    const r = await serve(app)
    await r.request('/users')
    const hit = await r.request('/users')
    expect(hit.body.toString()).toBe('{"users":["ada"],"calls":1}')
    expect(controller.calls).toBe(1)
  })

  it('keeps context.metadata and reflect-metadata of other TC39 decorators, in any order', async () => {
    await import('reflect-metadata')
    const metadataSymbol: symbol = (Symbol as any).metadata ?? Symbol.for('Symbol.metadata')
    ;(Symbol as any).metadata ??= metadataSymbol
    const R = Reflect as any
    const mark =
      (name: string) =>
      (method: Function, context: ClassMethodDecoratorContext): void => {
        ;(context.metadata as Record<string, unknown>)[name] = true
        R.defineMetadata(name, `on ${String(context.name)}`, method)
      }
    const backend = memory()
    class Controller {
      @mark('outer')
      @cache({ ttl: 60, backend })
      @mark('inner')
      async show(_req: any, res: any) {
        res.send('shown')
      }
    }
    const metadata = (Controller as any)[metadataSymbol] as Record<string, unknown>
    expect(metadata).toMatchObject({ outer: true, inner: true })
    const show = Controller.prototype.show
    expect(R.getOwnMetadata('inner', show)).toBe('on show')
    expect(R.getOwnMetadata('outer', show)).toBe('on show')
    const app = express()
    const controller = new Controller()
    app.get('/show', (req, res) => controller.show(req, res))
    const r = await serve(app)
    await r.request('/show')
    expect((await r.request('/show')).headers['cache-status']).toMatch(/hit/)
  })

  it('hands a rejected async handler to the error handler on Express 4 too', async () => {
    const { default: express4 } = await import('express4')
    const app = express4()
    app.get(
      '/fails',
      cacheResponse({ backend: memory() })(async () => {
        throw new Error('nope')
      }),
    )
    app.use((error: Error, _req: any, res: any, _next: any) => res.status(500).send(error.message))
    const r = await serve(app)
    const reply = await r.request('/fails', { timeout: 3_000 })
    expect(reply.status).toBe(500)
    expect(reply.body.toString()).toBe('nope')
  })

  it('decorates a controller method as a legacy experimentalDecorators decorator', async () => {
    const controller = legacyController(memory())
    const app = express()
    app.get('/monthly', (req, res) => controller.monthly(req, res))
    const r = await serve(app)
    await r.request('/monthly')
    expect((await r.request('/monthly')).body.toString()).toBe('{"month":"may","calls":1}')
    expect(controller.calls).toBe(1)
    expect(decoratorArity).toEqual([3])
  })

  it('passes a rejected async handler to the Express error handler, uncached', async () => {
    const app = express()
    let calls = 0
    app.get(
      '/fails',
      cacheResponse({ backend: memory() })(async () => {
        calls++
        throw new Error('nope')
      }),
    )
    const r = await serve(app)
    expect((await r.request('/fails')).status).toBe(500)
    expect((await r.request('/fails')).status).toBe(500)
    expect(calls).toBe(2)
  })
})

describe('invalidation', () => {
  function app(options: Parameters<typeof cacheResponse>[0]) {
    const a = express()
    const calls = { n: 0 }
    const mw = cacheResponse(options)
    a.get('/users/:id', mw, (req: any, res: any) => {
      calls.n++
      res.send(`user ${req.params.id} v${calls.n}`)
    })
    return { a, calls, mw }
  }

  it('removes one URL with invalidate() and invalidateResponse()', async () => {
    const backend = memory()
    const { a, calls, mw } = app({ backend })
    const r = await serve(a)
    await r.request('/users/1?x=1&y=2')
    await r.request('/users/2')
    expect(await mw.invalidate(`${r.url}/users/1?y=2&x=1`)).toBe(true)
    await r.request('/users/1?x=1&y=2')
    await r.request('/users/2')
    expect(calls.n).toBe(3)
    expect(await invalidateResponse('/users/2', { backend, host: `127.0.0.1:${r.port}` })).toBe(true)
    expect((await r.request('/users/2')).body.toString()).toBe('user 2 v4')
  })

  it('invalidates a whole prefix with one counter, including longer prefixes', async () => {
    const backend = memory()
    const users = app({ backend, keyPrefix: 'api:users' })
    const other = app({ backend, keyPrefix: 'apiv2' })
    const r1 = await serve(users.a)
    const r2 = await serve(other.a)
    await r1.request('/users/1')
    await r2.request('/users/1')
    await invalidateResponsePrefix('api', { backend })
    await r1.request('/users/1')
    await r2.request('/users/1')
    expect(users.calls.n).toBe(2)
    expect(other.calls.n).toBe(1)
    await users.mw.clear()
    await r1.request('/users/1')
    expect(users.calls.n).toBe(3)
  })

  it('invalidates by tag with core invalidateTags', async () => {
    const backend = memory()
    const { a, calls } = app({ backend, tags: (req: any) => [`user:${req.params.id}`, 'users'] })
    const r = await serve(a)
    await r.request('/users/1')
    await r.request('/users/2')
    await invalidateTags(['user:1'], { backend })
    await r.request('/users/1')
    await r.request('/users/2')
    expect(calls.n).toBe(3)
    await invalidateTags(['users'], { backend })
    await r.request('/users/2')
    expect(calls.n).toBe(4)
  })

  it('removes every variant of a URL that varies on a header', async () => {
    const backend = memory()
    const a = express()
    let calls = 0
    a.get('/v', cacheResponse({ backend }), (req: any, res: any) => {
      calls++
      res.set('vary', 'Accept').send(`${req.get('accept')} ${calls}`)
    })
    const r = await serve(a)
    await r.request('/v', { headers: { accept: 'text/html' } })
    await r.request('/v', { headers: { accept: 'application/json' } })
    expect((await r.request('/v', { headers: { accept: 'text/html' } })).body.toString()).toBe('text/html 1')
    await invalidateResponse(`${r.url}/v`, { backend })
    expect((await r.request('/v', { headers: { accept: 'application/json' } })).body.toString()).toBe(
      'application/json 3',
    )
  })
})

describe('backends', () => {
  it('round-trips a binary response through a serializing backend', async () => {
    const backend = bytesBackend()
    const a = express()
    let calls = 0
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 255, 254])
    a.get('/logo.png', cacheResponse({ backend }), (_req: any, res: any) => {
      calls++
      res.type('image/png').send(png)
    })
    const r = await serve(a)
    await r.request('/logo.png')
    expect([...backend.raw.values()].every(Buffer.isBuffer)).toBe(true)
    const hit = await r.request('/logo.png')
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(hit.body.equals(png)).toBe(true)
    expect(calls).toBe(1)
  })

  it('uses the configured default cache when no backend is given', async () => {
    const { configureCache, resetCache } = await import('@cache/core')
    const backend = memory()
    configureCache(backend)
    try {
      const a = express()
      a.get('/d', cacheResponse(60), (_req: any, res: any) => res.send('d'))
      const r = await serve(a)
      await r.request('/d')
      expect((await r.request('/d')).headers['cache-status']).toMatch(/hit/)
      expect(backend.stats.hits).toBeGreaterThan(0)
    } finally {
      await resetCache()
    }
  })

  it('passes through, counted, when the backend is down', async () => {
    const down = () => {
      throw new CacheUnavailableError('redis', 'redis: connection refused')
    }
    const backend = defineBackend({ name: 'down', get: down, set: down, delete: down, clear: down })
    const a = express()
    let calls = 0
    const mw = cacheResponse({ backend })
    const errors: unknown[] = []
    mw.on('error', (event) => errors.push(event.error))
    a.get('/p', mw, (_req: any, res: any) => {
      calls++
      res.send('still works')
    })
    const r = await serve(a)
    const reply = await r.request('/p')
    expect(reply.status).toBe(200)
    expect(reply.body.toString()).toBe('still works')
    expect(reply.headers['cache-status']).toBe('@cache; fwd=uri-miss; detail=error')
    await r.request('/p')
    expect(calls).toBe(2)
    expect(mw.stats.errors).toBe(2)
    expect(errors[0]).toBeInstanceOf(CacheUnavailableError)
  })
})

describe.each(EXPRESS)('stale-while-revalidate on %s', (_name, express) => {
  it('serves the stale response once past ttl and refreshes it in the background', async () => {
    let now = 1_000_000
    const clock = () => now
    const backend = memory(clock)
    const a = express()
    let calls = 0
    const mw = cacheResponse({ backend, ttl: 60, staleWhileRevalidate: 30, now: clock })
    a.get('/s', mw, (_req: any, res: any) => {
      calls++
      res.send(`v${calls}`)
    })
    const r = await serve(a)
    expect((await r.request('/s')).body.toString()).toBe('v1')
    now += 61_000
    const stale = await r.request('/s')
    expect(stale.body.toString()).toBe('v1')
    expect(stale.headers['cache-status']).toBe('@cache; hit; ttl=-1')
    expect(stale.headers.age).toBe('61')
    for (let i = 0; i < 100 && mw.stats.sets < 2; i++) await new Promise((resolve) => setTimeout(resolve, 10))
    const fresh = await r.request('/s')
    expect(fresh.body.toString()).toBe('v2')
    expect(fresh.headers['cache-status']).toMatch(/^@cache; hit; ttl=60$/)
    expect(calls).toBe(2)
    // Past ttl + staleWhileRevalidate the entry is gone: a plain miss.
    now += 91_000
    expect((await r.request('/s')).body.toString()).toBe('v3')
  })

  it('refreshes through the whole middleware chain, with the request headers', async () => {
    let now = 1_000_000
    const clock = () => now
    const a = express()
    const seen: string[] = []
    a.use((_req: any, res: any, next: any) => {
      res.set('x-request-id', String(seen.length))
      next()
    })
    a.get(
      '/lang',
      cacheResponse({
        backend: memory(clock),
        ttl: 1,
        staleWhileRevalidate: 10,
        now: clock,
        vary: ['accept-language'],
      }),
      (req: any, res: any) => {
        seen.push(req.get('accept-language'))
        res.send(`${req.get('accept-language')} ${seen.length}`)
      },
    )
    const r = await serve(a)
    const headers = { 'accept-language': 'de', 'if-none-match': '"x"' }
    await r.request('/lang', { headers })
    now += 2000
    expect((await r.request('/lang', { headers })).body.toString()).toBe('de 1')
    for (let i = 0; i < 100 && seen.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 10))
    const fresh = await r.request('/lang', { headers })
    expect(fresh.body.toString()).toBe('de 2')
    expect(seen).toEqual(['de', 'de'])
    // Headers from middleware before the cache are per request, never replayed from the entry.
    expect(fresh.headers['x-request-id']).toBe('2')
  })
})

describe('options', () => {
  it('rejects bad options with clear errors', () => {
    expect(() => cacheResponse({ ttl: 0 })).toThrow(CacheConfigError)
    expect(() => cacheResponse({ ttl: 'soon' })).toThrow(/ttl/)
    expect(() => cacheResponse({ maxBodySize: '1XB' })).toThrow(/maxBodySize/)
    expect(() => cacheResponse({ statuses: [99] })).toThrow(/statuses/)
    expect(() => cacheResponse({ keyPrefix: '' })).toThrow(/keyPrefix/)
    expect(() => cacheResponse({ revalidateTimeout: 0 })).toThrow(/revalidateTimeout/)
    expect(() => cacheResponse({ collapseTimeout: 'never' })).toThrow(/collapseTimeout/)
    expect(() => cacheResponse({ middlewareSkippedOnHits: ['compression'] as never })).toThrow(
      CacheConfigError,
    )
    expect(() => cacheResponse({ middlewareSkippedOnHits: ['compression'] as never })).toThrow(
      /middlewareSkippedOnHits/,
    )
    expect(() => (cacheResponse() as any)(class Controller {})).toThrow(/not classes/)
  })
})
