/*
 * A request whose target was changed before Hono saw it (Express in front, a server's own
 * listener, a second `request` listener): Hono builds its whole URL from the target it is handed,
 * so comparing that URL with `c.req.raw` cannot see the change. Such a request bypasses; its
 * response is never served to a client that requests the rewritten target directly.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http'
import { connect as connectHttp2, createServer as createHttp2Server } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { connect } from 'node:net'
import { memoryBackend } from '@cache/memory'
import { getRequestListener, type ServerType, serve } from '@hono/node-server'
import express5 from 'express'
import express4 from 'express4'
import { Hono } from 'hono'
import { afterEach, describe, expect, it } from 'vitest'
import { cacheResponse, noteArrivals } from '../src/index.js'
import { get } from './serve.js'

const servers: (Server | ServerType)[] = []
afterEach(async () => {
  for (const server of servers.splice(0)) {
    ;(server as { closeAllConnections?: () => void }).closeAllConnections?.()
    await new Promise((resolve) => server.close(resolve))
  }
})

/** A Node request as the layers in front of Hono leave it: a locale, Express's mount path. */
type Incoming = IncomingMessage & { locale?: string; baseUrl?: string }

/**
 * A shop whose `/prices` page is in the locale the layer in front noted on Node's request
 * (`/fr/prices` stripped to `/prices`), and at wholesale prices under Express's `/b2b` mount.
 */
function shop() {
  let runs = 0
  const app = new Hono<{ Bindings: { incoming: Incoming } }>()
  app.get('/prices', cacheResponse({ ttl: 60, backend: memoryBackend() }), (c) => {
    runs++
    const incoming = c.env.incoming
    if (incoming.baseUrl === '/b2b') return c.text('wholesale 9.00')
    return c.text(incoming.locale === 'fr' ? 'prix 16,90 €' : 'price $16.90')
  })
  return { app, listener: getRequestListener(app.fetch), runs: () => runs }
}

/** Strips a locale prefix from `req.url` and notes the locale on the request. */
function stripLocale(req: Incoming): void {
  const match = /^\/(fr|de)(\/.*)$/.exec(req.url ?? '')
  if (match !== null) {
    req.locale = match[1]
    req.url = match[2]
  }
}

/** Listens on a free loopback port; the server is closed after the test. */
async function listening(server: Server | ServerType): Promise<string> {
  servers.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

describe.each([
  ['Express 4', express4 as unknown as typeof express5],
  ['Express 5', express5],
])('Hono behind %s', (_name, express) => {
  it('middleware that strips a locale prefix: the French page is never served to a client that asks for /prices', async () => {
    const { listener, runs } = shop()
    const front = express()
    front.use((req, _res, next) => {
      stripLocale(req)
      next()
    })
    front.use((req, res) => listener(req, res))
    const base = await listening(noteArrivals(createServer(front)))
    const french = await get(base, '/fr/prices')
    expect(french.text).toBe('prix 16,90 €')
    const other = await get(base, '/prices')
    expect(other.text).toBe('price $16.90')
    expect(french.headers['cache-status']).toBe('@cache; fwd=request; detail=rewritten-url')
    expect(other.headers['cache-status']).toMatch(/stored/)
    expect((await get(base, '/prices')).headers['cache-status']).toMatch(/^@cache; hit/)
    expect((await get(base, '/fr/prices')).text).toBe('prix 16,90 €')
    expect(runs()).toBe(3)
  })

  it('one Hono app mounted at /b2b behind a guard and at /: the wholesale page never reaches a visitor', async () => {
    const { listener } = shop()
    const front = express()
    front.use(
      '/b2b',
      (req, res, next) => (req.get('x-partner') === 'acme' ? next() : res.status(403).end()),
      (req, res) => listener(req, res),
    )
    front.use((req, res) => listener(req, res))
    const base = await listening(noteArrivals(createServer(front)))
    const partner = await get(base, '/b2b/prices', 'GET', { 'x-partner': 'acme' })
    expect(partner.text).toBe('wholesale 9.00')
    const visitor = await get(base, '/prices')
    expect(visitor.text).toBe('price $16.90')
    expect(partner.headers['cache-status']).toBe('@cache; fwd=request; detail=rewritten-url')
    expect((await get(base, '/prices')).headers['cache-status']).toMatch(/^@cache; hit/)
  })

  it('middleware that rewrites req.url and req.originalUrl together still bypasses', async () => {
    const { listener } = shop()
    const front = express()
    front.use((req, _res, next) => {
      stripLocale(req)
      req.originalUrl = req.url
      next()
    })
    front.use((req, res) => listener(req, res))
    const base = await listening(noteArrivals(createServer(front)))
    expect((await get(base, '/fr/prices')).headers['cache-status']).toMatch(/detail=rewritten-url/)
    expect((await get(base, '/prices')).text).toBe('price $16.90')
  })

  it('Express in front that leaves the URL alone: responses are cached as usual', async () => {
    const { listener, runs } = shop()
    const front = express()
    front.use((req, res) => listener(req, res))
    const base = await listening(noteArrivals(createServer(front)))
    expect((await get(base, '/prices')).headers['cache-status']).toMatch(/stored/)
    expect((await get(base, '/prices')).headers['cache-status']).toMatch(/^@cache; hit/)
    expect(runs()).toBe(1)
  })
})

describe("a Node server's own listener in front of Hono's", () => {
  it('a createServer listener that strips a locale prefix: the French page is never served for /prices', async () => {
    const { listener } = shop()
    const server = noteArrivals(
      createServer((req, res) => {
        stripLocale(req)
        listener(req, res)
      }),
    )
    const base = await listening(server)
    const french = await get(base, '/fr/prices')
    expect(french.text).toBe('prix 16,90 €')
    expect((await get(base, '/prices')).text).toBe('price $16.90')
    expect(french.headers['cache-status']).toBe('@cache; fwd=request; detail=rewritten-url')
    expect((await get(base, '/prices')).headers['cache-status']).toMatch(/^@cache; hit/)
  })

  it("a createServer listener that maps a locale domain to the shop's, Host line in rawHeaders too: the French page is never served to the shop's visitors", async () => {
    const { listener } = shop()
    const server = noteArrivals(
      createServer((req: Incoming, res) => {
        const match = /^fr\.(.*)$/.exec(req.headers.host ?? '')
        if (match !== null) {
          req.locale = 'fr'
          req.headers.host = match[1]
          for (let i = 0; i < req.rawHeaders.length; i += 2)
            if (req.rawHeaders[i]!.toLowerCase() === 'host') req.rawHeaders[i + 1] = match[1]!
        }
        listener(req, res)
      }),
    )
    const base = await listening(server)
    const french = await get(base, '/prices', 'GET', { host: 'fr.shop.test' })
    expect(french.text).toBe('prix 16,90 €')
    // Before: the French page, stored under http://shop.test/prices.
    expect((await get(base, '/prices', 'GET', { host: 'shop.test' })).text).toBe('price $16.90')
    expect((await get(base, '/prices', 'GET', { host: 'shop.test' })).headers['cache-status']).toMatch(
      /^@cache; hit/,
    )
  })

  it('a request listener prepended after noteArrivals: every request it rewrote bypasses', async () => {
    const { app } = shop()
    const server = noteArrivals(
      serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as ServerType & Server,
    )
    servers.push(server)
    await new Promise((resolve) => server.once('listening', resolve))
    server.prependListener('request', (req: Incoming) => stripLocale(req))
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const french = await get(base, '/fr/prices')
    expect(french.text).toBe('prix 16,90 €')
    expect(french.headers['cache-status']).toBe('@cache; fwd=request; detail=rewritten-url')
    expect((await get(base, '/fr/prices')).headers['cache-status']).toMatch(/detail=rewritten-url/)
    expect((await get(base, '/prices')).text).toBe('price $16.90')
    expect((await get(base, '/prices')).headers['cache-status']).toMatch(/^@cache; hit/)
  })

  it.each([
    [
      'a listener prepended once (removed before it runs)',
      (server: Server) => server.prependOnceListener('request', (req: Incoming) => stripLocale(req)),
    ],
    [
      "an emit wrapped around the server's",
      (server: Server) => {
        const emit = server.emit
        server.emit = function (this: Server, event: string | symbol, ...args: unknown[]) {
          if (event === 'request') stripLocale(args[0] as Incoming)
          return (emit as (...all: unknown[]) => boolean).call(this, event, ...args)
        } as typeof server.emit
      },
    ],
  ])(
    'a rewrite before Hono by %s: bypassed, never stored under the rewritten URL',
    async (_name, rewrite) => {
      const { app } = shop()
      const server = noteArrivals(
        serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as ServerType & Server,
      )
      servers.push(server)
      await new Promise((resolve) => server.once('listening', resolve))
      rewrite(server)
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      const french = await get(base, '/fr/prices')
      expect(french.text).toBe('prix 16,90 €')
      expect(french.headers['cache-status']).toBe('@cache; fwd=request; detail=rewritten-url')
      expect((await get(base, '/prices')).text).toBe('price $16.90')
    },
  )

  it('without noteArrivals, the requests the cache meets before it noted the server bypass; the others are cached', async () => {
    const { listener } = shop()
    const server = createServer((req, res) => {
      stripLocale(req)
      listener(req, res)
    })
    const base = await listening(server)
    // The first request of the server cannot be told from a rewritten one: it bypasses.
    const first = await get(base, '/fr/prices')
    expect(first.text).toBe('prix 16,90 €')
    expect(first.headers['cache-status']).toBe('@cache; fwd=request; detail=rewritten-url')
    expect((await get(base, '/fr/prices')).headers['cache-status']).toMatch(/detail=rewritten-url/)
    expect((await get(base, '/prices')).text).toBe('price $16.90')
    expect((await get(base, '/prices')).headers['cache-status']).toMatch(/^@cache; hit/)
  })
})

describe('other forms of the request', () => {
  it('over HTTP/2 (createServer: http2.createServer): with or without a Host, cached when sent as is, bypassed when rewritten', async () => {
    const { app } = shop()
    const server = noteArrivals(
      serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1', createServer: createHttp2Server }),
    )
    servers.push(server)
    await new Promise((resolve) => server.once('listening', resolve))
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const client = connectHttp2(base)
    const h2get = (path: string, headers: Record<string, string> = { host: new URL(base).host }) =>
      new Promise<{ status: string; text: string }>((resolve, reject) => {
        const stream = client.request({ ':path': path, ...headers })
        let status = ''
        let text = ''
        stream.on('response', (headers) => (status = String(headers['cache-status'])))
        stream.setEncoding('utf8')
        stream.on('data', (chunk: string) => (text += chunk))
        stream.on('end', () => resolve({ status, text }))
        stream.on('error', reject)
      })
    try {
      // Without `Host` (only `:authority`, as browsers send): keyed on the authority Hono's URL has.
      expect((await h2get('/prices', {})).status).toMatch(/stored/)
      expect((await h2get('/prices', {})).status).toMatch(/^@cache; hit/)
      expect((await h2get('/prices')).status).toMatch(/^@cache; hit/)
      // A `Host` that is not the authority: the handler could read either, so neither keys it.
      const mismatched = { ':authority': new URL(base).host, host: 'other.test' }
      expect((await h2get('/prices', mismatched)).status).toBe('@cache; fwd=request; detail=url')
      server.prependListener('request', (req: Incoming) => stripLocale(req))
      const french = await h2get('/fr/prices')
      expect(french.text).toBe('prix 16,90 €')
      expect(french.status).toMatch(/detail=rewritten-url/)
      const again = await h2get('/fr/prices')
      expect(again.text).toBe('prix 16,90 €')
      expect(again.status).toMatch(/detail=rewritten-url/)
      const english = await h2get('/prices')
      expect(english.text).toBe('price $16.90')
      expect(english.status).toMatch(/^@cache; hit/)
      // A `stream` listener editing `:path` and `:authority` before Node makes the request of them.
      server.prependListener('stream', (_stream: unknown, headers: Record<string, string>) => {
        if (headers[':path'] === '/de/prices') headers[':path'] = '/prices'
        if (headers[':authority'] === 'alias.test') headers[':authority'] = new URL(base).host
      })
      const german = await h2get('/de/prices')
      expect(german.status).toMatch(/detail=rewritten-url/)
      const alias = await h2get('/prices', { ':authority': 'alias.test' })
      expect(alias.status).toMatch(/detail=rewritten-url/)
    } finally {
      client.close()
    }
  })

  it('an absolute-form target (GET http://host/path) is not a rewrite: cached, and its entry is the origin-form one', async () => {
    const { listener, runs } = shop()
    const base = await listening(noteArrivals(createServer((req, res) => listener(req, res))))
    const { host, port } = new URL(base)
    const raw = (target: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(Number(port), '127.0.0.1')
        let reply = ''
        socket.setEncoding('utf8')
        socket.on('data', (chunk: string) => (reply += chunk))
        socket.on('end', () => resolve(reply))
        socket.on('error', reject)
        socket.write(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
      })
    expect(await raw(`${base}/prices`)).toMatch(/cache-status: @cache; fwd=uri-miss; stored/i)
    expect(await raw(`${base}/prices`)).toMatch(/cache-status: @cache; hit/i)
    expect((await get(base, '/prices')).headers['cache-status']).toMatch(/^@cache; hit/)
    expect(runs()).toBe(1)
  })
})
