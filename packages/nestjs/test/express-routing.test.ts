/**
 * Nest's Express platform: requests Express routes otherwise than they were sent (middleware
 * rewriting `req.url`, or it and `req.originalUrl` together), a query parser of the application's
 * own, and stale-while-revalidate behind a proxy trusted by address. Real Nest apps, real HTTP.
 */
import 'reflect-metadata'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, request } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  type CanActivate,
  Controller,
  type ExecutionContext,
  Get,
  Injectable,
  type INestApplication,
  Module,
  Query,
  Req,
  UseGuards,
} from '@nestjs/common'
import { NestFactory } from '@nestjs/core'
import { ExpressAdapter, type NestExpressApplication } from '@nestjs/platform-express'
import { memoryBackend } from '@cache/memory'
import { selfSignedCertificate } from '@cache/test-servers'
import express from 'express'
import { describe, expect, it } from 'vitest'
import { regionModule } from './fixtures/regions.js'
import { CacheModule, CacheResponse, invalidateResponse } from '../src/index.js'

let runs = 0
let price = 100

/** `/admin/x` → `/x` (admin view), `/fr/x` → `/x` in French: both `req.url` and `req.originalUrl`. */
function localePrefix(req: any, _res: unknown, next: () => void): void {
  const m = /^\/(fr|de)(\/.*)$/.exec(req.url)
  if (m !== null) {
    req.lang = m[1]
    req.url = m[2]
    req.originalUrl = m[2]
  }
  next()
}

/** Adds `lang=` from `Accept-Language` to `req.url` alone. */
function languageQuery(req: any, _res: unknown, next: () => void): void {
  const lang = /^(fr|de)/.exec(req.headers['accept-language'] ?? '')?.[1] ?? 'en'
  req.url += `${req.url.includes('?') ? '&' : '?'}lang=${lang}`
  next()
}

@Controller()
class PagesController {
  @Get('products')
  @CacheResponse(60)
  products(@Req() req: any, @Query('lang') lang?: string) {
    runs++
    return `lamp [${lang ?? req.lang ?? 'en'}]`
  }

  @Get('prices')
  @CacheResponse(300)
  prices(@Req() req: any) {
    runs++
    return { query: req.query, price }
  }

  @Get('price')
  @CacheResponse({ ttl: '300ms', staleWhileRevalidate: 60 })
  price(@Req() req: any) {
    runs++
    return `${req.protocol}://${req.hostname} from ${req.ip} price ${price}`
  }
}

const PROXY = '127.0.0.2'
const fromProxy = (address: string | undefined) => address === PROXY || address === `::ffff:${PROXY}`

/** An internal API: only the proxy may call it. */
@Injectable()
class ProxyOnly implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    return fromProxy(context.switchToHttp().getRequest().socket.remoteAddress)
  }
}

@Controller('versioned')
class VersionedController {
  // A key of what a refresh's copy cannot repeat: a mark the server put on the client's connection.
  @Get()
  @CacheResponse({
    ttl: '300ms',
    staleWhileRevalidate: 60,
    key: (req: any) => `/versioned ${req.socket.admitted === true}`,
  })
  show() {
    runs++
    return `price ${price}`
  }
}

@Controller('internal')
@UseGuards(ProxyOnly)
class InternalController {
  @Get('price')
  @CacheResponse({ ttl: '300ms', staleWhileRevalidate: 60 })
  price(@Req() req: any) {
    runs++
    return `${req.hostname} price ${price}`
  }
}

@Module({
  imports: [CacheModule.forRoot({ backend: 'memory' })],
  controllers: [PagesController, InternalController, VersionedController],
  providers: [ProxyOnly],
})
class AppModule {}

async function start(
  module: new (...args: never[]) => unknown,
  before?: (app: NestExpressApplication) => void,
): Promise<{ app: INestApplication; port: number }> {
  runs = 0
  price = 100
  const app = await NestFactory.create<NestExpressApplication>(module, new ExpressAdapter(), {
    logger: false,
    abortOnError: false,
  })
  before?.(app)
  await app.listen(0, '127.0.0.1')
  return { app, port: (app.getHttpServer().address() as AddressInfo).port }
}

interface Reply {
  status: number
  text: string
  cache: string
}

function get(
  port: number,
  path: string,
  headers: Record<string, string> = {},
  localAddress?: string,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, headers, localAddress, agent: false, timeout: 5000 },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (text += chunk))
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, text, cache: String(res.headers['cache-status'] ?? '') }),
        )
      },
    )
    req.on('error', reject)
    req.end()
  })
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Waits (at most 3 s) for the refresh to have run the handler, then a moment for its store: the refreshed entry is fresh for 300 ms only. */
async function refreshed(): Promise<void> {
  for (let i = 0; i < 300 && runs < 2; i++) await sleep(10)
  await sleep(50)
}

describe('@CacheResponse on platform-express: a URL rewritten before routing', () => {
  it('bypasses a request whose req.url and req.originalUrl middleware rewrote, from the first request on', async () => {
    const { app, port } = await start(AppModule, (a) => a.use(localePrefix))
    try {
      // No request before: the first one the application gets is already rewritten.
      const fr = await get(port, '/fr/products?x=1')
      expect(fr.text).toBe('lamp [fr]')
      expect(fr.cache).toContain('detail=rewritten-url')
      const de = await get(port, '/de/products?x=1')
      expect(de.text).toBe('lamp [de]')
      const plain = await get(port, '/products?x=1')
      expect(plain.text).toBe('lamp [en]')
      // The URL as sent is still cached.
      expect((await get(port, '/products?x=1')).cache).toContain('hit')
      expect(runs).toBe(3)
    } finally {
      await app.close()
    }
  })

  it("bypasses it on an Express application of the application's own, the middleware set on it before Nest", async () => {
    const instance = express()
    instance.use(localePrefix)
    runs = 0
    const app = await NestFactory.create(AppModule, new ExpressAdapter(instance), { logger: false })
    await app.init()
    const server = createServer(instance).listen(0, '127.0.0.1')
    await once(server, 'listening')
    const port = (server.address() as AddressInfo).port
    try {
      expect((await get(port, '/fr/products')).text).toBe('lamp [fr]')
      const de = await get(port, '/de/products')
      expect(de.text).toBe('lamp [de]')
      expect(de.cache).toContain('detail=rewritten-url')
      expect((await get(port, '/products')).text).toBe('lamp [en]')
    } finally {
      server.close()
      await app.close()
    }
  })

  it('bypasses a request whose req.url alone middleware rewrote (a query parameter added)', async () => {
    const { app, port } = await start(AppModule, (a) => a.use(languageQuery))
    try {
      const fr = await get(port, '/products', { 'accept-language': 'fr-FR' })
      expect(fr.text).toBe('lamp [fr]')
      expect(fr.cache).toContain('detail=rewritten-url')
      expect((await get(port, '/products', { 'accept-language': 'en-US' })).text).toBe('lamp [en]')
      expect((await get(port, '/products', { 'accept-language': 'de-DE' })).text).toBe('lamp [de]')
    } finally {
      await app.close()
    }
  })
})

describe('@CacheResponse on platform-express: the query parser', () => {
  const commaParser = (query: string) => {
    const out: Record<string, string | string[]> = {}
    for (const [name, value] of new URLSearchParams(query)) {
      const values = value.split(',')
      const had = out[name]
      out[name] = had === undefined ? (values.length > 1 ? values : value) : [had, ...values].flat()
    }
    return out
  }

  it("bypasses requests with a query under the application's own parser: invalidating one spelling could not reach another", async () => {
    const { app, port } = await start(AppModule, (a) => a.set('query parser', commaParser))
    try {
      const comma = await get(port, '/prices?ids=1,2')
      expect(comma.cache).toContain('detail=querystring-parser')
      await get(port, '/prices?ids=1&ids=2')
      price = 80
      await invalidateResponse(`http://127.0.0.1:${port}/prices?ids=1&ids=2`)
      expect(JSON.parse((await get(port, '/prices?ids=1,2')).text).price).toBe(80)
      // Without a query the parser reads nothing: cached.
      await get(port, '/prices')
      expect((await get(port, '/prices')).cache).toContain('hit')
    } finally {
      await app.close()
    }
  })

  it("'simple' (Nest 11's default): invalidating `?q=50%25+off%21` reaches `?q=50%+off%21`, which the parser reads as the same '50% off!'", async () => {
    const { app, port } = await start(AppModule)
    try {
      const sloppy = '/prices?q=50%+off%21'
      const encoded = `/prices?q=${encodeURIComponent('50% off!')}`
      expect(JSON.parse((await get(port, sloppy)).text).query).toEqual({ q: '50% off!' })
      expect((await get(port, sloppy)).cache).toContain('hit')
      await get(port, encoded)
      price = 80
      await invalidateResponse(`http://127.0.0.1:${port}${encoded}`)
      expect(JSON.parse((await get(port, encoded)).text).price).toBe(80)
      expect(JSON.parse((await get(port, sloppy)).text).price).toBe(80)
    } finally {
      await app.close()
    }
  })

  it("'extended': `?[ids]=1` (read as `?ids=1`) bypasses, so invalidating `?ids=1` leaves nothing of it served", async () => {
    const { app, port } = await start(AppModule, (a) => a.set('query parser', 'extended'))
    try {
      const odd = await get(port, '/prices?[ids]=1')
      expect(JSON.parse(odd.text).query).toEqual({ ids: '1' })
      expect(odd.cache).toContain('detail=querystring-parser')
      await get(port, '/prices?ids=1')
      price = 80
      await invalidateResponse(`http://127.0.0.1:${port}/prices?ids=1`)
      expect(JSON.parse((await get(port, '/prices?[ids]=1')).text).price).toBe(80)
    } finally {
      await app.close()
    }
  })

  it('bypasses a request whose req.query middleware replaced (the last of repeated values wins)', async () => {
    const lastValueWins = (req: any, _res: unknown, next: () => void) => {
      const query = { ...req.query }
      for (const name of Object.keys(query)) if (Array.isArray(query[name])) query[name] = query[name].at(-1)
      Object.defineProperty(req, 'query', {
        value: query,
        configurable: true,
        writable: true,
        enumerable: true,
      })
      next()
    }
    const { app, port } = await start(AppModule, (a) => a.use(lastValueWins))
    try {
      const repeated = await get(port, '/prices?a=1&a=2')
      expect(JSON.parse(repeated.text).query).toEqual({ a: '2' })
      expect(repeated.cache).toContain('detail=querystring-parser')
      await get(port, '/prices?a=2')
      expect((await get(port, '/prices?a=2')).cache).toContain('hit')
    } finally {
      await app.close()
    }
  })

  it("caches under Express's own parsers ('extended', 'simple')", async () => {
    for (const parser of ['extended', 'simple']) {
      const { app, port } = await start(AppModule, (a) => a.set('query parser', parser))
      try {
        await get(port, '/prices?a[b]=1')
        const again = await get(port, '/prices?a[b]=1')
        expect(again.cache, parser).toContain('hit')
      } finally {
        await app.close()
      }
    }
  })
})

describe('@CacheResponse on platform-express: stale-while-revalidate behind a proxy trusted by address', () => {
  const viaProxy = { host: 'app.internal', 'x-forwarded-host': 'shop.example', 'x-forwarded-proto': 'https' }

  it('refreshes the entry the stale hit came from: the copy resolves as the request it refreshes', async () => {
    const { app, port } = await start(AppModule, (a) => a.set('trust proxy', fromProxy))
    try {
      const first = await get(port, '/price', viaProxy, PROXY)
      expect(first.text).toBe(`https://shop.example from ${PROXY} price 100`)
      price = 80
      await sleep(400)
      const stale = await get(port, '/price', viaProxy, PROXY)
      expect(stale.text).toContain('price 100')
      await refreshed()
      const fresh = await get(port, '/price', viaProxy, PROXY)
      expect(fresh.text).toBe(`https://shop.example from ${PROXY} price 80`)
      expect(fresh.cache).toContain('hit')
      expect(runs).toBe(2)
    } finally {
      await app.close()
    }
  })

  it("refreshes through a guard that admits only the proxy's address", async () => {
    const { app, port } = await start(AppModule)
    try {
      expect((await get(port, '/internal/price', {}, '127.0.0.1')).status).toBe(403)
      expect((await get(port, '/internal/price', {}, PROXY)).text).toBe('127.0.0.1 price 100')
      price = 80
      await sleep(400)
      expect((await get(port, '/internal/price', {}, PROXY)).text).toContain('price 100')
      await refreshed()
      const fresh = await get(port, '/internal/price', {}, PROXY)
      expect(fresh.text).toBe('127.0.0.1 price 80')
      expect(runs).toBe(2)
    } finally {
      await app.close()
    }
  })
  it("a refresh that middleware before the cache answers (a rate limiter's 429) fails at once, is logged once, and the next stale hit refreshes again", async () => {
    const warnings: string[] = []
    const warn = console.warn
    console.warn = (...args: unknown[]) => void warnings.push(args.join(' '))
    // A rate limiter that turns away the third request it sees: the copy of the first refresh
    // (the first request misses, the second is a stale hit that starts the refresh).
    let seen = 0
    let turnedAway = 0
    const { app, port } = await start(AppModule, (a) =>
      a.use((_req: unknown, res: any, next: () => void) => {
        if (++seen === 3) {
          turnedAway++
          res.statusCode = 429
          return res.end('slow down')
        }
        next()
      }),
    )
    try {
      expect((await get(port, '/price')).text).toContain('price 100')
      price = 80
      await sleep(400)
      expect((await get(port, '/price')).text).toContain('price 100')
      for (let i = 0; i < 100 && warnings.length === 0; i++) await sleep(10)
      expect(turnedAway).toBe(1)
      expect(warnings.join('\n')).toContain('answered 429 before it reached the cache')
      // Settled at once, not held for revalidateTimeout (30 s): this stale hit refreshes again.
      expect((await get(port, '/price')).text).toContain('price 100')
      for (let i = 0; i < 100 && runs < 2; i++) await sleep(10)
      await sleep(50)
      const fresh = await get(port, '/price')
      expect(fresh.text).toContain('price 80')
      expect(fresh.cache).toContain('hit')
      expect(warnings).toHaveLength(1)
    } finally {
      console.warn = warn
      await app.close()
    }
  })

  it('refreshes on an HTTPS server: the copy keeps the protocol of the request it refreshes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cache-nestjs-tls-'))
    const tls = selfSignedCertificate(dir)
    runs = 0
    price = 100
    const app = await NestFactory.create<NestExpressApplication>(AppModule, new ExpressAdapter(), {
      logger: false,
      httpsOptions: { key: tls.key, cert: tls.cert },
    })
    await app.listen(0, '127.0.0.1')
    const port = (app.getHttpServer().address() as AddressInfo).port
    const getTls = () =>
      new Promise<string>((resolve, reject) => {
        const req = httpsRequest(
          { host: '127.0.0.1', port, path: '/price', ca: tls.ca, agent: false, timeout: 5000 },
          (res) => {
            let text = ''
            res.setEncoding('utf8')
            res.on('data', (chunk: string) => (text += chunk))
            res.on('end', () => resolve(text))
          },
        )
        req.on('error', reject)
        req.end()
      })
    try {
      expect(await getTls()).toBe('https://127.0.0.1 from 127.0.0.1 price 100')
      price = 80
      await sleep(400)
      expect(await getTls()).toContain('price 100')
      await refreshed()
      expect(await getTls()).toBe('https://127.0.0.1 from 127.0.0.1 price 80')
      expect(runs).toBe(2)
    } finally {
      await app.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('stores nothing from a refresh copy keyed otherwise than the entry it refreshes, and says so', async () => {
    const warnings: string[] = []
    const warn = console.warn
    console.warn = (...args: unknown[]) => void warnings.push(args.join(' '))
    const { app, port } = await start(AppModule, (a) =>
      a.getHttpServer().on('connection', (socket: any) => void (socket.admitted = true)),
    )
    try {
      expect((await get(port, '/versioned')).text).toContain('price 100')
      price = 80
      await sleep(400)
      expect((await get(port, '/versioned')).text).toContain('price 100')
      await sleep(300)
      // The copy ran the handler but was stored nowhere: the entry is still stale.
      expect(runs).toBe(2)
      expect((await get(port, '/versioned')).text).toContain('price 100')
      expect(warnings.join('\n')).toContain('resolved under another key')
    } finally {
      console.warn = warn
      await app.close()
    }
  })
})

describe('@CacheResponse on platform-express: two apps of one process on one shared server', () => {
  it("never answers one app's request with the other's entry", async () => {
    // One Node server hands each request to the Express app of its region (by a header); both
    // Nest apps are made by the same code, with one backend.
    const backend = memoryBackend()
    const apps: INestApplication[] = []
    const handlers: Record<string, express.Express> = {}
    for (const region of ['eu', 'us']) {
      const instance = express()
      handlers[region] = instance
      const app = await NestFactory.create(regionModule(region, backend), new ExpressAdapter(instance), {
        logger: false,
      })
      await app.init()
      apps.push(app)
    }
    const server = createServer((req, res) =>
      handlers[req.headers['x-region'] === 'us' ? 'us' : 'eu']!(req, res),
    )
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const port = (server.address() as AddressInfo).port
    try {
      for (const region of ['eu', 'us', 'eu', 'us']) {
        const answer = await get(port, '/region', { 'x-region': region })
        expect(answer.text, `${region}: ${answer.cache}`).toBe(`{"region":"${region}"}`)
      }
    } finally {
      server.close()
      for (const app of apps) await app.close()
    }
  })
})
