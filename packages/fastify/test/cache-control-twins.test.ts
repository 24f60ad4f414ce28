/**
 * `cacheControl` on a route Fastify chooses because a request header is absent: the unconstrained
 * route of a URL that also has a route with a `version` or custom constraint. A CDN keyed on the
 * URL would keep its `public` response and serve it to the clients the constrained route is for.
 */
import type { AddressInfo } from 'node:net'
import { memoryBackend } from '@cache/memory'
import type { FastifyInstance, FastifyServerOptions, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { describe, expect, it } from 'vitest'
import { cachePlugin } from '../src/index.js'
import { app, tenantStrategy } from './apps.js'

/** A custom constraint strategy: the tenant named by `X-Tenant`, a header no CDN keys on. */
const tenant = tenantStrategy()

async function served(routes: (fastify: FastifyInstance) => Promise<void> | void) {
  const fastify = app({ routerOptions: { constraints: { tenant } } } as FastifyServerOptions)
  await fastify.register(cachePlugin, { backend: memoryBackend(), cacheControl: true, ttl: 60 })
  await routes(fastify)
  await fastify.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(fastify.server.address() as AddressInfo).port}`
  return async (path: string, headers: Record<string, string> = {}, method = 'GET') => {
    const response = await fetch(`${base}${path}`, { method, headers })
    return {
      body: await response.text(),
      cacheControl: response.headers.get('cache-control'),
      vary: response.headers.get('vary'),
    }
  }
}

describe('cacheControl on the unconstrained route of a URL that has a constrained route too', () => {
  it('sends GET /api private when GET /api with a version constraint exists: no CDN serves v1 to v2 clients', async () => {
    const fetchPage = await served((fastify) => {
      fastify.get('/api', { config: { cache: true } }, async () => 'api v1')
      fastify.get(
        '/api',
        { constraints: { version: '2.0.0' }, config: { cache: true } },
        async () => 'api v2',
      )
    })
    // Twice: the miss and the hit.
    for (const round of [1, 2]) {
      const v1 = await fetchPage('/api')
      expect({ round, ...v1 }).toEqual({
        round,
        body: 'api v1',
        cacheControl: 'private, max-age=60',
        vary: null,
      })
      const v2 = await fetchPage('/api', { 'accept-version': '2.0.0' })
      expect({ round, body: v2.body, cacheControl: v2.cacheControl }).toEqual({
        round,
        body: 'api v2',
        cacheControl: 'private, max-age=60',
      })
    }
    // Its HEAD route too, which Fastify chooses the same way.
    expect((await fetchPage('/api', {}, 'HEAD')).cacheControl).toBe('private, max-age=60')
  })

  it('sends it private when the constrained route of its URL is not cached', async () => {
    const fetchPage = await served((fastify) => {
      fastify.get('/api', { config: { cache: true } }, async () => 'api v1')
      fastify.get('/api', { constraints: { version: '2.0.0' } }, async () => 'api v2')
    })
    expect((await fetchPage('/api')).cacheControl).toBe('private, max-age=60')
    expect((await fetchPage('/api', { 'accept-version': '2.0.0' })).body).toBe('api v2')
  })

  it('sends it private when a tenant plugin registered after the cache declares a constrained copy from onRoute: acme never gets the public page from a CDN', async () => {
    const fetchPage = await served(async (fastify) => {
      await fastify.register(
        fp(async (scope: FastifyInstance) => {
          scope.addHook('onRoute', function (this: FastifyInstance, route: RouteOptions) {
            if ((route.constraints as { tenant?: string })?.tenant || !route.config?.cache) return
            if (route.method !== 'GET') return
            this.route({
              ...route,
              constraints: { tenant: 'acme' },
              config: { ...route.config, tenant: 'acme' } as never,
            })
          })
        }),
      )
      fastify.get('/home', { config: { cache: true } }, async (request) => {
        const tenant = (request.routeOptions.config as { tenant?: string }).tenant
        return `home of ${tenant ?? 'the public'}`
      })
    })
    for (const round of [1, 2]) {
      const page = await fetchPage('/home')
      // Before: public, max-age=60 with no Vary: X-Tenant.
      expect({ round, body: page.body, cacheControl: page.cacheControl }).toEqual({
        round,
        body: 'home of the public',
        cacheControl: 'private, max-age=60',
      })
      expect((await fetchPage('/home', { 'x-tenant': 'acme' })).body).toBe('home of acme')
    }
  })

  it('keeps public the routes of other URLs, and a URL whose other route is constrained by host alone', async () => {
    const fetchPage = await served((fastify) => {
      fastify.get('/api', { config: { cache: true } }, async () => 'api v1')
      fastify.get(
        '/api',
        { constraints: { version: '2.0.0' }, config: { cache: true } },
        async () => 'api v2',
      )
      fastify.get('/about', { config: { cache: true } }, async () => 'about')
      fastify.get('/home', { config: { cache: true } }, async () => 'home')
      fastify.get(
        '/home',
        { constraints: { host: 'admin.test' }, config: { cache: true } },
        async () => 'admin',
      )
      // Another method of the same URL, constrained: never chosen for a GET.
      fastify.post('/about', { constraints: { version: '2.0.0' } }, async () => 'posted')
    })
    expect((await fetchPage('/about')).cacheControl).toBe('public, max-age=60')
    expect((await fetchPage('/home')).cacheControl).toBe('public, max-age=60')
  })
})
