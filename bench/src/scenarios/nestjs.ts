import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Contestant, HttpService, Scenario } from '../contestant.js'
import { HTTP_BODY, TTL_SECONDS } from '../data.js'
import { ourMemory } from './memory.js'
import { PATH, ROUTE_MS } from './http.js'

type Platform = 'express' | 'fastify'
type Caching = 'none' | 'cache-manager' | 'ours'

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
  if (caching === 'ours') {
    const { CacheModule, CacheResponse } = await import('@cache/nestjs')
    imports.push(CacheModule.forRoot({ backend: await ourMemory(), closeOnShutdown: false }))
    CacheResponse({ ttl: TTL_SECONDS })(proto, 'list', descriptor)
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
      handler: app.getHttpAdapter().getInstance(),
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
    handler: (req: IncomingMessage, res: ServerResponse) => fastify.routing(req, res),
    routeCalls: () => calls,
    cached: caching !== 'none',
  }
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
  ]
}

export const nestjs: Scenario = {
  id: 'nestjs',
  title: 'NestJS response caching (autocannon)',
  contestants: [...rows('express'), ...rows('fastify')],
}
