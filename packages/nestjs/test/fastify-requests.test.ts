/**
 * `@CacheResponse` on platform-fastify, for requests Fastify handles otherwise than they were
 * sent: `rewriteUrl`, a hook rewriting `request.raw.url`, a query parser of the app's own, and a
 * stale-while-revalidate refresh behind a proxy trusted by address.
 */
import 'reflect-metadata'
import { createServer, request as httpRequest } from 'node:http'
import { configureCache } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import {
  type CanActivate,
  Controller,
  type ExecutionContext,
  Get,
  type INestApplication,
  Injectable,
  Module,
  Query,
  Req,
  SetMetadata,
  UseGuards,
  UseInterceptors,
} from '@nestjs/common'
import { NestFactory } from '@nestjs/core'
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { type RegionOptions, regionModule } from './fixtures/regions.js'
import {
  CACHE_RESPONSE_OPTIONS,
  CacheModule,
  CacheResponse,
  CacheResponseInterceptor,
  invalidateResponse,
} from '../src/index.js'

type Marked = { view?: string; preview?: boolean; legacy?: boolean }
const INTERNAL = '127.0.0.2'
const PROXY = '127.0.0.2'
const state = { price: 10, runs: 0, now: 1_000_000 }

@Controller()
class ShopController {
  @Get('products')
  @CacheResponse({ ttl: 60 })
  list(@Req() request: { raw: Marked }) {
    const raw = request.raw
    if (raw.preview) return 'DRAFT 9.99'
    return raw.view === 'admin' ? 'ADMIN: cost 3.10' : `lamp 16.90 [${raw.view ?? 'en'}]`
  }

  @Get('home')
  @CacheResponse({ ttl: 60 })
  home(@Req() request: { raw: Marked }) {
    return request.raw.legacy ? 'old-shop: this domain is moving' : 'new-shop home'
  }

  @Get('items')
  @CacheResponse({ ttl: 60, tags: ['items'] })
  items(@Query('ids') ids: unknown) {
    return `ids ${JSON.stringify(ids)} price ${state.price}`
  }

  @Get('page')
  @CacheResponse({ ttl: 60 })
  page(@Query('lang') lang: unknown) {
    return lang === 'fr' ? 'FRENCH' : 'ENGLISH'
  }

  @Get('price')
  @CacheResponse({ ttl: 60, staleWhileRevalidate: 600, now: () => state.now })
  price(@Req() request: { protocol: string; host: string }) {
    state.runs++
    return `${request.protocol}://${request.host} price ${state.price}`
  }
}

/** A module with a backend of its own: the module closes it with the app. */
function shopModule() {
  @Module({
    imports: [CacheModule.forRoot({ backend: memoryBackend(), isGlobal: true })],
    controllers: [ShopController],
  })
  class ShopModule {}
  return ShopModule
}

const apps: INestApplication[] = []
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()))
})

/** The controller alone: `@CacheResponse` on the default cache, no `CacheModule`. */
function moduleWithoutCacheModule() {
  @Module({ controllers: [ShopController] })
  class BareModule {}
  return BareModule
}

async function start(
  options: ConstructorParameters<typeof FastifyAdapter>[0],
  setup?: (app: INestApplication) => void,
  module: Parameters<typeof NestFactory.create>[0] = shopModule(),
): Promise<string> {
  const app = await NestFactory.create(module, new FastifyAdapter(options), { logger: false })
  apps.push(app)
  setup?.(app)
  await app.listen(0, '127.0.0.1')
  return `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`
}

function get(
  base: string,
  path: string,
  options: { from?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: string; cacheStatus: string }> {
  const url = new URL(base)
  return new Promise((resolve, reject) => {
    httpRequest(
      {
        host: url.hostname,
        port: url.port,
        path,
        agent: false,
        headers: options.headers ?? {},
        ...(options.from === undefined ? {} : { localAddress: options.from }),
      },
      (response) => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            body: Buffer.concat(chunks).toString(),
            cacheStatus: String(response.headers['cache-status']),
          }),
        )
      },
    )
      .on('error', reject)
      .end()
  })
}

function fastifyOf(app: INestApplication) {
  return (app.getHttpAdapter() as FastifyAdapter).getInstance()
}

describe('@CacheResponse on platform-fastify, a target rewritten before the cache', () => {
  const rewriteUrl = (raw: { url?: string } & Marked) => {
    const match = /^\/(admin|fr|de)(\/.*)$/.exec(raw.url ?? '/')
    if (match === null) return raw.url ?? '/'
    raw.view = match[1]
    return match[2]!
  }

  it('rewriteUrl: the admin view is never stored under the public URL, nor one locale for another', async () => {
    const base = await start({ rewriteUrl: rewriteUrl as never }, (app) => {
      fastifyOf(app).addHook('onRequest', async (request, reply) => {
        const raw = request.raw as typeof request.raw & Marked
        if (raw.view === 'admin' && raw.socket.remoteAddress !== INTERNAL) return reply.code(403).send('no')
      })
    })
    await get(base, '/products?ready=1')
    const admin = await get(base, '/admin/products', { from: INTERNAL })
    expect(admin.body).toBe('ADMIN: cost 3.10')
    expect(admin.cacheStatus).toContain('detail=rewritten-url')
    expect((await get(base, '/products')).body).toBe('lamp 16.90 [en]')
    await get(base, '/fr/products?x=1')
    expect((await get(base, '/de/products?x=1')).body).toBe('lamp 16.90 [de]')
    expect((await get(base, '/products')).cacheStatus).toContain('hit')
  })

  it('rewriteUrl with middleware (middie overwrites raw.originalUrl): still bypassed', async () => {
    const base = await start({ rewriteUrl: rewriteUrl as never }, (app) => {
      app.use((_req: unknown, _res: unknown, next: () => void) => next())
    })
    expect((await get(base, '/fr/products')).cacheStatus).toContain('detail=rewritten-url')
    expect((await get(base, '/products')).body).toBe('lamp 16.90 [en]')
  })

  const strip = (raw: { url?: string } & Marked) => {
    if (/[?&]preview=1/.test(raw.url ?? '')) {
      raw.preview = true
      raw.url = (raw.url ?? '/').replace(/[?&]preview=1/, '').replace(/^([^?]*)&/, '$1?')
    }
  }

  it('a Fastify hook rewriting request.raw.url after routing: bypassed, the public page stays public', async () => {
    const base = await start(undefined, (app) => {
      fastifyOf(app).addHook('onRequest', async (request) => strip(request.raw))
    })
    const editor = await get(base, '/products?preview=1')
    expect(editor.body).toBe('DRAFT 9.99')
    expect(editor.cacheStatus).toContain('detail=rewritten-url')
    expect((await get(base, '/products')).body).toBe('lamp 16.90 [en]')
  })

  it('the same hook without CacheModule (configureCache and @CacheResponse): bypassed, the rest cached', async () => {
    configureCache(memoryBackend())
    const base = await start(
      undefined,
      (app) => {
        fastifyOf(app).addHook('onRequest', async (request) => strip(request.raw))
      },
      moduleWithoutCacheModule(),
    )
    const editor = await get(base, '/products?preview=1')
    expect(editor.body).toBe('DRAFT 9.99')
    expect((await get(base, '/products')).body).toBe('lamp 16.90 [en]')
    expect(editor.cacheStatus).toContain('detail=rewritten-url')
    expect((await get(base, '/products')).cacheStatus).toContain('hit')
  })

  it('a server in front of Fastify (FastifyAdapter serverFactory) rewriting the URL: bypassed', async () => {
    const serverFactory = (handler: (req: never, res: never) => void) =>
      createServer((req, res) => {
        strip(req)
        handler(req as never, res as never)
      })
    const base = await start({ serverFactory } as never)
    const editor = await get(base, '/products?preview=1')
    expect(editor.body).toBe('DRAFT 9.99')
    expect((await get(base, '/products')).body).toBe('lamp 16.90 [en]')
    expect(editor.cacheStatus).toContain('detail=rewritten-url')
    expect((await get(base, '/products')).cacheStatus).toContain('hit')
  })

  it("a server of the app's own that rewrites then calls fastify.routing: bypassed, no locale for another", async () => {
    const app = await NestFactory.create(shopModule(), new FastifyAdapter(), { logger: false })
    apps.push(app)
    await app.init()
    const fastify = fastifyOf(app)
    await fastify.ready()
    // `/fr/products` is `/products` in French, told to the app by the server in front of it.
    const front = createServer((req, res) => {
      req.url = rewriteUrl(req as typeof req & Marked)
      fastify.routing(req, res)
    })
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve))
    const base = `http://127.0.0.1:${(front.address() as { port: number }).port}`
    try {
      expect((await get(base, '/products')).body).toBe('lamp 16.90 [en]')
      const french = await get(base, '/fr/products')
      expect(french.body).toBe('lamp 16.90 [fr]')
      expect(french.cacheStatus).toContain('detail=rewritten-url')
      expect((await get(base, '/products')).body).toBe('lamp 16.90 [en]')
    } finally {
      await new Promise((resolve) => front.close(resolve))
    }
  })

  it('a hook rewriting the Host header (a domain alias): the Host as sent is keyed too', async () => {
    const base = await start(undefined, (app) => {
      fastifyOf(app).addHook('onRequest', async (request) => {
        const raw = request.raw as typeof request.raw & Marked
        if (raw.headers.host === 'old-shop.example') {
          raw.legacy = true
          raw.headers.host = 'new-shop.example'
        }
      })
    })
    expect((await get(base, '/home', { headers: { host: 'old-shop.example' } })).body).toBe(
      'old-shop: this domain is moving',
    )
    expect((await get(base, '/home', { headers: { host: 'new-shop.example' } })).body).toBe('new-shop home')
    expect((await get(base, '/home', { headers: { host: 'old-shop.example' } })).cacheStatus).toContain('hit')
  })
})

describe('@CacheResponse on platform-fastify with a query parser of its own', () => {
  it('requests with a query bypass (detail=querystring-parser); without one they are cached', async () => {
    const parse = (text: string) => {
      const query: Record<string, string[]> = {}
      for (const pair of text.split('&')) {
        const [name = '', value = ''] = pair.split('=')
        for (const one of value.split(',')) (query[name] ??= []).push(one)
      }
      return query
    }
    const base = await start({ routerOptions: { querystringParser: parse } } as never)
    state.price = 10
    const comma = await get(base, '/items?ids=1,2')
    expect(comma.cacheStatus).toContain('detail=querystring-parser')
    expect(comma.body).toBe('ids ["1","2"] price 10')
    await get(base, '/items?ids=1&ids=2')
    state.price = 12
    expect((await get(base, '/items?ids=1&ids=2')).body).toBe('ids ["1","2"] price 12')
    expect((await get(base, '/items')).cacheStatus).toContain('stored')
  })
})

describe('@CacheResponse on platform-fastify with a hook that replaces request.query (fastify-qs)', () => {
  it('requests with a query bypass (detail=querystring-parser): no spelling is served stale', async () => {
    const base = await start(undefined, (app) => {
      fastifyOf(app).addHook('onRequest', async (request) => {
        const url = (request.raw.url ?? '/').replace(/\?{2,}/, '?')
        const at = url.indexOf('?')
        const parsed: Record<string, string[]> = {}
        for (const [name, value] of new URLSearchParams(at === -1 ? '' : url.slice(at + 1)))
          (parsed[name] ??= []).push(...value.split(','))
        request.query = parsed
      })
    })
    state.price = 10
    const spellings = ['/items?ids=1,2', '/items?ids=1&ids=2', '/items??ids=1,2']
    for (const path of spellings) expect((await get(base, path)).body).toBe('ids ["1","2"] price 10')
    state.price = 12
    const answers = []
    for (const path of spellings) answers.push(await get(base, path))
    expect(answers.map((answer) => answer.body)).toEqual(spellings.map(() => 'ids ["1","2"] price 12'))
    for (const answer of answers) expect(answer.cacheStatus).toContain('detail=querystring-parser')
    expect((await get(base, '/items')).cacheStatus).toContain('stored')
  })
})

describe('@CacheResponse on platform-fastify with a hook that changes request.query in place', () => {
  it('requests with a query bypass (detail=querystring-parser): no spelling is served stale', async () => {
    const base = await start(undefined, (app) => {
      // Comma lists, as qs({ comma: true }) reads them: `?ids=1,2` is `?ids=1&ids=2`.
      fastifyOf(app).addHook('onRequest', async (request) => {
        const query = request.query as Record<string, unknown>
        if (typeof query.ids === 'string' && query.ids.includes(',')) query.ids = query.ids.split(',')
      })
    })
    state.price = 10
    const spellings = ['/items?ids=1,2', '/items?ids=1&ids=2']
    for (const path of spellings) expect((await get(base, path)).body).toBe('ids ["1","2"] price 10')
    state.price = 12
    await invalidateResponse('/items?ids=1&ids=2', { host: new URL(base).host })
    const answers = []
    for (const path of spellings) answers.push(await get(base, path))
    expect(answers.map((answer) => answer.body)).toEqual(spellings.map(() => 'ids ["1","2"] price 12'))
    expect(answers[0]!.cacheStatus).toContain('detail=querystring-parser')
    // A query the hook leaves as Fastify parsed it is cached.
    await get(base, '/items?ids=3')
    expect((await get(base, '/items?ids=3')).cacheStatus).toContain('hit')
  })
})

describe('@CacheResponse on platform-fastify with a hook that fills in a query default', () => {
  for (const hook of ['onRequest', 'preValidation'] as const)
    for (const mode of ['in place', 'replaced'] as const)
      it(`(${hook}, ${mode}) on a request without a query string: its page is never stored under the bare URL`, async () => {
        const base = await start(undefined, (app) => {
          // `lang` from Accept-Language when the query names none.
          fastifyOf(app).addHook(hook, async (request) => {
            if (!/fr/.test(request.headers['accept-language'] ?? '')) return
            const query = request.query as Record<string, unknown>
            if (mode === 'in place') query.lang ??= 'fr'
            else request.query = { ...query, lang: 'fr' }
          })
        })
        const french = await get(base, '/page', { headers: { 'accept-language': 'fr' } })
        expect(french.body).toBe('FRENCH')
        expect(french.cacheStatus).toContain('detail=querystring-parser')
        expect((await get(base, '/page')).body).toBe('ENGLISH')
        // The requests the hook leaves alone are cached.
        expect((await get(base, '/page')).cacheStatus).toContain('hit')
        expect((await get(base, '/page', { headers: { 'accept-language': 'fr' } })).body).toBe('FRENCH')
      })
})

describe('@CacheResponse on platform-fastify: two apps of one process on one shared server', () => {
  // One Node server hands each request to the app of its region (by a header); both apps are made
  // by the same code, with one backend.
  async function regions(options: RegionOptions | ((region: string) => RegionOptions) = {}) {
    const backend = memoryBackend()
    const server = createServer()
    const handlers: Record<string, (req: unknown, res: unknown) => void> = {}
    server.on('request', (req, res) => handlers[req.headers['x-region'] === 'us' ? 'us' : 'eu']!(req, res))
    const made: INestApplication[] = []
    for (const region of ['eu', 'us']) {
      const serverFactory = (handler: (req: unknown, res: unknown) => void) => {
        handlers[region] = handler
        return server
      }
      const own = typeof options === 'function' ? options(region) : options
      const app = await NestFactory.create(
        regionModule(region, backend, own),
        new FastifyAdapter({ serverFactory } as never),
        { logger: false },
      )
      apps.push(app)
      made.push(app)
    }
    await made[0]!.listen(0, '127.0.0.1')
    await made[1]!.init()
    await fastifyOf(made[1]!).ready()
    return { base: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server, backend }
  }
  const ask = (base: string, region: string) => get(base, '/region', { headers: { 'x-region': region } })

  it('bypass without keyPrefixes of their own (detail=site), each answering its own region', async () => {
    const { base } = await regions()
    for (const region of ['eu', 'us', 'eu', 'us']) {
      const answer = await ask(base, region)
      expect(answer.body).toBe(`{"region":"${region}"}`)
      expect(answer.cacheStatus).toContain('detail=site')
    }
  })

  it('cache under distinct keyPrefixes, each app its own entries', async () => {
    const { base } = await regions((region) => ({ keyPrefix: region }))
    expect((await ask(base, 'eu')).body).toBe('{"region":"eu"}')
    expect((await ask(base, 'us')).body).toBe('{"region":"us"}')
    for (const region of ['us', 'eu']) {
      const again = await ask(base, region)
      expect(again.body).toBe(`{"region":"${region}"}`)
      expect(again.cacheStatus).toContain('hit')
    }
  })

  it("the front (CacheModule front: true) passes through: no region gets the other's entry", async () => {
    const { base } = await regions((region) => ({ keyPrefix: region, front: true }))
    for (const region of ['eu', 'eu', 'us', 'us', 'eu']) {
      const answer = await ask(base, region)
      expect(answer.body, `${region}: ${answer.cacheStatus}`).toBe(`{"region":"${region}"}`)
    }
  })
})

describe('@CacheResponse on platform-fastify: a cache installed once the server serves', () => {
  /** A module whose handler is cached by an interceptor made outside Nest's injector (noted at its first request). */
  function lateModule(region: string, backend: ReturnType<typeof memoryBackend>) {
    @Controller()
    class LateController {
      @Get('region')
      @SetMetadata(CACHE_RESPONSE_OPTIONS, { ttl: 60, keyPrefix: region })
      @UseInterceptors(new CacheResponseInterceptor(backend))
      show() {
        return { region }
      }
    }
    @Module({ controllers: [LateController] })
    class LateModule {}
    return LateModule
  }

  it('a stale hit does not run the handler in the background for a refresh that cannot be stored', async () => {
    // The interceptor made with `new` adds no first onRequest hook: a refresh's inject() copy
    // cannot be known as the refresh, so it is not run (before: each stale hit ran the handler in
    // the background and threw the answer away, the log blaming another key).
    let runs = 0
    const clock = { now: 1_000_000 }
    @Controller()
    class LateRefreshController {
      @Get('late-price')
      @SetMetadata(CACHE_RESPONSE_OPTIONS, { ttl: 1, staleWhileRevalidate: 60, now: () => clock.now })
      @UseInterceptors(new CacheResponseInterceptor(memoryBackend()))
      show() {
        return `price #${++runs}`
      }
    }
    @Module({ controllers: [LateRefreshController] })
    class LateRefreshModule {}
    const base = await start({}, undefined, LateRefreshModule)
    for (const _ of [1, 2]) await get(base, '/late-price')
    const hit = await get(base, '/late-price')
    expect(hit.cacheStatus).toContain('hit')
    expect(hit.body).toBe('price #2')
    clock.now += 2_000
    for (const _ of [1, 2, 3]) {
      const stale = await get(base, '/late-price')
      expect(stale.body).toBe('price #2')
      expect(stale.cacheStatus).toMatch(/hit; ttl=-/)
    }
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(runs).toBe(2)
  })

  it('caches when the server calls the application alone', async () => {
    const base = await start({}, undefined, lateModule('eu', memoryBackend()))
    // The first request's target was not noted as it arrived (nothing watched the server yet).
    for (const _ of [1, 2]) expect((await get(base, '/region')).body).toBe('{"region":"eu"}')
    const again = await get(base, '/region')
    expect(again.body).toBe('{"region":"eu"}')
    expect(again.cacheStatus).toContain('hit')
  })

  it('a hook filling in a query default on a request without a query string: that request bypasses', async () => {
    const base = await start(
      {},
      (app) => {
        fastifyOf(app).addHook('onRequest', async (request) => {
          if (request.headers['accept-language'] === 'fr')
            (request.query as Record<string, unknown>).lang = 'fr'
        })
      },
      lateModule('eu', memoryBackend()),
    )
    for (const _ of [1, 2, 3]) await get(base, '/region')
    expect((await get(base, '/region')).cacheStatus).toContain('hit')
    const french = await get(base, '/region', { headers: { 'accept-language': 'fr' } })
    expect(french.cacheStatus).toContain('detail=querystring-parser')
  })

  it("bypasses behind a listener of the user's handing requests to two applications, whatever the prefixes", async () => {
    const backend = memoryBackend()
    const server = createServer()
    const handlers: Record<string, (req: unknown, res: unknown) => void> = {}
    server.on('request', (req, res) => handlers[req.headers['x-region'] === 'us' ? 'us' : 'eu']!(req, res))
    const made: INestApplication[] = []
    for (const region of ['eu', 'us']) {
      const serverFactory = (handler: (req: unknown, res: unknown) => void) => {
        handlers[region] = handler
        return server
      }
      const app = await NestFactory.create(
        lateModule(region, backend),
        new FastifyAdapter({ serverFactory } as never),
        {
          logger: false,
        },
      )
      apps.push(app)
      made.push(app)
    }
    await made[0]!.listen(0, '127.0.0.1')
    await made[1]!.init()
    await fastifyOf(made[1]!).ready()
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`
    const answers: string[] = []
    for (const region of ['eu', 'us', 'eu', 'us', 'eu', 'us']) {
      const answer = await get(base, '/region', { headers: { 'x-region': region } })
      expect(answer.body).toBe(`{"region":"${region}"}`)
      answers.push(answer.cacheStatus)
    }
    // The first request of each was not noted as it arrived (rewritten-url); the others bypass for the site.
    for (const status of answers.slice(2)) expect(status).toContain('detail=site')
  })
})

describe('@CacheResponse on platform-fastify: a stale-while-revalidate refresh', () => {
  it('behind a proxy trusted by address, with a hook admitting only the proxy: refreshed under the same key', async () => {
    const base = await start({ trustProxy: PROXY }, (app) => {
      fastifyOf(app).addHook('onRequest', async (request, reply) => {
        if (request.raw.socket.remoteAddress !== PROXY) return reply.code(403).send('proxy only')
      })
    })
    state.price = 10
    state.runs = 0
    const viaProxy = {
      from: PROXY,
      headers: { 'x-forwarded-host': 'shop.example', 'x-forwarded-proto': 'https' },
    }
    expect((await get(base, '/price', viaProxy)).body).toBe('https://shop.example price 10')
    state.price = 12
    state.now += 61_000
    expect((await get(base, '/price', viaProxy)).body).toBe('https://shop.example price 10')
    const deadline = Date.now() + 3000
    while (state.runs < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    await new Promise((resolve) => setTimeout(resolve, 100))
    const after = await get(base, '/price', viaProxy)
    expect(after.body).toBe('https://shop.example price 12')
    expect(after.cacheStatus).toContain('hit')
    expect(state.runs).toBe(2)
  })

  it('a copy a hook answers before the cache (a guard on the connection) is a failed refresh, settled at once', async () => {
    let refused = 0
    const base = await start(undefined, (app) => {
      const fastify = fastifyOf(app)
      fastify.server.on('connection', (socket) => {
        ;(socket as { admitted?: boolean }).admitted = true
      })
      fastify.addHook('onRequest', async (request, reply) => {
        if ((request.raw.socket as { admitted?: boolean }).admitted === true) return
        refused++
        return reply.code(403).send('no')
      })
    })
    state.price = 10
    state.runs = 0
    await get(base, '/price')
    state.price = 12
    state.now += 61_000
    expect((await get(base, '/price')).body).toContain('price 10')
    const deadline = Date.now() + 3000
    while (refused < 1 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    await new Promise((resolve) => setTimeout(resolve, 50))
    // The failed refresh is over (counted and emitted as a `revalidate` error): the next stale hit
    // starts another one, rather than waiting out revalidateTimeout.
    expect((await get(base, '/price')).body).toContain('price 10')
    while (refused < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    expect(refused).toBe(2)
    expect(state.runs).toBe(1)
  })
})

/** A token introspection that got slow: an async guard counting the clients and the copies it sees. */
const guardSaw = { clients: 0, copies: 0, slow: false }
@Injectable()
class SlowGuard implements CanActivate {
  async canActivate(context: ExecutionContext): Promise<boolean> {
    const request = context.switchToHttp().getRequest<{ raw: object }>()
    if (request.raw.constructor.name === 'IncomingMessage') guardSaw.clients++
    else guardSaw.copies++
    if (guardSaw.slow) await new Promise((resolve) => setTimeout(resolve, 400))
    return true
  }
}

describe("@CacheResponse on platform-fastify: a refresh's inject() copy", () => {
  const copy = { runs: 0, now: 1_000_000, agents: [] as (string | undefined)[], answered: false }

  @Controller()
  class CopyController {
    @Get('hangs')
    @CacheResponse({ ttl: 60, staleWhileRevalidate: 600, revalidateTimeout: '200ms', now: () => copy.now })
    async hangs() {
      // The refresh's handler never settles.
      if (++copy.runs > 1) await new Promise(() => {})
      return 'v1'
    }

    @Get('agent')
    @CacheResponse({ ttl: 60, staleWhileRevalidate: 600, now: () => copy.now })
    agent(@Req() request: { headers: Record<string, string | undefined> }) {
      copy.agents.push(request.headers['user-agent'])
      return `agent ${request.headers['user-agent'] ?? 'none'} #${++copy.runs}`
    }

    @Get('lines')
    @CacheResponse({ ttl: 60, staleWhileRevalidate: 600, now: () => copy.now })
    lines(@Req() request: { raw: { rawHeaders: string[] } }) {
      const names: string[] = []
      for (let i = 0; i < request.raw.rawHeaders.length; i += 2)
        names.push(request.raw.rawHeaders[i]!.toLowerCase())
      return { run: ++copy.runs, names }
    }
  }

  @Controller()
  class LateController {
    @Get('late')
    @CacheResponse({ ttl: 60, staleWhileRevalidate: 600, revalidateTimeout: '200ms', now: () => copy.now })
    async late() {
      const run = ++copy.runs
      // The refresh's handler answers, long after revalidateTimeout.
      if (run === 2) {
        await new Promise((resolve) => setTimeout(resolve, 500))
        copy.answered = true
      }
      return `v${run}`
    }

    @Get('guarded')
    @UseGuards(SlowGuard)
    @CacheResponse({ ttl: 60, staleWhileRevalidate: 600, revalidateTimeout: '200ms', now: () => copy.now })
    guarded() {
      return `v${++copy.runs}`
    }
  }

  function lateModule() {
    @Module({
      imports: [CacheModule.forRoot({ backend: memoryBackend({ now: () => copy.now }), isGlobal: true })],
      controllers: [LateController],
    })
    class LateModule {}
    return LateModule
  }

  function copyModule() {
    @Module({
      imports: [CacheModule.forRoot({ backend: memoryBackend({ now: () => copy.now }), isGlobal: true })],
      controllers: [CopyController],
    })
    class CopyModule {}
    return CopyModule
  }

  async function settle(check: () => boolean): Promise<void> {
    const deadline = Date.now() + 3000
    while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    await new Promise((resolve) => setTimeout(resolve, 50))
  }

  it('abandoned after revalidateTimeout, closes its response: a middleware gauge of requests in flight comes back to 0', async () => {
    let inflight = 0
    const base = await start(
      undefined,
      (app) =>
        app.use((_req: unknown, res: { once(event: 'close', fn: () => void): void }, next: () => void) => {
          inflight++
          res.once('close', () => inflight--)
          next()
        }),
      copyModule(),
    )
    copy.runs = 0
    expect((await get(base, '/hangs')).body).toBe('v1')
    copy.now += 61_000
    expect((await get(base, '/hangs')).body).toBe('v1')
    await settle(() => inflight === 0 && copy.runs === 2)
    expect(copy.runs).toBe(2)
    expect(inflight).toBe(0)
  })

  it("hands the handler no internal x-cache-* line, and closes the copy's request: a middleware counting req 'close' comes back to 0", async () => {
    let reading = 0
    const base = await start(
      undefined,
      (app) =>
        app.use((req: { once(event: 'close', fn: () => void): void }, _res: unknown, next: () => void) => {
          reading++
          req.once('close', () => reading--)
          next()
        }),
      copyModule(),
    )
    copy.runs = 0
    await get(base, '/lines')
    copy.now += 61_000
    await get(base, '/lines')
    await settle(() => copy.runs === 2 && reading === 0)
    const after = await get(base, '/lines')
    expect(JSON.parse(after.body).run).toBe(2)
    expect(after.body).not.toContain('x-cache-')
    await settle(() => reading === 0)
    expect(reading).toBe(0)
  })

  it('carries no User-Agent when the client sent none', async () => {
    const base = await start(undefined, undefined, copyModule())
    copy.runs = 0
    copy.agents = []
    expect((await get(base, '/agent')).body).toBe('agent none #1')
    copy.now += 61_000
    expect((await get(base, '/agent')).body).toBe('agent none #1')
    await settle(() => copy.runs >= 2)
    expect(copy.agents).toEqual([undefined, undefined])
    expect((await get(base, '/agent')).body).toBe('agent none #2')
  })

  it('abandoned after revalidateTimeout, then answered late by its handler: a Fastify onRequest/onResponse/onRequestAbort gauge comes back to 0, not -1', async () => {
    const gauge = { inflight: 0, aborts: 0, responses: 0 }
    const base = await start(
      undefined,
      (app) => {
        const fastify = (app as NestFastifyApplication).getHttpAdapter().getInstance()
        fastify.addHook('onRequest', async () => {
          gauge.inflight++
        })
        fastify.addHook('onResponse', async () => {
          gauge.inflight--
          gauge.responses++
        })
        fastify.addHook('onRequestAbort', async (_request) => {
          gauge.inflight--
          gauge.aborts++
        })
      },
      lateModule(),
    )
    copy.runs = 0
    copy.answered = false
    expect((await get(base, '/late')).body).toBe('v1')
    copy.now += 61_000
    expect((await get(base, '/late')).body).toBe('v1')
    await settle(() => copy.answered)
    await new Promise((resolve) => setTimeout(resolve, 100))
    // As a client hanging up: onRequestAbort once, onResponse never for the abandoned copy.
    expect(gauge).toEqual({ inflight: 0, aborts: 1, responses: 2 })
    expect((await get(base, '/late')).body).toBe('v1')
  })

  it('abandoned while a slow async guard runs, starts no other refresh once the guard is done: one stale hit, one copy', async () => {
    const base = await start(undefined, undefined, lateModule())
    copy.runs = 0
    Object.assign(guardSaw, { clients: 0, copies: 0, slow: false })
    expect((await get(base, '/guarded')).body).toBe('v1')
    copy.now += 61_000
    guardSaw.slow = true
    expect((await get(base, '/guarded')).body).toBe('v1')
    // Long enough for the copy's guard to end twice over (400 ms each).
    await new Promise((resolve) => setTimeout(resolve, 1500))
    expect({ clients: guardSaw.clients, copies: guardSaw.copies }).toEqual({ clients: 2, copies: 1 })
    guardSaw.slow = false
  })
})
