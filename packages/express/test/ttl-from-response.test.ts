/**
 * `ttl: 'from-response'`: the handler says how long its response is fresh, with `s-maxage` (for
 * shared caches, this one included) or `max-age`, as a CDN honours the origin.
 */
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, memory, type Reply, serveEach } from './http.js'

const serve = serveEach()
const text = (reply: Reply) => reply.body.toString()

describe.each(EXPRESS)("ttl: 'from-response' on %s", (_name, express) => {
  function app(ttl: unknown, cacheControl: string | string[] | undefined) {
    let now = 1_000_000
    const clock = () => now
    const a = express()
    const runs = { n: 0 }
    a.get(
      '/r',
      cacheResponse({ backend: memory(clock), now: clock, ttl: ttl as never }),
      (_req: any, res: any) => {
        runs.n++
        if (cacheControl !== undefined) res.setHeader('cache-control', cacheControl)
        res.send(`r${runs.n}`)
      },
    )
    return { app: a, runs, advance: (seconds: number) => void (now += seconds * 1000) }
  }

  it('keeps a response for its s-maxage, preferred over max-age', async () => {
    const { app: a, advance } = app('from-response', 'public, max-age=10, s-maxage=120')
    const r = await serve(a)
    await r.request('/r')
    advance(100)
    const hit = await r.request('/r')
    expect(hit.headers['cache-status']).toBe('@cache; hit; ttl=20')
    expect(text(hit)).toBe('r1')
    advance(21)
    expect(text(await r.request('/r'))).toBe('r2')
  })

  it('reads a Cache-Control given only to writeHead, and says so in Cache-Status', async () => {
    let now = 1_000_000
    const clock = () => now
    const a = express()
    let runs = 0
    a.get(
      '/w',
      cacheResponse({ backend: memory(clock), now: clock, ttl: 'from-response' }),
      (_req: any, res: any) => {
        runs++
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
        res.end(`w${runs}`)
      },
    )
    const r = await serve(a)
    const miss = await r.request('/w')
    expect(miss.headers['cache-status']).toBe('@cache; fwd=uri-miss; stored')
    const hit = await r.request('/w')
    expect(hit.headers['cache-status']).toBe('@cache; hit; ttl=60')
    expect(text(hit)).toBe('w1')
    now += 61_000
    expect(text(await r.request('/w'))).toBe('w2')
  })

  it('keeps a response for its max-age when it has no s-maxage', async () => {
    const { app: a, advance } = app('from-response', 'max-age=30')
    const r = await serve(a)
    await r.request('/r')
    expect((await r.request('/r')).headers['cache-status']).toBe('@cache; hit; ttl=30')
    advance(31)
    expect(text(await r.request('/r'))).toBe('r2')
  })

  it('reads directives in any case, with quoted values, across several header lines', async () => {
    const { app: a } = app('from-response', ['Public', 'S-MaxAge="90"'])
    const r = await serve(a)
    await r.request('/r')
    expect((await r.request('/r')).headers['cache-status']).toBe('@cache; hit; ttl=90')
  })

  it('does not store a response whose max-age is given twice with two values (RFC 9111 §4.2.1: stale)', async () => {
    const { app: a } = app('from-response', 'max-age=10, max-age=600')
    const r = await serve(a)
    expect((await r.request('/r')).headers['cache-status']).toBe('@cache; fwd=uri-miss; detail=cache-control')
    expect(text(await r.request('/r'))).toBe('r2')
  })

  it('does not store a response that says nothing about its freshness, unless a default is given', async () => {
    const none = app('from-response', undefined)
    const r = await serve(none.app)
    expect((await r.request('/r')).headers['cache-status']).toBe('@cache; fwd=uri-miss; detail=no-ttl')
    expect(text(await r.request('/r'))).toBe('r2')

    const withDefault = app({ fromResponse: true, default: '5s' }, 'public')
    const r2 = await serve(withDefault.app)
    await r2.request('/r')
    expect((await r2.request('/r')).headers['cache-status']).toBe('@cache; hit; ttl=5')
  })

  it('caps the TTL at max', async () => {
    const { app: a } = app({ fromResponse: true, max: '1m' }, 'max-age=31536000')
    const r = await serve(a)
    await r.request('/r')
    expect((await r.request('/r')).headers['cache-status']).toBe('@cache; hit; ttl=60')
  })

  it('still stores nothing for max-age=0 or no-store', async () => {
    for (const header of ['max-age=0', 'no-store, max-age=60']) {
      const { app: a, runs } = app('from-response', header)
      const r = await serve(a)
      await r.request('/r')
      await r.request('/r')
      expect(runs.n).toBe(2)
    }
  })

  it('rejects a malformed ttl object, naming the option', () => {
    expect(() => cacheResponse({ backend: memory(), ttl: { fromResponse: true, default: -1 } })).toThrow(
      /ttl.default/,
    )
    expect(() => cacheResponse({ backend: memory(), ttl: { fromResponse: false } as never })).toThrow(/ttl/)
    expect(() => cacheResponse({ backend: memory(), ttl: 'from-respons' as never })).toThrow(/ttl/)
  })
})
