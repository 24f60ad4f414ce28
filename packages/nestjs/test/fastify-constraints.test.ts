/**
 * Fastify route constraints on a Nest app, however they reach the router: `@RouteConstraints`,
 * an `onRoute` hook turning a route's config into a constraint, a route declared on the Fastify
 * instance itself. A constraint on a request header chooses among the handlers of one URL by
 * something a CDN keying on the URL cannot see (`cacheControl` must say `private`), and that the
 * front door (`front: true`) cannot see either (the application must not start).
 */
import 'reflect-metadata'
import { CacheConfigError } from '@cache/core'
import { Controller, Get, Headers } from '@nestjs/common'
import { RouteConfig, RouteConstraints } from '@nestjs/platform-fastify'
import type { FastifyInstance } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { CacheResponse } from '../src/index.js'
import { type FastifyAppOptions, closeFastifyApps, startOnFastify } from './fastify-apps.js'
import { headerStrategy, send } from './harness.js'

/** A constraint strategy routing on the `x-tenant` request header. */
const tenantStrategy = headerStrategy('tenant', 'x-tenant')

afterEach(closeFastifyApps)

/** Starts `controllers` on Fastify with the tenant strategy; `instance` runs on Fastify before Nest registers routes. */
const start = (controllers: Function[], options: FastifyAppOptions = {}) =>
  startOnFastify(controllers, {
    ...options,
    instance: (fastify) => {
      fastify.addConstraintStrategy(tenantStrategy)
      options.instance?.(fastify)
    },
  })

const cached = { ttl: 60, cacheControl: true } as const

@Controller('items')
class TenantAItems {
  @Get()
  @RouteConstraints({ tenant: 'a' } as never)
  @CacheResponse(cached)
  list() {
    return { tenant: 'a' }
  }
}

@Controller('items')
class TenantBItems {
  @Get()
  @RouteConstraints({ tenant: 'b' } as never)
  @CacheResponse(cached)
  list() {
    return { tenant: 'b' }
  }
}

/** /pages for everyone, and for tenant b a page of its own; /open has no sibling. */
@Controller()
class PagesController {
  @Get('pages')
  @CacheResponse(cached)
  pages() {
    return { page: 'default' }
  }

  @Get('pages')
  @RouteConstraints({ tenant: 'b' } as never)
  @CacheResponse(cached)
  tenantPages() {
    return { page: 'b' }
  }

  @Get('open')
  @CacheResponse(cached)
  open() {
    return { page: 'open' }
  }
}

describe('cacheControl on handlers Fastify chooses by a request header (platform-fastify)', () => {
  it('sends private on both handlers of a URL told apart by a header constraint, miss and hit', async () => {
    const url = await start([TenantAItems, TenantBItems])
    for (const tenant of ['a', 'a', 'b', 'b']) {
      const reply = await send(url, '/items', { headers: { 'x-tenant': tenant } })
      expect(JSON.parse(reply.text)).toEqual({ tenant })
      expect(reply.headers['cache-control']).toMatch(/^private/)
    }
  })

  it('sends private on the unconstrained handler of such a URL, and on every other page of the application', async () => {
    const url = await start([PagesController])
    for (const _ of [1, 2]) {
      const page = await send(url, '/pages')
      expect(JSON.parse(page.text)).toEqual({ page: 'default' })
      expect(page.headers['cache-control']).toMatch(/^private/)
    }
    expect((await send(url, '/pages', { headers: { 'x-tenant': 'b' } })).headers['cache-control']).toMatch(
      /^private/,
    )
    // Per application: a URL without a sibling may still be one a constrained route matches.
    expect((await send(url, '/open')).headers['cache-control']).toMatch(/^private/)
  })

  it('sends private when an onRoute hook made the constraint from the route config', async () => {
    @Controller('shop')
    class ShopA {
      @Get()
      @RouteConfig({ tenant: 'a' })
      @CacheResponse(cached)
      list() {
        return { shop: 'a' }
      }
    }
    const url = await start([ShopA], {
      instance: (fastify) =>
        fastify.addHook('onRoute', (route) => {
          const tenant = (route.config as { tenant?: string } | undefined)?.tenant
          if (tenant !== undefined) route.constraints = { ...route.constraints, tenant }
        }),
    })
    const reply = await send(url, '/shop', { headers: { 'x-tenant': 'a' } })
    expect(JSON.parse(reply.text)).toEqual({ shop: 'a' })
    expect(reply.headers['cache-control']).toMatch(/^private/)
  })
})

@Controller('items')
class FrontItems {
  @Get()
  @RouteConfig({ tenant: 'a' })
  @CacheResponse({ ttl: 60, frontSkipsAllMiddleware: true })
  list(@Headers('x-tenant') tenant?: string) {
    return { tenant: tenant ?? null }
  }
}

@Controller('items')
class FrontDefaultItems {
  @Get()
  @CacheResponse({ ttl: 60, frontSkipsAllMiddleware: true })
  list() {
    return { tenant: 'default' }
  }
}

describe('the front door and constraints not declared with @RouteConstraints (platform-fastify)', () => {
  it('an onRoute hook adding a header constraint: the application does not start', async () => {
    const started = start([FrontItems], {
      front: true,
      instance: (fastify) =>
        fastify.addHook('onRoute', (route) => {
          const tenant = (route.config as { tenant?: string } | undefined)?.tenant
          if (tenant !== undefined) route.constraints = { ...route.constraints, tenant }
        }),
    })
    await expect(started).rejects.toThrow(CacheConfigError)
    await expect(started).rejects.toThrow(
      /frontSkipsAllMiddleware.*route GET \/items has a constraint tenant/,
    )
  })

  it('a route with a header constraint declared on the Fastify instance: the application does not start', async () => {
    const started = start([FrontDefaultItems], {
      front: true,
      instance: (fastify) =>
        void fastify.get('/items', { constraints: { tenant: 'b' } }, async () => ({
          tenant: 'b (private plan)',
        })),
    })
    await expect(started).rejects.toThrow(CacheConfigError)
    await expect(started).rejects.toThrow(
      /frontSkipsAllMiddleware.*route GET \/items has a constraint tenant/,
    )
  })

  it('such a route declared by a plugin Fastify loads only when it gets ready: the application does not start', async () => {
    const started = start([FrontDefaultItems], {
      front: true,
      afterInit: (fastify) =>
        void fastify.register(async (plugin) => {
          plugin.get('/items', { constraints: { tenant: 'b' } }, async () => ({ tenant: 'b (private plan)' }))
        }),
    })
    await expect(started).rejects.toThrow(CacheConfigError)
    await expect(started).rejects.toThrow(
      /frontSkipsAllMiddleware.*route GET \/items has a constraint tenant/,
    )
  })

  it('a route with a host constraint declared on the Fastify instance before Nest: refused (its strategy cannot be told from one of the app)', async () => {
    // find-my-way says a host strategy exists both when the app added its own and once a route
    // uses the built-in one: with such a route declared before the module runs, it cannot tell.
    const started = start([FrontDefaultItems], {
      front: true,
      instance: (fastify) =>
        void fastify.get('/other', { constraints: { host: 'other.example' } }, async () => ({ other: true })),
    })
    await expect(started).rejects.toThrow(/frontSkipsAllMiddleware.*constraint host/)
  })
})

describe('a router listing in a format the package does not know (another Fastify version)', () => {
  /** printRoutes() as a future Fastify might print it: no line this package can read as a route. */
  const unknownFormat = (fastify: FastifyInstance) => {
    fastify.printRoutes = (() => 'routes:\n  items -> GET|HEAD\n') as FastifyInstance['printRoutes']
  }

  it('cacheControl: private on every cached handler, not public', async () => {
    const url = await start([PagesController], { instance: unknownFormat })
    const reply = await send(url, '/open')
    expect(JSON.parse(reply.text)).toEqual({ page: 'open' })
    expect(reply.headers['cache-control']).toMatch(/^private/)
  })

  it('front: true: the application does not start, saying the routes cannot be read', async () => {
    const started = start([FrontDefaultItems], { front: true, instance: unknownFormat })
    await expect(started).rejects.toThrow(CacheConfigError)
    await expect(started).rejects.toThrow(/routes of the Fastify instance cannot be read/)
  })
})
