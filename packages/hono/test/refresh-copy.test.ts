import { createServer as createHttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { memoryBackend } from '@cache/memory'
import { getRequestListener, type HttpBindings } from '@hono/node-server'
import { Hono } from 'hono'
import { afterEach, describe, expect, it } from 'vitest'
import { cacheResponse, noteArrivals } from '../src/index.js'
import { get, listen, listenHttp2 } from './serve.js'

/*
 * A stale entry's background refresh runs a copy of the request. What the copy's handler reads of
 * the request is what layers left on the copy's own Node request (`c.env.incoming.headers`, which
 * @hono/node-server's `c.req.header()` reads), and where code in front of Hono or a layer before
 * the cache changed the stale hit's headers since they arrived, the copy cannot be the request:
 * the request refreshes the entry itself. The copy's stand-in connection closes once it is over.
 */

type Env = { Bindings: HttpBindings }

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

/** Hono's listener behind `before` on a plain HTTP/1 server (arrivals noted), as code in front of Hono runs. */
async function listenBehind(
  app: Hono<Env>,
  before: (req: HttpBindings['incoming']) => void,
): Promise<string> {
  const listener = getRequestListener(app.fetch)
  const server = noteArrivals(
    createHttpServer((req, res) => {
      before(req)
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

const API_KEYS: Record<string, string> = { 'k-alice': 'alice' }

/** A cache whose logged-in users (an API key) bypass, as `bypass` reads them. */
function guestCache(time: ReturnType<typeof clock>) {
  return cacheResponse({
    ttl: 1,
    staleWhileRevalidate: 60,
    now: time.now,
    backend: memoryBackend(),
    bypass: (c) => c.req.header('x-api-key') !== undefined,
  })
}

/** The home page: a user's dashboard for the `X-User-Id` the layers left, the public page otherwise. */
function home(app: Hono<Env>, cache: ReturnType<typeof cacheResponse>) {
  let runs = 0
  app.get('/home', cache, (c) => {
    const user = c.req.header('x-user-id')
    return c.text(user ? `dashboard of ${user}: balance 1337` : `public home page #${++runs}`)
  })
}

/** A guest's miss, a spoofer's stale hit with `X-User-Id: alice`, then what a guest gets once it settled. */
async function spoofThenGuest(base: string, time: ReturnType<typeof clock>) {
  expect((await get(base, '/home')).text).toBe('public home page #1')
  time.pass(5_000)
  const spoofer = await get(base, '/home', 'GET', { 'x-user-id': 'alice' })
  await sleep(100)
  const guest = await get(base, '/home')
  return { spoofer, guest }
}

describe("a stale hit whose headers were sanitised since they arrived: alice's page is never the public entry", () => {
  it('a layer that deletes the client’s X-User-Id from c.env.incoming.headers (HTTP/1)', async () => {
    const time = clock()
    const app = new Hono<Env>()
    app.use('*', async (c, next) => {
      const headers = c.env.incoming.headers
      delete headers['x-user-id']
      const user = API_KEYS[String(headers['x-api-key'])]
      if (user !== undefined) headers['x-user-id'] = user
      await next()
    })
    home(app, guestCache(time))
    const { spoofer, guest } = await spoofThenGuest(await listen(app), time)
    expect(spoofer.text).toBe('public home page #2')
    expect(spoofer.headers['cache-status']).toBe('@cache; fwd=stale; stored; detail=refresh-in-request')
    // Before: 'dashboard of alice: balance 1337', stored by the refresh's copy for every guest.
    expect(guest.text).toBe('public home page #2')
    expect(guest.headers['cache-status']).toMatch(/hit/)
  })

  it('code in front of Hono that deletes the client’s X-User-Id from req.headers', async () => {
    const time = clock()
    const app = new Hono<Env>()
    home(app, guestCache(time))
    const base = await listenBehind(app, (req) => {
      delete req.headers['x-user-id']
      const user = API_KEYS[String(req.headers['x-api-key'])]
      if (user !== undefined) req.headers['x-user-id'] = user
    })
    const { spoofer, guest } = await spoofThenGuest(base, time)
    expect(spoofer.text).toBe('public home page #2')
    // Before: 'dashboard of alice: balance 1337', the deleted header resurrected from the arrived lines.
    expect(guest.text).toBe('public home page #2')
  })
})

describe('a stale hit whose headers were added to since they arrived: the entry is refreshed with them', () => {
  /** A page rendered for the region the layers put in `X-Region`. */
  function regional(app: Hono<Env>, time: ReturnType<typeof clock>) {
    const cache = cacheResponse({ ttl: 1, staleWhileRevalidate: 60, now: time.now, backend: memoryBackend() })
    let runs = 0
    app.get('/offers', cache, (c) => c.text(`offers for ${c.req.header('x-region') ?? 'nowhere'} #${++runs}`))
  }

  async function staleThenAfter(base: string, time: ReturnType<typeof clock>) {
    expect((await get(base, '/offers')).text).toBe('offers for eu #1')
    time.pass(5_000)
    await get(base, '/offers')
    await sleep(100)
    return get(base, '/offers')
  }

  it('a layer that sets X-Region on c.env.incoming.headers', async () => {
    const time = clock()
    const app = new Hono<Env>()
    app.use('*', async (c, next) => {
      c.env.incoming.headers['x-region'] = 'eu'
      await next()
    })
    regional(app, time)
    const after = await staleThenAfter(await listen(app), time)
    // Before: 'offers for nowhere #2', the copy's Request built without the layer's header.
    expect(after.text).toBe('offers for eu #2')
  })

  it('code in front of Hono that sets X-Region on req.headers', async () => {
    const time = clock()
    const app = new Hono<Env>()
    regional(app, time)
    const base = await listenBehind(app, (req) => {
      req.headers['x-region'] = 'eu'
    })
    const after = await staleThenAfter(base, time)
    // Before: 'offers for nowhere #2'.
    expect(after.text).toBe('offers for eu #2')
  })

  it('code in front of Hono that changes the X-Region the client sent', async () => {
    const time = clock()
    const app = new Hono<Env>()
    regional(app, time)
    const base = await listenBehind(app, (req) => {
      req.headers['x-region'] = 'eu'
    })
    expect((await get(base, '/offers', 'GET', { 'x-region': 'us' })).text).toBe('offers for eu #1')
    time.pass(5_000)
    await get(base, '/offers', 'GET', { 'x-region': 'us' })
    await sleep(100)
    // Before: 'offers for us #2', the client's value taken back from its line.
    expect((await get(base, '/offers')).text).toBe('offers for eu #2')
  })

  it('a stale hit no code edited still refreshes in the background', async () => {
    const time = clock()
    const app = new Hono<Env>()
    const cache = cacheResponse({ ttl: 1, staleWhileRevalidate: 60, now: time.now, backend: memoryBackend() })
    let runs = 0
    app.get('/offers', cache, (c) => c.text(`offers for ${c.req.header('x-region') ?? 'nowhere'} #${++runs}`))
    const base = await listen(app)
    expect((await get(base, '/offers', 'GET', { 'x-region': 'eu' })).text).toBe('offers for eu #1')
    time.pass(5_000)
    const stale = await get(base, '/offers', 'GET', { 'x-region': 'eu' })
    expect(stale.text).toBe('offers for eu #1')
    expect(stale.headers['cache-status']).toMatch(/^@cache; hit; ttl=-/)
    await sleep(100)
    expect((await get(base, '/offers')).text).toBe('offers for eu #2')
  })
})

describe('the background refresh’s stand-in connection', () => {
  it('closes once the refresh is over: a per-connection gauge on c.env.incoming.socket goes back to 0', async () => {
    const time = clock()
    const cache = cacheResponse({ ttl: 1, staleWhileRevalidate: 60, now: time.now, backend: memoryBackend() })
    const seen = new WeakSet<object>()
    let open = 0
    const app = new Hono<Env>()
    app.use('*', async (c, next) => {
      const socket = c.env.incoming.socket
      if (!seen.has(socket)) {
        seen.add(socket)
        open++
        socket.once('close', () => open--)
      }
      await next()
    })
    let runs = 0
    app.get('/p', cache, (c) => c.text(`page #${++runs}`))
    const base = await listen(app)
    await get(base, '/p')
    for (let i = 0; i < 3; i++) {
      time.pass(5_000)
      await get(base, '/p')
      await sleep(50)
    }
    await sleep(100)
    expect(runs).toBe(4)
    // Before: 3, one stand-in socket per refresh that never closed.
    expect(open).toBe(0)
  })
})

describe('HEAD on a stale entry that cannot be refreshed in the background', () => {
  it('over HTTP/2: Cache-Status does not claim a refresh a HEAD response cannot store', async () => {
    const time = clock()
    const cache = cacheResponse({ ttl: 1, staleWhileRevalidate: 60, now: time.now, backend: memoryBackend() })
    const app = new Hono<Env>()
    let runs = 0
    app.get('/p', cache, (c) => c.text(`page #${++runs}`))
    const get2 = await listenHttp2(app)
    await get2('/p')
    time.pass(5_000)
    const head = await get2('/p', { ':method': 'HEAD' })
    // Before: '@cache; fwd=stale; detail=refresh-in-request', while nothing was stored.
    expect(head.status).toBe('@cache; fwd=stale')
    expect(cache.stats.sets).toBe(1)
    expect((await get2('/p')).status).toBe('@cache; fwd=stale; stored; detail=refresh-in-request')
  })
})
