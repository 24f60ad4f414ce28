/**
 * `CacheModule.forRoot({ front: true })` with `@CacheResponse({ frontSkipsAllMiddleware: true })`,
 * on real Nest 11 apps of both platforms over real HTTP: what the front answers before Nest (a
 * global guard counts every request Nest sees), and every request it must leave to Nest.
 */
import 'reflect-metadata'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type CacheBackend, CacheConfigError, resetCache } from '@cache/core'
import { diskBackend } from '@cache/disk'
import { memoryBackend } from '@cache/memory'
import {
  type CanActivate,
  Controller,
  type ExecutionContext,
  Get,
  type INestApplication,
  Injectable,
  Module,
  Req,
  UseGuards,
  VersioningType,
} from '@nestjs/common'
import { APP_GUARD, NestFactory } from '@nestjs/core'
import { ExpressAdapter } from '@nestjs/platform-express'
import { FastifyAdapter, RouteConstraints } from '@nestjs/platform-fastify'
import type { FastifyInstance } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import {
  CacheModule,
  CacheResponse,
  invalidateResponse,
  invalidateResponsePrefix,
  invalidateTags,
} from '../src/index.js'
import { headerStrategy, PLATFORMS, type PlatformName, send, startApp } from './harness.js'

/** Counts what Nest ran: the requests its global guard saw, and each handler's runs. */
@Injectable()
class Seen {
  guarded = 0
  readonly runs = new Map<string, number>()
  run(name: string): number {
    const n = (this.runs.get(name) ?? 0) + 1
    this.runs.set(name, n)
    return n
  }
}

@Injectable()
class CountingGuard implements CanActivate {
  constructor(private readonly seen: Seen) {}
  canActivate(_context: ExecutionContext): boolean {
    this.seen.guarded++
    return true
  }
}

/** The test clock of every cached handler here (one clock: one way of replaying). */
let now = Date.now()
const clock = () => now

@Controller('front')
class FrontController {
  constructor(private readonly seen: Seen) {}

  @Get('open')
  @CacheResponse({ ttl: 60, frontSkipsAllMiddleware: true, tags: ['front-open'], now: clock })
  open() {
    return { route: 'open', run: this.seen.run('open') }
  }

  @Get('b')
  @CacheResponse({ ttl: 60, frontSkipsAllMiddleware: true, now: clock })
  b() {
    return { route: 'b', run: this.seen.run('b') }
  }

  @Get('plain')
  @CacheResponse({ ttl: 60, now: clock })
  plain() {
    return { route: 'plain', run: this.seen.run('plain') }
  }

  @Get('allowed')
  @CacheResponse({
    ttl: 60,
    frontSkipsAllMiddleware: true,
    allowAuthorized: true,
    allowCookies: true,
    now: clock,
  })
  allowed(@Req() req: { headers: Record<string, string | undefined> }) {
    return { route: 'allowed', auth: req.headers.authorization ?? null, run: this.seen.run('allowed') }
  }
}

const apps: INestApplication[] = []
const dirs: string[] = []
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close()
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true })
  await resetCache()
  now = Date.now()
})

function appModule(backend: CacheBackend, controllers: Function[] = [FrontController]) {
  class AppModule {}
  Module({
    imports: [CacheModule.forRoot({ backend, front: true, closeOnShutdown: false, isGlobal: true })],
    controllers: controllers as never[],
    providers: [Seen, { provide: APP_GUARD, useClass: CountingGuard }],
  })(AppModule)
  return AppModule
}

async function frontApp(
  platform: PlatformName,
  options: {
    backend?: CacheBackend
    controllers?: Function[]
    before?: (app: INestApplication) => void | Promise<void>
    fastify?: ConstructorParameters<typeof FastifyAdapter>[0]
    port?: number
  } = {},
) {
  const backend = options.backend ?? memoryBackend()
  const started = await startApp(
    platform,
    appModule(backend, options.controllers),
    options.before,
    options.fastify,
    options.port,
  )
  apps.push(started.app)
  const seen = started.app.get(Seen)
  const get = (path: string, headers: Record<string, string> = {}) => send(started.url, path, { headers })
  /** A GET, and whether Nest saw it. */
  const through = async (path: string, headers: Record<string, string> = {}) => {
    const before = seen.guarded
    const reply = await get(path, headers)
    return { reply, body: JSON.parse(reply.text || 'null'), nest: seen.guarded > before }
  }
  return { ...started, backend, seen, get, through }
}

describe.each(PLATFORMS)('the front door (platform-%s)', (platform) => {
  it('answers a fresh hit before Nest, with the bytes and headers the interceptor replays', async () => {
    const { through, seen } = await frontApp(platform)
    const miss = await through('/front/open')
    expect(miss.nest).toBe(true)
    expect(miss.reply.headers['cache-status']).toMatch(/stored/)
    const hit = await through('/front/open')
    expect(hit.nest).toBe(false)
    expect(hit.reply.text).toBe(miss.reply.text)
    expect(hit.reply.headers['content-type']).toBe(miss.reply.headers['content-type'])
    expect(hit.reply.headers['cache-status']).toMatch(/^@cache; hit; ttl=(59|60)$/)
    expect(hit.reply.headers.etag).toMatch(/"$/)
    expect(hit.reply.headers.age).toBe('0')
    expect(seen.runs.get('open')).toBe(1)
    const revalidated = await through('/front/open', { 'if-none-match': String(hit.reply.headers.etag) })
    expect(revalidated.nest).toBe(false)
    expect(revalidated.reply.status).toBe(304)
  })

  it('leaves HEAD and other methods to Nest', async () => {
    const { through, url, seen } = await frontApp(platform)
    await through('/front/open')
    const before = seen.guarded
    const head = await send(url, '/front/open', { method: 'HEAD' })
    expect(seen.guarded).toBe(before + 1)
    expect(head.status).toBe(200)
    expect(head.headers['cache-status']).toMatch(/hit/)
    const post = await send(url, '/front/open', { method: 'POST' })
    expect(post.status).toBe(404)
    expect(post.text).not.toContain('"route":"open"')
    expect(seen.runs.get('open')).toBe(1)
  })

  it('never answers a handler without the flag, though a flagged one shares its backend and keyPrefix', async () => {
    const { through, seen } = await frontApp(platform)
    await through('/front/open')
    expect((await through('/front/open')).nest).toBe(false)
    for (let i = 0; i < 3; i++) {
      const plain = await through('/front/plain')
      expect(plain.nest).toBe(true)
      expect(plain.body).toEqual({ route: 'plain', run: 1 })
    }
    expect(seen.runs.get('plain')).toBe(1)
  })

  it('leaves requests with Authorization or Cookie to Nest, unless the handler allows them', async () => {
    const { through, seen } = await frontApp(platform)
    await through('/front/open')
    const personal: Record<string, string>[] = [
      { authorization: 'Bearer alice' },
      { cookie: 'session=alice' },
    ]
    for (const headers of personal) {
      const reply = await through('/front/open', headers)
      expect(reply.nest).toBe(true)
      expect(reply.reply.headers['cache-status']).toMatch(/fwd=request; detail=(authorization|cookie)/)
    }
    expect(seen.runs.get('open')).toBe(3)
    await through('/front/allowed', { authorization: 'Bearer alice' })
    const allowed = await through('/front/allowed', { authorization: 'Bearer alice' })
    expect(allowed.nest).toBe(false)
    expect(allowed.body).toEqual({ route: 'allowed', auth: 'Bearer alice', run: 1 })
  })

  it('leaves requests with a body, X-Forwarded-Host or X-Forwarded-Proto to Nest', async () => {
    const { through, url, seen } = await frontApp(platform)
    await through('/front/open')
    const before = seen.guarded
    const withBody = await send(url, '/front/open', {
      headers: { 'content-type': 'text/plain', 'content-length': '5' },
      body: 'hello',
    })
    expect(withBody.status).toBe(200)
    expect(seen.guarded).toBe(before + 1)
    expect((await through('/front/open', { 'x-forwarded-host': 'evil.example' })).nest).toBe(true)
    expect((await through('/front/open', { 'x-forwarded-proto': 'https' })).nest).toBe(true)
  })

  it('leaves a stale entry to Nest', async () => {
    const { through, seen } = await frontApp(platform)
    await through('/front/open')
    now += 61_000
    const stale = await through('/front/open')
    expect(stale.nest).toBe(true)
    expect(stale.body).toEqual({ route: 'open', run: 2 })
    expect(seen.runs.get('open')).toBe(2)
    expect((await through('/front/open')).nest).toBe(false)
  })

  it.each([
    [
      'invalidateResponse(url)',
      (_b: CacheBackend, host: string) => invalidateResponse('/front/open', { host }),
    ],
    ['invalidateResponsePrefix', () => invalidateResponsePrefix('http')],
    ['invalidateTags', () => invalidateTags(['front-open'])],
    ['the backend cleared', (backend: CacheBackend) => backend.clear()],
  ])('stops answering at once after %s', async (_, invalidate) => {
    const { through, backend, port } = await frontApp(platform)
    expect((await through('/front/open')).body).toEqual({ route: 'open', run: 1 })
    expect((await through('/front/open')).nest).toBe(false)
    await invalidate(backend, `127.0.0.1:${port}`)
    const after = await through('/front/open')
    expect(after.nest).toBe(true)
    expect(after.body).toEqual({ route: 'open', run: 2 })
    const again = await through('/front/open')
    expect(again.nest).toBe(false)
    expect(again.body).toEqual({ route: 'open', run: 2 })
  })

  it('passes every request with a backend that is not in-process (disk)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nest-front-'))
    dirs.push(dir)
    const backend = diskBackend({ path: dir })
    expect((backend as CacheBackend).sync).toBeUndefined()
    const { through, seen } = await frontApp(platform, { backend })
    for (let i = 0; i < 3; i++) {
      const reply = await through('/front/open')
      expect(reply.nest).toBe(true)
      expect(reply.body).toEqual({ route: 'open', run: 1 })
    }
    expect(seen.runs.get('open')).toBe(1)
    await backend.close()
  })

  it('works under a global prefix', async () => {
    const { through } = await frontApp(platform, { before: (app) => void app.setGlobalPrefix('api') })
    expect((await through('/api/front/open')).nest).toBe(true)
    const hit = await through('/api/front/open')
    expect(hit.nest).toBe(false)
    expect(hit.body).toEqual({ route: 'open', run: 1 })
    expect((await through('/front/open')).reply.status).toBe(404)
  })
})

describe('the front door and a URL rewritten on the way (platform-express)', () => {
  it('never answers with an entry made for a URL middleware rewrote', async () => {
    const { through } = await frontApp('express', {
      before: (app) => {
        app.use((req: any, _res: unknown, next: () => void) => {
          if (req.headers['x-rewrite'] === 'b' && req.url === '/front/open') req.url = '/front/b'
          next()
        })
      },
    })
    const rewritten = await through('/front/open', { 'x-rewrite': 'b' })
    expect(rewritten.body).toEqual({ route: 'b', run: 1 })
    for (let i = 0; i < 2; i++) {
      const open = await through('/front/open')
      expect(open.body).toEqual({ route: 'open', run: 1 })
    }
    expect((await through('/front/open')).nest).toBe(false)
  })
})

/** /front/open twice: marked, and for requests with `x-beta: 1` (a constraint of the application's own strategy) without the flag. */
@Controller('front')
class BetaConstrainedController {
  @Get('open')
  @CacheResponse({ ttl: 60, frontSkipsAllMiddleware: true, now: clock })
  open() {
    return { route: 'open' }
  }

  @Get('open')
  @RouteConstraints({ beta: '1' })
  @CacheResponse({ ttl: 60, now: clock })
  beta() {
    return { route: 'beta' }
  }
}

/** A constraint strategy routing on the `x-beta` request header. */
const betaStrategy = headerStrategy('beta', 'x-beta')

/** Starts an app on Fastify, expecting `app.listen()` to reject. */
async function refusedOnFastify(
  module: new (...args: never[]) => unknown,
  options: ConstructorParameters<typeof FastifyAdapter>[0],
  before?: (app: INestApplication) => void,
) {
  const app = await NestFactory.create(module, new FastifyAdapter(options), {
    logger: false,
    abortOnError: false,
  })
  apps.push(app)
  before?.(app)
  return app.listen(0, '127.0.0.1')
}

describe('the front door and routing the front cannot see (platform-fastify)', () => {
  const rewriteUrl = (req: { url?: string; headers: Record<string, unknown> }) =>
    req.headers['x-beta'] === '1' && req.url === '/front/open' ? '/front/b' : (req.url ?? '/')

  it('rewriteUrl: the application does not start, with a CacheConfigError naming the option', async () => {
    const started = refusedOnFastify(appModule(memoryBackend()), { rewriteUrl })
    await expect(started).rejects.toThrow(CacheConfigError)
    await expect(started).rejects.toThrow(/frontSkipsAllMiddleware.*rewriteUrl/)
  })

  it('rewriteUrl without a marked handler: the application starts, and its rewrite holds', async () => {
    @Controller('front')
    class UnmarkedController {
      @Get('open')
      @CacheResponse({ ttl: 60 })
      open() {
        return { route: 'open' }
      }
      @Get('b')
      @CacheResponse({ ttl: 60 })
      b() {
        return { route: 'b' }
      }
    }
    const { get } = await frontApp('fastify', { controllers: [UnmarkedController], fastify: { rewriteUrl } })
    await get('/front/open')
    expect(JSON.parse((await get('/front/open', { 'x-beta': '1' })).text)).toEqual({ route: 'b' })
  })

  it("a route constraint of the application's own strategy: the application does not start", async () => {
    const started = refusedOnFastify(
      appModule(memoryBackend(), [BetaConstrainedController]),
      {},
      (app) =>
        void (app.getHttpAdapter() as FastifyAdapter)
          .getInstance<FastifyInstance>()
          .addConstraintStrategy(betaStrategy),
    )
    await expect(started).rejects.toThrow(CacheConfigError)
    await expect(started).rejects.toThrow(/frontSkipsAllMiddleware.*BetaConstrainedController\.beta.*beta/)
  })

  it('a host constraint (part of the key): the application starts', async () => {
    @Controller('front')
    class HostController {
      @Get('open')
      @RouteConstraints({ host: '127.0.0.1' })
      @CacheResponse({ ttl: 60, frontSkipsAllMiddleware: true, now: clock })
      open() {
        return { route: 'open' }
      }
    }
    const { through } = await frontApp('fastify', { controllers: [HostController] })
    await through('/front/open', { host: '127.0.0.1' })
    const hit = await through('/front/open', { host: '127.0.0.1' })
    expect(hit.nest).toBe(false)
    expect(hit.body).toEqual({ route: 'open' })
    expect((await through('/front/open', { host: 'other.example' })).reply.status).toBe(404)
  })
})

/** Two controllers answering /catalog, told apart by Nest's versioning; v3 without the flag. */
function versionedControllers(): Function[] {
  const made: Function[] = []
  for (const version of ['1', '2', '3']) {
    class CatalogController {
      constructor(readonly seen: Seen) {}
      list() {
        return { version, run: this.seen.run(`v${version}`) }
      }
    }
    Reflect.defineMetadata('design:paramtypes', [Seen], CatalogController)
    const descriptor = Object.getOwnPropertyDescriptor(CatalogController.prototype, 'list')!
    Get()(CatalogController.prototype, 'list', descriptor)
    CacheResponse({ ttl: 60, now: clock, ...(version === '3' ? {} : { frontSkipsAllMiddleware: true }) })(
      CatalogController.prototype,
      'list',
      descriptor,
    )
    Controller({ path: 'catalog', version })(CatalogController)
    made.push(CatalogController)
  }
  return made
}

describe.each(PLATFORMS)('the front door with Nest versioning (platform-%s)', (platform) => {
  it.each([
    [
      'header',
      { type: VersioningType.HEADER, header: 'X-API-Version' } as const,
      (v: string) => ({ 'x-api-version': v }),
    ],
    [
      'media type',
      { type: VersioningType.MEDIA_TYPE, key: 'v=' } as const,
      (v: string) => ({ accept: `application/json;v=${v}` }),
    ],
  ])(
    '%s versioning: a request of one version never gets the entry of another',
    async (_, versioning, ask) => {
      const { through } = await frontApp(platform, {
        controllers: versionedControllers(),
        before: (app) => void app.enableVersioning(versioning),
      })
      expect((await through('/catalog', ask('1'))).body).toEqual({ version: '1', run: 1 })
      const v1 = await through('/catalog', ask('1'))
      expect(v1.nest).toBe(false)
      expect(v1.body).toEqual({ version: '1', run: 1 })
      const v2 = await through('/catalog', ask('2'))
      expect(v2.nest).toBe(true)
      expect(v2.body).toEqual({ version: '2', run: 1 })
      expect((await through('/catalog', ask('2'))).nest).toBe(false)
      for (let i = 0; i < 2; i++) {
        const v3 = await through('/catalog', ask('3'))
        expect(v3.nest).toBe(true)
        expect(v3.body).toEqual({ version: '3', run: 1 })
      }
      expect((await through('/catalog', ask('1'))).body).toEqual({ version: '1', run: 1 })
    },
  )

  it('custom versioning: the application does not start, with a CacheConfigError naming the option', async () => {
    const app =
      platform === 'express'
        ? await NestFactory.create(appModule(memoryBackend(), versionedControllers()), new ExpressAdapter(), {
            logger: false,
            abortOnError: false,
          })
        : await NestFactory.create(appModule(memoryBackend(), versionedControllers()), new FastifyAdapter(), {
            logger: false,
            abortOnError: false,
          })
    apps.push(app)
    app.enableVersioning({ type: VersioningType.CUSTOM, extractor: () => '1' })
    const started = app.listen(0, '127.0.0.1')
    await expect(started).rejects.toThrow(CacheConfigError)
    await expect(started).rejects.toThrow(/frontSkipsAllMiddleware.*custom versioning/)
  })
})

describe.each(PLATFORMS)('two Nest applications in one process on one backend (platform-%s)', (platform) => {
  it("one's front never answers with the other's entry, whatever Host says", async () => {
    /** B's /front/open has no flag; B has a flagged handler keyed and replayed as A's. */
    @Controller('front')
    class OtherController {
      constructor(private readonly seen: Seen) {}
      @Get('open')
      @CacheResponse({ ttl: 60, tags: ['front-open'], now: clock })
      open() {
        return { app: 'B', run: this.seen.run('open') }
      }
      @Get('b')
      @CacheResponse({ ttl: 60, frontSkipsAllMiddleware: true, now: clock })
      b() {
        return { app: 'B', route: 'b' }
      }
    }
    const backend = memoryBackend()
    const a = await frontApp(platform, { backend })
    const b = await frontApp(platform, { backend, controllers: [OtherController] })
    await a.through('/front/open')
    expect((await a.through('/front/open')).nest).toBe(false)
    await b.through('/front/b')
    expect((await b.through('/front/b')).nest).toBe(false)
    for (let i = 0; i < 2; i++) {
      const asA = await b.through('/front/open', { host: `127.0.0.1:${a.port}` })
      expect(asA.body).toEqual({ app: 'B', run: 1 })
    }
    expect((await a.through('/front/open', { host: `127.0.0.1:${a.port}` })).body).toEqual({
      route: 'open',
      run: 1,
    })
  })
})

class DenyAll implements CanActivate {
  canActivate(): boolean {
    return false
  }
}

/** The second application's /front/open: guarded, without the flag; its front is on for /front/b. */
@Controller('front')
class GuardedOpenController {
  @Get('open')
  @UseGuards(DenyAll)
  @CacheResponse({ ttl: 60, tags: ['front-open'], now: clock })
  open() {
    return { app: 'two', admin: true }
  }

  @Get('b')
  @CacheResponse({ ttl: 60, frontSkipsAllMiddleware: true, now: clock })
  b() {
    return { app: 'two', route: 'b' }
  }
}

/** Only a guarded /front/open without the flag, registered before FrontController's (Express routes to the first). */
@Controller('front')
class GuardedOpenOnlyController {
  @Get('open')
  @UseGuards(DenyAll)
  @CacheResponse({ ttl: 60, now: clock })
  open() {
    return { app: 'two', admin: true }
  }
}

type FrontApp = Awaited<ReturnType<typeof frontApp>>

/** Closes `first` and starts another application on its address (an in-process restart, as HMR does). */
async function restartOnSameAddress(
  platform: PlatformName,
  first: FrontApp,
  options: Parameters<typeof frontApp>[1] = {},
): Promise<FrontApp> {
  apps.splice(apps.indexOf(first.app), 1)
  await first.app.close()
  return frontApp(platform, { ...options, port: first.port })
}

describe.each(PLATFORMS)(
  'Nest applications one after the other on one address and backend (platform-%s)',
  (platform) => {
    it("the second one's front never answers with the first one's entries (a guarded handler without the flag)", async () => {
      const backend = memoryBackend()
      const one = await frontApp(platform, { backend })
      await one.through('/front/open')
      expect((await one.through('/front/open')).nest).toBe(false)
      const two = await restartOnSameAddress(platform, one, { backend, controllers: [GuardedOpenController] })
      for (let i = 0; i < 2; i++) {
        const denied = await two.through('/front/open')
        expect(denied.nest).toBe(true)
        expect(denied.reply.status).toBe(403)
      }
    })

    it('the second one never answers a URL it does not route (a global prefix added)', async () => {
      const backend = memoryBackend()
      const one = await frontApp(platform, { backend })
      await one.through('/front/open')
      const two = await restartOnSameAddress(platform, one, {
        backend,
        before: (app) => void app.setGlobalPrefix('api'),
      })
      const old = await two.through('/front/open')
      expect(old.reply.status).toBe(404)
      expect(old.reply.headers['cache-status']).toBeUndefined()
    })

    it('the same application restarted on that address answers from the entries it made', async () => {
      const backend = memoryBackend()
      const one = await frontApp(platform, { backend })
      await one.through('/front/open')
      const again = await restartOnSameAddress(platform, one, { backend })
      const hit = await again.through('/front/open')
      expect(hit.nest).toBe(false)
      expect(hit.body).toEqual({ route: 'open', run: 1 })
    })
  },
)

describe('Nest applications one after the other on one address and backend (platform-express)', () => {
  it('a guarded handler without the flag registered before the same flagged handler is never answered by the front', async () => {
    const backend = memoryBackend()
    const one = await frontApp('express', { backend })
    await one.through('/front/open')
    const two = await restartOnSameAddress('express', one, {
      backend,
      controllers: [GuardedOpenOnlyController, FrontController],
    })
    const denied = await two.through('/front/open')
    expect(denied.nest).toBe(true)
    expect(denied.reply.status).toBe(403)
  })
})
