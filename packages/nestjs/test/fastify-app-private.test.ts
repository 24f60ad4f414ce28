/**
 * On Fastify, `cacheControl`'s `private` is decided for the whole application: once any route of
 * the instance is chosen by something of the request besides its URL and find-my-way's built-in
 * host (a header constraint, a `host` strategy of the application's own), a CDN keying on the URL
 * could hand one client's page to another, on routes the package cannot match exactly (a
 * case-insensitive router, a parametric sibling, a wildcard the listing drops). The front door
 * refuses the same applications.
 */
import 'reflect-metadata'
import { CacheConfigError } from '@cache/core'
import { Controller, Get, type INestApplication, Param, VersioningType } from '@nestjs/common'
import { RouteConfig, RouteConstraints } from '@nestjs/platform-fastify'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { CacheResponse } from '../src/index.js'
import { closeFastifyApps, startOnFastify } from './fastify-apps.js'
import { headerStrategy, send } from './harness.js'

afterEach(closeFastifyApps)

const start = startOnFastify

const tenant = (fastify: FastifyInstance) =>
  fastify.addConstraintStrategy(headerStrategy('tenant', 'x-tenant'))
/** A `host` strategy of the application's own: routes by X-Tenant, not by the Host header. */
const tenantAsHost = (fastify: FastifyInstance) =>
  fastify.addConstraintStrategy(headerStrategy('host', 'x-tenant'))
/** Turns a route's `config.tenant` into a tenant constraint. */
const tenantFromConfig = (fastify: FastifyInstance) => {
  tenant(fastify)
  fastify.addHook('onRoute', (route) => {
    const value = (route.config as { tenant?: string } | undefined)?.tenant
    if (value !== undefined) route.constraints = { ...route.constraints, tenant: value }
  })
}

/** A marked page at /page with cacheControl, for the routes of the instance that share its URL. */
@Controller('page')
class Page {
  @Get()
  @CacheResponse({ ttl: 60, cacheControl: true, frontSkipsAllMiddleware: true })
  get() {
    return { page: 'generic' }
  }
}

/** A `tenant` strategy whose values are predicates of the X-Tenant header. */
function tenantPredicateStrategy(fastify: FastifyInstance): void {
  fastify.addConstraintStrategy({
    name: 'tenant',
    storage() {
      const entries: [unknown, unknown][] = []
      return {
        get: (value: string) =>
          (entries.find(([match]) => typeof match === 'function' && match(value))?.[1] ?? null) as never,
        set: (match: unknown, store: unknown) => void entries.push([match, store]),
      }
    },
    deriveConstraint: (request: { headers: Record<string, unknown> }) =>
      request.headers['x-tenant'] as string,
    mustMatchWhenDerived: false,
  } as never)
}

function hostPages(front: boolean) {
  const options = { ttl: 60, cacheControl: true, frontSkipsAllMiddleware: front } as const
  @Controller('page')
  class PageA {
    @Get()
    @RouteConstraints({ host: 'tenant-a' })
    @CacheResponse(options)
    get() {
      return { tenant: 'A' }
    }
  }
  @Controller('page')
  class PageB {
    @Get()
    @RouteConstraints({ host: 'tenant-b' })
    @CacheResponse(options)
    get() {
      return { tenant: 'B' }
    }
  }
  return [PageA, PageB]
}

function wildcardFiles(front: boolean) {
  const options = { ttl: 60, cacheControl: true, frontSkipsAllMiddleware: front } as const
  @Controller()
  class TenantFiles {
    @Get('files/*')
    @RouteConfig({ tenant: 'a' })
    @CacheResponse(options)
    get() {
      return { files: 'tenant a' }
    }
  }
  @Controller()
  class Files {
    @Get('files/*')
    @CacheResponse(options)
    get() {
      return { files: 'public' }
    }
  }
  @Controller()
  class Fallback {
    @Get('*')
    get() {
      return { page: 'fallback' }
    }
  }
  return [TenantFiles, Files, Fallback]
}

describe('a host constraint strategy of the application own (platform-fastify)', () => {
  it('cacheControl: private on pages its host strategy chose by a request header', async () => {
    const url = await start(hostPages(false), { instance: tenantAsHost })
    for (const who of ['tenant-a', 'tenant-a', 'tenant-b', 'tenant-b']) {
      const reply = await send(url, '/page', { headers: { 'x-tenant': who } })
      expect(JSON.parse(reply.text)).toEqual({ tenant: who === 'tenant-a' ? 'A' : 'B' })
      expect(reply.headers['cache-control']).toMatch(/^private/)
    }
  })

  it('the built-in host strategy alone keeps public', async () => {
    const url = await start(hostPages(false))
    for (const _ of [1, 2]) {
      const reply = await send(url, '/page', { headers: { host: 'tenant-b' } })
      expect(JSON.parse(reply.text)).toEqual({ tenant: 'B' })
      expect(reply.headers['cache-control']).toBe('public, max-age=60')
    }
  })

  it('front: true: the application does not start', async () => {
    const started = start(hostPages(true), { front: true, instance: tenantAsHost })
    await expect(started).rejects.toThrow(CacheConfigError)
    await expect(started).rejects.toThrow(/frontSkipsAllMiddleware.*constraint host/)
  })
})

describe('a constrained wildcard route beside a catch-all (platform-fastify)', () => {
  it('cacheControl: private on the pages the tenant constraint chose', async () => {
    const url = await start(wildcardFiles(false), { instance: tenantFromConfig })
    for (const who of ['a', 'a', undefined, undefined]) {
      const reply = await send(
        url,
        '/files/report.pdf',
        who === undefined ? {} : { headers: { 'x-tenant': who } },
      )
      expect(JSON.parse(reply.text)).toEqual({ files: who === 'a' ? 'tenant a' : 'public' })
      expect(reply.headers['cache-control']).toMatch(/^private/)
    }
  })

  it('front: true: the application does not start', async () => {
    const started = start(wildcardFiles(true), { front: true, instance: tenantFromConfig })
    await expect(started).rejects.toThrow(CacheConfigError)
    await expect(started).rejects.toThrow(/frontSkipsAllMiddleware.*constraint tenant/)
  })
})

describe('wildcard routes declared on the Fastify instance before NestFactory.create (platform-fastify)', () => {
  /** A tenant page under /page/* and a catch-all, on the instance: the listing prints one `*`. */
  const instanceWildcards = (fastify: FastifyInstance) => {
    tenant(fastify)
    fastify.get('/page/*', { constraints: { tenant: 'beta' } }, async () => ({ page: 'BETA' }))
    fastify.get('/*', async () => ({ page: 'fallback' }))
  }
  @Controller('page')
  class Pages {
    @Get('*')
    @CacheResponse({ ttl: 60, cacheControl: true, frontSkipsAllMiddleware: true })
    page() {
      return { page: 'normal' }
    }
  }

  it('cacheControl: private, though the listing hides the constrained wildcard', async () => {
    const url = await start([Pages], { instance: instanceWildcards })
    const plain = await send(url, '/page/home')
    expect(JSON.parse(plain.text)).toEqual({ page: 'normal' })
    // Before: public, max-age=60, while X-Tenant: beta gets another page at this URL.
    expect(plain.headers['cache-control']).toMatch(/^private/)
    expect(JSON.parse((await send(url, '/page/home', { headers: { 'x-tenant': 'beta' } })).text)).toEqual({
      page: 'BETA',
    })
  })

  it('front: true: the application does not start', async () => {
    // Before: it started, and the front answered X-Tenant: beta with the normal page (a hit).
    const started = start([Pages], { front: true, instance: instanceWildcards })
    await expect(started).rejects.toThrow(CacheConfigError)
    await expect(started).rejects.toThrow(
      /frontSkipsAllMiddleware.*wildcard route declared on the Fastify instance/,
    )
  })
})

describe('constraints the listing or Nest does not show as such (platform-fastify)', () => {
  @Controller({ path: 'doc', version: '1.0.0' })
  class DocV1 {
    @Get()
    @CacheResponse({ ttl: 60, frontSkipsAllMiddleware: true })
    get() {
      return { v: 1 }
    }
  }
  @Controller({ path: 'doc', version: '2.0.0' })
  class DocV2 {
    @Get()
    @CacheResponse({ ttl: 60, frontSkipsAllMiddleware: true })
    get() {
      return { v: 2 }
    }
  }

  it('header versioning on a Fastify instance of the app: the front does not start (find-my-way chooses by Accept-Version)', async () => {
    // Before: it started, and Accept-Version: 2.0.0 got v1's entry as a front hit.
    const started = start([DocV1, DocV2], {
      front: true,
      fastify: Fastify() as never,
      before: (app) => void app.enableVersioning({ type: VersioningType.HEADER, header: 'x-api-version' }),
    })
    await expect(started).rejects.toThrow(/frontSkipsAllMiddleware.*constraint version/)
  })

  it("header versioning on an instance of the app's own with a version strategy of its own: the front does not start", async () => {
    // The app's strategy reads Accept-Version, not Nest's header. Before: it started, and
    // Accept-Version: 2.0.0 got v1's entry as a front hit.
    const acceptVersion = { ...headerStrategy('version', 'accept-version'), validate() {} }
    for (const fastify of [
      Fastify({ routerOptions: { constraints: { version: acceptVersion } } } as never),
      Fastify({ constraints: { version: acceptVersion } } as never),
    ]) {
      const started = start([DocV1, DocV2], {
        front: true,
        fastify: fastify as never,
        before: (app) => void app.enableVersioning({ type: VersioningType.HEADER, header: 'x-api-version' }),
      })
      await expect(started).rejects.toThrow(/frontSkipsAllMiddleware.*constraint version/)
    }
  })

  /** A tenant page chosen by a predicate, declared on the instance: the listing prints its constraints as {}. */
  const tenantPredicates = tenantPredicateStrategy
  const predicateTenant = (fastify: FastifyInstance) => {
    tenantPredicates(fastify)
    fastify.get(
      '/page',
      { constraints: { tenant: ((value: string) => value?.endsWith('.enterprise')) as never } },
      async () => ({ page: 'enterprise' }),
    )
  }

  /** The same predicate beside Nest's version: the listing prints {"version":"1.0.0"}, JSON drops the predicate. */
  const versionedPredicateTenant = (fastify: FastifyInstance) => {
    tenantPredicates(fastify)
    fastify.get(
      '/doc',
      { constraints: { version: '1.0.0', tenant: ((value: string) => value?.startsWith('acme')) as never } },
      async () => ({ doc: 'acme only' }),
    )
  }

  it('a constraint whose value is a function: private, and the front does not start', async () => {
    const url = await start([Page], { instance: predicateTenant })
    const generic = await send(url, '/page')
    expect(JSON.parse(generic.text)).toEqual({ page: 'generic' })
    // Before: public, max-age=60.
    expect(generic.headers['cache-control']).toMatch(/^private/)
    await expect(start([Page], { front: true, instance: predicateTenant })).rejects.toThrow(CacheConfigError)
  })
  it('a function-valued constraint beside version on a route of the instance: private, and the front does not start', async () => {
    const versioned = (app: INestApplication) =>
      void app.enableVersioning({ type: VersioningType.HEADER, header: 'x-api-version' })
    const url = await start([DocV1, DocV2], { instance: versionedPredicateTenant, before: versioned })
    const v1 = await send(url, '/doc', { headers: { 'x-api-version': '1.0.0' } })
    expect(JSON.parse(v1.text)).toEqual({ v: 1 })
    // Before: the front started, and acme got the public v1 page as a hit.
    await expect(
      start([DocV1, DocV2], { front: true, instance: versionedPredicateTenant, before: versioned }),
    ).rejects.toThrow(CacheConfigError)
  })
})

describe('constraints the listing hides (platform-fastify)', () => {
  @Controller({ path: 'doc', version: '1.0.0' })
  class Doc {
    @Get()
    @CacheResponse({ ttl: 60, cacheControl: true, frontSkipsAllMiddleware: true })
    get() {
      return { doc: 'public' }
    }
  }
  const versioned = (app: INestApplication) =>
    void app.enableVersioning({ type: VersioningType.HEADER, header: 'x-api-version' })
  const predicate = ((value: string) => value?.startsWith('acme')) as never

  it("a predicate beside version on a GET-only route, printed like the HEAD and GET of Nest's route", async () => {
    const getOnly = (fastify: FastifyInstance) => {
      tenantPredicateStrategy(fastify)
      fastify.route({
        method: 'GET',
        url: '/doc',
        exposeHeadRoute: false,
        constraints: { version: '1.0.0', tenant: predicate },
        handler: async () => ({ doc: 'acme only' }),
      })
    }
    // Before: started, and acme got the public page from the front.
    await expect(start([Doc], { front: true, instance: getOnly, before: versioned })).rejects.toThrow(
      CacheConfigError,
    )
  })

  it('a strategy named toJSON, whose route prints its constraints as undefined', async () => {
    const toJSON = (fastify: FastifyInstance) => {
      fastify.addConstraintStrategy({ ...headerStrategy('toJSON', 'x-tenant'), name: 'toJSON' } as never)
      fastify.get('/page', { constraints: { toJSON: (() => undefined) as never } }, async () => ({
        page: 'x',
      }))
    }
    const url = await start([Page], { instance: toJSON })
    const page = await send(url, '/page')
    expect(JSON.parse(page.text)).toEqual({ page: 'generic' })
    // Before: public, max-age=60 (the route's line was not read as a route).
    expect(page.headers['cache-control']).toMatch(/^private/)
    await expect(start([Page], { front: true, instance: toJSON })).rejects.toThrow(CacheConfigError)
  })

  it("a handler of several versions on Nest's own instance still starts with the front", async () => {
    @Controller({ path: 'multi', version: ['1', '2'] })
    class Multi {
      @Get()
      @CacheResponse({ ttl: 60, frontSkipsAllMiddleware: true })
      get() {
        return { multi: true }
      }
    }
    // Before: refused, the listing "unreadable" (find-my-way's merged listing cannot hold array versions).
    const url = await start([Multi], { front: true, before: versioned })
    const reply = await send(url, '/multi', { headers: { 'x-api-version': '2' } })
    expect(JSON.parse(reply.text)).toEqual({ multi: true })
  })
})

describe('routes the package cannot match to the listing (platform-fastify)', () => {
  it('caseSensitive: false and a capitalised controller path: private on the page a header chose', async () => {
    @Controller('Reports')
    class TenantReports {
      @Get()
      @RouteConstraints({ tenant: 'a' } as never)
      @CacheResponse({ ttl: 60, cacheControl: true })
      get() {
        return { reports: 'a' }
      }
    }
    @Controller('Reports')
    class Reports {
      @Get()
      @CacheResponse({ ttl: 60, cacheControl: true })
      get() {
        return { reports: 'default' }
      }
    }
    const url = await start([TenantReports, Reports], {
      fastify: { routerOptions: { caseSensitive: false } } as never,
      instance: tenant,
    })
    for (const [who, body] of [
      ['a', 'a'],
      [undefined, 'default'],
    ] as const) {
      const reply = await send(url, '/Reports', who === undefined ? {} : { headers: { 'x-tenant': who } })
      expect(JSON.parse(reply.text)).toEqual({ reports: body })
      expect(reply.headers['cache-control']).toMatch(/^private/)
    }
  })

  it('a constrained static route beside an unconstrained parametric one: private on the generic page', async () => {
    @Controller()
    class Me {
      @Get('users/me')
      @RouteConstraints({ tenant: 'a' } as never)
      @CacheResponse({ ttl: 60, cacheControl: true })
      get() {
        return { page: 'tenant a me' }
      }
    }
    @Controller()
    class Users {
      @Get('users/:id')
      @CacheResponse({ ttl: 60, cacheControl: true })
      get(@Param('id') id: string) {
        return { page: 'generic', id }
      }
    }
    const url = await start([Me, Users], { instance: tenant })
    const mine = await send(url, '/users/me', { headers: { 'x-tenant': 'a' } })
    expect(JSON.parse(mine.text)).toEqual({ page: 'tenant a me' })
    expect(mine.headers['cache-control']).toMatch(/^private/)
    const generic = await send(url, '/users/me')
    expect(JSON.parse(generic.text)).toEqual({ page: 'generic', id: 'me' })
    expect(generic.headers['cache-control']).toMatch(/^private/)
  })

  it('an application without constraints keeps public', async () => {
    @Controller()
    class Users {
      @Get('users/:id')
      @CacheResponse({ ttl: 60, cacheControl: true })
      get(@Param('id') id: string) {
        return { id }
      }
    }
    const url = await start([Users], { instance: tenant })
    for (const _ of [1, 2])
      expect((await send(url, '/users/me')).headers['cache-control']).toBe('public, max-age=60')
  })
})
