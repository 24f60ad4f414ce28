/**
 * Which route a cached response belongs to, from the position of an app whose routes are shaped
 * by plugins registered after the cache: one options constant shared by several routes, a
 * prefixed plugin's `/` route, constraints set by a later `onRoute` hook, and the cache plugin
 * registered twice on one route. Each test: a real Fastify 5 server on loopback, the first
 * tenant (or user) asks first, the second must never receive the first's body.
 */
import type { AddressInfo } from 'node:net'
import { memoryBackend } from '@cache/memory'
import { configErrorOfAsync } from '@cache/testing'
import type { FastifyInstance, FastifyServerOptions, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { describe, expect, it } from 'vitest'
import { cachePlugin, type FastifyResponseCache } from '../src/index.js'
import { get } from './http-get.js'
import { app } from './apps.js'

async function listen(fastify: FastifyInstance): Promise<string> {
  await fastify.listen({ port: 0, host: '127.0.0.1' })
  return `http://127.0.0.1:${(fastify.server.address() as AddressInfo).port}`
}

/** What the second client receives from `path` after the first asked, each by `header`. */
async function secondAfterFirst(
  fastify: FastifyInstance,
  path: string,
  header: string,
  [first, second]: [string, string],
): Promise<string> {
  const base = await listen(fastify)
  await get(`${base}${path}`, { [header]: first })
  return (await get(`${base}${path}`, { [header]: second })).body
}

/** A tenant plugin's onRoute hook: replaces `route.config` with one whose cache varies on x-tenant. */
function addTenantVary(route: RouteOptions): void {
  const cache = route.config?.cache
  if (cache === undefined || typeof cache !== 'object') return
  route.config = { ...route.config, cache: { ...cache, vary: ['x-tenant'] } }
}

const byTenant = async (request: { headers: Record<string, unknown> }) => ({
  tenant: request.headers['x-tenant'],
})

describe('routes declared with one shared options object', () => {
  it("honours the vary a later hook adds to one of them (root hook by URL): globex never gets acme's page", async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    const cached = { config: { cache: { ttl: 60 } } }
    fastify.get('/public', cached, async () => ({ hello: 'world' }))
    await fastify.register(
      fp(async (scope: FastifyInstance) => {
        scope.addHook('onRoute', (route) => {
          if (route.url.startsWith('/t/')) addTenantVary(route)
        })
      }),
    )
    fastify.get('/t/dashboard', cached, byTenant)
    // Before: one record per config object, resolved from /public's options: no vary.
    expect(await secondAfterFirst(fastify, '/t/dashboard', 'x-tenant', ['acme', 'globex'])).toBe(
      '{"tenant":"globex"}',
    )
  })

  it("honours the vary a scoped tenant plugin adds to its route: globex never gets acme's page", async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    const cached = { config: { cache: { ttl: 60 } } }
    fastify.get('/public', cached, async () => ({ hello: 'world' }))
    await fastify.register(async (scope) => {
      scope.addHook('onRoute', addTenantVary)
      scope.get('/t/dashboard', cached, byTenant)
    })
    expect(await secondAfterFirst(fastify, '/t/dashboard', 'x-tenant', ['acme', 'globex'])).toBe(
      '{"tenant":"globex"}',
    )
  })

  it("keeps a prefixed plugin's '/' route apart from its HEAD twin a hook varied", async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    await fastify.register(
      async (api) => {
        api.addHook('onRoute', (route) => {
          if (route.url.startsWith('/api')) addTenantVary(route)
        })
        api.get('/', { config: { cache: { ttl: 60 } } }, byTenant)
      },
      { prefix: '/api' },
    )
    expect(await secondAfterFirst(fastify, '/api/', 'x-tenant', ['acme', 'globex'])).toBe(
      '{"tenant":"globex"}',
    )
    const base = `http://127.0.0.1:${(fastify.server.address() as AddressInfo).port}`
    expect((await get(`${base}/api`, { 'x-tenant': 'initech' })).body).toBe('{"tenant":"initech"}')
  })
})

describe('a GET route and its HEAD route that onRoute hooks left different', () => {
  it("refuses, when the app starts, a prefixed '/' route whose HEAD route alone a hook on '/api/' varied", async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    await fastify.register(
      async (api) => {
        // Fastify announces the GET route as '/api' (and serves '/api/' from it); its HEAD route as '/api/'.
        api.addHook('onRoute', (route) => {
          if (route.url.startsWith('/api/')) addTenantVary(route)
        })
        api.get('/', { config: { cache: { ttl: 60 } } }, byTenant)
      },
      { prefix: '/api' },
    )
    // Before: GET /api/ was cached without the vary: globex got acme's page.
    const error = await configErrorOfAsync(() => fastify.ready())
    expect(error.message).toBe(
      "config.cache: routes GET /api and HEAD /api/ share their cached responses, but onRoute hooks left them different vary, key, bypass, allowAuthorized or allowCookies; give both the same (Fastify announces a prefixed plugin's '/' route to onRoute hooks as GET /api, which serves /api/ too, HEAD /api and HEAD /api/: a hook filtering by URL must match both /api and /api/)",
    )
  })

  for (const ignoreTrailingSlash of [false, true])
    it(`accepts a hook that matches both '/api' and '/api/' as the README says (ignoreTrailingSlash ${ignoreTrailingSlash}): bob never gets alice's page`, async () => {
      const fastify = app({ routerOptions: { ignoreTrailingSlash } } as FastifyServerOptions)
      await fastify.register(cachePlugin, { backend: memoryBackend() })
      const seen: string[] = []
      await fastify.register(
        fp(async (scope: FastifyInstance) => {
          scope.addHook('onRoute', (route) => {
            seen.push(`${route.method} ${route.url}`)
            if (route.url === '/api' || route.url === '/api/')
              route.config = { ...route.config, cache: { vary: ['x-user'] } }
          })
        }),
      )
      await fastify.register(
        async (api) => {
          api.get('/', { config: { cache: true } }, async (request) => ({ user: request.headers['x-user'] }))
        },
        { prefix: '/api' },
      )
      const base = await listen(fastify)
      expect(seen).toEqual(
        ignoreTrailingSlash ? ['GET /api', 'HEAD /api'] : ['GET /api', 'HEAD /api', 'HEAD /api/'],
      )
      for (const path of ['/api', '/api/']) {
        await get(`${base}${path}`, { 'x-user': 'alice' })
        expect((await get(`${base}${path}`, { 'x-user': 'bob' })).body).toBe('{"user":"bob"}')
      }
    })

  it("refuses a HEAD route a hook left without the vary its GET route got: globex's HEAD never answered from acme's entry", async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    await fastify.register(
      fp(async (scope: FastifyInstance) => {
        scope.addHook('onRoute', (route) => {
          if (route.method === 'GET') addTenantVary(route)
        })
      }),
    )
    fastify.get('/dashboard', { config: { cache: { ttl: 60 } } }, byTenant)
    const error = await configErrorOfAsync(() => fastify.ready())
    expect(error.message).toMatch(/^config\.cache: routes GET \/dashboard and HEAD \/dashboard share/)
  })
})

describe('constraints a later onRoute hook sets', () => {
  const tenantStrategy = {
    name: 'tenant',
    validate() {},
    mustMatchWhenDerived: true,
    storage() {
      const map = new Map<string, unknown>()
      return {
        get: (key: string) => map.get(key) ?? null,
        set: (key: string, value: unknown) => map.set(key, value),
      }
    },
    deriveConstraint: (request: { headers: Record<string, unknown> }) => request.headers['x-tenant'],
  }
  const cases = {
    tenant: { values: ['acme', 'globex'] as [string, string], header: 'x-tenant' },
    version: { values: ['1.0.0', '2.0.0'] as [string, string], header: 'accept-version' },
  }
  // The handlers come from one factory: the same source, told apart only by their constraint.
  const page = (name: string, value: string) => async () => ({ [name]: value, secret: `${value}-only` })

  for (const [name, { values, header }] of Object.entries(cases))
    it(`keeps apart two routes of one URL a later hook constrains by ${name}`, async () => {
      const fastify = app({
        routerOptions: { constraints: { tenant: tenantStrategy } },
      } as FastifyServerOptions)
      await fastify.register(cachePlugin, { backend: memoryBackend() })
      await fastify.register(
        fp(async (scope: FastifyInstance) => {
          scope.addHook('onRoute', (route) => {
            const value = (route.config as Record<string, unknown> | undefined)?.[name]
            if (value !== undefined) route.constraints = { ...route.constraints, [name]: value }
          })
        }),
      )
      for (const value of values)
        fastify.route({
          method: 'GET',
          url: '/dashboard',
          config: { [name]: value, cache: { ttl: 60 } },
          handler: page(name, value),
        })
      // Before: the route's identity was taken before the hook set the constraint: one entry.
      const body = await secondAfterFirst(fastify, '/dashboard', header, values)
      expect(JSON.parse(body)).toEqual({ [name]: values[1], secret: `${values[1]}-only` })
    })
})

describe('cachePlugin registered twice on one route', () => {
  for (const [outer, inner] of [
    [['x-user'], undefined],
    [undefined, ['x-user']],
  ] as const)
    it(`refuses the route when the app starts (vary ${outer ? 'outside' : 'inside'}): bob never gets alice's page`, async () => {
      const fastify = app()
      await fastify.register(cachePlugin, { backend: memoryBackend(), ...(outer && { vary: [...outer] }) })
      fastify.register(async (sub) => {
        await sub.register(cachePlugin, {
          backend: memoryBackend(),
          decorateAs: 'pageCache',
          ...(inner && { vary: [...inner] }),
        })
        sub.get('/me', { config: { cache: { ttl: 60 } } }, async (req) => ({ user: req.headers['x-user'] }))
      })
      // Before: both lookups ran on /me, the one without vary answered bob with alice's page.
      const error = await configErrorOfAsync(() => fastify.ready())
      expect(error.message).toBe(
        'decorateAs: route GET /me is cached by the cachePlugin decorated as "cache" and by the one decorated as "pageCache": a route is cached by one cachePlugin only; remove one registration, or register them in sibling contexts',
      )
    })

  it('caches the routes of sibling contexts, each by its own plugin, and invalidates each through its own', async () => {
    const fastify = app()
    let version = 1
    for (const [name, path] of [
      ['cache', '/price'],
      ['pageCache', '/page'],
    ] as const)
      fastify.register(async (sub) => {
        await sub.register(cachePlugin, { backend: memoryBackend(), decorateAs: name })
        sub.get(path, { config: { cache: { ttl: 60 } } }, async () => ({ version }))
        sub.get(`/invalidate-${name}`, async (req) => {
          const api = sub.getDecorator<FastifyResponseCache>(name)
          return api.invalidate(path, { host: req.headers.host ?? '' })
        })
      })
    const base = await listen(fastify)
    expect((await get(`${base}/price`)).body).toBe('{"version":1}')
    expect((await get(`${base}/page`)).body).toBe('{"version":1}')
    version = 2
    expect((await get(`${base}/price`)).body).toBe('{"version":1}')
    expect((await get(`${base}/invalidate-cache`)).body).toBe('true')
    expect((await get(`${base}/invalidate-pageCache`)).body).toBe('true')
    expect((await get(`${base}/price`)).body).toBe('{"version":2}')
    expect((await get(`${base}/page`)).body).toBe('{"version":2}')
  })
})

describe('constraint values the cache cannot describe by content', () => {
  // A custom strategy whose stored values are matched by a function of the app's own.
  const strategy = (match: (value: never, tenant: unknown) => boolean) => ({
    name: 'tenant',
    validate() {},
    mustMatchWhenDerived: true,
    storage() {
      const list: [unknown, unknown][] = []
      return {
        get: (tenant: unknown) => list.find(([value]) => match(value as never, tenant))?.[1] ?? null,
        set: (value: unknown, store: unknown) => {
          list.push([value, store])
        },
      }
    },
    deriveConstraint: (request: { headers: Record<string, unknown> }) => request.headers['x-tenant'],
  })
  class Tenant {
    constructor(readonly name: string) {}
  }
  class Redacted {
    constructor(readonly key: string) {}
    toJSON() {
      return '[redacted]'
    }
  }
  // Each kind: the two routes' values, how the strategy matches one, and what the error says.
  const kinds = {
    predicate: [
      [(t: unknown) => t === 'acme', (t: unknown) => t === 'globex'],
      (v: (t: unknown) => boolean, t: unknown) => v(t),
      'a function',
    ],
    symbol: [[Symbol('acme'), Symbol('globex')], (v: symbol, t: unknown) => v.description === t, 'a Symbol'],
    'class instance': [
      [new Tenant('acme'), new Tenant('globex')],
      (v: Tenant, t: unknown) => v.name === t,
      'an instance of Tenant',
    ],
    'value with toJSON': [
      [new Redacted('acme'), new Redacted('globex')],
      (v: Redacted, t: unknown) => v.key === t,
      'a value with its own toJSON',
    ],
  } as const
  for (const [kind, [values, match, what]] of Object.entries(kinds))
    it(`refuses, when the app starts, routes of one URL told apart by ${kind} values`, async () => {
      const fastify = app({
        routerOptions: { constraints: { tenant: strategy(match as never) } },
      } as FastifyServerOptions)
      await fastify.register(cachePlugin, { backend: memoryBackend() })
      values.forEach((value: unknown, i: number) => {
        const owner = ['acme', 'globex'][i]
        fastify.route({
          method: 'GET',
          url: '/dashboard',
          constraints: { tenant: value },
          config: { owner, cache: { ttl: 60 } },
          handler: async () => ({ secret: `${owner}-only` }),
        })
      })
      // Before: JSON wrote both values alike (nothing, or what toJSON gave), or numbered them in
      // declaration order (a replica declaring another tenant first numbered them otherwise):
      // globex was served acme's page.
      const error = await configErrorOfAsync(() => fastify.ready())
      expect(error.message).toContain(`route GET /dashboard: its constraint constraints.tenant is ${what}`)
    })

  it('keeps apart routes of one URL told apart by plain values (strings, plain objects)', async () => {
    const fastify = app({
      routerOptions: {
        constraints: { tenant: strategy((v: { name: string }, t: unknown) => v.name === t) },
      },
    } as FastifyServerOptions)
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    for (const owner of ['acme', 'globex'])
      fastify.route({
        method: 'GET',
        url: '/dashboard',
        constraints: { tenant: { name: owner } },
        config: { cache: { ttl: 60 } },
        handler: async () => ({ secret: `${owner}-only` }),
      })
    const body = await secondAfterFirst(fastify, '/dashboard', 'x-tenant', ['acme', 'globex'])
    expect(JSON.parse(body)).toEqual({ secret: 'globex-only' })
  })
})

describe('config.cache changed by a later onReady hook', () => {
  it("honours the vary an onReady hook registered after the plugin adds: bob never gets alice's page", async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    const cached: RouteOptions[] = []
    fastify.addHook('onRoute', (route) => {
      if (route.config?.cache) cached.push(route)
    })
    fastify.addHook('onReady', async () => {
      // The tenant plugin's settings, loaded asynchronously.
      await new Promise((resolve) => setImmediate(resolve))
      for (const route of cached) (route.config?.cache as { vary?: string[] }).vary = ['x-user']
    })
    fastify.get('/me', { config: { cache: { ttl: 60 } } }, async (request) => ({
      user: request.headers['x-user'],
    }))
    // Before: the plugin's own onReady hook had resolved config.cache first: one entry for all.
    expect(await secondAfterFirst(fastify, '/me', 'x-user', ['alice', 'bob'])).toBe('{"user":"bob"}')
  })
})

describe("listeners on a route's cache when an onReady hook changed its config.cache", () => {
  it('keeps the listeners and stats the app attached after ready(): they see the hits and misses', async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    const cached: RouteOptions[] = []
    await fastify.register(
      fp(async (scope: FastifyInstance) => {
        scope.addHook('onRoute', (route) => {
          if (route.config?.cache) cached.push(route)
        })
        scope.addHook('onReady', async () => {
          for (const route of cached)
            if (route.config) route.config.cache = { ...(route.config.cache as object), vary: ['x-tenant'] }
        })
      }),
    )
    fastify.get(
      '/p',
      { config: { cache: { ttl: 60 } } },
      async (request) => `page of ${request.headers['x-tenant']}`,
    )
    await fastify.ready()
    const cache = fastify.cache.routes.get('/p')
    if (cache === undefined) throw new Error('no cache for /p')
    const seen = { hit: 0, miss: 0 }
    cache.on('hit', () => seen.hit++)
    cache.on('miss', () => seen.miss++)
    for (const tenant of ['acme', 'acme', 'globex', 'globex']) {
      const response = await fastify.inject({ url: '/p', headers: { 'x-tenant': tenant } })
      expect(response.body).toBe(`page of ${tenant}`)
    }
    // Before: the route's cache was replaced at its first request; the listeners saw nothing.
    expect(seen).toEqual({ hit: 2, miss: 2 })
    expect(cache.stats).toMatchObject({ hits: 2, misses: 2 })
    expect(fastify.cache.routes.get('/p')?.stats).toMatchObject({ hits: 2, misses: 2 })
  })
})

describe('config.cache made invalid by a later onReady hook', () => {
  it('fails the requests of the route with the CacheConfigError, never serving them cached without the option', async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    const cached: RouteOptions[] = []
    fastify.addHook('onRoute', (route) => {
      if (route.config?.cache) cached.push(route)
    })
    fastify.addHook('onReady', async () => {
      for (const route of cached) (route.config?.cache as Record<string, unknown>).varyy = ['x-user']
    })
    fastify.get('/me', { config: { cache: { ttl: 60 } } }, async (request) => ({
      user: request.headers['x-user'],
    }))
    const base = await listen(fastify)
    for (const user of ['alice', 'bob']) {
      const response = await get(`${base}/me`, { 'x-user': user })
      expect(response.status).toBe(500)
      expect(response.body).not.toContain('alice')
    }
  })
})
