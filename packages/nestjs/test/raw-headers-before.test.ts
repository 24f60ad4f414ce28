/**
 * Headers a layer before the interceptor sets on the Node response itself: a Nest middleware
 * (`app.use`, `MiddlewareConsumer`; on Fastify, middie hands it the raw response) or a Fastify
 * `onRequest` hook writing `reply.raw`. Without the cache the client gets them; with it, they must
 * still go out and decide what is stored: a session cookie or `private` is never replayed to a
 * guest, a `Vary` keeps each variant apart. On both platforms, with and without the front door.
 */
import 'reflect-metadata'
import { resetCache } from '@cache/core'
import {
  Controller,
  Get,
  Headers,
  type INestApplication,
  type MiddlewareConsumer,
  Module,
  type NestModule,
} from '@nestjs/common'
import type { FastifyAdapter } from '@nestjs/platform-fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { CacheModule, CacheResponse } from '../src/index.js'
import { PLATFORMS, type PlatformName, send, startApp } from './harness.js'

let runs = 0

@Controller()
class HomeController {
  @Get('home')
  @CacheResponse({ ttl: 60 })
  home(@Headers('x-user') user?: string) {
    return { hello: user ?? 'guest', run: ++runs }
  }
}

function homeModule(configure?: (consumer: MiddlewareConsumer) => void) {
  class HomeModule implements NestModule {
    configure(consumer: MiddlewareConsumer) {
      configure?.(consumer)
    }
  }
  Module({ imports: [CacheModule.forRoot({ closeOnShutdown: false })], controllers: [HomeController] })(
    HomeModule,
  )
  return HomeModule
}

type RawSetter = (req: { headers: Record<string, string | string[] | undefined> }, res: any) => void

/** Marks a signed-in user's response on the raw response, as a session or auth middleware does. */
const signedIn =
  (name: string, value: (user: string) => string): RawSetter =>
  (req, res) => {
    const user = req.headers['x-user']
    if (typeof user === 'string') res.setHeader(name, value(user))
  }

const apps: INestApplication[] = []
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close()
  await resetCache()
})

/** An app whose `set` runs before the interceptor: as `app.use`, through MiddlewareConsumer, or an onRequest hook. */
async function appWith(platform: PlatformName, how: 'app.use' | 'consumer' | 'onRequest', set: RawSetter) {
  class Session {
    use(req: any, res: any, next: () => void) {
      set(req, res)
      next()
    }
  }
  const module = homeModule(
    how === 'consumer' ? (consumer) => consumer.apply(Session).forRoutes('*') : undefined,
  )
  const { app, url } = await startApp(platform, module, (nest) => {
    if (how === 'app.use')
      nest.use((req: any, res: any, next: () => void) => {
        set(req, res)
        next()
      })
    if (how === 'onRequest')
      (nest.getHttpAdapter() as FastifyAdapter)
        .getInstance()
        .addHook('onRequest', async (request, reply) => set(request.raw as never, reply.raw))
  })
  apps.push(app)
  return url
}

const WAYS: [PlatformName, 'app.use' | 'consumer' | 'onRequest'][] = [
  ...PLATFORMS.flatMap((platform) => [
    [platform, 'app.use'] as [PlatformName, 'app.use'],
    [platform, 'consumer'] as [PlatformName, 'consumer'],
  ]),
  ['fastify', 'onRequest'],
]

describe.each(WAYS)('headers set on the raw response before the cache (platform-%s, %s)', (platform, how) => {
  it("keeps a session cookie on the user's response and never replays it to a guest", async () => {
    const url = await appWith(
      platform,
      how,
      signedIn('Set-Cookie', (user) => `sid=${user}-secret; HttpOnly`),
    )
    const alice = await send(url, '/home', { headers: { 'x-user': 'alice' } })
    expect(alice.headers['set-cookie']).toEqual(['sid=alice-secret; HttpOnly'])
    const guest = await send(url, '/home')
    expect(JSON.parse(guest.text).hello).toBe('guest')
    expect(guest.headers['set-cookie']).toBeUndefined()
  })

  it.each(['private', 'no-store'])(
    'keeps Cache-Control: %s on the response and does not store it',
    async (directive) => {
      const url = await appWith(
        platform,
        how,
        signedIn('Cache-Control', () => directive),
      )
      const alice = await send(url, '/home', { headers: { 'x-user': 'alice' } })
      expect(alice.headers['cache-control']).toBe(directive)
      for (const _ of [1, 2]) {
        const guest = await send(url, '/home')
        expect(JSON.parse(guest.text).hello).toBe('guest')
      }
    },
  )
})

@Controller()
class TenantController {
  @Get('tenant')
  @CacheResponse({ ttl: 60, cacheControl: true })
  tenant(@Headers('x-tenant') tenant?: string) {
    return { tenant: tenant ?? null, run: ++runs }
  }

  @Get('tenant-front')
  @CacheResponse({ ttl: 60, cacheControl: true, frontSkipsAllMiddleware: true })
  tenantFront(@Headers('x-tenant') tenant?: string) {
    return { tenant: tenant ?? null, run: ++runs }
  }
}

describe.each(PLATFORMS)('a Vary set on the raw response by middleware (platform-%s)', (platform) => {
  it.each([false, true])(
    'goes out on misses and hits, and each variant is stored apart (front: %s)',
    async (front) => {
      class TenantModule {}
      Module({
        imports: [CacheModule.forRoot({ backend: 'memory', front, closeOnShutdown: false })],
        controllers: [TenantController],
      })(TenantModule)
      const { app, url } = await startApp(platform, TenantModule, (nest) => {
        nest.use((_req: unknown, res: any, next: () => void) => {
          res.setHeader('Vary', 'X-Tenant')
          res.setHeader('X-Request-Id', 'r1')
          next()
        })
      })
      apps.push(app)
      const path = front ? '/tenant-front' : '/tenant'
      for (const tenant of ['a', 'a', 'b', 'b']) {
        const reply = await send(url, path, { headers: { 'x-tenant': tenant } })
        expect(JSON.parse(reply.text).tenant).toBe(tenant)
        expect(reply.headers.vary).toMatch(/x-tenant/i)
      }
      const again = await send(url, path, { headers: { 'x-tenant': 'b' } })
      expect(String(again.headers['cache-status'])).toMatch(/hit/)
      expect(JSON.parse(again.text).tenant).toBe('b')
    },
  )
})
