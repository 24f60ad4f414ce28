/**
 * Hostile and unusual HTTP requests against an Express app using @cache/express: every row is a
 * safe bypass or a correct answer; nobody ever receives a response meant for another client,
 * another host, another protocol or another method, nor a body that did not complete. The second
 * half runs each attack on Express 4 and 5, with the cache as global middleware, route middleware
 * and handler wrapper, on memory and memory → Redis.
 */
import { writeFileSync } from 'node:fs'
import {
  request as httpRequest,
  type IncomingHttpHeaders,
  type RequestListener,
  type Server,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import { CacheConfigError, type CacheBackend } from '@cache/core'
import {
  cacheResponse,
  invalidateResponse,
  invalidateResponsePrefix,
  invalidateTags,
  noteArrivals,
  type ResponseCacheHandler,
} from '@cache/express'
import { memoryBackend } from '@cache/memory'
import { multiLevel } from '@cache/multi-level'
import { redisBackend } from '@cache/redis'
import express from 'express'
import express4 from 'express4'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { SharedServers } from './support/backends.js'
import {
  closeServer,
  frontApp,
  type HostileApp,
  hostileApp,
  listenOn,
  POSITIONS,
  type Position,
} from './support/hostile-http-app.js'
import {
  asyncHandler,
  freshExpress,
  HIDDEN_CACHES,
  HUGE_FILE,
  MEDIUM_FILE,
  neverReads,
  pipelineAndLeave,
  rawGet,
  requireKey,
  SEPARATE_GUARDS,
  STATIC_DIR,
  swallowingPipe,
} from './support/hostile-http-attacks.js'

interface Reply {
  status: number
  headers: IncomingHttpHeaders
  body: string
}

/** A raw request, so Host and any other header can be set freely; bounded at 5 s. */
function send(
  port: number,
  path: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, path, method, headers, agent: false, timeout: 5_000 },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk) => chunks.push(chunk))
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        )
      },
    )
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)))
    req.on('error', reject)
    req.end()
  })
}

/** A request that may fail (an aborted or truncated response): its reply, or the error. */
function attempt(
  port: number,
  path: string,
  options: { headers?: Record<string, string>; body?: string; timeout?: number } = {},
): Promise<Reply | Error> {
  return new Promise((resolve) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        headers: options.headers,
        agent: false,
        timeout: options.timeout ?? 5_000,
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk) => chunks.push(chunk))
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        )
        res.on('error', resolve)
      },
    )
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)))
    req.on('error', resolve)
    req.end(options.body)
  })
}

/** Polls `check` every 10 ms for at most 3 s (a background refresh, a store after 'finish'). */
async function eventually(check: () => boolean): Promise<void> {
  for (let i = 0; i < 300 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 10))
}

/** Builds the app: every handler counts its runs, so a replay from the cache is visible. */
function buildApp(backend: CacheBackend, trustProxy: boolean) {
  const runs = new Map<string, number>()
  const count = (route: string) => {
    const n = (runs.get(route) ?? 0) + 1
    runs.set(route, n)
    return n
  }
  const cached = cacheResponse({ ttl: 60, backend, statusHeader: 'x-cache' })
  const small = cacheResponse({ ttl: 60, backend, statusHeader: 'x-cache', maxBodySize: '1KB' })
  const app = express()
  if (trustProxy) app.set('trust proxy', true)

  app.all('/any', cached, (req, res) => {
    res.json({ method: req.method, n: count(`any:${req.method}`) })
  })
  app.get('/me', cached, (req, res) => {
    const who = req.headers.authorization ?? req.headers.cookie ?? 'anonymous'
    res.json({ who, n: count('me') })
  })
  app.get('/login', cached, (_req, res) => {
    const n = count('login')
    res.cookie('session', `secret-${n}`).json({ n })
  })
  app.get('/home', cached, (req, res) => {
    res.json({ link: `https://${req.hostname}/next`, n: count(`home:${req.hostname}`) })
  })
  app.get('/vary-star', cached, (_req, res) => {
    res.set('vary', '*').json({ n: count('vary-star') })
  })
  app.get('/private', cached, (_req, res) => {
    res.set('cache-control', 'private').json({ n: count('private') })
  })
  app.get('/big', small, (_req, res) => {
    res.type('text').send(`${count('big')}:${'x'.repeat(4096)}`)
  })
  app.get('/big-stream', small, (_req, res) => {
    res.type('text')
    res.write(`${count('big-stream')}:`)
    for (let i = 0; i < 8; i++) res.write('y'.repeat(512))
    res.end('end')
  })
  app.get('/throws', cached, async () => {
    count('throws')
    throw new Error('handler failed')
  })
  app.get('/error-500', cached, (_req, res) => {
    res.status(500).json({ n: count('error-500') })
  })
  app.get('/flaky', cached, (_req, res) => {
    const n = count('flaky')
    if (n === 1) res.status(503).json({ n })
    else res.json({ n })
  })
  app.get('/echo', cached, (req, res) => {
    res.json({ url: req.originalUrl, n: count(`echo:${req.originalUrl}`) })
  })
  app.use((error: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(500).json({ error: error.message })
  })
  return { app, runs }
}

async function listen(app: express.Express): Promise<Server> {
  return new Promise((resolve) => {
    const server = noteArrivals(app.listen(0, '127.0.0.1', () => resolve(server)))
  })
}

const servers = new SharedServers()
afterAll(() => servers.stop())

const backends: [string, () => Promise<CacheBackend>][] = [
  ['memory', async () => memoryBackend({ maxKeys: 1000 })],
  [
    'memory → redis',
    async () =>
      multiLevel(
        memoryBackend({ maxKeys: 1000 }),
        redisBackend(await servers.redisUrl(), { namespace: `faults-http-${process.pid}` }),
      ),
  ],
]

describe('bad cacheResponse options fail at start-up, naming the option', () => {
  it.each([
    ['ttl', () => cacheResponse({ ttl: 'abc' }), CacheConfigError, /ttl/],
    ['ttl 0', () => cacheResponse({ ttl: 0 }), CacheConfigError, /ttl/],
    ['maxBodySize', () => cacheResponse({ maxBodySize: '1XB' }), CacheConfigError, /maxBodySize.*"1XB"/],
    ['keyPrefix', () => cacheResponse({ keyPrefix: '' }), CacheConfigError, /keyPrefix/],
    ['statuses', () => cacheResponse({ statuses: [99] }), CacheConfigError, /statuses/],
  ] as const)('%s', (_, build, type, message) => {
    expect(build).toThrow(type)
    expect(build).toThrow(message)
  })
})

describe.each(backends)('%s', (_, makeBackend) => {
  let backend: CacheBackend
  let plain: Server
  let proxied: Server
  let port: number
  let proxiedPort: number
  let runs: Map<string, number>

  beforeAll(async () => {
    backend = await makeBackend()
    const built = buildApp(backend, false)
    runs = built.runs
    plain = await listen(built.app)
    port = (plain.address() as AddressInfo).port
    proxied = await listen(buildApp(backend, true).app)
    proxiedPort = (proxied.address() as AddressInfo).port
  })
  afterAll(async () => {
    plain.closeAllConnections()
    proxied.closeAllConnections()
    await new Promise((resolve) => plain.close(resolve))
    await new Promise((resolve) => proxied.close(resolve))
    await backend.close()
  })

  it('caches a plain GET (control row: the others can fail)', async () => {
    const a = await send(port, '/any?control')
    const b = await send(port, '/any?control')
    expect(JSON.parse(b.body)).toEqual(JSON.parse(a.body))
    expect(b.headers['x-cache']).toBe('HIT')
  })

  it.each(['POST', 'PUT', 'PATCH', 'DELETE'])(
    '%s is never cached, and never answers a GET',
    async (method) => {
      const first = JSON.parse((await send(port, `/any?m=${method}`, {}, method)).body)
      const second = JSON.parse((await send(port, `/any?m=${method}`, {}, method)).body)
      expect(second.n).toBe(first.n + 1)
      const get = JSON.parse((await send(port, `/any?m=${method}`)).body)
      expect(get.method).toBe('GET')
    },
  )

  it.each([
    ['Authorization', 'authorization', 'Bearer alice-token'],
    ['Cookie', 'cookie', 'session=alice'],
  ])('a request with %s bypasses: its response is never served to anyone else', async (_, header, value) => {
    const before = runs.get('me') ?? 0
    const alice = JSON.parse((await send(port, '/me', { [header]: value })).body)
    expect(alice.who).toBe(value)
    const anonymous = await send(port, '/me')
    expect(JSON.parse(anonymous.body).who).toBe('anonymous')
    const bob = JSON.parse((await send(port, '/me', { [header]: value.replace('alice', 'bob') })).body)
    expect(bob.who).not.toContain('alice')
    expect(runs.get('me')! - before).toBeGreaterThanOrEqual(2)
  })

  it('a response with Set-Cookie is never replayed to another client', async () => {
    const first = await send(port, '/login')
    const second = await send(port, '/login')
    expect(first.headers['set-cookie']?.[0]).toMatch(/^session=secret-1/)
    expect(second.headers['set-cookie']?.[0]).toMatch(/^session=secret-2/)
    expect(second.headers['x-cache']).not.toBe('HIT')
  })

  it('Host variations share an entry only when they name the same host, spelled the same', async () => {
    const a = JSON.parse((await send(port, '/home', { host: 'a.example' })).body)
    const b = JSON.parse((await send(port, '/home', { host: 'b.example' })).body)
    expect(a.link).toBe('https://a.example/next')
    expect(b.link).toBe('https://b.example/next')
    // Express tells these apart from a.example (a tenant lookup would too): each gets its own answer.
    for (const host of ['A.EXAMPLE', 'a.example.', 'a.example:8080']) {
      const hostname = host.replace(/:8080$/, '')
      for (let i = 0; i < 2; i++) {
        expect(JSON.parse((await send(port, '/home', { host })).body).link, host).toBe(
          `https://${hostname}/next`,
        )
      }
    }
    expect(JSON.parse((await send(port, '/home', { host: 'a.example' })).body).link).toBe(
      'https://a.example/next',
    )
    expect(JSON.parse((await send(port, '/home', { host: 'b.example' })).body).link).toBe(
      'https://b.example/next',
    )
  })

  it.each([
    'evil.example/../a.example',
    'a.example@evil.example',
    'a.example\\evil.example',
    '%61.example',
    'a.example#evil',
    '',
  ])('a malformed Host %j never makes or reads an entry another host gets', async (host) => {
    const reply = await send(port, '/home', { host })
    expect(reply.status).toBeLessThan(500)
    const clean = JSON.parse((await send(port, '/home', { host: 'a.example' })).body)
    expect(clean.link).toBe('https://a.example/next')
  })

  it('X-Forwarded-Host cannot poison another host: ignored without trust proxy', async () => {
    const attack = JSON.parse(
      (await send(port, '/home?xfh', { host: 'victim.example', 'x-forwarded-host': 'evil.example' })).body,
    )
    expect(attack.link).toBe('https://victim.example/next')
    const victim = JSON.parse((await send(port, '/home?xfh', { host: 'victim.example' })).body)
    expect(victim.link).toBe('https://victim.example/next')
  })

  it('X-Forwarded-Host cannot poison another host: keyed as the host it names under trust proxy', async () => {
    const attack = JSON.parse(
      (await send(proxiedPort, '/home?xfh', { host: 'victim.example', 'x-forwarded-host': 'evil.example' }))
        .body,
    )
    expect(attack.link).toBe('https://evil.example/next')
    const victim = JSON.parse((await send(proxiedPort, '/home?xfh', { host: 'victim.example' })).body)
    expect(victim.link).toBe('https://victim.example/next')
  })

  it.each([
    ['Vary: *', '/vary-star', 'vary-star'],
    ['Cache-Control: private', '/private', 'private'],
  ])('a response with %s is not stored', async (_, path, route) => {
    const before = runs.get(route) ?? 0
    await send(port, path)
    await send(port, path)
    expect(runs.get(route)! - before).toBe(2)
  })

  it.each([
    ['one chunk', '/big', 'big', 4096 + 2],
    ['streamed in chunks', '/big-stream', 'big-stream', 2 + 8 * 512 + 3],
  ])(
    'a body over maxBodySize (%s) passes through whole and is not stored',
    async (_, path, route, length) => {
      const before = runs.get(route) ?? 0
      const first = await send(port, path)
      const second = await send(port, path)
      expect(first.status).toBe(200)
      expect(first.body.length).toBe(length)
      expect(first.body.startsWith(`${before + 1}:`)).toBe(true)
      expect(second.body.startsWith(`${before + 2}:`)).toBe(true)
    },
  )

  it.each([
    ['throws', '/throws', 'throws'],
    ['returns 500', '/error-500', 'error-500'],
  ])('a handler that %s is not cached', async (_, path, route) => {
    const before = runs.get(route) ?? 0
    expect((await send(port, path)).status).toBe(500)
    expect((await send(port, path)).status).toBe(500)
    expect(runs.get(route)! - before).toBe(2)
  })

  it('a 503 is not cached, and the success after it is', async () => {
    expect((await send(port, '/flaky')).status).toBe(503)
    const ok = await send(port, '/flaky')
    expect(ok.status).toBe(200)
    expect(await send(port, '/flaky')).toMatchObject({ status: 200, body: ok.body })
  })

  it.each([
    '/echo?__proto__[polluted]=1',
    '/echo?constructor[prototype][polluted]=1',
    '/echo/%2e%2e/%2e%2e/x',
    '/echo?a=%00b',
    '/echo?q=%F0%9F%94%91',
    `/echo?long=${'z'.repeat(6000)}`,
  ])('the hostile URL %s gets its own correct answer and pollutes nothing', async (path) => {
    const reply = await send(port, path)
    expect(reply.status).toBeLessThan(500)
    if (reply.status === 200) {
      expect(JSON.parse(reply.body).url).toBe(path)
      expect(JSON.parse((await send(port, path)).body).url).toBe(path)
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('query order does not split entries, but different values never share one', async () => {
    const ab = JSON.parse((await send(port, '/echo?a=1&b=2')).body)
    const ba = JSON.parse((await send(port, '/echo?b=2&a=1')).body)
    expect(ba.n).toBe(ab.n)
    const other = JSON.parse((await send(port, '/echo?a=1&b=3')).body)
    expect(other.url).toBe('/echo?a=1&b=3')
  })
})

const majors = [
  ['Express 4', express4 as unknown as typeof express],
  ['Express 5', express],
] as const

describe.each(backends)('attacks on %s', (_, makeBackend) => {
  let backend: CacheBackend
  beforeAll(async () => {
    backend = await makeBackend()
  })
  afterAll(async () => {
    await backend.close()
  })

  describe.each(majors)('%s', (_major, expressOf) => {
    it('front(app) never replays past a route guard: an admin fills the cache, an anonymous client gets 401', async () => {
      const { server, port } = await listenOn(frontApp(expressOf, backend))
      try {
        expect((await send(port, '/admin/report', { 'x-api-key': 'admin-key' })).status).toBe(200)
        const anonymous = await send(port, '/admin/report')
        expect(anonymous.status).toBe(401)
        expect(anonymous.body).not.toContain('revenue')
      } finally {
        await closeServer(server)
      }
    })

    it.each(['route', 'router'] as const)(
      "a guard that sends outsiders on with next('%s') never lets them receive the guarded response",
      async (skip) => {
        const express = expressOf
        const app = express()
        const keyPrefix = `guard-${skip}-${Math.random().toString(36).slice(2)}`
        const cache = cacheResponse({ ttl: 60, backend, keyPrefix })
        const internalOnly = (req: any, _res: any, next: any) =>
          req.get('x-api-key') === 'k-internal' ? next() : next(skip)
        const secret = (_req: any, res: any) => res.json({ view: 'internal', dbPassword: 'hunter2' })
        if (skip === 'route') {
          app.get('/status', internalOnly, cache, secret)
        } else {
          const internal = express.Router()
          internal.use(internalOnly)
          internal.get('/status', cache, secret)
          app.use(internal)
        }
        app.get('/status', cache, (_req: any, res: any) => res.json({ view: 'public' }))
        const { server, port } = await listenOn(app as unknown as RequestListener)
        try {
          expect(JSON.parse((await send(port, '/status', { 'x-api-key': 'k-internal' })).body).view).toBe(
            'internal',
          )
          for (let i = 0; i < 2; i++) {
            const outsider = await send(port, '/status')
            expect(outsider.body).not.toContain('hunter2')
            expect(JSON.parse(outsider.body).view).toBe('public')
          }
        } finally {
          await closeServer(server)
        }
      },
    )

    it('invalidating one spelling of a URL renews every spelling Express routes to the same handler', async () => {
      const express = expressOf
      const app = express()
      const keyPrefix = `spell-${Math.random().toString(36).slice(2)}`
      const cache = cacheResponse({ ttl: 300, backend, keyPrefix })
      const prices: Record<string, number> = { 1: 10 }
      app.get('/products/:id', cache, (req: any, res: any) => res.json({ price: prices[req.params.id] }))
      app.get('/product', cache, (req: any, res: any) => res.json({ price: prices[req.query.id] }))
      const { server, port } = await listenOn(app as unknown as RequestListener)
      const spellings = [
        '/products/1',
        '/products/1/',
        '/Products/1',
        '/products/%31',
        '/product?id=1',
        '/product?id=%31',
        '/product?id=1&',
      ]
      try {
        for (const path of spellings) await send(port, path, { host: 'shop.test' })
        prices[1] = 99
        await cache.invalidate('/products/1', { host: 'shop.test' })
        await invalidateResponse('https://shop.test/product?id=1', { backend, keyPrefix })
        for (const path of spellings)
          expect(JSON.parse((await send(port, path, { host: 'shop.test' })).body).price, path).toBe(99)
      } finally {
        await closeServer(server)
      }
    })

    it.each(['router', 'sub-app'] as const)(
      'two %ss made by one factory, picked per request by a function, never serve the admin response to a user',
      async (shape) => {
        const express = expressOf
        const keyPrefix = `factory-${shape}-${Math.random().toString(36).slice(2)}`
        const requireRole = (role: string) => (req: any, res: any, next: any) =>
          req.role === role ? next() : res.sendStatus(403)
        const make = (role: string, data: object) => {
          const r: any = shape === 'router' ? express.Router() : express()
          r.get(
            '/report',
            requireRole(role),
            cacheResponse({ ttl: 60, backend, keyPrefix }),
            (_req: any, res: any) => res.json(data),
          )
          return r
        }
        const admin = make('admin', { salaries: 'SECRET' })
        const user = make('user', { salaries: 'n/a' })
        const app = express()
        app.use((req: any, _res: any, next: any) => {
          req.role = req.get('x-api-key') === 'admin-key' ? 'admin' : 'user'
          next()
        })
        app.use((req: any, res: any, next: any) => (req.role === 'admin' ? admin : user)(req, res, next))
        const { server, port } = await listenOn(app as unknown as RequestListener)
        try {
          for (let i = 0; i < 3; i++) {
            expect((await send(port, '/report', { 'x-api-key': 'admin-key' })).body).toContain('SECRET')
            const other = await send(port, '/report')
            expect(other.body).not.toContain('SECRET')
            expect(JSON.parse(other.body).salaries).toBe('n/a')
          }
        } finally {
          await closeServer(server)
        }
      },
    )

    it('invalidating a URL reaches the entry of a Host that spells out its default port (shop.test:80)', async () => {
      const app = expressOf()
      const keyPrefix = `port-${Math.random().toString(36).slice(2)}`
      let price = 10
      app.get('/products/:id', cacheResponse({ ttl: 300, backend, keyPrefix }), (_req: any, res: any) =>
        res.json({ price }),
      )
      const { server, port } = await listenOn(app as unknown as RequestListener)
      try {
        const at = async () =>
          JSON.parse((await send(port, '/products/1', { host: 'shop.test:80' })).body).price
        expect(await at()).toBe(10)
        price = 20
        expect(await at()).toBe(10)
        await invalidateResponse('/products/1', { host: 'shop.test', backend, keyPrefix })
        expect(await at()).toBe(20)
        price = 30
        await invalidateResponse('http://shop.test:80/products/1', { backend, keyPrefix })
        expect(await at()).toBe(30)
      } finally {
        await closeServer(server)
      }
    })

    describe.each(POSITIONS)('cache as %s', (position: Position) => {
      let app: HostileApp
      let server: Server
      let port: number
      const runs = (route: string) => app.runs.get(route) ?? 0
      beforeAll(async () => {
        app = hostileApp(expressOf, backend, position)
        ;({ server, port } = await listenOn(app.listener))
      })
      afterAll(() => closeServer(server))

      it("Bob never receives Alice's account (session layer before the cache sets Cache-Control: private)", async () => {
        expect(JSON.parse((await send(port, '/private', { 'x-session': 'alice' })).body)).toEqual({
          account: 'alice',
        })
        expect(JSON.parse((await send(port, '/private', { 'x-session': 'bob' })).body)).toEqual({
          account: 'bob',
        })
        expect(JSON.parse((await send(port, '/private')).body)).toEqual({ account: 'anonymous' })
      })

      it("visitor 2 never receives visitor 1's cookie and CSRF token (set before the cache)", async () => {
        const first = await send(port, '/form')
        const second = await send(port, '/form')
        expect(second.body).not.toBe(first.body)
        expect(String(second.headers['set-cookie'])).not.toBe(String(first.headers['set-cookie']))
      })

      it("visitor 2 never receives visitor 1's express-session cookie (set as the headers go out)", async () => {
        const first = await send(port, '/session/page')
        const second = await send(port, '/session/page')
        expect(first.headers['set-cookie']).toBeDefined()
        expect(second.body).not.toBe(first.body)
        expect(String(second.headers['set-cookie'])).not.toBe(String(first.headers['set-cookie']))
      })

      it('an en client never receives the fr body (Vary: Accept-Language set before the cache)', async () => {
        expect((await send(port, '/i18n', { 'accept-language': 'fr' })).body).toBe('bonjour')
        expect((await send(port, '/i18n', { 'accept-language': 'en' })).body).toBe('hello')
        expect((await send(port, '/i18n', { 'accept-language': 'fr' })).body).toBe('bonjour')
      })

      it('a route guard before the cache answers every anonymous request, after an admin filled the cache', async () => {
        expect((await send(port, '/admin/report', { 'x-api-key': 'admin-key' })).status).toBe(200)
        const hit = await send(port, '/admin/report', { 'x-api-key': 'admin-key' })
        expect(hit.body).toContain('revenue')
        const anonymous = await send(port, '/admin/report')
        expect(anonymous.status).toBe(401)
        expect(anonymous.body).not.toContain('revenue')
      })

      it('X-Forwarded-Proto: http behind a trusted proxy never plants http:// links for https clients', async () => {
        const host = { host: 'shop.example' }
        expect((await send(port, '/link', { ...host, 'x-forwarded-proto': 'http' })).body).toBe(
          'http://shop.example/next',
        )
        expect((await send(port, '/link', { ...host, 'x-forwarded-proto': 'https' })).body).toBe(
          'https://shop.example/next',
        )
      })

      it('Host with a port never plants its links for the host without it', async () => {
        expect((await send(port, '/link', { host: 'a.example:8080' })).body).toBe(
          'http://a.example:8080/next',
        )
        expect((await send(port, '/link', { host: 'a.example' })).body).toBe('http://a.example/next')
      })

      it.each([
        ['declares Content-Length 4000 and sends 100 bytes', '/liar', 'liar'],
        ['destroys the response, then calls end()', '/destroyed', 'destroyed'],
      ])('a handler that %s is never replayed', async (_, path, route) => {
        const before = runs(route)
        await attempt(port, path, { timeout: 300 })
        await attempt(port, path, { timeout: 300 })
        expect(runs(route) - before).toBe(2)
      })

      it('a response whose client aborted mid-stream is never replayed', async () => {
        const before = runs('slow-stream')
        await attempt(port, '/slow-stream', { timeout: 50 })
        await new Promise((resolve) => setTimeout(resolve, 200))
        expect((await send(port, '/slow-stream')).body).toBe('first second')
        expect(runs('slow-stream') - before).toBe(2)
      })

      it('a GET with a body never plants what the body asked for', async () => {
        await attempt(port, '/search', {
          body: 'evil',
          headers: { 'content-type': 'text/plain', 'content-length': '4' },
        })
        expect((await send(port, '/search')).body).toBe('results for everything')
      })

      it('a Range request never plants a part of the body; HEAD and If-None-Match never plant an empty one', async () => {
        const part = await attempt(port, '/file', { headers: { range: 'bytes=0-9' } })
        expect((part as Reply).status).toBe(206)
        const head = await send(port, '/file', {}, 'HEAD')
        expect(head.status).toBe(200)
        const etag = String(head.headers.etag)
        expect((await send(port, '/file', { 'if-none-match': etag })).status).toBe(304)
        const full = await send(port, '/file')
        expect(full.status).toBe(200)
        expect(full.body.length).toBe(64 * 1024)
        const again = await send(port, '/file')
        expect(again.body.length).toBe(64 * 1024)
      })

      it.each([
        ['before', '/gzip-before/text'],
        ['after', '/gzip-after/text'],
      ])(
        'compression registered %s the cache never sends gzip to a client that did not ask for it',
        async (_, path) => {
          expect((await send(port, path, { 'accept-encoding': 'gzip' })).headers['content-encoding']).toBe(
            'gzip',
          )
          for (let i = 0; i < 2; i++) {
            const plain = await send(port, path, { 'accept-encoding': 'identity' })
            expect(plain.headers['content-encoding']).toBeUndefined()
            expect(plain.body).toBe('squeeze '.repeat(200))
          }
          const gzip = await send(port, path, { 'accept-encoding': 'gzip' })
          expect(gzip.headers['content-encoding']).toBe('gzip')
          // Both encodings are stored: the attack ran against entries, not pass-throughs.
          expect(gzip.headers['cache-status']).toMatch(/hit/)
        },
      )

      it('a concurrent request never receives the variant of the request it waited for', async () => {
        const languages = ['de', 'fr', 'de', 'it', 'fr', 'de']
        const replies = await Promise.all(
          languages.map((language) =>
            send(port, `/slow-vary?${position.length}`, { 'accept-language': language }),
          ),
        )
        expect(replies.map((reply) => reply.body)).toEqual(languages.map((language) => `lang ${language}`))
      })

      it.each([
        ['calls next()', '/refresh'],
        ['streams 64 KB with sendFile', '/refresh-file'],
      ])('a stale-while-revalidate refresh that %s never hangs a request', async (_, path) => {
        expect((await send(port, path)).body).toBe('first')
        app.expire()
        for (let i = 0; i < 3; i++) expect((await send(port, path)).status).toBe(200)
        await eventually(() => runs(path.slice(1)) >= 2)
        expect((await send(port, path)).status).toBe(200)
      })
    })
  })
})

/**
 * Attacks from positions the rows above do not take: a guard registered as a route of its own, a
 * cache hidden in another function, pipelined requests whose client left, a client that never
 * reads, an error after the body started, a sub-app with its own settings, host spellings, query
 * encodings, and invalidation racing a response in flight. Express 4 and 5; each app is built for
 * its test.
 */
describe.each(majors)('%s, attacked from every position', (_major, expressOf) => {
  const started: Server[] = []
  const sockets: { destroy(): void }[] = []
  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy()
    await Promise.all(started.splice(0).map((server) => closeServer(server)))
  })
  const serve = async (app: unknown): Promise<number> => {
    const { server, port } = await listenOn(app as RequestListener)
    started.push(server)
    return port
  }
  const unique = () => `attack-${Math.random().toString(36).slice(2)}`
  const host = { host: 'shop.test' }

  describe.each(backends)('on %s', (_, makeBackend) => {
    let backend: CacheBackend
    beforeAll(async () => {
      backend = await makeBackend()
    })
    afterAll(() => backend.close())

    it('a pipelined request whose client left never pins its response past the ttl or an invalidation', async () => {
      let now = Date.now()
      let version = 0
      const news = cacheResponse({ ttl: 1, backend, keyPrefix: unique(), now: () => now })
      const app = expressOf()
      app.use('/static', expressOf.static(STATIC_DIR))
      app.get('/news', news, (_req, res) => {
        res.send(`headline v${++version}`)
      })
      const port = await serve(app)
      await pipelineAndLeave(port, '/static/huge.bin', '/news', 'shop.test')
      await send(port, '/news', host)
      now += 2_000
      const afterTtl = await send(port, '/news', host)
      expect(afterTtl.headers['cache-status']).not.toMatch(/hit/)
      expect(afterTtl.body).toBe(`headline v${version}`)
      const before = version
      await news.invalidate('/news', { host: 'shop.test' })
      expect((await send(port, '/news', host)).body).toBe(`headline v${before + 1}`)
    })
  })

  it('a streamed response queued behind a pipelined download never hangs the next clients', async () => {
    const app = expressOf()
    app.use('/static', expressOf.static(STATIC_DIR))
    app.get('/img', cacheResponse({ backend: memoryBackend(), ttl: 60 }), (_req, res) =>
      res.sendFile(MEDIUM_FILE),
    )
    const port = await serve(app)
    await pipelineAndLeave(port, '/static/huge.bin', '/img', 'shop.test')
    const next = await attempt(port, '/img', { headers: host, timeout: 3_000 })
    expect(next).not.toBeInstanceOf(Error)
    expect((next as Reply).body.length).toBe(100 * 1024)
  })

  it('a handler that stops when its pipelined client left never stores the truncated body', async () => {
    const app = expressOf()
    app.use('/static', expressOf.static(STATIC_DIR))
    app.get('/feed', cacheResponse({ backend: memoryBackend(), ttl: 60 }), (req, res) => {
      res.type('text')
      let item = 0
      const timer = setInterval(() => {
        res.write(`item${++item};`)
        if (item === 5) {
          clearInterval(timer)
          res.end('END')
        }
      }, 40)
      req.on('close', () => {
        if (item < 5) {
          clearInterval(timer)
          res.end()
        }
      })
    })
    const port = await serve(app)
    await pipelineAndLeave(port, '/static/huge.bin', '/feed', 'shop.test', 100)
    expect((await send(port, '/feed', host)).body).toBe('item1;item2;item3;item4;item5;END')
  })

  it('a client that never reads a large response never makes other clients wait', async () => {
    const app = expressOf()
    app.get('/report.bin', cacheResponse({ backend: memoryBackend(), ttl: 60 }), (_req, res) =>
      res.sendFile(HUGE_FILE),
    )
    const port = await serve(app)
    sockets.push(neverReads(port, '/report.bin', 'shop.test'))
    await new Promise((resolve) => setTimeout(resolve, 300))
    const victim = await attempt(port, '/report.bin', { headers: host, timeout: 3_000 })
    expect(victim).not.toBeInstanceOf(Error)
    expect((victim as Reply).body.length).toBe(8 * 1024 * 1024)
  })

  it('a concurrent request waits for a stalled first response at most collapseTimeout', async () => {
    let release!: () => void
    const stalled = new Promise<void>((resolve) => {
      release = resolve
    })
    let runs = 0
    const app = expressOf()
    app.get(
      '/slow',
      cacheResponse({ backend: memoryBackend(), ttl: 60, collapseTimeout: '300ms' } as never),
      async (_req, res) => {
        if (++runs === 1) {
          res.type('text').write('part ')
          await stalled
        }
        res.end('whole')
      },
    )
    const port = await serve(app)
    const first = attempt(port, '/slow', { headers: host, timeout: 5_000 })
    await new Promise((resolve) => setTimeout(resolve, 100))
    const second = await attempt(port, '/slow', { headers: host, timeout: 2_000 })
    release()
    await first
    expect(second).not.toBeInstanceOf(Error)
    expect((second as Reply).body).toBe('whole')
  })

  describe('a guard the answering route does not list, behind a global cache', () => {
    it.each(SEPARATE_GUARDS)('%s: an admin fills nothing an anonymous client gets', async (_, register) => {
      const app = expressOf()
      app.use(cacheResponse({ backend: memoryBackend(), ttl: 60 }))
      register(app, expressOf as never, (_req: unknown, res: any) => res.json({ payroll: 'SECRET' }))
      const port = await serve(app)
      const admin = await send(port, '/admin/payroll', { ...host, 'x-api-key': 'admin-key' })
      expect(admin.status).toBe(200)
      const anonymous = await send(port, '/admin/payroll', host)
      expect(anonymous.status).toBe(403)
      expect(anonymous.body).not.toContain('SECRET')
      expect(admin.headers['cache-status']).not.toMatch(/stored/)
      expect(admin.headers['cache-status']).toMatch(/detail=middleware-after-cache/)
    })

    it('caches the route when the guard runs before the cache, and the guard still answers every anonymous request', async () => {
      const app = expressOf()
      app.use('/admin', requireKey)
      app.use(cacheResponse({ backend: memoryBackend(), ttl: 60 }))
      app.get('/admin/payroll', (_req, res) => res.json({ payroll: 'SECRET' }))
      const port = await serve(app)
      await send(port, '/admin/payroll', { ...host, 'x-api-key': 'admin-key' })
      const hit = await send(port, '/admin/payroll', { ...host, 'x-api-key': 'admin-key' })
      expect(hit.headers['cache-status']).toMatch(/hit/)
      expect((await send(port, '/admin/payroll', host)).status).toBe(403)
    })
  })

  it.each(HIDDEN_CACHES)('a cache as %s never lets a hit skip the guard after it', async (_, register) => {
    const app = expressOf()
    register(app, cacheResponse({ backend: memoryBackend(), ttl: 60 }))
    const port = await serve(app)
    const withKey = await send(port, '/r', { ...host, 'x-api-key': 'admin-key' })
    expect(withKey.body).toBe('SECRET report')
    const anonymous = await send(port, '/r', host)
    expect(anonymous.status).toBe(403)
    expect(anonymous.body).not.toContain('SECRET')
  })

  describe.each(POSITIONS)('cache as %s', (position: Position) => {
    const mount = (
      app: any,
      cache: any,
      path: string,
      handler: (req: any, res: any, next: any) => unknown,
    ) => {
      if (position === 'global middleware') {
        app.use(cache)
        app.get(path, handler)
      } else if (position === 'route middleware') app.get(path, cache, handler)
      else app.get(path, cache(handler))
    }
    const swallowAfterHeaders = (_error: Error, _req: any, res: any, _next: any) => {
      if (res.headersSent) return res.end()
      res.status(500).json({ error: 'internal' })
    }

    it('an error after the body started is never stored, even when an error handler ends the response', async () => {
      let runs = 0
      const app = expressOf()
      mount(app, cacheResponse({ backend: memoryBackend(), ttl: 60 }), '/items', (_req, res) => {
        runs++
        res.type('json').write('{"items":[1,2,')
        throw new Error('db connection lost')
      })
      app.use(swallowAfterHeaders)
      const port = await serve(app)
      await send(port, '/items', host)
      const second = await send(port, '/items', host)
      expect(second.headers['cache-status']).not.toMatch(/hit/)
      expect(runs).toBe(2)
    })

    it('a rejected async handler after the body started is never stored', async () => {
      let runs = 0
      const app = expressOf()
      const handler = async (_req: any, res: any) => {
        runs++
        res.type('json').write('{"items":[1,2,')
        await new Promise((resolve) => setTimeout(resolve, 5))
        throw new Error('db connection lost')
      }
      // Express 4 ignores a rejected promise: apps there wrap async handlers.
      mount(
        app,
        cacheResponse({ backend: memoryBackend(), ttl: 60 }),
        '/items',
        position === 'wrapper' ? handler : asyncHandler(handler),
      )
      app.use(swallowAfterHeaders)
      const port = await serve(app)
      await send(port, '/items', host)
      const second = await send(port, '/items', host)
      expect(second.headers['cache-status']).not.toMatch(/hit/)
      expect(runs).toBe(2)
    })

    it('Cache-Control: s-maxage=0 or max-age=0 is never stored', async () => {
      let runs = 0
      const app = expressOf()
      const cache = cacheResponse({ backend: memoryBackend(), ttl: 60 })
      mount(app, cache, '/cc', (req, res) => {
        runs++
        res.set('cache-control', String(req.query.cc)).send('fresh only')
      })
      const port = await serve(app)
      for (const cc of ['s-maxage=0', 'max-age=0', 'public, max-age=0', 'max-age=60, s-maxage=0']) {
        const before = runs
        await send(port, `/cc?cc=${encodeURIComponent(cc)}`, host)
        await send(port, `/cc?cc=${encodeURIComponent(cc)}`, host)
        expect(runs - before, cc).toBe(2)
      }
    })

    it('a Content-Length set before the cache that the body does not match is never stored', async () => {
      let runs = 0
      const app = expressOf()
      app.use('/liar', (_req: any, res: any, next: any) => {
        res.setHeader('content-length', '4000')
        next()
      })
      mount(app, cacheResponse({ backend: memoryBackend(), ttl: 60 }), '/liar', (_req, res) => {
        runs++
        res.write('x'.repeat(100))
        res.end()
      })
      const port = await serve(app)
      await attempt(port, '/liar', { headers: host, timeout: 300 })
      await attempt(port, '/liar', { headers: host, timeout: 300 })
      expect(runs).toBe(2)
    })

    it("an anonymous request rewritten before the cache never gets the members' page, nor plants the teaser for members", async () => {
      const app = expressOf()
      // An auth layer that shows anyone without the member key the teaser instead (internal rewrite).
      app.use((req: any, _res: any, next: any) => {
        if (req.get('x-api-key') !== 'member-key') req.url = '/teaser'
        next()
      })
      const cache = cacheResponse({ backend: memoryBackend(), ttl: 60 })
      mount(app, cache, '/report', (_req, res) => res.send('MEMBERS ONLY report'))
      // Global middleware is registered once, by the first mount.
      if (position === 'global middleware') app.get('/teaser', (_req, res) => res.send('subscribe'))
      else mount(app, cache, '/teaser', (_req, res) => res.send('subscribe'))
      const port = await serve(app)
      const member = { ...host, 'x-api-key': 'member-key' }
      expect((await send(port, '/report', host)).body).toBe('subscribe')
      expect((await send(port, '/report', member)).body).toBe('MEMBERS ONLY report')
      expect((await send(port, '/report', member)).headers['cache-status']).toMatch(/hit/)
      for (const path of ['/report', '/teaser']) expect((await send(port, path, host)).body).toBe('subscribe')
    })

    it('a raw # in the request target never lets two queries Express parses apart share an entry', async () => {
      const app = expressOf()
      mount(app, cacheResponse({ backend: memoryBackend(), ttl: 60 }), '/q', (req, res) =>
        res.json(req.query),
      )
      const port = await serve(app)
      expect(JSON.parse(await rawGet(port, '/q?b=2&a=1#', 'shop.test'))).toEqual({ b: '2', a: '1' })
      expect(JSON.parse(await rawGet(port, '/q?a=1#&b=2', 'shop.test'))).toEqual({ a: '1' })
    })

    it('a piped source that fails half-way, its error swallowed by the handler, is never replayed', async () => {
      const state = { fail: true }
      const app = expressOf()
      mount(app, cacheResponse({ backend: memoryBackend(), ttl: 60 }), '/items', swallowingPipe(state))
      const port = await serve(app)
      expect((await send(port, '/items', host)).body).toBe('{"items":[1,2,')
      state.fail = false
      expect((await send(port, '/items', host)).body).toBe('{"items":[1,2,3]}')
    })

    it.each(['express4', 'express'] as const)(
      'a router of a never-loaded copy (%s) reached through a function never lets a hit skip its guard',
      async (copy) => {
        const other = freshExpress(copy)
        const admin = other.Router()
        admin.use(requireKey)
        admin.get('/admin/payroll', (_req: any, res: any) => res.send('SECRET payroll'))
        const app = expressOf()
        mount(app, cacheResponse({ backend: memoryBackend(), ttl: 60 }), '/admin/payroll', (req, res, next) =>
          admin(req, res, next),
        )
        const port = await serve(app)
        expect((await send(port, '/admin/payroll', { ...host, 'x-api-key': 'admin-key' })).body).toBe(
          'SECRET payroll',
        )
        const anonymous = await send(port, '/admin/payroll', host)
        expect(anonymous.status).toBe(403)
        expect(anonymous.body).not.toContain('SECRET')
      },
    )

    it('a Buffer the handler reuses after sending never changes the stored body', async () => {
      const app = expressOf()
      mount(app, cacheResponse({ backend: memoryBackend(), ttl: 60 }), '/buffer', (_req, res) => {
        const body = Buffer.from('original body')
        res.type('text').end(body)
        setImmediate(() => body.fill('x'))
      })
      const port = await serve(app)
      expect((await send(port, '/buffer', host)).body).toBe('original body')
      await new Promise((resolve) => setTimeout(resolve, 20))
      const hit = await send(port, '/buffer', host)
      expect(hit.headers['cache-status']).toMatch(/hit/)
      expect(hit.body).toBe('original body')
    })

    const invalidations: [string, (cache: ResponseCacheHandler, prefix: string) => Promise<unknown>][] = [
      ['invalidate()', (cache) => cache.invalidate('/price', { host: 'shop.test' })],
      [
        'invalidateResponse()',
        (_cache, prefix) =>
          invalidateResponse('http://shop.test/price', { backend: shared, keyPrefix: prefix }),
      ],
      ['clear()', (cache) => cache.clear()],
      [
        'invalidateResponsePrefix()',
        (_cache, prefix) => invalidateResponsePrefix(prefix, { backend: shared }),
      ],
      ['invalidateTags()', () => invalidateTags(['prices'], { backend: shared })],
    ]
    const shared = memoryBackend()

    it.each(invalidations)(
      '%s during a response in flight wins: neither that response nor a request after it gets the old body',
      async (_, invalidate) => {
        let version = 1
        let release!: () => void
        let gate = new Promise<void>((resolve) => {
          release = resolve
        })
        const keyPrefix = unique()
        const cache = cacheResponse({ backend: shared, ttl: 60, keyPrefix, tags: ['prices'] })
        const app = expressOf()
        mount(app, cache, '/price', async (_req, res) => {
          const seen = version
          await gate
          res.send(`price v${seen}`)
        })
        const port = await serve(app)
        const first = send(port, '/price', host)
        await new Promise((resolve) => setTimeout(resolve, 50))
        version = 2
        await invalidate(cache, keyPrefix)
        const follower = send(port, '/price', host)
        await new Promise((resolve) => setTimeout(resolve, 50))
        release()
        gate = Promise.resolve()
        expect((await first).body).toBe('price v1')
        expect((await follower).body).toBe('price v2')
        await new Promise((resolve) => setTimeout(resolve, 50))
        expect((await send(port, '/price', host)).body).toBe('price v2')
      },
    )

    it('invalidate() during a background refresh wins: the refreshed body from before it is never stored', async () => {
      let now = Date.now()
      let version = 1
      let release!: () => void
      const gate = new Promise<void>((resolve) => {
        release = resolve
      })
      const cache = cacheResponse({
        backend: memoryBackend(),
        ttl: 1,
        staleWhileRevalidate: 600,
        now: () => now,
      })
      const app = expressOf()
      mount(app, cache, '/price', async (_req, res) => {
        const seen = version
        if (seen > 1) await gate
        res.send(`price v${seen}`)
      })
      const port = await serve(app)
      expect((await send(port, '/price', host)).body).toBe('price v1')
      now += 2_000
      version = 2
      // A stale hit starts the refresh, which computes v2 and waits.
      expect((await send(port, '/price', host)).body).toBe('price v1')
      await new Promise((resolve) => setTimeout(resolve, 50))
      version = 3
      await cache.invalidate('/price', { host: 'shop.test' })
      release()
      await new Promise((resolve) => setTimeout(resolve, 100))
      expect((await send(port, '/price', host)).body).toBe('price v3')
    })
  })

  it.each([
    ['a mounted router', (express: any) => express.Router()],
    ['a mounted sub-app', (express: any) => express()],
  ])('a guard in %s of the other Express major never lets a hit skip it', async (_, make) => {
    const other = expressOf === (express as unknown) ? express4 : express
    const app = expressOf()
    app.use(cacheResponse({ backend: memoryBackend(), ttl: 60 }))
    const admin = make(other)
    admin.use(requireKey)
    admin.get('/payroll', (_req: unknown, res: any) => res.send('SECRET'))
    app.use('/admin', admin)
    const port = await serve(app)
    expect((await send(port, '/admin/payroll', { ...host, 'x-api-key': 'admin-key' })).body).toBe('SECRET')
    const anonymous = await send(port, '/admin/payroll', host)
    expect(anonymous.status).toBe(403)
    expect(anonymous.body).not.toContain('SECRET')
  })

  it.each([
    ['an API-key guard', { 'x-api-key': 'admin-key' }, {}],
    // The global cache passes requests with Authorization through; the route cache allows them.
    ['a bearer guard', { authorization: 'Bearer admin' }, { allowAuthorized: true }],
  ])(
    'a global cache never replays what a route cache behind %s stored under the same key',
    async (_, admin, inner) => {
      const shared = memoryBackend()
      const app = expressOf()
      app.use(cacheResponse({ backend: shared, ttl: 60 }))
      const guard = (req: any, res: any, next: any) =>
        req.get('x-api-key') === 'admin-key' || req.get('authorization') === 'Bearer admin'
          ? next()
          : res.status(403).send('forbidden')
      app.get('/admin/payroll', guard, cacheResponse({ backend: shared, ttl: 60, ...inner }), (_req, res) =>
        res.send('SECRET payroll'),
      )
      const port = await serve(app)
      for (let i = 0; i < 2; i++) {
        expect((await send(port, '/admin/payroll', { ...host, ...admin })).body).toBe('SECRET payroll')
        const anonymous = await send(port, '/admin/payroll', host)
        expect(anonymous.status).toBe(403)
        expect(anonymous.body).not.toContain('SECRET')
      }
    },
  )

  it('a request target with an empty query never shares the entry of the target without it', async () => {
    const app = expressOf()
    app.use(cacheResponse({ backend: memoryBackend(), ttl: 60 }))
    app.get('/e', (req, res) => res.send(req.url))
    const port = await serve(app)
    for (const target of ['/e?', '/e?&', '/e', '/e?', '/e?&', '/e']) {
      expect((await send(port, target, host)).body, target).toBe(target)
    }
  })

  it.each([
    ['X-Forwarded-Host with a leading space', { 'x-forwarded-host': ' evil.test' }],
    ['X-Forwarded-Host with a port and upper case', { 'x-forwarded-host': 'Shop.Test:443' }],
    ['X-Forwarded-Proto in upper case', { 'x-forwarded-proto': 'HTTPS' }],
    ['X-Forwarded-Proto as a list', { 'x-forwarded-proto': 'https, http' }],
    ['X-Forwarded-Host as a list', { 'x-forwarded-host': 'evil.test, shop.test' }],
  ])('%s under trust proxy never plants its links for the plain host', async (_, forwarded) => {
    const app = expressOf()
    app.set('trust proxy', true)
    app.use(cacheResponse({ backend: memoryBackend(), ttl: 60 }))
    app.get('/link', (req, res) => res.send(`${req.protocol}://${req.hostname}/next`))
    const port = await serve(app)
    await send(port, '/link', { ...host, ...forwarded })
    expect((await send(port, '/link', host)).body).toBe('http://shop.test/next')
    expect((await send(port, '/link', { host: 'lb.internal', 'x-forwarded-host': 'shop.test' })).body).toBe(
      'http://shop.test/next',
    )
  })

  it('X-Forwarded-Host that Express resolves to no host never plants an entry for the real host', async () => {
    const app = expressOf()
    app.set('trust proxy', true)
    app.use(cacheResponse({ backend: memoryBackend(), ttl: 60 }))
    const sites: Record<string, string> = { 'shop.test': 'Shop Inc' }
    app.get('/', (req, res) => res.send(sites[req.hostname] ?? `Unknown site ${req.hostname}`))
    const port = await serve(app)
    await send(port, '/', { host: 'shop.test', 'x-forwarded-host': ',x' })
    expect((await send(port, '/', { host: 'shop.test' })).body).toBe('Shop Inc')
    expect((await send(port, '/', { host: 'lb.internal', 'x-forwarded-host': 'shop.test' })).body).toBe(
      'Shop Inc',
    )
  })

  it("a sub-app's trust proxy never lets a forwarded host plant an entry for clients of the plain host", async () => {
    const app = expressOf()
    app.use(cacheResponse({ backend: memoryBackend(), ttl: 60 }))
    const api = expressOf()
    api.set('trust proxy', true)
    api.get('/items', (req, res) => res.json({ self: `${req.protocol}://${req.hostname}/api/items` }))
    app.use('/api', api)
    const port = await serve(app)
    await send(port, '/api/items', {
      host: 'shop.test',
      'x-forwarded-host': 'evil.test',
      'x-forwarded-proto': 'https',
    })
    expect(JSON.parse((await send(port, '/api/items', host)).body).self).toBe('http://shop.test/api/items')
  })

  it.each([
    ['a trailing dot', { host: 'shop.test.' }],
    ['upper case', { host: 'SHOP.test' }],
    ['a forwarded trailing dot', { host: 'lb.internal', 'x-forwarded-host': 'shop.test.' }],
  ])('a Host with %s never shares an entry with the host Express tells apart', async (_, attacker) => {
    const app = expressOf()
    app.set('trust proxy', true)
    app.use(cacheResponse({ backend: memoryBackend(), ttl: 60 }))
    const sites: Record<string, string> = { 'shop.test': 'Shop Inc' }
    app.get('/', (req, res) => res.send(sites[req.hostname] ?? 'This domain is for sale'))
    const port = await serve(app)
    expect((await send(port, '/', attacker)).body).toBe('This domain is for sale')
    expect((await send(port, '/', host)).body).toBe('Shop Inc')
  })

  it.each([
    ['an encoded name', '/q?%61=1&a=2', '/q?a=2&%61=1'],
    ['a bracketed name', '/q?a[b]=1&a=2', '/q?a=2&a[b]=1'],
    ['a plus in a name', '/q?a+b=1&a%20b=2', '/q?a%20b=2&a+b=1'],
  ])('queries with %s that parse differently never share an entry', async (_, first, second) => {
    const build = (cached: boolean) => {
      const app = expressOf()
      if (cached) app.use(cacheResponse({ backend: memoryBackend(), ttl: 60 }))
      app.get('/q', (req, res) => res.json(req.query))
      return app
    }
    const plain = await serve(build(false))
    const port = await serve(build(true))
    await send(port, first, host)
    expect(JSON.parse((await send(port, second, host)).body)).toEqual(
      JSON.parse((await send(plain, second, host)).body),
    )
  })

  it('a stale-while-revalidate refresh triggered with Range or If-Match still refreshes the whole entry', async () => {
    let now = Date.now()
    let version = 0
    const errors: unknown[] = []
    const cache = cacheResponse({
      backend: memoryBackend(),
      ttl: 1,
      staleWhileRevalidate: 600,
      now: () => now,
    })
    cache.on('error', (event) => errors.push(event.error))
    const app = expressOf()
    const file = `${STATIC_DIR}/doc-${Math.random().toString(36).slice(2)}.txt`
    app.get('/doc', cache, (_req, res) => {
      writeFileSync(file, `document v${++version}`)
      // sendFile says `max-age=0` unless told otherwise: that is never stored.
      res.sendFile(file, { maxAge: '1h' })
    })
    const port = await serve(app)
    expect((await send(port, '/doc', host)).body).toBe('document v1')
    for (const conditional of [{ range: 'bytes=0-3' }, { 'if-match': '"nope"' }] as Record<
      string,
      string
    >[]) {
      now += 2_000
      const before = version
      const stored = cache.stats.sets
      await send(port, '/doc', { ...host, ...conditional })
      // The refresh renders, then stores: polled (bounded) rather than a fixed wait, which a
      // loaded machine outlasts.
      for (let i = 0; i < 300 && cache.stats.sets === stored; i++)
        await new Promise((resolve) => setTimeout(resolve, 10))
      const refreshed = await send(port, '/doc', host)
      expect(refreshed.body, JSON.stringify(conditional)).toBe(`document v${before + 1}`)
    }
    expect(errors).toEqual([])
  })
})

describe('two app processes sharing Redis, each with its own memory level and no bus', () => {
  const started: Server[] = []
  afterEach(async () => {
    await Promise.all(started.splice(0).map((server) => closeServer(server)))
  })
  const host = { host: 'shop.test' }

  /** One "process": its own memory level in front of the shared Redis, its own Express app. */
  async function instance(namespace: string, keyPrefix: string, price: () => number) {
    const backend = multiLevel(
      memoryBackend({ maxKeys: 1000 }),
      redisBackend(await servers.redisUrl(), { namespace }),
    )
    const cache = cacheResponse({ backend, ttl: 600, keyPrefix, tags: ['prices'] })
    const app = express()
    app.get('/price', cache, (_req, res) => {
      res.send(`price ${price()}`)
    })
    const { server, port } = await listenOn(app as unknown as RequestListener)
    started.push(server)
    return { backend, cache, port }
  }

  const invalidations: [
    string,
    (cache: ResponseCacheHandler, backend: CacheBackend, prefix: string) => Promise<unknown>,
  ][] = [
    ['invalidate()', (cache) => cache.invalidate('/price', { host: 'shop.test' })],
    [
      'invalidateResponse()',
      (_cache, backend, prefix) =>
        invalidateResponse('http://shop.test/price', { backend, keyPrefix: prefix }),
    ],
    ['invalidateKey()', (cache) => cache.invalidateKey('http://shop.test/price')],
    ['clear()', (cache) => cache.clear()],
    [
      'invalidateResponsePrefix()',
      (_cache, backend, prefix) => invalidateResponsePrefix(prefix, { backend }),
    ],
    ['invalidateTags()', (_cache, backend) => invalidateTags(['prices'], { backend })],
  ]

  it.each(invalidations)(
    '%s in one process: the other never replays the old response from its own memory level',
    async (_, invalidate) => {
      let price = 1
      const namespace = `faults-http2-${Math.random().toString(36).slice(2)}`
      const keyPrefix = `p${Math.random().toString(36).slice(2)}`
      const a = await instance(namespace, keyPrefix, () => price)
      const b = await instance(namespace, keyPrefix, () => price)
      try {
        expect((await send(a.port, '/price', host)).body).toBe('price 1')
        // B reads the stored response and keeps a copy in its own memory level.
        const seen = await send(b.port, '/price', host)
        expect(seen.body).toBe('price 1')
        expect((await send(b.port, '/price', host)).headers['cache-status']).toMatch(/hit/)
        price = 2
        await invalidate(a.cache, a.backend, keyPrefix)
        expect((await send(b.port, '/price', host)).body).toBe('price 2')
        expect((await send(a.port, '/price', host)).body).toBe('price 2')
      } finally {
        await Promise.all([a.backend.close(), b.backend.close()])
      }
    },
  )
})
