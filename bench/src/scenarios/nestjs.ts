import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Contestant, HttpService, Scenario } from '../contestant.js'
import { HTTP_BODY, TTL_SECONDS } from '../data.js'
import { ourMemory } from './memory.js'
import { PATH, ROUTE_MS } from './http.js'

type Platform = 'express' | 'fastify'
type Caching = 'none' | 'cache-manager' | 'ours' | 'ours-front'

/**
 * A Nest 11 app whose `/users` handler returns the body's object after {@link ROUTE_MS}, on
 * `platform`, with `caching` on the handler. Decorators are applied as functions: the bench is
 * built with esbuild, which does not emit Nest's parameter-type metadata, so every injection is
 * by token.
 */
async function nestRoute(platform: Platform, caching: Caching): Promise<HttpService> {
  await import('reflect-metadata')
  const common = await import('@nestjs/common')
  const { NestFactory } = await import('@nestjs/core')
  const data = JSON.parse(HTTP_BODY) as unknown
  let calls = 0

  class UsersController {
    async list() {
      calls++
      await new Promise((resolve) => setTimeout(resolve, ROUTE_MS))
      return data
    }
  }
  const proto = UsersController.prototype
  const descriptor = Object.getOwnPropertyDescriptor(proto, 'list')!
  const imports: unknown[] = []
  if (caching === 'ours' || caching === 'ours-front') {
    const front = caching === 'ours-front'
    const { CacheModule, CacheResponse } = await import('@cache/nestjs')
    imports.push(CacheModule.forRoot({ backend: await ourMemory(), closeOnShutdown: false, front }))
    CacheResponse({ ttl: TTL_SECONDS, frontSkipsAllMiddleware: front })(proto, 'list', descriptor)
  } else if (caching === 'cache-manager') {
    const { CacheModule, CacheInterceptor, CacheTTL } = await import('@nestjs/cache-manager')
    imports.push(CacheModule.register({ ttl: TTL_SECONDS * 1000 }))
    CacheTTL(TTL_SECONDS * 1000)(proto, 'list', descriptor)
    common.UseInterceptors(CacheInterceptor)(proto, 'list', descriptor)
  }
  common.Get()(proto, 'list', descriptor)
  common.Controller(PATH.slice(1))(UsersController)
  class AppModule {}
  common.Module({ imports: imports as never[], controllers: [UsersController] })(AppModule)

  if (platform === 'express') {
    const { ExpressAdapter } = await import('@nestjs/platform-express')
    const app = await NestFactory.create(AppModule, new ExpressAdapter(), { logger: false })
    await app.init()
    return {
      handler: caching === 'ours-front' ? frontListener(app) : app.getHttpAdapter().getInstance(),
      routeCalls: () => calls,
      cached: caching !== 'none',
    }
  }
  const { FastifyAdapter } = await import('@nestjs/platform-fastify')
  const app = await NestFactory.create(AppModule, new FastifyAdapter(), { logger: false })
  await app.init()
  const fastify = (app.getHttpAdapter() as InstanceType<typeof FastifyAdapter>).getInstance()
  await fastify.ready()
  return {
    handler:
      caching === 'ours-front'
        ? frontListener(app)
        : (req: IncomingMessage, res: ServerResponse) => fastify.routing(req, res),
    routeCalls: () => calls,
    cached: caching !== 'none',
  }
}

/**
 * The request listener `CacheModule.forRoot({ front: true })` put on the application's Node
 * server when it started (the front door, then the platform's own listener).
 */
function frontListener(app: { getHttpServer(): import('node:http').Server }): HttpService['handler'] {
  const [listener] = app.getHttpServer().listeners('request') as HttpService['handler'][]
  return listener!
}

const PLATFORM_LABEL: Record<Platform, string> = { express: 'Nest on Express', fastify: 'Nest on Fastify' }

function rows(platform: Platform): Contestant[] {
  const suffix = platform === 'express' ? '' : '-fastify'
  const nestPackages = ['@nestjs/core', '@nestjs/common', `@nestjs/platform-${platform}`]
  return [
    {
      id: `nest-uncached${suffix}`,
      label: `${PLATFORM_LABEL[platform]}, uncached ${ROUTE_MS} ms route`,
      role: 'limit',
      packages: nestPackages,
      workloads: ['http'],
      note: `The same Nest 11 route with no cache: every request waits ${ROUTE_MS} ms.`,
      serve: () => nestRoute(platform, 'none'),
    },
    {
      id: `nest-cache-manager${suffix}`,
      label: `${PLATFORM_LABEL[platform]}, \`CacheInterceptor\` (@nestjs/cache-manager)`,
      role: 'peer',
      packages: [...nestPackages, '@nestjs/cache-manager', 'cache-manager'],
      workloads: ['http'],
      note:
        "Nest's own cache: `@UseInterceptors(CacheInterceptor)` + `@CacheTTL`, `CacheModule.register()` with cache-manager's default in-memory store. " +
        'It keys by URL only and stores the returned object (serialized again on each hit).',
      serve: () => nestRoute(platform, 'cache-manager'),
    },
    {
      id: `cache-nestjs${suffix}`,
      label: `${PLATFORM_LABEL[platform]}, \`@CacheResponse\``,
      role: 'ours',
      packages: [...nestPackages, '@cache/nestjs', '@cache/memory'],
      needs: '@cache/nestjs',
      workloads: ['http'],
      note: `\`@CacheResponse({ ttl: ${TTL_SECONDS} })\` on an @cache/memory backend, every safety rule on; a hit replays the stored bytes.`,
      serve: () => nestRoute(platform, 'ours'),
    },
    {
      id: `cache-nestjs-front${suffix}`,
      label: `${PLATFORM_LABEL[platform]}, \`@CacheResponse\` + \`front: true\``,
      role: 'ours',
      packages: [...nestPackages, '@cache/nestjs', '@cache/memory'],
      needs: '@cache/nestjs',
      workloads: ['http'],
      note:
        `\`@CacheResponse({ ttl: ${TTL_SECONDS}, frontSkipsAllMiddleware: true })\` with \`CacheModule.forRoot({ front: true })\`: ` +
        "fresh hits are answered before Nest and the platform run (no middleware, guard or interceptor), by the listener it puts on the app's Node server.",
      serve: () => nestRoute(platform, 'ours-front'),
    },
  ]
}

export const nestjs: Scenario = {
  id: 'nestjs',
  title: 'NestJS response caching (autocannon)',
  contestants: [...rows('express'), ...rows('fastify')],
}
