/**
 * Hostile and unusual HTTP requests against an Express app using @cache/express: every row is a
 * safe bypass or a correct answer; nobody ever receives a response meant for another client,
 * another host, or another method.
 */
import { request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { CacheConfigError, type CacheBackend } from '@cache/core'
import { cacheResponse } from '@cache/express'
import { memoryBackend } from '@cache/memory'
import { multiLevel } from '@cache/multi-level'
import { redisBackend } from '@cache/redis'
import express from 'express'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SharedServers } from './support/backends.js'

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
    const server = app.listen(0, '127.0.0.1', () => resolve(server))
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
    ['ttl', () => cacheResponse({ ttl: 'abc' }), RangeError, /ttl/],
    ['ttl 0', () => cacheResponse({ ttl: 0 }), RangeError, /ttl/],
    ['maxBodySize', () => cacheResponse({ maxBodySize: '1XB' }), RangeError, /maxBodySize.*"1XB"/],
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

  it('Host variations share an entry only when they name the same host', async () => {
    const a = JSON.parse((await send(port, '/home', { host: 'a.example' })).body)
    const b = JSON.parse((await send(port, '/home', { host: 'b.example' })).body)
    expect(a.link).toBe('https://a.example/next')
    expect(b.link).toBe('https://b.example/next')
    for (const host of ['A.EXAMPLE', 'a.example.', 'a.example:8080']) {
      expect(JSON.parse((await send(port, '/home', { host })).body).link, host).toBe('https://a.example/next')
    }
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
