/**
 * Turning the cache off: per request (`bypass`), for the whole process (`setResponseCaching`), and
 * from the environment (`CACHE_HTTP=off`), as a test suite or an operator would.
 */
import { CacheConfigError, setCacheLogger } from '@cache/core'
import { afterEach, describe, expect, it } from 'vitest'
import { cacheResponse, setResponseCaching } from '../src/index.js'
import { EXPRESS, memory, type Reply, serveEach } from './http.js'

const serve = serveEach()
const text = (reply: Reply) => reply.body.toString()

afterEach(() => {
  setResponseCaching(undefined)
  setCacheLogger(undefined)
  delete process.env.CACHE_HTTP
})

describe.each(EXPRESS)('bypass on %s', (_name, express) => {
  function countingApp(options: Parameters<typeof cacheResponse>[0]) {
    const app = express()
    const runs = { n: 0 }
    const cache = cacheResponse({ backend: memory(), ...(options as object) })
    app.get('/n', cache, (_req: any, res: any) => res.send(`n=${++runs.n}`))
    return { app, runs, cache }
  }

  it('sends a request for which bypass(req) is true straight to the handler, storing nothing', async () => {
    const { app, runs } = countingApp({ bypass: (req: any) => req.get('x-preview') === '1' })
    const r = await serve(app)
    const preview = { headers: { 'x-preview': '1' } }
    const first = await r.request('/n', preview)
    expect(first.headers['cache-status']).toBe('@cache; fwd=bypass; detail=bypass')
    expect(text(await r.request('/n', preview))).toBe('n=2')
    // Nothing was stored by the bypassed requests: the first normal request is a miss.
    const normal = await r.request('/n')
    expect(normal.headers['cache-status']).toBe('@cache; fwd=uri-miss; stored')
    expect(text(normal)).toBe('n=3')
    // And a bypassed request is not answered from what the normal one stored.
    expect(text(await r.request('/n', preview))).toBe('n=4')
    expect(text(await r.request('/n'))).toBe('n=3')
    expect(runs.n).toBe(4)
  })

  describe.each([
    ['cookie', { cookie: 'sid=alice' }, { cookie: 'sid=bob' }],
    ['authorization', { authorization: 'Bearer alice' }, { authorization: 'Bearer bob' }],
  ] as const)(
    '%s the client sent, deleted from req.headers by middleware before the cache',
    (name, alice, bob) => {
      function strippingApp(options: Parameters<typeof cacheResponse>[0], replace = false) {
        const app = express()
        app.use((req: any, _res: any, next: any) => {
          const value = req.headers[name]
          if (value !== undefined) req.user = String(value).split(/[= ]/)[1]
          if (replace) {
            const { [name]: _dropped, ...rest } = req.headers
            req.headers = rest
          } else delete req.headers[name]
          next()
        })
        const cache = cacheResponse({ backend: memory(), ...(options as object) })
        app.get('/me', cache, (req: any, res: any) => res.send(`hello ${req.user ?? 'anonymous'}`))
        return app
      }

      it.each([
        ['deleted', false],
        ['req.headers replaced by a copy without it', true],
      ])('bypasses (%s): nothing stored, nobody else gets the page', async (_how, replace) => {
        const r = await serve(strippingApp({}, replace))
        const first = await r.request('/me', { headers: alice })
        expect(text(first)).toBe('hello alice')
        expect(first.headers['cache-status']).toBe(`@cache; fwd=request; detail=${name}`)
        expect(text(await r.request('/me', { headers: bob }))).toBe('hello bob')
        expect(text(await r.request('/me'))).toBe('hello anonymous')
      })

      it('with allow option and the header in vary, keys on the value sent: nobody else gets the page', async () => {
        const allow = name === 'cookie' ? { allowCookies: true } : { allowAuthorized: true }
        const r = await serve(strippingApp({ ...allow, vary: [name] }))
        expect(text(await r.request('/me', { headers: alice }))).toBe('hello alice')
        expect(text(await r.request('/me'))).toBe('hello anonymous')
        expect(text(await r.request('/me', { headers: bob }))).toBe('hello bob')
        expect(text(await r.request('/me', { headers: alice }))).toBe('hello alice')
      })

      it('with the allow option and no vary, is stored as the option says', async () => {
        const allow = name === 'cookie' ? { allowCookies: true } : { allowAuthorized: true }
        const r = await serve(strippingApp(allow))
        await r.request('/me', { headers: alice })
        const again = await r.request('/me', { headers: alice })
        expect(String(again.headers['cache-status'])).toMatch(/hit/)
      })
    },
  )

  it('treats a bypass that throws as a bypass, counts it and logs it once', async () => {
    const warnings: string[] = []
    setCacheLogger({ warn: (m) => void warnings.push(m), error: (m) => void warnings.push(m) })
    const { app, runs, cache } = countingApp({
      bypass: () => {
        throw new Error('preview flag service down')
      },
    })
    const events: string[] = []
    cache.on('error', (event) => events.push(String(event.operation)))
    const r = await serve(app)
    const first = await r.request('/n')
    expect(first.status).toBe(200)
    expect(first.headers['cache-status']).toBe('@cache; fwd=bypass; detail=bypass-error')
    expect(text(await r.request('/n'))).toBe('n=2')
    expect(runs.n).toBe(2)
    expect(cache.stats.errors).toBe(2)
    expect(events).toEqual(['bypass', 'bypass'])
    expect(warnings).toHaveLength(1)
    expect(warnings[0]!).toContain('preview flag service down')
  })

  it('stops every cache of the process with setResponseCaching(false), and starts them again with true', async () => {
    const { app, runs } = countingApp({})
    const r = await serve(app)
    await r.request('/n')
    setResponseCaching(false)
    const off = await r.request('/n')
    expect(off.headers['cache-status']).toBe('@cache; fwd=bypass; detail=disabled')
    expect(text(off)).toBe('n=2')
    expect(text(await r.request('/n'))).toBe('n=3')
    setResponseCaching(true)
    // The entry stored before is still there: turning caching off stores and removes nothing.
    expect(text(await r.request('/n'))).toBe('n=1')
    expect(runs.n).toBe(3)
  })

  it('is off for caches built while CACHE_HTTP=off, and setResponseCaching(true) overrides it', async () => {
    process.env.CACHE_HTTP = 'off'
    const { app } = countingApp({})
    const r = await serve(app)
    await r.request('/n')
    expect((await r.request('/n')).headers['cache-status']).toBe('@cache; fwd=bypass; detail=disabled')
    setResponseCaching(true)
    await r.request('/n')
    expect((await r.request('/n')).headers['cache-status']).toMatch(/^@cache; hit/)
  })

  it('lets cache.front(app) replay nothing while caching is off', async () => {
    const app = express()
    let runs = 0
    const cache = cacheResponse({ backend: memory(), frontSkipsAllMiddleware: true })
    app.get('/f', cache, (_req: any, res: any) => res.send(`f=${++runs}`))
    const { createServer } = await import('node:http')
    const r = await serve({ listen: (...args: any[]) => createServer(cache.front(app)).listen(...args) })
    await r.request('/f')
    expect(text(await r.request('/f'))).toBe('f=1')
    setResponseCaching(false)
    expect(text(await r.request('/f'))).toBe('f=2')
  })
})

describe('bad settings', () => {
  it('rejects a CACHE_HTTP that is not on or off, naming the variable', () => {
    process.env.CACHE_HTTP = 'of'
    expect(() => cacheResponse({ backend: memory() })).toThrow(CacheConfigError)
    expect(() => cacheResponse({ backend: memory() })).toThrow(/CACHE_HTTP/)
  })

  it('rejects a bypass that is not a function', () => {
    expect(() => cacheResponse({ backend: memory(), bypass: true as never })).toThrow(/bypass/)
  })

  it('rejects setResponseCaching with something else than a boolean or undefined', () => {
    expect(() => setResponseCaching('off' as never)).toThrow(TypeError)
  })
})
