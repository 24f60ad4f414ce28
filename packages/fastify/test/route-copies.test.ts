/**
 * Copies of a cached route that a plugin registered after the cache declares from its `onRoute`
 * hook (`this.route({ ...route, constraints: { tenant } })`, one per tenant or a beta version).
 * The spread copies every hook the cache put on the original route: each copy must still answer
 * only from its own entries, and a copy marked `cache: false` must not be cached at all.
 */
import type { AddressInfo } from 'node:net'
import { memoryBackend } from '@cache/memory'
import type { FastifyInstance, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { describe, expect, it } from 'vitest'
import { cachePlugin } from '../src/index.js'
import { app } from './apps.js'
import { get } from './http-get.js'

/** A custom constraint strategy: the tenant named by `X-Tenant`. */
const tenantStrategy = {
  name: 'tenant',
  validate: () => true,
  mustMatchWhenDerived: false,
  storage() {
    const routes = new Map<string, unknown>()
    return {
      get: (tenant: string) => (routes.get(tenant) ?? null) as never,
      set: (tenant: string, store: unknown) => {
        routes.set(tenant, store)
      },
    }
  },
  deriveConstraint: (request: { headers: Record<string, string | string[] | undefined> }) =>
    request.headers['x-tenant'] as string,
}

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
    const fastify = app({ routerOptions: { constraints: { tenant: tenantStrategy } } } as never)
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
    const fastify = app({ routerOptions: { constraints: { tenant: tenantStrategy } } } as never)
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
