/**
 * `@CacheResponse` reads the credentials the client sent (the request's `rawHeaders`, on both
 * platforms), whatever a guard or middleware before it did to the headers: a guard that moves
 * `Authorization` or `Cookie` into `req.user` and deletes it, a session layer that takes `sid=`
 * out of `Cookie`.
 */
import 'reflect-metadata'
import {
  type CanActivate,
  Controller,
  type ExecutionContext,
  Get,
  Header,
  Injectable,
  type INestApplication,
  type MiddlewareConsumer,
  Module,
  type NestModule,
  Req,
  UseGuards,
} from '@nestjs/common'
import { memoryBackend } from '@cache/memory'
import type { NestFastifyApplication } from '@nestjs/platform-fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CacheModule, CacheResponse } from '../src/index.js'
import { PLATFORMS, send, startApp } from './harness.js'

/** Authenticates and consumes the credential: `req.user`, the header gone. */
@Injectable()
class ConsumingGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest()
    const value = req.headers.authorization ?? req.headers.cookie
    if (value !== undefined) req.user = String(value).split(/[= ]/)[1]
    if (req.headers['x-replace'] !== undefined && req.raw === undefined) {
      // Express: a copy of the headers without the credentials.
      const { authorization: _a, cookie: _c, ...rest } = req.headers
      req.headers = rest
    } else {
      delete req.headers.authorization
      delete req.headers.cookie
    }
    return true
  }
}

/** Removes `name`'s lines from Node's `rawHeaders` (`undefined`: all `Cookie` lines get `value`). */
function stripLines(raw: { rawHeaders: string[] }, name: string, value?: string): void {
  const lines = raw.rawHeaders
  for (let i = lines.length - 2; i >= 0; i -= 2) {
    if (lines[i]!.toLowerCase() !== name) continue
    if (value === undefined) lines.splice(i, 2)
    else lines[i + 1] = value
  }
}

/** Verifies the credential into `req.user` and strips it from the headers and `rawHeaders` alike. */
@Injectable()
class StrippingGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest()
    const value = req.headers.authorization ?? req.headers.cookie
    if (value !== undefined) req.user = String(value).split(/[= ]/)[1]
    delete req.headers.authorization
    delete req.headers.cookie
    const raw = req.raw ?? req
    delete raw.headers.authorization
    delete raw.headers.cookie
    stripLines(raw, 'authorization')
    stripLines(raw, 'cookie')
    return true
  }
}

/** The session layer below, rewriting the Cookie line in `rawHeaders` too. */
function sessionLines(req: any, res: unknown, next: () => void): void {
  session(req, res, () => {
    if (req.headers.cookie === undefined) stripLines(req, 'cookie')
    else stripLines(req, 'cookie', String(req.headers.cookie))
    next()
  })
}

/** A session layer: `sid=` out of the Cookie into `req.user`, the other cookies passed on. */
function session(req: any, _res: unknown, next: () => void): void {
  const headers = req.headers
  const parts = String(headers.cookie ?? '')
    .split(/;\s*/)
    .filter(Boolean)
  const sid = parts.find((p) => p.startsWith('sid='))
  if (sid !== undefined) req.user = sid.slice(4)
  const rest = parts.filter((p) => !p.startsWith('sid=')).join('; ')
  if (rest === '') delete headers.cookie
  else headers.cookie = rest
  next()
}

/** An auth layer: the token into `req.user`, the header deleted and `rawHeaders` emptied (nothing logs it). */
function emptiedLines(req: any, _res: unknown, next: () => void): void {
  const auth = req.headers.authorization
  if (auth !== undefined) {
    req.user = String(auth).slice(7)
    delete req.headers.authorization
    req.rawHeaders = []
  }
  next()
}

/** An auth middleware: the credential into `req.user`, deleted from `headers` and `rawHeaders` alike. */
function strippingMiddleware(req: any, _res: unknown, next: () => void): void {
  const value = req.headers.authorization ?? req.headers.cookie
  if (value !== undefined) req.user = String(value).split(/[= ]/)[1]
  delete req.headers.authorization
  delete req.headers.cookie
  stripLines(req, 'authorization')
  stripLines(req, 'cookie')
  next()
}

/** The clock of the stale-while-revalidate route. */
const clock = { now: 1_000_000 }
const now = () => clock.now
let refreshRuns = 0

const page = (req: any) => ({ page: req.user ?? (req.raw?.user as string | undefined) ?? 'anonymous' })

@Controller()
class MeController {
  @Get('guarded')
  @UseGuards(ConsumingGuard)
  @CacheResponse({ ttl: 60 })
  guarded(@Req() req: any) {
    return page(req)
  }

  @Get('stripped')
  @UseGuards(StrippingGuard)
  @CacheResponse({ ttl: 60 })
  stripped(@Req() req: any) {
    return page(req)
  }

  @Get('session-lines')
  @CacheResponse({ ttl: 60, allowCookies: true, vary: ['cookie'] })
  sessionLines(@Req() req: any) {
    return page(req)
  }

  @Get('session-lines-stale')
  @CacheResponse({
    ttl: 60,
    staleWhileRevalidate: 600,
    allowCookies: true,
    vary: ['cookie'],
    now,
    backend: memoryBackend({ now }),
  })
  sessionLinesStale(@Req() req: any) {
    return { page: `${page(req).page} #${++refreshRuns}` }
  }

  @Get('varied-authorization')
  @UseGuards(ConsumingGuard)
  @CacheResponse({ ttl: 60, allowAuthorized: true })
  @Header('Vary', 'Authorization')
  variedAuthorization(@Req() req: any) {
    return page(req)
  }

  @Get('middleware-stripped')
  @CacheResponse({ ttl: 60 })
  middlewareStripped(@Req() req: any) {
    return page(req)
  }

  @Get('middleware-stripped-allowed')
  @CacheResponse({ ttl: 60, allowAuthorized: true, vary: ['authorization'] })
  middlewareStrippedAllowed(@Req() req: any) {
    return page(req)
  }

  @Get('session')
  @CacheResponse({ ttl: 60, allowCookies: true, vary: ['cookie'] })
  session(@Req() req: any) {
    return page(req)
  }

  @Get('auth-emptied-stale')
  @CacheResponse({
    ttl: 60,
    staleWhileRevalidate: 600,
    allowAuthorized: true,
    vary: ['authorization'],
    now,
    backend: memoryBackend({ now }),
  })
  authEmptiedStale(@Req() req: any) {
    return { page: `${page(req).page} #${++refreshRuns}` }
  }

  @Get('session-stale')
  @CacheResponse({
    ttl: 60,
    staleWhileRevalidate: 600,
    allowCookies: true,
    vary: ['cookie'],
    now,
    backend: memoryBackend({ now }),
  })
  sessionStale(@Req() req: any) {
    return { page: `${page(req).page} #${++refreshRuns}` }
  }
}

@Module({
  imports: [CacheModule.forRoot({ backend: 'memory', isGlobal: true })],
  controllers: [MeController],
})
class AppModule implements NestModule {
  configure(consumer: MiddlewareConsumer) {
    consumer.apply(session).forRoutes('session', 'session-stale')
    consumer.apply(sessionLines).forRoutes('session-lines', 'session-lines-stale')
    consumer.apply(emptiedLines).forRoutes('auth-emptied-stale')
    consumer.apply(strippingMiddleware).forRoutes('middleware-stripped', 'middleware-stripped-allowed')
  }
}

describe.each(PLATFORMS)('credentials as the client sent them (platform-%s)', (platform) => {
  let app: INestApplication
  let url: string
  beforeAll(async () => {
    ;({ app, url } = await startApp(platform, AppModule))
  })
  afterAll(async () => {
    await app?.close()
  })
  const get = async (path: string, headers: Record<string, string> = {}) => {
    const reply = await send(url, path, { headers })
    return { page: JSON.parse(reply.text).page as string, status: String(reply.headers['cache-status']) }
  }

  it.each([
    ['authorization', { authorization: 'Bearer alice' }],
    ['cookie', { cookie: 'sid=alice' }],
  ])('a %s a guard consumed bypasses: the user’s page is never replayed', async (name, alice) => {
    const first = await get('/guarded', alice)
    expect(first.page).toBe('alice')
    expect(first.status).toBe(`@cache; fwd=request; detail=${name}`)
    expect((await get('/guarded', { ...alice, 'x-replace': '1' })).status).toBe(
      `@cache; fwd=request; detail=${name}`,
    )
    expect((await get('/guarded')).page).toBe('anonymous')
  })

  it.each([
    ['authorization', { authorization: 'Bearer alice' }],
    ['cookie', { cookie: 'sid=alice' }],
  ])(
    'a %s a guard stripped from rawHeaders too bypasses: an anonymous client never gets the user’s page',
    async (name, alice) => {
      const first = await get('/stripped', alice)
      expect(first.page).toBe('alice')
      expect(first.status).toBe(`@cache; fwd=request; detail=${name}`)
      expect((await get('/stripped', alice)).status).toBe(`@cache; fwd=request; detail=${name}`)
      // Before: Alice's page, a hit.
      expect((await get('/stripped')).page).toBe('anonymous')
    },
  )

  it('vary: cookie keys on the Cookie sent though a layer rewrote its line in rawHeaders: Bob never gets Alice’s page', async () => {
    expect((await get('/session-lines', { cookie: 'sid=alice; theme=dark' })).page).toBe('alice')
    // Before: Alice's page (both keyed on `theme=dark`).
    expect((await get('/session-lines', { cookie: 'sid=bob; theme=dark' })).page).toBe('bob')
    expect((await get('/session-lines', { cookie: 'theme=dark' })).page).toBe('anonymous')
    const hit = await get('/session-lines', { cookie: 'sid=alice; theme=dark' })
    expect(hit.page).toBe('alice')
    expect(hit.status).toMatch(/hit/)
  })

  it('refreshes a stale entry with the Cookie the client sent, though a layer rewrote its line in rawHeaders', async () => {
    refreshRuns = 0
    clock.now = 1_000_000 + (platform === 'express' ? 0 : 10_000_000)
    const alice = { cookie: 'sid=alice; theme=dark' }
    expect((await get('/session-lines-stale', alice)).page).toBe('alice #1')
    clock.now += 61_000
    expect((await get('/session-lines-stale', alice)).page).toBe('alice #1')
    for (let i = 0; i < 300 && refreshRuns < 2; i++) await new Promise((r) => setTimeout(r, 10))
    await new Promise((r) => setTimeout(r, 50))
    expect((await get('/session-lines-stale', alice)).page).toBe('alice #2')
  })

  it('allowAuthorized with a response Vary: Authorization never makes the user’s page the variant without it', async () => {
    expect((await get('/varied-authorization', { authorization: 'Bearer alice' })).page).toBe('alice')
    expect((await get('/varied-authorization')).page).toBe('anonymous')
    const hit = await get('/varied-authorization', { authorization: 'Bearer alice' })
    expect(hit.page).toBe('alice')
    expect(hit.status).toMatch(/hit/)
  })

  it('vary: cookie keys on the Cookie sent: Bob never gets Alice’s page, nor a client sending what was left of hers', async () => {
    expect((await get('/session', { cookie: 'sid=alice; theme=dark' })).page).toBe('alice')
    expect((await get('/session', { cookie: 'sid=bob; theme=dark' })).page).toBe('bob')
    expect((await get('/session', { cookie: 'theme=dark' })).page).toBe('anonymous')
    const hit = await get('/session', { cookie: 'sid=alice; theme=dark' })
    expect(hit.page).toBe('alice')
    expect(hit.status).toMatch(/hit/)
  })

  it('a stale entry of Alice is never refreshed with the anonymous page, though a layer emptied rawHeaders', async () => {
    refreshRuns = 0
    clock.now = 1_000_000 + (platform === 'express' ? 0 : 10_000_000)
    const alice = { authorization: 'Bearer alice' }
    expect((await get('/auth-emptied-stale', alice)).page).toBe('alice #1')
    clock.now += 61_000
    expect((await get('/auth-emptied-stale', alice)).page).toBe('alice #1')
    for (let i = 0; i < 300 && refreshRuns < 2; i++) await new Promise((r) => setTimeout(r, 10))
    await new Promise((r) => setTimeout(r, 50))
    // Before: "anonymous #2" under Alice's key. On Fastify the copy's key differs (the layer
    // empties its rawHeaders too): not stored, the stale entry is hers until it expires.
    const after = (await get('/auth-emptied-stale', alice)).page
    if (platform === 'express') expect(after).toBe('alice #2')
    else expect(after).toMatch(/^alice #[12]$/)
  })

  it('refreshes a stale entry with the Cookie the client sent (the session layer runs on it again)', async () => {
    refreshRuns = 0
    clock.now = 1_000_000 + (platform === 'express' ? 0 : 10_000_000)
    const alice = { cookie: 'sid=alice; theme=dark' }
    expect((await get('/session-stale', alice)).page).toBe('alice #1')
    clock.now += 61_000
    expect((await get('/session-stale', alice)).page).toBe('alice #1')
    for (let i = 0; i < 300 && refreshRuns < 2; i++) await new Promise((r) => setTimeout(r, 10))
    await new Promise((r) => setTimeout(r, 50))
    expect((await get('/session-stale', alice)).page).toBe('alice #2')
  })
})

describe('credentials under app.inject() on platform-fastify (no server emits the request)', () => {
  let app: NestFastifyApplication
  beforeAll(async () => {
    app = (await startApp('fastify', AppModule)).app as NestFastifyApplication
  })
  afterAll(async () => {
    await app?.close()
  })
  const inject = async (path: string, headers: Record<string, string> = {}) => {
    const reply = await app.inject({ url: path, headers })
    return { page: JSON.parse(reply.body).page as string, status: String(reply.headers['cache-status']) }
  }

  it.each([
    ['authorization', { authorization: 'Bearer alice' }],
    ['cookie', { cookie: 'sid=alice' }],
  ])(
    'a %s middleware deleted from headers and rawHeaders bypasses: a guest inject() never gets the user’s page',
    async (name, alice) => {
      const first = await inject('/middleware-stripped', alice)
      expect(first.page).toBe('alice')
      expect(first.status).toBe(`@cache; fwd=request; detail=${name}`)
      // Before: Alice's page, a hit.
      expect((await inject('/middleware-stripped')).page).toBe('anonymous')
    },
  )

  it('allowAuthorized with vary: authorization keys on the Authorization sent: Bob never gets Alice’s page', async () => {
    expect((await inject('/middleware-stripped-allowed', { authorization: 'Bearer alice' })).page).toBe(
      'alice',
    )
    expect((await inject('/middleware-stripped-allowed', { authorization: 'Bearer bob' })).page).toBe('bob')
    expect((await inject('/middleware-stripped-allowed')).page).toBe('anonymous')
    const hit = await inject('/middleware-stripped-allowed', { authorization: 'Bearer alice' })
    expect(hit.page).toBe('alice')
    expect(hit.status).toMatch(/hit/)
  })
})
