/**
 * An option name that is not an option (`varyy`, `privte`) is refused while the app is built:
 * dropped, it would take a safety option with it and serve one user's response to another.
 */
import { CacheConfigError } from '@cache/core'
import { describe, expect, it } from 'vitest'
import { type CacheResponseOptions, cacheResponse } from '../src/index.js'
import { EXPRESS, memory, serveEach } from './http.js'

const serve = serveEach()

describe.each(EXPRESS)('option names on %s', (_name, express) => {
  it('refuses cacheResponse({ varyy }) while the app is built, naming vary', () => {
    const app = express()
    let error: unknown
    try {
      app.get(
        '/me',
        cacheResponse({ backend: memory(), varyy: ['x-user'] } as CacheResponseOptions),
        (req, res) => {
          res.send(`hello ${req.get('x-user')}`)
        },
      )
    } catch (caught) {
      error = caught
    }
    expect(error).toBeInstanceOf(CacheConfigError)
    expect((error as CacheConfigError).setting).toBe('varyy')
    expect((error as CacheConfigError).message).toBe(
      'varyy: not an option of cacheResponse(); did you mean `vary`?',
    )
  })

  it('refuses a misspelt directive of cacheControl, and one of its own options', () => {
    expect(() => cacheResponse({ backend: memory(), cacheControl: { privte: true } as never })).toThrow(
      /^privte: not an option of `cacheControl`/,
    )
    expect(() =>
      cacheResponse({ backend: memory(), frontSkipAllMiddleware: true } as CacheResponseOptions),
    ).toThrow(
      'frontSkipAllMiddleware: not an option of cacheResponse(); did you mean `frontSkipsAllMiddleware`?',
    )
  })

  it('refuses a misspelt option of invalidate() and responseIndex()', async () => {
    const cache = cacheResponse({ backend: memory() })
    await expect(cache.invalidate('/me', { hots: 'a.test' } as never)).rejects.toThrow(/did you mean `host`/)
    await expect(cache.responseIndex({ batchsize: 5 } as never).next()).rejects.toThrow(CacheConfigError)
  })

  it('accepts every documented option, and caches with them', async () => {
    const all = {
      ttl: 60,
      backend: memory(),
      keyPrefix: 'all',
      vary: ['x-user'],
      key: (req) => `${req.path}`,
      statuses: [200],
      maxBodySize: '512KB',
      allowAuthorized: false,
      allowCookies: false,
      staleWhileRevalidate: 10,
      revalidateTimeout: '10s',
      collapseTimeout: '2s',
      tags: ['t'],
      statusHeader: 'x-cache',
      cacheName: 'edge',
      etag: true,
      now: Date.now,
      bypass: () => false,
      cacheControl: { maxAge: 10, sMaxAge: 20, staleWhileRevalidate: 5, public: false },
      middlewareSkippedOnHits: [],
      frontSkipsAllMiddleware: false,
    } satisfies Required<CacheResponseOptions>
    const app = express()
    let runs = 0
    app.get('/all', cacheResponse(all), (_req: any, res: any) => res.send(`run ${++runs}`))
    const r = await serve(app)
    expect((await r.request('/all')).headers['x-cache']).toBe('MISS')
    const hit = await r.request('/all')
    expect(hit.headers['x-cache']).toBe('HIT')
    expect(hit.body.toString()).toBe('run 1')
  })
})
