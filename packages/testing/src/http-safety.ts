/**
 * The HTTP response-cache safety table: the cases every framework adapter must pass, over real
 * HTTP, against a real server of that framework. The table describes each route as data (what the
 * handler answers); a harness mounts those routes on its framework with the cache in front and
 * returns the base URL. Hits are observed by counting handler runs, so the table needs no header
 * of any particular adapter.
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { gunzipSync } from 'node:zlib'
import type { CacheBackend } from '@cache/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HOST_SPELLINGS } from './host-spellings.js'

/** What the handler of a {@link SafetyRoute} sees of the request. */
export interface SafetyRequest {
  method: string
  /** The request target as received: path and query. */
  url: string
  headers: IncomingHttpHeaders
}

/** What the handler answers, as data; the harness turns it into its framework's calls. */
export interface SafetyResponse {
  /** Default: 200. */
  status?: number
  /** Response headers the handler sets (`set-cookie` may be a list). */
  headers?: Record<string, string | string[]>
  /** A body sent whole. */
  body?: string | Buffer
  /** A body sent as a stream, one chunk after the other (`chunkDelay` ms apart). */
  chunks?: readonly (string | Buffer)[]
  /** ms between two chunks of `chunks`. Default: 0. */
  chunkDelay?: number
  /** ms the handler waits before answering. Default: 0. */
  delay?: number
  /** The stream of `chunks` fails after its first chunk (the response never completes). */
  failAfterFirstChunk?: boolean
  /** A `Content-Length` the body does not match (the handler lies about its length). */
  declaredLength?: number
}

/** Cache options of one route, in the shared vocabulary of the adapters. */
export interface SafetyCacheOptions {
  /** Seconds. */
  ttl: number
  /** Seconds. */
  staleWhileRevalidate?: number
  tags?: readonly string[]
  /** Request headers that become part of the key. */
  vary?: readonly string[]
  /** Unique per route: the unit of {@link SafetyApp.invalidatePrefix}. */
  keyPrefix: string
}

/** One route: a path, its cache options and its handler, which the table counts. */
export interface SafetyRoute {
  /** Exact path (no parameters). */
  path: string
  /** Methods the route answers besides HEAD. Default: `['GET']`. */
  methods?: readonly string[]
  cache: SafetyCacheOptions
  /**
   * Response headers that a hook or middleware registered **before** the cache sets on every
   * request of this route (a session layer, a CSRF layer, an i18n layer).
   */
  before?: Record<string, string | string[]>
  handle(req: SafetyRequest): SafetyResponse | Promise<SafetyResponse>
}

/** How the cache is set up for one mounted app. */
export interface SafetySetup {
  backend: CacheBackend
  /** The cache's clock, epoch ms (the table moves it for stale-while-revalidate). */
  now: () => number
  /** Register response compression (gzip above 1 KB) before or after the cache, or none. */
  compression?: 'before' | 'after'
}

/** A mounted app, listening on a real port. */
export interface SafetyApp {
  /** `http://127.0.0.1:<port>` */
  url: string
  /** Invalidates every variant of one URL (`path` with its query) for one host. */
  invalidate(path: string, host: string): Promise<void>
  /** Invalidates every response stored under `keyPrefix`. */
  invalidatePrefix(keyPrefix: string): Promise<void>
  invalidateTags(tags: readonly string[]): Promise<void>
  close(): Promise<void>
}

/** Mounts routes on a real server of one framework, the cache in front of each. */
export interface HttpCacheHarness {
  mount(routes: readonly SafetyRoute[], setup: SafetySetup): Promise<SafetyApp>
}

/** Options of {@link describeHttpCacheSafety}. */
export interface HttpCacheSafetyOptions {
  /** A fresh, empty backend for each mounted app. */
  backend: () => CacheBackend | Promise<CacheBackend>
}

interface Reply {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
  text: string
}

const TEXT = 'squeeze '.repeat(200)
/** Every byte value, 256 times: any text decoding on the way corrupts it. */
const BINARY = Buffer.from(Array.from({ length: 256 * 256 }, (_, i) => (i * 7 + (i >> 8)) % 256))
const FILE = Buffer.from('0123456789abcdef'.repeat(4096))

/**
 * Registers the safety table as a vitest `describe` block: the harness mounts every route once;
 * each row drives it over real HTTP and checks what clients receive and how often the handler ran.
 */
export function describeHttpCacheSafety(
  name: string,
  harness: HttpCacheHarness,
  options: HttpCacheSafetyOptions,
): void {
  describe(`${name}: HTTP cache safety table`, () => {
    const runs = new Map<string, number>()
    const count = (path: string) => {
      const n = (runs.get(path) ?? 0) + 1
      runs.set(path, n)
      return n
    }
    const ran = (path: string) => runs.get(path) ?? 0
    let clock = Date.now()
    const routes: SafetyRoute[] = []
    const route = (
      path: string,
      handle: (req: SafetyRequest, n: number) => SafetyResponse | Promise<SafetyResponse>,
      extra: {
        methods?: readonly string[]
        before?: SafetyRoute['before']
        cache?: Partial<SafetyCacheOptions>
      } = {},
    ) => {
      routes.push({
        ...extra,
        path,
        cache: { ttl: 60, keyPrefix: `p${routes.length}`, ...extra.cache },
        handle: (req) => handle(req, count(path)),
      })
    }
    const text = (body: string, headers: Record<string, string | string[]> = {}): SafetyResponse => ({
      headers: { 'content-type': 'text/plain; charset=utf-8', ...headers },
      body,
    })

    route('/control', (_, n) => text(`run ${n}`))
    route('/any', (req, n) => text(`${req.method} ${n}`), { methods: ['GET', 'POST', 'PUT', 'DELETE'] })
    for (const status of [500, 503, 404, 302, 204]) {
      route(`/status/${status}`, (_, n) => ({
        status,
        headers: (status === 302 ? { location: '/control' } : {}) as Record<string, string>,
        body: status === 204 ? undefined : `status ${status} run ${n}`,
      }))
    }
    route('/flaky', (_, n) => ({ status: n === 1 ? 503 : 200, body: `flaky ${n}` }))
    route('/me', (req) => text(`who ${req.headers.authorization ?? req.headers.cookie ?? 'anonymous'}`))
    const refused: [string, Record<string, string | string[]>][] = [
      ['Set-Cookie', { 'set-cookie': 'session=secret' }],
      ['Cache-Control: private', { 'cache-control': 'private' }],
      ['Cache-Control: no-store', { 'cache-control': 'no-store' }],
      ['Cache-Control: no-cache', { 'cache-control': 'no-cache' }],
      ['Cache-Control: s-maxage=0', { 'cache-control': 'max-age=60, s-maxage=0' }],
      ['Cache-Control: max-age=0', { 'cache-control': 'public, max-age=0' }],
      ['Vary: *', { vary: '*' }],
    ]
    refused.forEach(([, headers], i) => {
      route(`/refused/${i}`, (_, n) => text(`refused ${n}`, headers))
    })
    refused.slice(0, 2).forEach(([, headers], i) => {
      route(`/before/${i}`, (_, n) => text(`page ${n}`), { before: headers })
    })
    route('/before-vary', (req) => text(req.headers['accept-language'] === 'fr' ? 'bonjour' : 'hello'), {
      before: { vary: 'Accept-Language' },
    })
    route('/i18n', (req) =>
      text(req.headers['accept-language'] === 'fr' ? 'bonjour' : 'hello', { vary: 'Accept-Language' }),
    )
    route('/i18n-option', (req) => text(req.headers['accept-language'] === 'fr' ? 'bonjour' : 'hello'), {
      cache: { vary: ['accept-language'] },
    })
    route('/liar', () => ({ ...text('x'.repeat(100)), declaredLength: 4000 }))
    route('/broken', () => ({
      headers: { 'content-type': 'text/plain' },
      chunks: ['{"items":[1,2,', '3]}'],
      failAfterFirstChunk: true,
    }))
    route('/slow-stream', () => ({
      headers: { 'content-type': 'text/plain' },
      chunks: ['first ', 'second'],
      chunkDelay: 150,
    }))
    route('/head', (_, n) => text(`head body ${n} ${'h'.repeat(2000)}`))
    route('/etag', () => text('tagged body'))
    route('/file', (req): SafetyResponse => {
      const range = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range ?? ''))
      if (range === null)
        return {
          headers: { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes' },
          body: FILE,
        }
      const [start, end] = [Number(range[1]), Number(range[2])]
      return {
        status: 206,
        headers: {
          'content-type': 'application/octet-stream',
          'content-range': `bytes ${start}-${end}/${FILE.length}`,
        },
        body: FILE.subarray(start, end + 1),
      }
    })
    route('/swr', (_, n) => text(`version ${n}`), { cache: { ttl: 1, staleWhileRevalidate: 600 } })
    route('/flight', (_, n) => ({ ...text(`flight ${n}`), delay: 150 }))
    route('/binary', () => ({ headers: { 'content-type': 'application/octet-stream' }, body: BINARY }))
    route('/binary-stream', () => ({
      headers: { 'content-type': 'application/octet-stream' },
      chunks: [0, 1, 2, 3].map((i) => BINARY.subarray(i * 16384, (i + 1) * 16384)),
    }))
    route('/host', (req, n) => text(`host ${req.headers.host} ${n}`))
    route('/host-spelling', (req, n) => text(`host ${req.headers.host} ${n}`))
    route('/query', (req, n) => text(`${req.url} ${n}`))
    for (const what of ['url', 'prefix', 'tag']) {
      route(`/invalidate/${what}`, (_, n) => text(`${what} ${n}`), { cache: { tags: [`tag-${what}`] } })
    }

    const apps: SafetyApp[] = []
    let app: SafetyApp
    let backend: CacheBackend
    beforeAll(async () => {
      backend = await options.backend()
      app = await harness.mount(routes, { backend, now: () => clock })
      apps.push(app)
    })
    afterAll(async () => {
      await Promise.all(apps.map((a) => a.close()))
      await backend?.close()
    })
    const get = (path: string, headers: Record<string, string> = {}, method = 'GET') =>
      send(app.url, path, { headers, method })

    it('caches a plain GET (control row: the others can fail)', async () => {
      const first = await get('/control')
      const second = await get('/control')
      expect(first.status).toBe(200)
      expect(second.text).toBe(first.text)
      expect(ran('/control')).toBe(1)
    })

    it.each(['POST', 'PUT', 'DELETE'])('%s is never cached, and never answers a GET', async (method) => {
      const before = ran('/any')
      expect((await get('/any', {}, method)).text).toBe(`${method} ${before + 1}`)
      expect((await get('/any', {}, method)).text).toBe(`${method} ${before + 2}`)
      expect((await get('/any')).text).toMatch(/^GET /)
    })

    it.each([500, 503, 404, 302, 204])('a %i response is never stored', async (status) => {
      const path = `/status/${status}`
      expect((await get(path)).status).toBe(status)
      expect((await get(path)).status).toBe(status)
      expect(ran(path)).toBe(2)
    })

    it('a 503 is not stored, and the success after it is', async () => {
      expect((await get('/flaky')).status).toBe(503)
      expect((await get('/flaky')).text).toBe('flaky 2')
      expect((await get('/flaky')).text).toBe('flaky 2')
      expect(ran('/flaky')).toBe(2)
    })

    it.each([
      ['Authorization', 'authorization', 'Bearer alice'],
      ['Cookie', 'cookie', 'session=alice'],
    ])('a request with %s bypasses: its response never reaches another client', async (_, header, value) => {
      expect((await get('/me', { [header]: value })).text).toBe(`who ${value}`)
      expect((await get('/me')).text).toBe('who anonymous')
      const bob = value.replace('alice', 'bob')
      expect((await get('/me', { [header]: bob })).text).toBe(`who ${bob}`)
      expect((await get('/me', { [header]: value })).text).toBe(`who ${value}`)
    })

    it.each(refused.map(([label], i) => [label, i] as const))(
      'a response with %s is never stored',
      async (_, i) => {
        await get(`/refused/${i}`)
        const second = await get(`/refused/${i}`)
        expect(second.status).toBe(200)
        expect(ran(`/refused/${i}`)).toBe(2)
      },
    )

    it.each(refused.slice(0, 2).map(([label], i) => [label, i] as const))(
      'a response whose %s was set by a hook before the cache is never stored',
      async (_, i) => {
        const first = await get(`/before/${i}`)
        const second = await get(`/before/${i}`)
        expect(first.text).toBe('page 1')
        expect(second.text).toBe('page 2')
      },
    )

    it.each([
      ['set by the handler', '/i18n'],
      ['set by a hook before the cache', '/before-vary'],
      ['from the vary option', '/i18n-option'],
    ])('an en client never receives the fr body (Vary: Accept-Language %s)', async (_, path) => {
      for (let i = 0; i < 2; i++) {
        expect((await get(path, { 'accept-language': 'fr' })).text).toBe('bonjour')
        expect((await get(path, { 'accept-language': 'en' })).text).toBe('hello')
      }
      expect(ran(path)).toBeLessThanOrEqual(2)
    })

    it('a body that disagrees with its Content-Length is never replayed with that length', async () => {
      await attempt(app.url, '/liar', 300)
      await attempt(app.url, '/liar', 300)
      // Stored only if the framework sent a length that matches the body (Fastify corrects it).
      const before = ran('/liar')
      const third = await attempt(app.url, '/liar', 300)
      if (ran('/liar') === before) {
        expect(third).not.toBeInstanceOf(Error)
        const reply = third as Reply
        expect(reply.text).toBe('x'.repeat(100))
        expect(Number(reply.headers['content-length'] ?? reply.body.length)).toBe(reply.body.length)
      }
    })

    it('a stream that fails after its first chunk is never stored', async () => {
      await attempt(app.url, '/broken', 1_000)
      await attempt(app.url, '/broken', 1_000)
      expect(ran('/broken')).toBe(2)
    })

    it('a response whose client aborted mid-stream is never stored', async () => {
      // The client gives up 50 ms in, while the route waits 150 ms between its chunks. On a loaded
      // machine the request may not have reached the route by then: abort again until it has.
      for (let i = 0; i < 5 && ran('/slow-stream') === 0; i++) {
        await attempt(app.url, '/slow-stream', 50)
        await new Promise((resolve) => setTimeout(resolve, 400))
      }
      const aborted = ran('/slow-stream')
      expect(aborted).toBeGreaterThan(0)
      expect((await get('/slow-stream')).text).toBe('first second')
      // The next request runs the route: nothing of an aborted response was stored.
      expect(ran('/slow-stream')).toBe(aborted + 1)
    })

    it('HEAD never plants an empty body for GET', async () => {
      const head = await get('/head', {}, 'HEAD')
      expect(head.status).toBe(200)
      expect(head.body.length).toBe(0)
      for (let i = 0; i < 2; i++) {
        const full = await get('/head')
        expect(full.text).toMatch(/^head body \d+ h{2000}$/)
      }
    })

    it('If-None-Match with the stored ETag gets 304 with that ETag and no body', async () => {
      await get('/etag')
      const hit = await get('/etag')
      const etag = hit.headers.etag
      expect(etag).toBeTruthy()
      const conditional = await get('/etag', { 'if-none-match': String(etag) })
      expect(conditional.status).toBe(304)
      expect(conditional.headers.etag).toBe(etag)
      expect(conditional.body.length).toBe(0)
      expect((await get('/etag')).text).toBe('tagged body')
      expect(ran('/etag')).toBe(1)
    })

    it('a Range request never plants a part of the body', async () => {
      const part = await get('/file', { range: 'bytes=0-9' })
      expect([200, 206]).toContain(part.status)
      for (let i = 0; i < 2; i++) {
        const full = await get('/file')
        expect(full.status).toBe(200)
        expect(full.body.equals(FILE)).toBe(true)
      }
    })

    it('stale-while-revalidate serves the stale body at once, then the refreshed one', async () => {
      expect((await get('/swr')).text).toBe('version 1')
      clock += 2_000
      expect((await get('/swr')).text).toBe('version 1')
      await eventually(() => ran('/swr') >= 2)
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect((await get('/swr')).text).toBe('version 2')
      expect(ran('/swr')).toBe(2)
    })

    it('concurrent misses for one key run the handler once (single-flight)', async () => {
      const replies = await Promise.all(Array.from({ length: 5 }, () => get('/flight')))
      expect(replies.map((reply) => reply.text)).toEqual(Array(5).fill('flight 1'))
      expect(ran('/flight')).toBe(1)
    })

    it.each(['/binary', '/binary-stream'])('a binary body (%s) is replayed byte for byte', async (path) => {
      const first = await get(path)
      const second = await get(path)
      expect(first.body.equals(BINARY)).toBe(true)
      expect(second.body.equals(BINARY)).toBe(true)
      expect(ran(path)).toBe(1)
    })

    it('each host gets its own entry', async () => {
      expect((await get('/host', { host: 'a.example' })).text).toBe('host a.example 1')
      expect((await get('/host', { host: 'b.example' })).text).toBe('host b.example 2')
      expect((await get('/host', { host: 'a.example' })).text).toBe('host a.example 1')
      expect((await get('/host', { host: 'b.example' })).text).toBe('host b.example 2')
    })

    it('a host not spelled as a URL spells it (port 080, 127.1, [0:0:0:0:0:0:0:1]) is never stored', async () => {
      for (const [host] of HOST_SPELLINGS) {
        const first = await get('/host-spelling', { host })
        // A server may refuse a spelling itself (400): nothing is stored either.
        if (first.status === 400) continue
        expect(first.text, host).toMatch(/^host /)
        expect((await get('/host-spelling', { host })).text, host).not.toBe(first.text)
      }
    })

    it('the host as a URL spells it is stored, and invalidating any spelling of it reaches the entry', async () => {
      for (const [other, host] of HOST_SPELLINGS) {
        const first = await get('/host-spelling', { host })
        expect(first.text.startsWith(`host ${host} `), `${host}: ${first.text}`).toBe(true)
        expect((await get('/host-spelling', { host })).text, host).toBe(first.text)
        await app.invalidate('/host-spelling', other)
        expect((await get('/host-spelling', { host })).text, `${other} -> ${host}`).not.toBe(first.text)
      }
    })

    it('query order does not split entries, but different values never share one', async () => {
      const ab = await get('/query?a=1&b=2')
      expect((await get('/query?b=2&a=1')).text).toBe(ab.text)
      expect((await get('/query?a=1&b=3')).text).toBe('/query?a=1&b=3 2')
      expect(ran('/query')).toBe(2)
    })

    it.each([
      ['its URL', 'url', (a: SafetyApp, r: SafetyRoute) => a.invalidate(r.path, 'shop.test')],
      ['its key prefix', 'prefix', (a: SafetyApp, r: SafetyRoute) => a.invalidatePrefix(r.cache.keyPrefix)],
      ['its tag', 'tag', (a: SafetyApp, r: SafetyRoute) => a.invalidateTags(r.cache.tags ?? [])],
    ] as const)('invalidating by %s makes the next request run the handler', async (_, what, invalidate) => {
      const path = `/invalidate/${what}`
      const host = { host: 'shop.test' }
      expect((await get(path, host)).text).toBe(`${what} 1`)
      expect((await get(path, host)).text).toBe(`${what} 1`)
      await invalidate(app, routes.find((r) => r.path === path)!)
      expect((await get(path, host)).text).toBe(`${what} 2`)
      expect((await get(path, host)).text).toBe(`${what} 2`)
    })

    describe.each(['before', 'after'] as const)('compression registered %s the cache', (order) => {
      const compressed = new Map<string, number>()
      let zipped: SafetyApp
      beforeAll(async () => {
        const zipBackend = await options.backend()
        const zipRoutes: SafetyRoute[] = [
          {
            path: '/text',
            cache: { ttl: 60, keyPrefix: `zip-${order}` },
            handle: () => {
              compressed.set('/text', (compressed.get('/text') ?? 0) + 1)
              return text(TEXT)
            },
          },
        ]
        const mounted = await harness.mount(zipRoutes, {
          backend: zipBackend,
          now: () => clock,
          compression: order,
        })
        zipped = {
          ...mounted,
          close: async () => {
            await mounted.close()
            await zipBackend.close()
          },
        }
        apps.push(zipped)
      })

      it('never sends gzip to a client that did not ask for it, and stores each encoding', async () => {
        for (let i = 0; i < 2; i++) {
          const gzip = await send(zipped.url, '/text', { headers: { 'accept-encoding': 'gzip' } })
          expect(gzip.headers['content-encoding']).toBe('gzip')
          expect(gunzipSync(gzip.body).toString()).toBe(TEXT)
          const plain = await send(zipped.url, '/text', { headers: { 'accept-encoding': 'identity' } })
          expect(plain.headers['content-encoding']).toBeUndefined()
          expect(plain.text).toBe(TEXT)
        }
        expect(compressed.get('/text')).toBeLessThanOrEqual(2)
      })
    })
  })
}

/** One request over a fresh connection, bounded at 5 s. */
function send(
  base: string,
  path: string,
  options: { headers?: Record<string, string>; method?: string } = {},
): Promise<Reply> {
  const { hostname, port } = new URL(base)
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: hostname,
        port,
        path,
        method: options.method ?? 'GET',
        headers: options.headers,
        agent: false,
        timeout: 5_000,
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () => {
          const body = Buffer.concat(chunks)
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: body.toString() })
        })
        res.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(new Error(`${options.method ?? 'GET'} ${path} timed out`)))
    req.on('error', reject)
    req.end()
  })
}

/** A request that may fail or be abandoned after `timeout` ms: its reply, or the error; never rejects. */
function attempt(base: string, path: string, timeout: number): Promise<Reply | Error> {
  const { hostname, port } = new URL(base)
  return new Promise((resolve) => {
    const req = httpRequest({ host: hostname, port, path, agent: false, timeout }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => {
        const body = Buffer.concat(chunks)
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: body.toString() })
      })
      res.on('error', resolve)
      res.on('close', () => resolve(new Error('closed before the end')))
    })
    req.on('timeout', () => req.destroy(new Error('abandoned')))
    req.on('error', resolve)
    req.end()
  })
}

/** Polls `check` every 10 ms for at most 3 s (a background refresh). */
async function eventually(check: () => boolean): Promise<void> {
  for (let i = 0; i < 300 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 10))
}
