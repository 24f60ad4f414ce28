import { Agent, createServer as createHttpServer, request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { CacheEvent } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { getRequestListener, type HttpBindings } from '@hono/node-server'
import { Hono } from 'hono'
import onFinished from 'on-finished'
import { afterEach, describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { listen, listenHttp2 } from './serve.js'
import { noteArrivals } from '../src/index.js'

/*
 * A stale-while-revalidate refresh runs in the background only where its copy of the request is
 * faithful: over HTTP/2 (the copy would reuse the stale hit's own request) and over HTTP/1 when
 * code in front of Hono or a layer put something on Node's request (`req.user`, a cookies object
 * holding the client's response), the client's own request refreshes the stale entry. Where it
 * runs in the background, its own Node request and response never act on the client's connection.
 */

type Env = { Bindings: HttpBindings; Variables: { user: string } }

/** A clock the cache reads, moved by the test. */
function clock() {
  let now = Date.now()
  return { now: () => now, pass: (ms: number) => void (now += ms) }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const closing: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const close of closing.splice(0)) await close()
})

/** `listener` (Hono's, behind `before`) on a plain HTTP/1 server, as code in front of Hono runs. */
async function listenBehind(
  app: Hono<Env>,
  before: (req: HttpBindings['incoming'], res: HttpBindings['outgoing']) => void,
): Promise<string> {
  const listener = getRequestListener(app.fetch)
  const server = noteArrivals(
    createHttpServer((req, res) => {
      before(req, res)
      listener(req, res)
    }),
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  closing.push(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** Requests on one keep-alive connection. */
function connection(base: string) {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  closing.push(async () => agent.destroy())
  const { hostname, port } = new URL(base)
  return (path: string, headers: Record<string, string> = {}) =>
    new Promise<{ text: string; status: string; setCookie: string[]; reused: boolean }>((resolve, reject) => {
      const req = httpRequest({ host: hostname, port, path, agent, headers, timeout: 5_000 }, (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (text += chunk))
        res.on('end', () =>
          resolve({
            text,
            status: String(res.headers['cache-status']),
            setCookie: res.headers['set-cookie'] ?? [],
            reused: req.reusedSocket,
          }),
        )
      })
      req.on('timeout', () => req.destroy(new Error(`${path} timed out`)))
      req.on('error', reject)
      req.end()
    })
}

const REFRESHED_IN_REQUEST = '@cache; fwd=stale; stored; detail=refresh-in-request'

/**
 * Alice's `/dashboard` goes stale: her next request is answered fresh, as her, by itself (not a
 * stale hit refreshed in the background), and what it stored is her page.
 */
async function aliceRefreshedByHerRequest(
  get: ReturnType<typeof connection>,
  time: ReturnType<typeof clock>,
) {
  const alice = { authorization: 'Bearer t-alice' }
  expect((await get('/dashboard', alice)).text).toBe('dashboard of alice #1')
  time.pass(5_000)
  const stale = await get('/dashboard', alice)
  expect([stale.text, stale.status]).toEqual(['dashboard of alice #2', REFRESHED_IN_REQUEST])
  await sleep(50)
  const after = await get('/dashboard', alice)
  expect(after.text).toBe('dashboard of alice #2')
  expect(after.status).toMatch(/hit/)
}

describe('over HTTP/2, a stale entry is refreshed by the client’s own request', () => {
  it("a session layer that strips sid= from Cookie crumbs in c.env.incoming.headers: Alice's entry stays Alice's", async () => {
    const time = clock()
    const cache = cacheResponse({
      ttl: 1,
      staleWhileRevalidate: 60,
      now: time.now,
      allowCookies: true,
      vary: ['cookie'],
      backend: memoryBackend(),
    })
    const app = new Hono<Env>()
    app.use('*', async (c, next) => {
      const incoming = c.env.incoming
      const parts = (incoming.headers.cookie ?? '').split(/;\s*/).filter(Boolean)
      c.set('user', parts.find((part) => part.startsWith('sid='))?.slice(4) ?? 'guest')
      const rest = parts.filter((part) => !part.startsWith('sid=')).join('; ')
      if (rest !== '') {
        incoming.headers.cookie = rest
        c.req.raw.headers.set('cookie', rest)
      } else {
        delete incoming.headers.cookie
        c.req.raw.headers.delete('cookie')
      }
      await next()
    })
    let runs = 0
    app.get('/account', cache, (c) => c.text(`account of ${c.get('user')} #${++runs}`))
    const get = await listenHttp2(app)
    const alice = { cookie: ['sid=alice', 'theme=dark'] }
    expect((await get('/account', alice)).text).toBe('account of alice #1')
    time.pass(5_000)
    const stale = await get('/account', alice)
    expect(stale).toEqual({ text: 'account of alice #2', status: REFRESHED_IN_REQUEST })
    await sleep(100)
    const after = await get('/account', alice)
    // Before: 'account of guest #2', the background refresh's page stored under Alice's entry.
    expect(after.text).toBe('account of alice #2')
    expect(after.status).toMatch(/hit/)
  })

  it('a gateway layer that adds a service token to an anonymous request: anonymous clients keep the guest page', async () => {
    const time = clock()
    const cache = cacheResponse({ ttl: 1, staleWhileRevalidate: 60, now: time.now, backend: memoryBackend() })
    const service = 'Bearer internal-service-token'
    const app = new Hono<Env>()
    app.use('*', async (c, next) => {
      const incoming = c.env.incoming
      const auth = incoming.headers.authorization
      c.set('user', auth === service ? 'service account' : (auth?.slice(7) ?? 'guest'))
      if (auth === undefined) incoming.headers.authorization = service
      await next()
    })
    let runs = 0
    app.get('/home', cache, (c) => c.text(`home of ${c.get('user')} #${++runs}`))
    const get = await listenHttp2(app)
    expect((await get('/home')).text).toBe('home of guest #1')
    time.pass(5_000)
    expect(await get('/home')).toEqual({ text: 'home of guest #2', status: REFRESHED_IN_REQUEST })
    await sleep(100)
    // Before: 'home of service account #2', served to every anonymous client.
    expect((await get('/home')).text).toBe('home of guest #2')
  })

  it('after an async layer before the cache, the stale entry is refreshed, and a gauge on c.env.incoming close goes back to 0', async () => {
    const time = clock()
    const cache = cacheResponse({ ttl: 1, staleWhileRevalidate: 60, now: time.now, backend: memoryBackend() })
    const errors: string[] = []
    cache.on('error', (event: CacheEvent) => errors.push(String(event.error)))
    const app = new Hono<Env>()
    let requestsOpen = 0
    let responsesOpen = 0
    // A rate limiter's round trip to Redis.
    app.use('*', async (_c, next) => {
      await sleep(20)
      await next()
    })
    app.use('*', async (c, next) => {
      requestsOpen++
      c.env.incoming.once('close', () => requestsOpen--)
      responsesOpen++
      c.env.outgoing.once('close', () => responsesOpen--)
      await next()
    })
    let runs = 0
    app.get('/p', cache, (c) => c.text(`v${++runs}`))
    const get = await listenHttp2(app)
    expect((await get('/p')).text).toBe('v1')
    time.pass(5_000)
    expect(await get('/p')).toEqual({ text: 'v2', status: REFRESHED_IN_REQUEST })
    await sleep(100)
    // Before: 'v1' for good (every refresh bypassed as rewritten-url once the hit's stream closed).
    const after = await get('/p')
    expect(after.text).toBe('v2')
    expect(after.status).toMatch(/hit/)
    await sleep(50)
    // Before: 1 (the refresh reused the hit's request, whose close had already been emitted).
    expect({ requestsOpen, responsesOpen, errors }).toEqual({ requestsOpen: 0, responsesOpen: 0, errors: [] })
  })
})

describe('over HTTP/1, a stale entry whose Node request carries what code in front of Hono put there is refreshed by the request', () => {
  it("a layer that moves req.user into the context and deletes it: Alice's entry stays Alice's", async () => {
    const time = clock()
    const cache = cacheResponse({
      ttl: 1,
      staleWhileRevalidate: 60,
      now: time.now,
      allowAuthorized: true,
      vary: ['authorization'],
      backend: memoryBackend(),
    })
    const app = new Hono<Env>()
    app.use('*', async (c, next) => {
      const incoming = c.env.incoming as HttpBindings['incoming'] & { user?: string }
      c.set('user', incoming.user ?? 'guest')
      delete incoming.user
      await next()
    })
    let runs = 0
    app.get('/dashboard', cache, (c) => c.text(`dashboard of ${c.get('user')} #${++runs}`))
    const tokens: Record<string, string> = { 'Bearer t-alice': 'alice' }
    const base = await listenBehind(app, (req) => {
      const user = tokens[req.headers.authorization ?? '']
      if (user !== undefined) Object.assign(req, { user })
    })
    // Before: 'dashboard of guest #2', the background copy stored under Alice's entry.
    await aliceRefreshedByHerRequest(connection(base), time)
  })

  it("a cookies object of the request (as Cookies.express sets) that a layer before the cache writes with: its Set-Cookie goes on the request's own response, never stored", async () => {
    const time = clock()
    const cache = cacheResponse({ ttl: 1, staleWhileRevalidate: 60, now: time.now, backend: memoryBackend() })
    const app = new Hono<Env>()
    let rotate = false
    app.use('*', async (c, next) => {
      const incoming = c.env.incoming as HttpBindings['incoming'] & {
        cookies: { set(name: string, value: string): void }
      }
      if (rotate) incoming.cookies.set('token', 'rotated')
      await next()
    })
    let runs = 0
    app.get('/p', cache, (c) => c.text(`page #${++runs}`))
    const base = await listenBehind(app, (req, res) => {
      Object.assign(req, {
        cookies: { set: (name: string, value: string) => res.appendHeader('set-cookie', `${name}=${value}`) },
      })
    })
    const get = connection(base)
    expect((await get('/p')).text).toBe('page #1')
    time.pass(5_000)
    rotate = true
    const errors: string[] = []
    cache.on('error', (event: CacheEvent) => errors.push(String(event.error)))
    const stale = await get('/p')
    // Before: the background refresh set its cookie on this response too, and was stored. Its
    // copy carries nothing code in front of Hono put on the request: the layer's write fails the
    // refresh. The one cookie here is the stale hit's own layer's.
    expect([stale.text, stale.setCookie]).toEqual(['page #1', ['token=rotated']])
    await sleep(50)
    expect(errors).toHaveLength(1)
    rotate = false
    const again = await get('/p')
    expect([again.text, again.setCookie]).toEqual(['page #1', []])
    await sleep(50)
    const next = await get('/p')
    expect([next.text, next.setCookie]).toEqual(['page #2', []])
    expect(next.status).toMatch(/hit/)
  })
})

describe('a background refresh over HTTP/1 never acts on the client’s connection', () => {
  it("a layer's c.env.incoming.setTimeout(300) on the refresh: a slow request on the client's keep-alive connection is answered", async () => {
    const time = clock()
    const cache = cacheResponse({ ttl: 1, staleWhileRevalidate: 60, now: time.now, backend: memoryBackend() })
    const errors: string[] = []
    cache.on('error', (event: CacheEvent) => errors.push(String(event.error)))
    const app = new Hono<Env>()
    app.use('*', async (_c, next) => {
      await sleep(20)
      await next()
    })
    // API routes must answer within 300 ms.
    app.use('/api/*', async (c, next) => {
      c.env.incoming.setTimeout(300)
      await next()
    })
    app.get('/api/price', cache, (c) => c.text('price'))
    app.get('/export', async (c) => {
      await sleep(800)
      return c.text('export done')
    })
    const get = connection(await listen(app))
    expect((await get('/api/price')).text).toBe('price')
    time.pass(5_000)
    const stale = await get('/api/price')
    expect(stale.status).toMatch(/hit/)
    // Before: socket hang up (the refresh's setTimeout timed the client's socket out).
    const slow = await get('/export')
    expect([slow.text, slow.reused]).toEqual(['export done', true])
    expect(errors).toEqual([])
    expect(cache.stats.sets).toBe(2)
  })

  it("a layer that destroys the slow refresh's response: on-finished sees it done (an in-flight gauge goes back to 0)", async () => {
    const time = clock()
    const cache = cacheResponse({ ttl: 1, staleWhileRevalidate: 60, now: time.now, backend: memoryBackend() })
    const errors: string[] = []
    cache.on('error', (event: CacheEvent) => errors.push(String(event.error)))
    const app = new Hono<Env>()
    let inflight = 0
    app.use('*', async (c, next) => {
      inflight++
      onFinished(c.env.outgoing, () => inflight--)
      const timer = setTimeout(() => c.env.outgoing.destroy(), 50)
      try {
        await next()
      } finally {
        clearTimeout(timer)
      }
    })
    let runs = 0
    app.get('/p', cache, async (c) => {
      if (++runs > 1) await sleep(200)
      return c.text(`v${runs}`)
    })
    const get = connection(await listen(app))
    expect((await get('/p')).text).toBe('v1')
    time.pass(5_000)
    expect((await get('/p')).text).toBe('v1')
    await sleep(400)
    expect(errors.join('\n')).toMatch(/destroyed/)
    // Before: 1 (the destroyed response had no socket to close, on-finished never fired).
    expect(inflight).toBe(0)
  })
})

describe('over HTTP/1, which stale entries are refreshed in the background', () => {
  it("a wrapped emit in front of Hono that keeps the user in a symbol on the request: Alice's stale entry is refreshed by her own request", async () => {
    const time = clock()
    const cache = cacheResponse({
      ttl: 1,
      staleWhileRevalidate: 60,
      now: time.now,
      allowAuthorized: true,
      vary: ['authorization'],
      backend: memoryBackend(),
    })
    const USER = Symbol.for('app.user')
    const app = new Hono<Env>()
    app.use('*', async (c, next) => {
      c.set('user', (c.env.incoming as unknown as Record<symbol, string>)[USER] ?? 'guest')
      await next()
    })
    let runs = 0
    app.get('/dashboard', cache, (c) => c.text(`dashboard of ${c.get('user')} #${++runs}`))
    const server = createHttpServer(getRequestListener(app.fetch))
    // Before `noteArrivals`, as an instrumentation or auth library wrapping `emit` would be.
    const emit = server.emit as (this: unknown, event: string, ...args: unknown[]) => boolean
    server.emit = function (this: typeof server, event: string, ...args: unknown[]) {
      if (event === 'request') {
        const req = args[0] as HttpBindings['incoming'] & Record<symbol, string>
        if (req.headers.authorization === 'Bearer t-alice') req[USER] = 'alice'
      }
      return emit.call(this, event, ...args)
    } as typeof server.emit
    noteArrivals(server)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    closing.push(async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    })
    // Before: 'dashboard of alice #1' served stale, and the background copy stored the guest's page as hers.
    await aliceRefreshedByHerRequest(
      connection(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
      time,
    )
  })

  it('a layer that listens on c.env.incoming (a close gauge): a stale entry without credentials is still served at once and refreshed in the background', async () => {
    const time = clock()
    const cache = cacheResponse({ ttl: 1, staleWhileRevalidate: 60, now: time.now, backend: memoryBackend() })
    const app = new Hono<Env>()
    let open = 0
    app.use('*', async (c, next) => {
      open++
      c.env.incoming.once('close', () => open--)
      await next()
    })
    let runs = 0
    app.get('/p', cache, (c) => c.text(`page #${++runs}`))
    const get = connection(await listen(app))
    expect((await get('/p')).text).toBe('page #1')
    time.pass(5_000)
    const stale = await get('/p')
    // Before: the listener's own key on Node's request made it refreshed in the request ('page #2').
    expect(stale.text).toBe('page #1')
    expect(stale.status).toMatch(/hit; ttl=-/)
    await sleep(50)
    expect((await get('/p')).text).toBe('page #2')
    await sleep(50)
    expect(open).toBe(0)
  })
})
