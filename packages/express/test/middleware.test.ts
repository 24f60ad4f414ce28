import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { gunzipSync } from 'node:zlib'
import compression from 'compression'
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, memory, serveEach } from './http.js'

const serve = serveEach()

describe.each(EXPRESS)('%s', (_name, express) => {
  function counting() {
    const app = express()
    const calls = { n: 0 }
    return { app, calls }
  }

  it('stores a GET, answers the next GET and a HEAD from it, with Cache-Status and Age', async () => {
    const { app, calls } = counting()
    app.get('/items', cacheResponse({ ttl: 60, backend: memory() }), (_req: any, res: any) => {
      calls.n++
      res.set('x-custom', 'yes').json({ items: [1, 2, 3] })
    })
    const r = await serve(app)
    const miss = await r.request('/items')
    expect(miss.status).toBe(200)
    expect(miss.headers['cache-status']).toBe('@cache; fwd=uri-miss; stored')
    const hit = await r.request('/items')
    expect(hit.headers['cache-status']).toMatch(/^@cache; hit; ttl=(59|60)$/)
    expect(hit.headers.age).toBe('0')
    expect(hit.headers['x-custom']).toBe('yes')
    expect(hit.headers['content-type']).toBe(miss.headers['content-type'])
    expect(hit.body.equals(miss.body)).toBe(true)
    const head = await r.request('/items', { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers['content-length']).toBe(String(miss.body.length))
    expect(head.headers['cache-status']).toMatch(/hit/)
    expect(head.body.length).toBe(0)
    expect(calls.n).toBe(1)
  })

  it('never caches POST, PUT or DELETE', async () => {
    const { app, calls } = counting()
    app.all('/thing', cacheResponse({ backend: memory() }), (_req: any, res: any) => {
      calls.n++
      res.send(`call ${calls.n}`)
    })
    const r = await serve(app)
    for (const method of ['POST', 'PUT', 'DELETE', 'POST']) {
      const reply = await r.request('/thing', { method })
      expect(reply.headers['cache-status']).toBe('@cache; fwd=method')
    }
    expect(calls.n).toBe(4)
    expect((await r.request('/thing')).body.toString()).toBe('call 5')
    expect((await r.request('/thing')).body.toString()).toBe('call 5')
  })

  it('stores only 2xx except 204 and 206 by default, and never an error', async () => {
    const { app, calls } = counting()
    const mw = cacheResponse({ backend: memory() })
    app.get('/status/:code', mw, (req: any, res: any) => {
      calls.n++
      res.status(Number(req.params.code)).send('x')
    })
    app.get('/throws', mw, () => {
      calls.n++
      throw new Error('boom')
    })
    const r = await serve(app)
    for (const path of [
      '/status/404',
      '/status/500',
      '/status/204',
      '/status/206',
      '/status/301',
      '/throws',
    ]) {
      await r.request(path)
      await r.request(path)
    }
    expect(calls.n).toBe(12)
    await r.request('/status/201')
    await r.request('/status/201')
    expect(calls.n).toBe(13)
  })

  it('stores the statuses it is told to, but never a 5xx', async () => {
    const { app, calls } = counting()
    for (const refused of [500, 503, 206, 304, 101]) {
      expect(() => cacheResponse({ statuses: [200, refused] })).toThrow(/statuses: .*can never be stored/)
    }
    app.get(
      '/status/:code',
      cacheResponse({ backend: memory(), statuses: (status) => status === 404 || status >= 200 }),
      (req: any, res: any) => {
        calls.n++
        res.status(Number(req.params.code)).send('x')
      },
    )
    const r = await serve(app)
    await r.request('/status/404')
    const hit = await r.request('/status/404')
    expect(hit.status).toBe(404)
    expect(hit.headers['cache-status']).toMatch(/hit/)
    await r.request('/status/500')
    await r.request('/status/500')
    expect(calls.n).toBe(3)
  })

  it('replays a binary body byte for byte', async () => {
    const { app, calls } = counting()
    const pdf = randomBytes(50_000)
    app.get('/report.pdf', cacheResponse({ backend: memory() }), (_req: any, res: any) => {
      calls.n++
      res.type('application/pdf').send(pdf)
    })
    const r = await serve(app)
    await r.request('/report.pdf')
    const hit = await r.request('/report.pdf')
    expect(hit.headers['content-type']).toBe('application/pdf')
    expect(hit.headers['content-length']).toBe(String(pdf.length))
    expect(hit.body.equals(pdf)).toBe(true)
    expect(calls.n).toBe(1)
  })

  it('replays a response streamed in several writes, without hop-by-hop headers', async () => {
    const { app, calls } = counting()
    const parts = [randomBytes(1000), Buffer.from('middle'), randomBytes(3000)]
    app.get('/stream', cacheResponse({ backend: memory() }), async (_req: any, res: any) => {
      calls.n++
      res.status(203).set({ 'content-type': 'application/octet-stream', 'x-part-count': '3' })
      for (const part of parts) {
        res.write(part)
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
      res.end()
    })
    const r = await serve(app)
    const miss = await r.request('/stream')
    expect(miss.headers['transfer-encoding']).toBe('chunked')
    const hit = await r.request('/stream')
    expect(hit.status).toBe(203)
    expect(hit.headers['x-part-count']).toBe('3')
    expect(hit.headers['transfer-encoding']).toBeUndefined()
    expect(hit.headers['content-length']).toBe('4006')
    expect(hit.body.equals(Buffer.concat(parts))).toBe(true)
    expect(calls.n).toBe(1)
  })

  it('does not replay hop-by-hop headers the handler set', async () => {
    const { app } = counting()
    app.get('/hop', cacheResponse({ backend: memory() }), (_req: any, res: any) => {
      res.set({ 'proxy-authenticate': 'Basic', 'keep-alive': 'timeout=99', 'x-kept': '1' }).send('hop')
    })
    const r = await serve(app)
    const miss = await r.request('/hop')
    expect(miss.headers['proxy-authenticate']).toBe('Basic')
    const hit = await r.request('/hop')
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(hit.headers['x-kept']).toBe('1')
    expect(hit.headers['proxy-authenticate']).toBeUndefined()
    expect(hit.headers['keep-alive']).not.toBe('timeout=99')
  })

  it('does not store what compression registered after a global cache let through, unless it may be skipped', async () => {
    const { app, calls } = counting()
    app.use(cacheResponse({ backend: memory() }))
    app.use(compression({ threshold: 0 }))
    app.get('/text', (_req: any, res: any) => {
      calls.n++
      res.type('text/plain').send('compress me '.repeat(500))
    })
    const r = await serve(app)
    const first = await r.request('/text', { headers: { 'accept-encoding': 'gzip' } })
    // compression is a function between the cache and the handler, like a guard would be.
    expect(first.headers['cache-status']).toBe('@cache; fwd=uri-miss; detail=middleware-after-cache')
    await r.request('/text', { headers: { 'accept-encoding': 'gzip' } })
    expect(calls.n).toBe(2)
  })

  it('replays gzip from compression registered after the cache when listed in middlewareSkippedOnHits, per Accept-Encoding', async () => {
    const { app, calls } = counting()
    const text = 'compress me '.repeat(500)
    const gzip = compression({ threshold: 0 })
    app.use(cacheResponse({ backend: memory(), middlewareSkippedOnHits: [gzip] }))
    app.use(gzip)
    app.get('/text', (_req: any, res: any) => {
      calls.n++
      res.type('text/plain').send(text)
    })
    const r = await serve(app)
    const asksGzip = { 'accept-encoding': 'gzip' }
    const miss = await r.request('/text', { headers: asksGzip })
    expect(miss.headers['content-encoding']).toBe('gzip')
    const hit = await r.request('/text', { headers: asksGzip })
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(hit.headers['content-encoding']).toBe('gzip')
    expect(hit.headers['content-length']).toBe(String(hit.body.length))
    expect(hit.body.equals(miss.body)).toBe(true)
    expect(gunzipSync(hit.body).toString()).toBe(text)
    // A client without gzip is another variant (Vary: Accept-Encoding), never sent gzip.
    const plain = await r.request('/text', { headers: { 'accept-encoding': 'identity' } })
    expect(plain.headers['content-encoding']).toBeUndefined()
    expect(plain.body.toString()).toBe(text)
    const plainHit = await r.request('/text', { headers: { 'accept-encoding': 'identity' } })
    expect(plainHit.headers['cache-status']).toMatch(/hit/)
    expect(plainHit.body.toString()).toBe(text)
    expect(calls.n).toBe(2)
  })

  it('runs the handler once for concurrent first requests with a function listed in middlewareSkippedOnHits after the cache', async () => {
    // r69-c: the listed function passing the request on released the waiting requests before the
    // handler ran, and each ran the handler (and stored a new variant record) itself.
    const { app, calls } = counting()
    const gzip = compression({ threshold: 0 })
    app.use(cacheResponse({ backend: memory(), middlewareSkippedOnHits: [gzip] }))
    app.use(gzip)
    app.get('/slow', async (_req: any, res: any) => {
      calls.n++
      await new Promise((resolve) => setTimeout(resolve, 200))
      res.type('text/plain').send('hello world '.repeat(200))
    })
    const r = await serve(app)
    const asksGzip = { 'accept-encoding': 'gzip' }
    const replies = await Promise.all(
      Array.from({ length: 4 }, () => r.request('/slow', { headers: asksGzip })),
    )
    expect(calls.n).toBe(1)
    for (const reply of replies) expect(gunzipSync(reply.body).toString()).toBe('hello world '.repeat(200))
    expect(replies.filter((x) => /collapsed|hit/.test(String(x.headers['cache-status']))).length).toBe(3)
  })

  it('replays through compression registered before the cache, one entry per Accept-Encoding', async () => {
    const { app, calls } = counting()
    const text = 'squeeze '.repeat(500)
    app.use(compression({ threshold: 0 }))
    app.get('/text', cacheResponse({ backend: memory() }), (_req: any, res: any) => {
      calls.n++
      res.type('text/plain').send(text)
    })
    const r = await serve(app)
    await r.request('/text', { headers: { 'accept-encoding': 'gzip' } })
    const hit = await r.request('/text', { headers: { 'accept-encoding': 'gzip' } })
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(hit.headers['content-encoding']).toBe('gzip')
    expect(gunzipSync(hit.body).toString()).toBe(text)
    const plain = await r.request('/text', { headers: { 'accept-encoding': 'identity' } })
    expect(plain.body.toString()).toBe(text)
    // compression's Vary: Accept-Encoding is part of the final response: each encoding its own entry.
    expect(calls.n).toBe(2)
    const plainHit = await r.request('/text', { headers: { 'accept-encoding': 'identity' } })
    expect(plainHit.headers['cache-status']).toMatch(/hit/)
    expect(plainHit.headers['content-encoding']).toBeUndefined()
    expect(plainHit.body.toString()).toBe(text)
  })

  it('keys on host, path and sorted query', async () => {
    const { app, calls } = counting()
    app.get('/q', cacheResponse({ backend: memory() }), (req: any, res: any) => {
      calls.n++
      res.send(`${req.hostname} ${req.originalUrl}`)
    })
    const r = await serve(app)
    const first = await r.request('/q?b=2&a=1')
    const second = await r.request('/q?a=1&b=2')
    expect(second.body.equals(first.body)).toBe(true)
    expect(calls.n).toBe(1)
    await r.request('/q?a=1&b=3')
    await r.request('/q?a=1&b=2', { headers: { host: 'other.example' } })
    expect(calls.n).toBe(3)
    // Express tells another spelling of a host apart: it is answered by the app, never stored.
    for (let i = 0; i < 2; i++) {
      const other = await r.request('/q?a=1&b=2', { headers: { host: 'OTHER.example.' } })
      expect(other.body.toString()).toBe('OTHER.example. /q?a=1&b=2')
      expect(other.headers['cache-status']).toBe('@cache; fwd=request; detail=url')
    }
    expect(calls.n).toBe(5)
  })

  it('keys on the request headers named in vary', async () => {
    const { app, calls } = counting()
    app.get(
      '/hello',
      cacheResponse({ backend: memory(), vary: ['Accept-Language'] }),
      (req: any, res: any) => {
        calls.n++
        res.send(req.get('accept-language') === 'fr' ? 'bonjour' : 'hello')
      },
    )
    const r = await serve(app)
    expect((await r.request('/hello', { headers: { 'accept-language': 'fr' } })).body.toString()).toBe(
      'bonjour',
    )
    expect((await r.request('/hello', { headers: { 'accept-language': 'en' } })).body.toString()).toBe(
      'hello',
    )
    expect((await r.request('/hello', { headers: { 'accept-language': 'fr' } })).body.toString()).toBe(
      'bonjour',
    )
    expect(calls.n).toBe(2)
  })

  it('uses key(req) instead of the built-in key', async () => {
    const { app, calls } = counting()
    const mw = cacheResponse({ backend: memory(), key: (req: any) => `page:${req.query.page ?? 1}` })
    app.get('/list', mw, (_req: any, res: any) => {
      calls.n++
      res.send(`call ${calls.n}`)
    })
    const r = await serve(app)
    await r.request('/list?page=1&noise=1')
    const again = await r.request('/list?page=1&noise=2')
    expect(again.body.toString()).toBe('call 1')
    expect(await mw.invalidateKey('page:1')).toBe(true)
    expect((await r.request('/list?page=1')).body.toString()).toBe('call 2')
  })

  it('does not let X-Forwarded-Host poison another host entry', async () => {
    const { app, calls } = counting()
    app.get('/link', cacheResponse({ backend: memory() }), (req: any, res: any) => {
      calls.n++
      res.send(`https://${req.hostname}/next`)
    })
    const r = await serve(app)
    const evil = await r.request('/link', {
      headers: { host: 'shop.example', 'x-forwarded-host': 'evil.example' },
    })
    expect(evil.body.toString()).toBe('https://shop.example/next')
    const victim = await r.request('/link', { headers: { host: 'shop.example' } })
    expect(victim.body.toString()).toBe('https://shop.example/next')
    // A malformed Host header bypasses the cache instead of making an entry.
    const bad = await r.request('/link', { headers: { host: 'bad host/../x' } })
    expect(String(bad.headers['cache-status'])).toMatch(/fwd=request/)
  })

  it('keys on the forwarded host under trust proxy, so each host keeps its own entry', async () => {
    const { app } = counting()
    app.set('trust proxy', true)
    app.get('/link', cacheResponse({ backend: memory() }), (req: any, res: any) => {
      res.send(`https://${req.hostname}/next`)
    })
    const r = await serve(app)
    await r.request('/link', { headers: { host: 'shop.example', 'x-forwarded-host': 'evil.example' } })
    const victim = await r.request('/link', { headers: { host: 'shop.example' } })
    expect(victim.body.toString()).toBe('https://shop.example/next')
  })

  it('bypasses requests with Authorization or Cookie unless allowed', async () => {
    const { app, calls } = counting()
    app.get('/private', cacheResponse({ backend: memory() }), (_req: any, res: any) => {
      calls.n++
      res.send('secret')
    })
    app.get(
      '/allowed',
      cacheResponse({ backend: memory(), allowAuthorized: true, allowCookies: true }),
      (_req: any, res: any) => {
        calls.n++
        res.send('shared')
      },
    )
    const r = await serve(app)
    const auth = await r.request('/private', { headers: { authorization: 'Bearer a' } })
    expect(auth.headers['cache-status']).toBe('@cache; fwd=request; detail=authorization')
    await r.request('/private', { headers: { authorization: 'Bearer a' } })
    await r.request('/private', { headers: { cookie: 'sid=1' } })
    const cookie = await r.request('/private', { headers: { cookie: 'sid=1' } })
    expect(cookie.headers['cache-status']).toBe('@cache; fwd=request; detail=cookie')
    expect(calls.n).toBe(4)
    await r.request('/allowed', { headers: { authorization: 'Bearer a', cookie: 'sid=1' } })
    await r.request('/allowed', { headers: { authorization: 'Bearer b', cookie: 'sid=2' } })
    expect(calls.n).toBe(5)
  })

  it('does not store Set-Cookie, Cache-Control no-store/private/no-cache or Vary: * responses', async () => {
    const { app, calls } = counting()
    const mw = cacheResponse({ backend: memory() })
    const cases: Record<string, (res: any) => void> = {
      cookie: (res) => res.cookie('sid', 'abc'),
      nostore: (res) => res.set('cache-control', 'no-store'),
      private: (res) => res.set('cache-control', 'private, max-age=60'),
      nocache: (res) => res.set('cache-control', 'no-cache'),
      star: (res) => res.set('vary', '*'),
    }
    app.get('/r/:case', mw, (req: any, res: any) => {
      calls.n++
      cases[req.params.case]!(res)
      res.send('x')
    })
    const r = await serve(app)
    for (const name of Object.keys(cases)) {
      await r.request(`/r/${name}`)
      const again = await r.request(`/r/${name}`)
      expect(again.headers['cache-status']).toMatch(
        /^@cache; fwd=uri-miss; detail=(set-cookie|cache-control|vary)$/,
      )
    }
    expect(calls.n).toBe(10)
  })

  it('does not store a body above maxBodySize', async () => {
    const { app, calls } = counting()
    app.get('/big', cacheResponse({ backend: memory(), maxBodySize: '1KB' }), (_req: any, res: any) => {
      calls.n++
      res.send(Buffer.alloc(1025, 1))
    })
    app.get('/small', cacheResponse({ backend: memory(), maxBodySize: '1KB' }), (_req: any, res: any) => {
      calls.n++
      res.send(Buffer.alloc(1024, 1))
    })
    const r = await serve(app)
    expect((await r.request('/big')).body.length).toBe(1025)
    expect((await r.request('/big')).body.length).toBe(1025)
    await r.request('/small')
    await r.request('/small')
    expect(calls.n).toBe(3)
  })

  it('reports X-Cache HIT and MISS when asked to', async () => {
    const { app } = counting()
    app.get('/x', cacheResponse({ backend: memory(), statusHeader: 'x-cache' }), (_req: any, res: any) => {
      res.send('x')
    })
    const r = await serve(app)
    expect((await r.request('/x')).headers['x-cache']).toBe('MISS')
    const hit = await r.request('/x')
    expect(hit.headers['x-cache']).toBe('HIT')
    expect(hit.headers['cache-status']).toBeUndefined()
  })

  it('adds a strong ETag from the body and answers If-None-Match with 304', async () => {
    const { app, calls } = counting()
    app.set('etag', false)
    app.get('/e', cacheResponse({ backend: memory() }), (_req: any, res: any) => {
      calls.n++
      res.set('cache-control', 'public, max-age=60').send('tagged body')
    })
    const r = await serve(app)
    const miss = await r.request('/e')
    const etag = miss.headers.etag!
    expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/)
    const hit = await r.request('/e')
    expect(hit.headers.etag).toBe(etag)
    const notModified = await r.request('/e', { headers: { 'if-none-match': `"other", ${etag}` } })
    expect(notModified.status).toBe(304)
    expect(notModified.body.length).toBe(0)
    expect(notModified.headers.etag).toBe(etag)
    expect(notModified.headers['cache-control']).toBe('public, max-age=60')
    expect((await r.request('/e', { headers: { 'if-none-match': '"other"' } })).status).toBe(200)
    expect(calls.n).toBe(1)
  })

  it('keeps the ETag the handler gave', async () => {
    const { app } = counting()
    app.get('/e', cacheResponse({ backend: memory() }), (_req: any, res: any) => {
      res.set('etag', 'W/"v1"').send('x')
    })
    const r = await serve(app)
    await r.request('/e')
    expect((await r.request('/e')).headers.etag).toBe('W/"v1"')
    expect((await r.request('/e', { headers: { 'if-none-match': '"v1"' } })).status).toBe(304)
  })

  it('runs the handler once for 100 concurrent first requests', async () => {
    const { app, calls } = counting()
    app.get('/slow', cacheResponse({ backend: memory() }), async (_req: any, res: any) => {
      calls.n++
      await new Promise((resolve) => setTimeout(resolve, 100))
      res.json({ n: calls.n })
    })
    const r = await serve(app)
    const replies = await Promise.all(Array.from({ length: 100 }, () => r.request('/slow')))
    expect(calls.n).toBe(1)
    for (const reply of replies) {
      expect(reply.status).toBe(200)
      expect(reply.body.toString()).toBe('{"n":1}')
    }
    // Requests that arrive once the response is stored are plain hits; either way the handler ran once.
    expect(replies.filter((x) => /collapsed|hit/.test(String(x.headers['cache-status']))).length).toBe(99)
  })

  it('holds a waiting request at most collapseTimeout in all, though another waiting request took over', async () => {
    // r69-c: three requests, the first stalls: the two waiting were released together, one ran
    // the handler, and the other waited on it for a second collapseTimeout.
    const { app } = counting()
    app.get(
      '/stall',
      cacheResponse({ backend: memory(), collapseTimeout: '500ms' }),
      async (_req: any, res: any) => {
        await new Promise((resolve) => setTimeout(resolve, 1000))
        res.json({ ok: true })
      },
    )
    const r = await serve(app)
    const started = performance.now()
    const times = await Promise.all(
      Array.from({ length: 3 }, async () => {
        await r.request('/stall')
        return performance.now() - started
      }),
    )
    // Each: at most 500 ms waiting, then 1 s of its own handler. Before: up to 2 s.
    expect(Math.max(...times)).toBeLessThan(1800)
  })

  it('collapses concurrent first requests per variant of a response with Vary', async () => {
    const { app, calls } = counting()
    app.get('/v', cacheResponse({ backend: memory() }), async (req: any, res: any) => {
      calls.n++
      await new Promise((resolve) => setTimeout(resolve, 50))
      res.set('vary', 'Accept').send(`for ${req.get('accept')}`)
    })
    const r = await serve(app)
    const accepts = Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? 'text/html' : 'text/plain'))
    const replies = await Promise.all(accepts.map((accept) => r.request('/v', { headers: { accept } })))
    expect(replies.map((reply) => reply.body.toString())).toEqual(accepts.map((accept) => `for ${accept}`))
    expect(calls.n).toBe(2)
    expect((await r.request('/v', { headers: { accept: 'text/plain' } })).headers['cache-status']).toMatch(
      /hit/,
    )
  })

  it('answers a HEAD miss without storing it', async () => {
    const { app, calls } = counting()
    app.get('/h', cacheResponse({ backend: memory() }), (_req: any, res: any) => {
      calls.n++
      res.send('body')
    })
    const r = await serve(app)
    const head = await r.request('/h', { method: 'HEAD' })
    expect(head.headers['cache-status']).toBe('@cache; fwd=uri-miss')
    expect(head.headers['content-length']).toBe('4')
    expect((await r.request('/h')).headers['cache-status']).toBe('@cache; fwd=uri-miss; stored')
    expect(calls.n).toBe(2)
  })

  it('never replays a first response that is not storable to the concurrent requests waiting for it', async () => {
    const { app, calls } = counting()
    app.get('/flaky', cacheResponse({ backend: memory() }), async (_req: any, res: any) => {
      calls.n++
      await new Promise((resolve) => setTimeout(resolve, 50))
      res.status(calls.n === 1 ? 503 : 200).send(`call ${calls.n}`)
    })
    const r = await serve(app)
    const replies = await Promise.all(Array.from({ length: 5 }, () => r.request('/flaky')))
    expect(replies.filter((x) => x.status === 503).length).toBe(1)
    // Released at once, they run the handler again (and may share that second response).
    for (const reply of replies.filter((x) => x.status !== 503)) {
      expect(reply.status).toBe(200)
      expect(reply.body.toString()).not.toBe('call 1')
    }
    expect(calls.n).toBeGreaterThanOrEqual(2)
  })
})

describe.each(EXPRESS)(
  '%s: a handler that passes a failure after sending to next(error)',
  (_name, express) => {
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

    it('as a wrapper, does not hand its response to requests that arrive while that work still runs', async () => {
      // r70-c: requests arriving during `await audit()` got the response as a hit, before the
      // handler's `next(error)` said it failed. As a wrapper the cache sees the handler's promise
      // on Express 4 too; as middleware on Express 4 it does not (documented).
      const app = express()
      let calls = 0
      app.get(
        '/route',
        cacheResponse({ ttl: 60, backend: memory() })(async (_req: any, res: any, next: any) => {
          const n = ++calls
          res.json({ n })
          try {
            await sleep(200)
            throw new Error(`audit of ${n} failed`)
          } catch (error) {
            next(error)
          }
        }),
      )
      app.use((_error: unknown, _req: any, res: any, _next: any) => {
        if (!res.headersSent) res.status(500).end()
      })
      const r = await serve(app)
      const first = r.request('/route')
      await sleep(50)
      const during = await Promise.all(Array.from({ length: 3 }, () => r.request('/route')))
      await first
      for (const reply of during) expect(reply.headers['cache-status']).not.toMatch(/hit|collapsed/)
      expect(calls).toBe(4)
    })
  },
)

describe.each(EXPRESS)('%s: a handler whose work after sending never ends', (_name, express) => {
  it('is not stored, and later requests do not each wait collapseTimeout on it', async () => {
    // Its response was never decided on: the first response's flight stayed, and every request
    // for the URL waited collapseTimeout on it before running the handler itself.
    const app = express()
    let calls = 0
    // As a wrapper: the cache sees the handler's promise on Express 4 too.
    app.get(
      '/stuck',
      cacheResponse({ ttl: 60, backend: memory(), collapseTimeout: '2s' })(async (_req: any, res: any) => {
        calls++
        res.json({ calls })
        await new Promise(() => {})
      }),
    )
    const r = await serve(app)
    await r.request('/stuck')
    await new Promise((resolve) => setTimeout(resolve, 1500))
    const started = performance.now()
    const second = await r.request('/stuck')
    expect(performance.now() - started).toBeLessThan(800)
    expect(second.headers['cache-status']).not.toMatch(/hit/)
    expect(calls).toBe(2)
  })
})

describe('Express 4: a rejection its dispatch does not catch', () => {
  it('is still reported to the process as unhandled', async () => {
    // The cache must not swallow a rejection Express 4 leaves unhandled (the process reports it,
    // or crashes on it), nor raise another one (an app patched with express-async-errors handles it).
    const script = `
      import express from 'express4'
      import { createServer, get } from 'node:http'
      import { cacheResponse } from '@cache/express'
      import { memoryBackend } from '@cache/memory'
      const reasons = []
      process.on('unhandledRejection', (reason) => reasons.push(reason.message))
      const app = express()
      app.get('/r', cacheResponse({ ttl: 60, backend: memoryBackend() }), async (_req, res) => {
        res.json({ ok: true })
        await new Promise((resolve) => setTimeout(resolve, 20))
        throw new Error('audit failed')
      })
      const server = createServer(app).listen(0, '127.0.0.1')
      await new Promise((resolve) => server.once('listening', resolve))
      const fetchOnce = () => new Promise((resolve) => get({ host: '127.0.0.1', port: server.address().port, path: '/r' }, (res) => { res.resume(); res.on('end', () => resolve(res.headers['cache-status'])) }))
      await fetchOnce()
      await new Promise((resolve) => setTimeout(resolve, 100))
      const second = await fetchOnce()
      await new Promise((resolve) => setTimeout(resolve, 100))
      console.log(JSON.stringify({ reasons, second }))
      server.close()
    `
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
      cwd: join(dirname(fileURLToPath(import.meta.url)), '..'),
      timeout: 10_000,
    })
    const { reasons, second } = JSON.parse(stdout.trim())
    // Once per request that ran the handler: the first, and the second unless it was a hit.
    expect(reasons).toEqual(second?.includes('hit') ? ['audit failed'] : ['audit failed', 'audit failed'])
  })
})

describe('a handler that fails after its response was sent (Express 5 catches its rejection)', () => {
  const express = EXPRESS[1][1]
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
  /** The ways an async handler fails once `res.json()` has sent the whole body. */
  const failures: [string, () => Promise<unknown>][] = [
    ['throws in the same turn', async () => {}],
    ['rejects a microtask later', () => Promise.resolve()],
    ['rejects after a timer (an awaited side effect that fails)', () => sleep(5)],
  ]

  it.each(failures)('%s: the error handler runs and nothing is stored', async (_, before) => {
    const app = express()
    let calls = 0
    let handled = 0
    const answer = async (_req: any, res: any) => {
      calls++
      res.json({ calls })
      await before()
      throw new Error('audit log down')
    }
    app.get('/route', cacheResponse({ ttl: 60, backend: memory() }), answer)
    app.get('/wrapped', cacheResponse({ ttl: 60, backend: memory() })(answer))
    app.use((_error: unknown, _req: any, res: any, _next: any) => {
      handled++
      if (!res.headersSent) res.status(500).end()
    })
    const r = await serve(app)
    for (const path of ['/route', '/wrapped']) {
      await r.request(path)
      await sleep(30)
      const second = await r.request(path)
      expect(second.headers['cache-status'], path).not.toMatch(/hit/)
    }
    await sleep(30)
    expect(calls).toBe(4)
    expect(handled).toBe(4)
  })

  it('does not hand its response to a request that arrives while that work still runs, when it then fails', async () => {
    // r67-c: the response was shared with requests waiting on it as soon as it ended, before the
    // handler's promise settled: the second request got it as a hit, though the work failed.
    for (const front of [false, true]) {
      const app = express()
      let calls = 0
      const answer = async (_req: any, res: any) => {
        const n = ++calls
        res.json({ n })
        await sleep(150)
        throw new Error(`audit of ${n} failed`)
      }
      const cache = cacheResponse({ ttl: 60, backend: memory(), frontSkipsAllMiddleware: front })
      app.get('/route', cache, answer)
      app.get('/wrapped', cache(answer))
      app.use((_error: unknown, _req: any, res: any, _next: any) => {
        if (!res.headersSent) res.status(500).end()
      })
      const r = await serve(
        front ? { listen: (...args: any[]) => createServer(cache.front(app)).listen(...args) } : app,
      )
      for (const path of ['/route', '/wrapped']) {
        const before = calls
        await r.request(path)
        const second = await r.request(path)
        expect(second.headers['cache-status'], `${path} front=${front}`).not.toMatch(/hit/)
        expect(second.body.toString(), `${path} front=${front}`).toBe(`{"n":${before + 2}}`)
        await sleep(200)
      }
    }
  })

  it('stores the response of a handler whose work after sending succeeds, once that work is over', async () => {
    const app = express()
    let calls = 0
    let audited = false
    app.get('/audited', cacheResponse({ ttl: 60, backend: memory() }), async (_req: any, res: any) => {
      calls++
      res.json({ calls })
      await sleep(20)
      audited = true
    })
    const r = await serve(app)
    await r.request('/audited')
    await sleep(50)
    expect(audited).toBe(true)
    const hit = await r.request('/audited')
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(hit.body.toString()).toBe('{"calls":1}')
    expect(calls).toBe(1)
  })
})
