/**
 * A request changed before Express saw it: the server's own `checkContinue` or
 * `checkExpectation` listener, a `request` listener prepended to the app, an `emit` an APM shim
 * wrapped on the server, each stripping a locale prefix from `req.url`; middleware that maps a
 * legacy domain's `Host` to the new one. Express's `originalUrl` is already the rewritten target,
 * so only what the server noted as the request arrived (`noteArrivals`) tells. Such a request is
 * never stored under, nor answered from, the entry of the request it was made into.
 */
import {
  createServer,
  type IncomingMessage,
  IncomingMessage as IncomingMessageClass,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import { connect, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { cacheResponse, noteArrivals } from '../src/index.js'
import { EXPRESS, memory } from './http.js'

const servers: Server[] = []
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
})

/** Listens on a free loopback port; closed after the test. */
async function listening(server: Server): Promise<number> {
  servers.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

interface Answer {
  status: number
  cacheStatus: string
  body: string
}

/** A request sent byte for byte on a socket of its own; interim (1xx) responses are skipped. */
function send(port: number, target: string, extra: Record<string, string> = {}): Promise<Answer> {
  const host = extra.host ?? 'shop.test'
  const lines = Object.entries(extra)
    .filter(([name]) => name !== 'host')
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('')
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () =>
      socket.write(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${lines}Connection: close\r\n\r\n`),
    )
    let data = ''
    socket.setEncoding('latin1')
    socket.on('data', (chunk) => {
      data += chunk
    })
    socket.on('error', reject)
    socket.on('end', () => {
      while (/^HTTP\/1\.1 1\d\d /.test(data)) data = data.slice(data.indexOf('\r\n\r\n') + 4)
      const split = data.indexOf('\r\n\r\n')
      const head = data.slice(0, split)
      resolve({
        status: Number(head.split(' ')[1]),
        cacheStatus: /cache-status: (.*)/i.exec(head)?.[1] ?? '',
        body: data.slice(split + 4),
      })
    })
  })
}

type Localized = IncomingMessage & { lang?: string }

/** Strips a `/fr` prefix from `req.url` and notes the language on the request. */
function stripLocale(req: Localized): void {
  if (req.url?.startsWith('/fr/')) {
    req.url = req.url.slice(3)
    req.lang = 'fr'
  }
}

describe.each(EXPRESS)('a request rewritten before %s', (_name, express) => {
  /** A page in the language a layer before Express noted on the request. */
  function shop() {
    const app = express()
    let runs = 0
    app.get('/p', cacheResponse({ ttl: 60, backend: memory() }), (req: any, res: any) => {
      runs++
      res.send(`page-in-${req.lang ?? 'en'}`)
    })
    return { app, runs: () => runs }
  }

  const REWRITES: [
    string,
    (server: Server, app: (req: any, res: any) => void) => void,
    Record<string, string>,
  ][] = [
    [
      "the server's own checkContinue listener (Expect: 100-continue)",
      (server, app) =>
        server.on('checkContinue', (req: Localized, res: ServerResponse) => {
          stripLocale(req)
          res.writeContinue()
          app(req, res)
        }),
      { expect: '100-continue' },
    ],
    [
      "the server's own checkExpectation listener",
      (server, app) =>
        server.on('checkExpectation', (req: Localized, res: ServerResponse) => {
          stripLocale(req)
          app(req, res)
        }),
      { expect: 'x-trace' },
    ],
    [
      'a request listener prepended to the app',
      (server) => server.prependListener('request', stripLocale),
      {},
    ],
  ]

  it.each(REWRITES)(
    '%s: the French page is never stored under /p nor served to a client asking /p',
    async (_how, rewrite, headers) => {
      const { app, runs } = shop()
      const server = noteArrivals(createServer(app))
      rewrite(server, app)
      const port = await listening(server)
      const french = await send(port, '/fr/p', headers)
      expect(french.body).toBe('page-in-fr')
      expect(french.cacheStatus).toBe('@cache; fwd=request; detail=rewritten-url')
      const again = await send(port, '/fr/p', headers)
      expect(again.body).toBe('page-in-fr')
      expect(again.cacheStatus).toMatch(/detail=rewritten-url/)
      const english = await send(port, '/p')
      expect(english.body).toBe('page-in-en')
      expect((await send(port, '/p')).cacheStatus).toMatch(/^@cache; hit/)
      expect((await send(port, '/fr/p', headers)).body).toBe('page-in-fr')
      expect(runs()).toBe(4)
    },
  )

  it("a request class of the server's own (createServer({ IncomingMessage })) whose url accessor strips /fr: its requests bypass, the French page is never served to /p", async () => {
    class LocaleRequest extends IncomingMessageClass {
      lang?: string
      constructor(socket: Socket) {
        super(socket)
        let url = ''
        Object.defineProperty(this, 'url', {
          configurable: true,
          enumerable: true,
          get: () => url,
          set: (value: string) => {
            url = value.startsWith('/fr/') ? value.slice(3) : value
            if (url !== value) this.lang = 'fr'
          },
        })
      }
    }
    const { app, runs } = shop()
    const port = await listening(noteArrivals(createServer({ IncomingMessage: LocaleRequest }, app)))
    expect((await send(port, '/fr/p')).body).toBe('page-in-fr')
    expect((await send(port, '/fr/p')).cacheStatus).toMatch(/detail=rewritten-url/)
    const english = await send(port, '/p')
    expect(english.body).toBe('page-in-en')
    expect(english.cacheStatus).toMatch(/detail=rewritten-url/)
    expect(runs()).toBe(3)
  })

  it.each([
    [
      'a factory returning a real IncomingMessage with its own url accessor',
      (socket: Socket, flag: (req: IncomingMessage) => void) => {
        const req = new IncomingMessageClass(socket)
        let url = ''
        Object.defineProperty(req, 'url', {
          configurable: true,
          enumerable: true,
          get: () => url,
          set: (value: string) => {
            url = value.startsWith('/fr/') ? value.slice(3) : value
            if (url !== value) flag(req)
          },
        })
        return req
      },
    ],
    [
      'a factory whose url setter strips /fr and then replaces itself with a plain value',
      (socket: Socket, flag: (req: IncomingMessage) => void) => {
        const req = new IncomingMessageClass(socket)
        Object.defineProperty(req, 'url', {
          configurable: true,
          set(value: string) {
            const url = value.startsWith('/fr/') ? value.slice(3) : value
            if (url !== value) flag(req)
            Object.defineProperty(req, 'url', {
              value: url,
              writable: true,
              enumerable: true,
              configurable: true,
            })
          },
        })
        return req
      },
    ],
  ])(
    "a request 'class' of the server's own that is %s: its requests bypass, the French page is never served to /p",
    async (_, make) => {
      // Called with `new` by Node: the object it returns is the request.
      const LocaleRequest = function (this: unknown, socket: Socket) {
        return make(socket, (req) => {
          ;(req as Localized).lang = 'fr'
        })
      } as unknown as typeof IncomingMessageClass
      const { app, runs } = shop()
      const port = await listening(noteArrivals(createServer({ IncomingMessage: LocaleRequest }, app)))
      expect((await send(port, '/fr/p')).body).toBe('page-in-fr')
      const english = await send(port, '/p')
      expect(english.body).toBe('page-in-en')
      expect(english.cacheStatus).toMatch(/detail=rewritten-url/)
      expect((await send(port, '/p')).body).toBe('page-in-en')
      expect(runs()).toBe(3)
    },
  )

  it('a url setter put on IncomingMessage.prototype (every request built through it): its requests bypass, the French page is never served to /p', async () => {
    const proto = IncomingMessageClass.prototype as Localized
    const early = new WeakMap<object, string>()
    Object.defineProperty(proto, 'url', {
      configurable: true,
      get(this: Localized) {
        return early.get(this)
      },
      // The constructor's empty url is kept aside; the parser's is rewritten, then made plain.
      set(this: Localized, value: string) {
        if (value === '') return void early.set(this, value)
        const url = value.startsWith('/fr/') ? value.slice(3) : value
        Object.defineProperty(this, 'url', {
          value: url,
          writable: true,
          enumerable: true,
          configurable: true,
        })
        if (url !== value) this.lang = 'fr'
      },
    })
    try {
      const { app, runs } = shop()
      const port = await listening(noteArrivals(createServer(app)))
      expect((await send(port, '/fr/p')).body).toBe('page-in-fr')
      const english = await send(port, '/p')
      expect(english.body).toBe('page-in-en')
      expect(english.cacheStatus).toMatch(/detail=rewritten-url/)
      expect(runs()).toBe(2)
    } finally {
      delete (proto as { url?: unknown }).url
    }
  })

  it('an emit an APM shim wrapped on the server after it started noting: every request it passes on bypasses, the French page is never served to /p', async () => {
    const { app, runs } = shop()
    const server = noteArrivals(createServer(app))
    const emit = server.emit as (this: Server, event: string | symbol, ...args: any[]) => boolean
    server.emit = function (this: Server, event: string | symbol, ...args: any[]) {
      if (event === 'request') stripLocale(args[0])
      return emit.call(this, event, ...args)
    } as typeof server.emit
    const port = await listening(server)
    expect((await send(port, '/fr/p')).cacheStatus).toBe('@cache; fwd=request; detail=rewritten-url')
    const english = await send(port, '/p')
    expect(english.body).toBe('page-in-en')
    expect(english.cacheStatus).toBe('@cache; fwd=request; detail=rewritten-url')
    expect((await send(port, '/p')).body).toBe('page-in-en')
    expect(runs()).toBe(3)
  })

  it('an emit an APM shim wrapped on the server before it started noting: the French page is never stored under /p', async () => {
    const { app } = shop()
    const server = createServer(app)
    const emit = server.emit as (this: Server, event: string | symbol, ...args: any[]) => boolean
    server.emit = function (this: Server, event: string | symbol, ...args: any[]) {
      if (event === 'request') stripLocale(args[0])
      return emit.call(this, event, ...args)
    } as typeof server.emit
    const port = await listening(noteArrivals(server))
    expect((await send(port, '/fr/p')).cacheStatus).toBe('@cache; fwd=request; detail=rewritten-url')
    expect((await send(port, '/p')).cacheStatus).toBe('@cache; fwd=uri-miss; stored')
    expect((await send(port, '/fr/p')).body).toBe('page-in-fr')
    const english = await send(port, '/p')
    expect(english.body).toBe('page-in-en')
    expect(english.cacheStatus).toMatch(/^@cache; hit/)
  })

  it('without noteArrivals: the first request of the server bypasses (it cannot be told from a rewritten one), the later ones are cached', async () => {
    const { app } = shop()
    const server = app.listen(0, '127.0.0.1')
    servers.push(server)
    await new Promise((resolve) => server.once('listening', resolve))
    server.prependListener('request', stripLocale)
    const port = (server.address() as AddressInfo).port
    const first = await send(port, '/p')
    expect(first.cacheStatus).toBe('@cache; fwd=request; detail=rewritten-url')
    expect((await send(port, '/fr/p')).cacheStatus).toMatch(/detail=rewritten-url/)
    expect((await send(port, '/p')).cacheStatus).toBe('@cache; fwd=uri-miss; stored')
    const english = await send(port, '/p')
    expect(english.cacheStatus).toMatch(/^@cache; hit/)
    expect(english.body).toBe('page-in-en')
  })

  it('cache.front(app) never answers a request a listener before it rewrote with the entry of the rewritten target', async () => {
    const app = express()
    const cache = cacheResponse({ ttl: 60, backend: memory(), frontSkipsAllMiddleware: true })
    app.get('/p', cache, (req: any, res: any) => res.send(`page-in-${req.lang ?? 'en'}`))
    const server = noteArrivals(createServer(cache.front(app)))
    server.prependListener('request', stripLocale)
    const port = await listening(server)
    expect((await send(port, '/p')).cacheStatus).toBe('@cache; fwd=uri-miss; stored')
    expect((await send(port, '/p')).cacheStatus).toMatch(/^@cache; hit/)
    const french = await send(port, '/fr/p')
    expect(french.body).toBe('page-in-fr')
    expect(french.cacheStatus).toMatch(/detail=rewritten-url/)
  })
})

describe.each(EXPRESS)('a Host rewritten by middleware before the cache on %s', (_name, express) => {
  /** Maps the legacy domain to the new one and flags the request for the handler. */
  function aliasing() {
    const app = express()
    app.use((req: any, _res: any, next: any) => {
      if (req.headers.host === 'old.shop.test') {
        req.headers.host = 'shop.test'
        req.legacy = true
      }
      next()
    })
    const cache = cacheResponse({ ttl: 60, backend: memory() })
    app.get('/p', cache, (req: any, res: any) => res.send(req.legacy ? 'legacy-page' : 'new-page'))
    return { app, cache }
  }

  it("keys the Host the client sent: the legacy domain's page is never served to clients of the new one", async () => {
    const { app } = aliasing()
    const port = await listening(noteArrivals(createServer(app)))
    const legacy = await send(port, '/p', { host: 'old.shop.test' })
    expect(legacy.body).toBe('legacy-page')
    expect(legacy.cacheStatus).toBe('@cache; fwd=uri-miss; stored')
    const fresh = await send(port, '/p')
    expect(fresh.body).toBe('new-page')
    expect(fresh.cacheStatus).toBe('@cache; fwd=uri-miss; stored')
    expect((await send(port, '/p', { host: 'old.shop.test' })).body).toBe('legacy-page')
    const hit = await send(port, '/p')
    expect(hit.body).toBe('new-page')
    expect(hit.cacheStatus).toMatch(/^@cache; hit/)
  })

  it("a listener put first rewrites the Host line in rawHeaders too: the legacy domain's page is never served to clients of the new one", async () => {
    const { app } = aliasing()
    const server = noteArrivals(createServer(app))
    server.prependListener('request', (req: IncomingMessage) => {
      const at = req.rawHeaders.findIndex((name, i) => i % 2 === 0 && name.toLowerCase() === 'host')
      if (req.rawHeaders[at + 1] === 'old.shop.test') req.rawHeaders[at + 1] = 'shop.test'
    })
    const port = await listening(server)
    expect((await send(port, '/p', { host: 'old.shop.test' })).body).toBe('legacy-page')
    // Before: the legacy page, stored under shop.test.
    expect((await send(port, '/p')).body).toBe('new-page')
  })

  it("behind a trusted proxy, X-Forwarded-Host rewritten before the cache: the legacy domain's page is never served to clients of the new one", async () => {
    const app = express()
    app.set('trust proxy', true)
    app.use((req: any, _res: any, next: any) => {
      const forwarded = req.headers['x-forwarded-host']
      if (forwarded === 'old.shop.test') {
        req.headers['x-forwarded-host'] = 'shop.test'
        req.legacy = true
      }
      next()
    })
    app.get('/p', cacheResponse({ ttl: 60, backend: memory() }), (req: any, res: any) =>
      res.send(req.legacy ? 'legacy-page' : `new-page of ${req.hostname}`),
    )
    const port = await listening(noteArrivals(createServer(app)))
    const proxied = { host: 'internal:8080', 'x-forwarded-proto': 'https' }
    expect((await send(port, '/p', { ...proxied, 'x-forwarded-host': 'old.shop.test' })).body).toBe(
      'legacy-page',
    )
    // Before: the legacy page (both keyed as shop.test behind the same proxy Host).
    expect((await send(port, '/p', { ...proxied, 'x-forwarded-host': 'shop.test' })).body).toBe(
      'new-page of shop.test',
    )
    const hit = await send(port, '/p', { ...proxied, 'x-forwarded-host': 'shop.test' })
    expect(hit.cacheStatus).toMatch(/^@cache; hit/)
    expect((await send(port, '/p', { ...proxied, 'x-forwarded-host': 'old.shop.test' })).body).toBe(
      'legacy-page',
    )
  })

  it('invalidating the URL with the host the app sees reaches the entry of the legacy domain too', async () => {
    const { app, cache } = aliasing()
    const port = await listening(noteArrivals(createServer(app)))
    await send(port, '/p', { host: 'old.shop.test' })
    expect((await send(port, '/p', { host: 'old.shop.test' })).cacheStatus).toMatch(/^@cache; hit/)
    await cache.invalidate('/p', { host: 'shop.test' })
    expect((await send(port, '/p', { host: 'old.shop.test' })).cacheStatus).toBe(
      '@cache; fwd=uri-miss; stored',
    )
  })
})

describe.each(EXPRESS)('a malformed Vary on %s', (_name, express) => {
  it.each(['"X-User"', 'X-User;q=1'])(
    'Vary: %s is never stored: each user gets their own page',
    async (vary) => {
      const app = express()
      app.get('/me', cacheResponse({ ttl: 60, backend: memory() }), (req: any, res: any) => {
        res.set('vary', vary)
        res.send(`account of ${req.get('x-user')}`)
      })
      const port = await listening(noteArrivals(createServer(app)))
      const alice = await send(port, '/me', { 'x-user': 'alice' })
      expect(alice.body).toBe('account of alice')
      expect(alice.cacheStatus).toBe('@cache; fwd=uri-miss; detail=vary')
      expect((await send(port, '/me', { 'x-user': 'bob' })).body).toBe('account of bob')
    },
  )
})
