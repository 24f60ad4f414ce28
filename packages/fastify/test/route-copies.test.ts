/**
 * Copies of a cached route that a plugin registered after the cache declares from its `onRoute`
 * hook (`this.route({ ...route, constraints: { tenant } })`, one per tenant or a beta version).
 * The spread copies every hook the cache put on the original route: each copy must still answer
 * only from its own entries, and a copy marked `cache: false` must not be cached at all.
 */
import type { AddressInfo } from 'node:net'
import { memoryBackend } from '@cache/memory'
import { FastifyOtelInstrumentation } from '@fastify/otel'
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { describe, expect, it } from 'vitest'
import { cachePlugin } from '../src/index.js'
import { app, tenantStrategy } from './apps.js'
import { get } from './http-get.js'

/** A custom constraint strategy: the tenant named by `X-Tenant`. */
const tenant = tenantStrategy()

/** plugins/tenants.js, loaded after plugins/cache.js: one copy of each `perTenant` route per tenant. */
const tenantCopies = fp(async (fastify: FastifyInstance) => {
  fastify.addHook('onRoute', function (this: FastifyInstance, route: RouteOptions) {
    const config = route.config as { perTenant?: boolean } | undefined
    if (!config?.perTenant || (route.constraints as { tenant?: string })?.tenant || route.method !== 'GET')
      return
    for (const tenant of ['acme', 'globex'])
      this.route({
        ...route,
        constraints: { ...route.constraints, tenant },
        config: { ...route.config, tenant } as never,
      })
  })
})

async function listen(fastify: FastifyInstance): Promise<string> {
  await fastify.listen({ port: 0, host: '127.0.0.1' })
  return `http://127.0.0.1:${(fastify.server.address() as AddressInfo).port}`
}

describe("copies of a cached route declared by a later plugin's onRoute hook", () => {
  it.each([
    ['the untenanted page first', [undefined, 'acme', 'globex']],
    ["a tenant's page first", ['acme', 'globex', undefined]],
  ] as const)("never answer one tenant from another's page (%s)", async (_order, tenants) => {
    const fastify = app({ routerOptions: { constraints: { tenant } } } as never)
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    await fastify.register(tenantCopies)
    fastify.get('/home', { config: { perTenant: true, cache: { ttl: 60 } } as never }, async (request) => {
      const tenant = (request.routeOptions.config as { tenant?: string }).tenant
      return `home of ${tenant ?? 'nobody'}`
    })
    const base = await listen(fastify)
    // Twice each: the second asks from the cache, each tenant from its own entry.
    for (const round of [1, 2])
      for (const tenant of tenants) {
        const answer = await get(`${base}/home`, tenant === undefined ? {} : { 'x-tenant': tenant })
        // Before: the copies ran the original route's lookup first and got its entry.
        expect({ round, tenant, body: answer.body }).toEqual({
          round,
          tenant,
          body: `home of ${tenant ?? 'nobody'}`,
        })
        expect(answer.cacheStatus).toMatch(round === 1 ? /fwd=uri-miss; stored/ : /hit/)
      }
  })

  it('caches an uncached beta copy nowhere: the stable page is never replaced by the beta one', async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    await fastify.register(
      fp(async (scope: FastifyInstance) => {
        scope.addHook('onRoute', function (this: FastifyInstance, route: RouteOptions) {
          const config = route.config as { beta?: boolean } | undefined
          if (!config?.beta || route.method !== 'GET') return
          this.route({
            ...route,
            constraints: { version: '2.0.0' },
            config: { ...route.config, cache: false, beta: false } as never,
            handler: async () => 'BETA page (uncached)',
          })
        })
      }),
    )
    fastify.get('/page', { config: { beta: true, cache: { ttl: 60 } } as never }, async () => 'stable page')
    const base = await listen(fastify)
    const beta = await get(`${base}/page`, { 'accept-version': '2.0.0' })
    expect(beta.body).toBe('BETA page (uncached)')
    // Before: the beta copy ran the stable route's lookup and stored its page there.
    expect(beta.cacheStatus).toBe('undefined')
    const stable = await get(`${base}/page`)
    expect(stable.body).toBe('stable page')
    expect((await get(`${base}/page`, { 'accept-version': '2.0.0' })).body).toBe('BETA page (uncached)')
    expect((await get(`${base}/page`)).cacheStatus).toMatch(/hit/)
  })

  it("counts a copy's hits on the copy's cache in app.cache.routes, not on the original's", async () => {
    const fastify = app({ routerOptions: { constraints: { tenant } } } as never)
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    await fastify.register(tenantCopies)
    fastify.get('/home', { config: { perTenant: true, cache: { ttl: 60 } } as never }, async () => 'home')
    const base = await listen(fastify)
    for (const tenant of ['acme', 'acme']) await get(`${base}/home`, { 'x-tenant': tenant })
    const hits = [...fastify.cache.routes].map(([name, cache]) => [name, cache.stats.hits])
    // The untenanted route is declared first: '/home'; its copies after it.
    expect(hits).toEqual([
      ['/home', 0],
      ['/home #1', 1],
      ['/home #2', 0],
    ])
  })
})

/** A page that says which route answered it. */
const whichPage = async (request: { routeOptions: { config: unknown } }) =>
  (request.routeOptions.config as { beta?: boolean }).beta ? 'BETA draft' : 'stable page'

/** An app whose prefixed plugin caches its '/' route (`/api`, `/api/`); `renders` counts its renders. */
async function prefixedRoot() {
  const fastify = app()
  await fastify.register(cachePlugin, { backend: memoryBackend() })
  let rendered = 0
  await fastify.register(
    async (api: FastifyInstance) => {
      api.get('/', { config: { cache: { ttl: 60 } } }, async () => `render ${++rendered}`)
    },
    { prefix: '/api' },
  )
  return { fastify, renders: () => rendered }
}

describe("a cached route's own requests, told from its copies'", () => {
  it("answers both spellings of a prefixed plugin's '/' route, and its HEAD requests, from the cache", async () => {
    const { fastify, renders } = await prefixedRoot()
    const base = await listen(fastify)
    // Fastify builds two contexts from the route's options ('/api', '/api/'): each is the route's.
    for (const path of ['/api', '/api/']) {
      expect((await get(`${base}${path}`)).cacheStatus).toMatch(/stored/)
      expect((await get(`${base}${path}`)).cacheStatus).toMatch(/hit/)
    }
    const head = await fetch(`${base}/api/`, { method: 'HEAD' })
    expect(head.headers.get('cache-status')).toMatch(/hit/)
    expect(renders()).toBe(2)
  })

  it('keeps caching a route whose options a POST route reuses right after it, config and all', async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    const collected: RouteOptions[] = []
    fastify.addHook('onRoute', (route: RouteOptions) => {
      if (route.method === 'GET') collected.push(route)
    })
    fastify.get('/home', { config: { cache: { ttl: 60 } } }, whichPage)
    // Fastify spreads the POST route's config (the GET route's own object) after the GET's.
    const [route] = collected as [RouteOptions]
    fastify.route({ ...route, method: 'POST', handler: async () => 'posted' })
    const base = await listen(fastify)
    expect((await get(`${base}/home`)).cacheStatus).toMatch(/stored/)
    expect((await get(`${base}/home`)).cacheStatus).toMatch(/hit/)
    expect((await fetch(`${base}/home`, { method: 'POST' })).headers.get('cache-status')).toBe(null)
  })

  it('keeps caching a route copied right after it is declared, in the same tick', async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    const collected: RouteOptions[] = []
    fastify.addHook('onRoute', (route: RouteOptions) => {
      if (route.method === 'GET') collected.push(route)
    })
    fastify.get('/home', { config: { cache: { ttl: 60 } } }, whichPage)
    // The copy spreads the route's config after Fastify did, before any other task ran.
    const [route] = collected as [RouteOptions]
    fastify.route({
      ...route,
      constraints: { version: '2.0.0' },
      config: { ...route.config, cache: false, beta: true } as never,
    })
    const base = await listen(fastify)
    expect((await get(`${base}/home`)).cacheStatus).toMatch(/stored/)
    const stable = await get(`${base}/home`)
    expect({ body: stable.body, hit: /hit/.test(stable.cacheStatus) }).toEqual({
      body: 'stable page',
      hit: true,
    })
    const beta = await get(`${base}/home`, { 'accept-version': '2.0.0' })
    expect({ body: beta.body, cacheStatus: beta.cacheStatus }).toEqual({
      body: 'BETA draft',
      cacheStatus: 'undefined',
    })
  })
})

describe('a copy declared in a context the cache never sees (a sibling of the cached routes)', () => {
  it.each([
    ['uncached', 'the beta visitor first', false],
    ['uncached', 'a stable visitor first', false],
    ['marked cached', 'the beta visitor first', true],
    ['marked cached', 'a stable visitor first', true],
  ] as const)(
    "never answers one audience from the other's page (%s copy, %s)",
    async (_kind, order, cached) => {
      const fastify = app()
      // A root onRoute hook collects the shop's cached routes; a later beta context declares copies.
      const collected: RouteOptions[] = []
      await fastify.register(
        fp(async (root: FastifyInstance) => {
          root.addHook('onRoute', (route: RouteOptions) => {
            const config = route.config as { beta?: boolean; cache?: unknown } | undefined
            if (config?.cache && route.method === 'GET' && !config.beta) collected.push(route)
          })
        }),
      )
      await fastify.register(async (shop: FastifyInstance) => {
        await shop.register(cachePlugin, { backend: memoryBackend() })
        shop.get('/home', { config: { cache: { ttl: 60 } } }, whichPage)
      })
      await fastify.register(async (beta: FastifyInstance) => {
        for (const route of collected)
          beta.route({
            ...route,
            constraints: { version: '2.0.0' },
            config: { ...route.config, cache: cached, beta: true } as never,
          })
      })
      const base = await listen(fastify)
      const visitors = order === 'the beta visitor first' ? ['beta', 'stable'] : ['stable', 'beta']
      for (const round of [1, 2])
        for (const visitor of visitors) {
          const answer = await get(`${base}/home`, visitor === 'beta' ? { 'accept-version': '2.0.0' } : {})
          // Before: the copy ran the shop route's lookup, answered from and stored into its entries.
          expect({ round, visitor, body: answer.body }).toEqual({
            round,
            visitor,
            body: visitor === 'beta' ? 'BETA draft' : 'stable page',
          })
          // The beta context has no cachePlugin: its copy is not cached, whatever its config says.
          if (visitor === 'beta') expect(answer.cacheStatus).toBe('undefined')
          else expect(answer.cacheStatus).toMatch(round === 1 ? /stored/ : /hit/)
        }
    },
  )
})

describe('a copy declared into another context while the route is being declared', () => {
  it('never answers it from the route when it is declared right after the route, in the same tick', async () => {
    const fastify = app()
    const collected: RouteOptions[] = []
    await fastify.register(async (shop: FastifyInstance) => {
      await shop.register(cachePlugin, { backend: memoryBackend() })
      shop.addHook('onRoute', (route: RouteOptions) => {
        if (route.method === 'GET') collected.push(route)
      })
      shop.get('/home', { config: { cache: { ttl: 60 } } }, whichPage)
      // Into the root context, which the cache does not see, before any other task ran.
      const [route] = collected as [RouteOptions]
      fastify.route({
        ...route,
        constraints: { version: '2.0.0' },
        config: { ...route.config, cache: false, beta: true } as never,
      })
    })
    const base = await listen(fastify)
    for (const round of [1, 2]) {
      const beta = await get(`${base}/home`, { 'accept-version': '2.0.0' })
      // Before: the copy's read of the mark came last; the copy was looked up, the route never.
      expect({ round, body: beta.body, cacheStatus: beta.cacheStatus }).toEqual({
        round,
        body: 'BETA draft',
        cacheStatus: 'undefined',
      })
      const stable = await get(`${base}/home`)
      expect({ round, body: stable.body }).toEqual({ round, body: 'stable page' })
      expect(stable.cacheStatus).toMatch(round === 1 ? /stored/ : /hit/)
    }
  })

  it('never answers it from the route, even when a later hook moves the route to another URL', async () => {
    const fastify = app()
    await fastify.register(async (shop: FastifyInstance) => {
      await shop.register(cachePlugin, { backend: memoryBackend() })
      // A beta plugin declaring, into the root context, a copy of each cached route as it comes.
      await shop.register(
        fp(async (scope: FastifyInstance) => {
          scope.addHook('onRoute', (route: RouteOptions) => {
            if ((route.config as { beta?: boolean }).beta || route.method !== 'GET') return
            fastify.route({
              ...route,
              url: `/v2${route.url}`,
              constraints: { version: '2.0.0' },
              config: { ...route.config, cache: false, beta: true } as never,
            })
          })
        }),
      )
      // A versioning plugin moving the shop's routes under /v2.
      await shop.register(
        fp(async (scope: FastifyInstance) => {
          scope.addHook('onRoute', (route: RouteOptions) => {
            if (!route.url.startsWith('/v2')) route.url = `/v2${route.url}`
          })
        }),
      )
      shop.get('/home', { config: { cache: { ttl: 60 } } }, whichPage)
    })
    const base = await listen(fastify)
    const beta = await get(`${base}/v2/home`, { 'accept-version': '2.0.0' })
    expect({ body: beta.body, cacheStatus: beta.cacheStatus }).toEqual({
      body: 'BETA draft',
      cacheStatus: 'undefined',
    })
    expect((await get(`${base}/v2/home`)).body).toBe('stable page')
    expect((await get(`${base}/v2/home`)).cacheStatus).toMatch(/hit/)
  })
})

describe('a cached route whose config a later onRoute hook deletes and puts back', () => {
  /** Collects the cached GET routes at the root; `rebuild` is what the later hook does to each. */
  async function shopWithBeta(rebuild: (route: RouteOptions) => void) {
    const fastify = app()
    const collected: RouteOptions[] = []
    await fastify.register(
      fp(async (root: FastifyInstance) => {
        root.addHook('onRoute', (route: RouteOptions) => {
          if (route.config?.cache && route.method === 'GET') collected.push(route)
        })
      }),
    )
    await fastify.register(async (shop: FastifyInstance) => {
      await shop.register(cachePlugin, { backend: memoryBackend() })
      await shop.register(
        fp(async (scope: FastifyInstance) => {
          scope.addHook('onRoute', rebuild)
        }),
      )
      shop.get('/home', { config: { cache: { ttl: 60 } } }, whichPage)
    })
    await fastify.register(async (beta: FastifyInstance) => {
      for (const route of collected)
        beta.route({
          ...route,
          constraints: { version: '2.0.0' },
          config: { ...route.config, cache: false, beta: true } as never,
        })
    })
    return fastify
  }

  it('still tells the copy a sibling context declares from it: stable visitors never get the beta page', async () => {
    const fastify = await shopWithBeta((route) => {
      const config = route.config
      delete route.config
      route.config = { ...config, theme: 'dark' } as never
    })
    const base = await listen(fastify)
    const beta = await get(`${base}/home`, { 'accept-version': '2.0.0' })
    expect(beta.body).toBe('BETA draft')
    // Before: the copy carried the token of the config the hook put back, the route's own.
    expect(beta.cacheStatus).toBe('undefined')
    expect((await get(`${base}/home`)).body).toBe('stable page')
    expect((await get(`${base}/home`)).cacheStatus).toMatch(/hit/)
  })

  it('refuses, when the app starts, a config put back frozen (every copy of it would carry its token)', async () => {
    const fastify = await shopWithBeta((route) => {
      const config = route.config
      delete route.config
      route.config = Object.freeze({ ...config }) as never
    })
    await expect(fastify.ready()).rejects.toThrow(/replaced its config/)
  })

  it('refuses, when the app starts, a config put back without what the cache gave it', async () => {
    const fastify = await shopWithBeta((route) => {
      delete route.config
      route.config = { cache: { ttl: 60 } } as never
    })
    // Its requests could not be told from the copy's: refused rather than never cached, silently.
    await expect(fastify.ready()).rejects.toThrow(/replaced its config/)
  })
})

describe('copies of a cached route when @fastify/otel, registered after the cache, wraps every route hook', () => {
  const otel = () => new FastifyOtelInstrumentation().plugin() as unknown as FastifyPluginAsync

  it("never answers a tenant's copy from the original's page, in either order", async () => {
    for (const first of ['public', 'acme'] as const) {
      const fastify = app({ routerOptions: { constraints: { tenant } } } as never)
      await fastify.register(cachePlugin, { backend: memoryBackend() })
      await fastify.register(otel())
      await fastify.register(tenantCopies)
      fastify.get(
        '/home',
        { preHandler: [async () => {}], config: { perTenant: true, cache: { ttl: 60 } } as never },
        async (request) =>
          `home of ${(request.routeOptions.config as { tenant?: string }).tenant ?? 'nobody'}`,
      )
      const base = await listen(fastify)
      const visitors = first === 'public' ? [undefined, 'acme', 'globex'] : ['acme', 'globex', undefined]
      for (const round of [1, 2])
        for (const tenant of visitors) {
          const answer = await get(`${base}/home`, tenant === undefined ? {} : { 'x-tenant': tenant })
          // Before: the wrapped original lookup ran first on the copies and answered from its entry.
          expect({ first, round, tenant, body: answer.body }).toEqual({
            first,
            round,
            tenant,
            body: `home of ${tenant ?? 'nobody'}`,
          })
          expect(answer.cacheStatus).toMatch(round === 1 ? /stored/ : /hit/)
        }
      await fastify.close()
    }
  })

  it("caches an uncached tenant copy nowhere: the public page is never the tenant's", async () => {
    const fastify = app({ routerOptions: { constraints: { tenant } } } as never)
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    await fastify.register(otel())
    await fastify.register(
      fp(async (scope: FastifyInstance) => {
        scope.addHook('onRoute', function (this: FastifyInstance, route: RouteOptions) {
          const config = route.config as { tenant?: string; cache?: unknown } | undefined
          if (config?.tenant || !config?.cache || route.method !== 'GET') return
          this.route({
            ...route,
            constraints: { tenant: 'acme' },
            config: { ...route.config, cache: false, tenant: 'acme' } as never,
          })
        })
      }),
    )
    fastify.get(
      '/home',
      { preHandler: [async () => {}], config: { cache: { ttl: 60 } } },
      async (request) => `home of ${(request.routeOptions.config as { tenant?: string }).tenant ?? 'nobody'}`,
    )
    const base = await listen(fastify)
    const acme = await get(`${base}/home`, { 'x-tenant': 'acme' })
    expect(acme.body).toBe('home of acme')
    // Before: the copy went through the original's cache and stored acme's page there.
    expect(acme.cacheStatus).toBe('undefined')
    const visitor = await get(`${base}/home`)
    expect(visitor.body).toBe('home of nobody')
    expect((await get(`${base}/home`, { 'x-tenant': 'acme' })).cacheStatus).toBe('undefined')
    expect((await get(`${base}/home`)).cacheStatus).toMatch(/hit/)
  })
})

describe('a cached route whose hooks a plugin registered after the cache wraps', () => {
  /** A tracing plugin wrapping every route-level hook in onRoute, as @fastify/otel does. */
  /** Wraps every route-level hook of `route`, as @fastify/otel does. */
  const wrapHooks = (route: RouteOptions) => {
    for (const name of ['onRequest', 'preValidation', 'preHandler'] as const) {
      const list = route[name] == null ? [] : ([] as Function[]).concat(route[name] as Function)
      if (list.length > 0)
        route[name] = list.map(
          (hook) =>
            function traced(this: unknown, ...args: unknown[]) {
              return hook.apply(this, args)
            },
        ) as never
    }
  }
  /** A tracing plugin wrapping each route's hooks in its onRoute hook. */
  const tracer = fp(async (fastify: FastifyInstance) => {
    fastify.addHook('onRoute', wrapHooks)
  })
  /** One that wraps them a moment later, once the route is declared (its settings load first). */
  const lateTracer = fp(async (fastify: FastifyInstance) => {
    fastify.addHook('onRoute', (route: RouteOptions) => {
      queueMicrotask(() => wrapHooks(route))
    })
  })
  const wrappers = [
    ['a hand-written tracer', () => tracer],
    ['a tracer wrapping once the route is declared', () => lateTracer],
    ['@fastify/otel', () => new FastifyOtelInstrumentation().plugin() as unknown as FastifyPluginAsync],
  ] as const

  it.each(wrappers)(
    'keeps the lookup after a guard a later plugin appends, under %s: an anonymous client never gets the page',
    async (_name, wrapper) => {
      const fastify = app()
      await fastify.register(cachePlugin, { backend: memoryBackend() })
      await fastify.register(wrapper())
      // plugins/roles.js, loaded after the tracer: a guard appended to each admin route.
      await fastify.register(
        fp(async (scope: FastifyInstance) => {
          scope.addHook('onRoute', (route: RouteOptions) => {
            if (!(route.config as { admin?: boolean } | undefined)?.admin) return
            route.preHandler = [
              ...([] as unknown[]).concat(route.preHandler ?? []),
              async (request: FastifyRequest, reply: FastifyReply) => {
                if (request.headers['x-role'] !== 'admin') return reply.code(403).send('forbidden')
              },
            ] as never
          })
        }),
      )
      fastify.get('/report', { config: { admin: true, cache: { ttl: 60 } } as never }, async () => 'payroll')
      const base = await listen(fastify)
      expect((await get(`${base}/report`, { 'x-role': 'admin' })).body).toBe('payroll')
      const anonymous = await get(`${base}/report`)
      // Before: the tracer's wrapper of the lookup ran before the guard and answered the hit.
      expect({ status: anonymous.status, body: anonymous.body }).toEqual({ status: 403, body: 'forbidden' })
    },
  )

  it.each(wrappers)(
    'looks up once per request under %s: the first miss answers at once, counted once',
    async (_name, wrapper) => {
      const fastify = app()
      await fastify.register(cachePlugin, { backend: memoryBackend() })
      await fastify.register(wrapper())
      let calls = 0
      fastify.get(
        '/p',
        { preHandler: [async () => {}], config: { cache: { ttl: 60 } } },
        async () => `render ${++calls}`,
      )
      const base = await listen(fastify)
      const started = Date.now()
      const miss = await get(`${base}/p`)
      // Before: a second lookup collapsed onto the first's miss and waited for collapseTimeout (5 s).
      expect(Date.now() - started).toBeLessThan(1000)
      expect(miss.body).toBe('render 1')
      const hit = await get(`${base}/p`)
      expect(hit.body).toBe('render 1')
      expect(hit.cacheStatus).toMatch(/hit/)
      const { hits, misses, sets } = fastify.cache.routes.get('/p')?.stats ?? {}
      expect({ hits, misses, sets, calls }).toEqual({ hits: 1, misses: 1, sets: 1, calls: 1 })
    },
  )
})

describe('a HEAD request answered from its GET route’s entry, as the README says', () => {
  it("answers HEAD from the entry of a route declared with method ['GET', 'POST']", async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    let renders = 0
    fastify.route({
      method: ['GET', 'POST'],
      url: '/feed',
      config: { cache: { ttl: 60 } },
      handler: async () => `render ${++renders}`,
    })
    await fastify.ready()
    expect((await fastify.inject({ url: '/feed' })).headers['cache-status']).toMatch(/stored/)
    // Before: HEAD /feed rendered the page again, looked up under a site of its own.
    const head = await fastify.inject({ method: 'HEAD', url: '/feed' })
    expect(head.headers['cache-status']).toMatch(/hit/)
    expect(renders).toBe(1)
  })

  it("answers HEAD /api from the entry of a prefixed plugin's '/' route, as HEAD /api/", async () => {
    const { fastify, renders } = await prefixedRoot()
    await fastify.ready()
    for (const url of ['/api', '/api/']) {
      expect((await fastify.inject({ url })).headers['cache-status']).toMatch(/stored/)
      // Before: HEAD /api rendered the page again (HEAD /api/ was a hit).
      const head = await fastify.inject({ method: 'HEAD', url })
      expect({ url, cacheStatus: head.headers['cache-status'] }).toEqual({
        url,
        cacheStatus: expect.stringMatching(/hit/),
      })
    }
    expect(renders()).toBe(2)
  })

  it('never answers a HEAD route the app declared itself from the GET route’s entry, whatever its handler’s source', async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    // One wrapper makes every handler: the two routes' handlers have one name and one source.
    const handle = (fn: () => { headers: Record<string, string>; body?: string }) =>
      async function handler(_request: FastifyRequest, reply: FastifyReply) {
        const { headers, body } = fn()
        reply.headers(headers)
        return body ?? ''
      }
    let counts = 0
    const cached = { config: { cache: { ttl: 60 } } }
    fastify.get(
      '/items',
      { ...cached, exposeHeadRoute: false },
      handle(() => ({ headers: { 'x-by': 'GET' }, body: 'page 1' })),
    )
    fastify.head(
      '/items',
      cached,
      handle(() => ({ headers: { 'x-by': 'HEAD', 'x-total': String(++counts) } })),
    )
    await fastify.ready()
    await fastify.inject({ url: '/items' })
    // Before: a hit from the GET route's entry (x-by: GET), the HEAD route's handler never called.
    const head = await fastify.inject({ method: 'HEAD', url: '/items' })
    expect(head.headers['x-by']).toBe('HEAD')
    expect(head.headers['x-total']).toBe('1')
    expect(head.headers['cache-status'] ?? '').not.toMatch(/hit/)
  })

  it('never answers a HEAD route the app declared with the GET route’s own handler and options object from its entry', async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    let heads = 0
    // One handler for both methods, one options constant: only Fastify's own HEAD route shares.
    const page = async (request: FastifyRequest, reply: FastifyReply) => {
      if (request.method === 'HEAD') heads++
      reply.header('x-kind', request.method === 'HEAD' ? 'head' : 'get')
      return request.method === 'HEAD' ? '' : 'the page'
    }
    const cached = { config: { cache: 60 } }
    fastify.get('/p', { ...cached, exposeHeadRoute: false }, page)
    fastify.head('/p', { ...cached }, page)
    await fastify.ready()
    await fastify.inject({ url: '/p' })
    // Before: a HEAD hit from the GET entry (x-kind: get), its handler never run.
    const head = await fastify.inject({ method: 'HEAD', url: '/p' })
    expect(head.headers['x-kind']).toBe('head')
    expect(heads).toBe(1)
  })

  it('still keeps apart two routes of one URL told apart by a constraint: HEAD of v2 never answered from v1', async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    const page = (version: string) => async () => `page ${version}`
    fastify.route({ method: ['GET', 'POST'], url: '/doc', config: { cache: 60 }, handler: page('v1') })
    fastify.route({
      method: ['GET', 'POST'],
      url: '/doc',
      constraints: { version: '2.0.0' },
      config: { cache: 60 },
      handler: page('v2'),
    })
    await fastify.ready()
    await fastify.inject({ url: '/doc' })
    const head = await fastify.inject({ method: 'HEAD', url: '/doc', headers: { 'accept-version': '2.0.0' } })
    expect(head.headers['cache-status'] ?? '').not.toMatch(/hit/)
    const v2 = await fastify.inject({ url: '/doc', headers: { 'accept-version': '2.0.0' } })
    expect(v2.body).toBe('page v2')
  })
})
