/**
 * Which read of a cached route's `config` is Fastify's own (the route's token), when other plugins
 * change the route around the cache: a defaults plugin registered before it assigns
 * `route.config`, a plugin registered after it moves the route to another URL, or gives the HEAD
 * route its GET route's config. A copy of the route declared in the same tick, into a context the
 * cache never sees, must not take the route's token; the route itself must stay cached.
 */
import type { AddressInfo } from 'node:net'
import { memoryBackend } from '@cache/memory'
import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { describe, expect, it } from 'vitest'
import { cachePlugin } from '../src/index.js'
import { app } from './apps.js'
import { get } from './http-get.js'

async function listen(fastify: FastifyInstance): Promise<string> {
  await fastify.listen({ port: 0, host: '127.0.0.1' })
  return `http://127.0.0.1:${(fastify.server.address() as AddressInfo).port}`
}

/** plugins/defaults.js, loaded before the cache: a locale default on every route. */
const localeDefaults = fp(async (fastify: FastifyInstance) => {
  fastify.addHook('onRoute', (route: RouteOptions) => {
    route.config = { locale: 'en', ...route.config } as never
  })
})

/** Collects each cached GET route (not the beta copies) as it is declared. */
function collector(collected: RouteOptions[]) {
  return fp(async (fastify: FastifyInstance) => {
    fastify.addHook('onRoute', (route: RouteOptions) => {
      const config = route.config as { cache?: unknown; beta?: boolean } | undefined
      if (config?.cache && !config.beta && route.method === 'GET') collected.push(route)
    })
  })
}

const whichPage = async (request: FastifyRequest) =>
  (request.routeOptions.config as { beta?: boolean }).beta ? 'BETA draft' : 'stable page'

/** A beta copy of each collected route, into the root context (which the cache does not see). */
function declareBetaCopies(root: FastifyInstance, collected: RouteOptions[], url?: string) {
  for (const route of collected.splice(0))
    root.route({
      ...route,
      ...(url === undefined ? {} : { url }),
      constraints: { version: '2.0.0' },
      config: { ...route.config, cache: false, beta: true } as never,
    })
}

async function expectKeptApart(base: string, path: string) {
  for (const round of [1, 2]) {
    const beta = await get(`${base}${path}`, { 'accept-version': '2.0.0' })
    expect({ round, body: beta.body, cacheStatus: beta.cacheStatus }).toEqual({
      round,
      body: 'BETA draft',
      cacheStatus: 'undefined',
    })
    const stable = await get(`${base}${path}`)
    expect({ round, body: stable.body }).toEqual({ round, body: 'stable page' })
    expect(stable.cacheStatus).toMatch(round === 1 ? /stored/ : /hit/)
  }
}

describe('a copy declared in the same tick as a route whose config or URL another plugin changed', () => {
  it('never answers the copy from the route when a plugin before the cache assigned route.config', async () => {
    const fastify = app()
    const collected: RouteOptions[] = []
    await fastify.register(localeDefaults)
    await fastify.register(collector(collected))
    await fastify.register(async (shop: FastifyInstance) => {
      await shop.register(cachePlugin, { backend: memoryBackend() })
      shop.get('/home', { config: { cache: { ttl: 60 } } }, whichPage)
      declareBetaCopies(fastify, collected)
    })
    await expectKeptApart(await listen(fastify), '/home')
  })

  it("never answers the copy from a prefixed plugin's '/' route when a plugin before the cache assigned route.config", async () => {
    const fastify = app()
    const collected: RouteOptions[] = []
    await fastify.register(localeDefaults)
    await fastify.register(collector(collected))
    await fastify.register(
      async (shop: FastifyInstance) => {
        await shop.register(cachePlugin, { backend: memoryBackend() })
        shop.get('/', { config: { cache: { ttl: 60 } } }, whichPage)
        declareBetaCopies(fastify, collected, '/api')
      },
      { prefix: '/api' },
    )
    await expectKeptApart(await listen(fastify), '/api')
  })

  it('never answers the copy from the route when a plugin after the cache moved it to another URL', async () => {
    const fastify = app()
    const collected: RouteOptions[] = []
    await fastify.register(collector(collected))
    await fastify.register(async (shop: FastifyInstance) => {
      await shop.register(cachePlugin, { backend: memoryBackend() })
      await shop.register(
        fp(async (scope: FastifyInstance) => {
          scope.addHook('onRoute', (route: RouteOptions) => {
            route.url = `/v1${route.url}`
            ;(route as { path?: string }).path = route.url
          })
        }),
      )
      shop.get('/home', { config: { cache: { ttl: 60 } } }, whichPage)
      declareBetaCopies(fastify, collected)
    })
    await expectKeptApart(await listen(fastify), '/v1/home')
  })
  it('never answers the copy from a route declared without its HEAD route (exposeHeadRoute: false)', async () => {
    const fastify = app()
    const collected: RouteOptions[] = []
    await fastify.register(collector(collected))
    await fastify.register(async (shop: FastifyInstance) => {
      await shop.register(cachePlugin, { backend: memoryBackend() })
      shop.get('/home', { exposeHeadRoute: false, config: { cache: { ttl: 60 } } }, whichPage)
      declareBetaCopies(fastify, collected)
    })
    await expectKeptApart(await listen(fastify), '/home')
  })
})

describe('a route whose HEAD route a later plugin gives the GET route config', () => {
  it('stays cached when a plugin before the cache assigned route.config too', async () => {
    const fastify = app()
    await fastify.register(localeDefaults)
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    const gets = new Map<string, RouteOptions>()
    await fastify.register(
      fp(async (scope: FastifyInstance) => {
        scope.addHook('onRoute', (route: RouteOptions) => {
          const config = route.config as { cache?: Record<string, unknown> } | undefined
          if (!config?.cache) return
          if (route.method === 'GET') {
            route.config = { ...config, cache: { ...config.cache, vary: ['x-tenant'] } } as never
            gets.set(route.url, route)
          } else if (route.method === 'HEAD' && gets.has(route.url))
            route.config = { ...(gets.get(route.url)?.config as object) } as never
        })
      }),
    )
    let renders = 0
    fastify.get('/catalog', { config: { cache: { ttl: 60 } } }, async (request: FastifyRequest) => ({
      tenant: request.headers['x-tenant'],
      n: ++renders,
    }))
    const base = await listen(fastify)
    const statuses: string[] = []
    for (let i = 0; i < 3; i++)
      statuses.push((await get(`${base}/catalog`, { 'x-tenant': 'acme' })).cacheStatus)
    expect({ renders, last: statuses[2] }).toMatchObject({ renders: 1, last: expect.stringMatching(/hit/) })
  })
})

describe('a copy that reads the route as Fastify does, in the same tick', () => {
  it('makes ready() reject, naming the route, rather than guess which requests are its own', async () => {
    const fastify = app()
    const collected: RouteOptions[] = []
    await fastify.register(collector(collected))
    await fastify.register(async (shop: FastifyInstance) => {
      await shop.register(cachePlugin, { backend: memoryBackend() })
      shop.get('/home', { config: { cache: { ttl: 60 } } }, whichPage)
      for (const route of collected.splice(0)) {
        // Hook lists checked the way Fastify checks them, then the config spread.
        const preHandler = Array.isArray(route.preHandler) ? route.preHandler.filter(Boolean) : []
        fastify.route({
          method: 'GET',
          url: route.url,
          handler: route.handler,
          preHandler,
          constraints: { version: '2.0.0' },
          config: { ...route.config, cache: false, beta: true } as never,
        })
      }
    })
    await expect(fastify.ready()).rejects.toThrow(/route GET \/home: a copy of its options was declared/)
  })
})

describe("a prefixed plugin's '/' route that a URL-versioning onRoute hook moves", () => {
  /** plugins/versioning.js: every route under /v1. */
  const versioning = fp(async (fastify: FastifyInstance) => {
    fastify.addHook('onRoute', (route: RouteOptions) => {
      if (!route.url.startsWith('/v1')) route.url = `/v1${route.url}`
    })
  })
  /** plugins/roles.js: replaces the preHandler list (delete, then assign), its guard last. */
  const rolesReplacingList = fp(async (fastify: FastifyInstance) => {
    fastify.addHook('onRoute', (route: RouteOptions) => {
      const list = [route.preHandler ?? []].flat()
      delete route.preHandler
      route.preHandler = [...list, async function roles() {}] as RouteOptions['preHandler']
    })
  })

  async function expectCached(fastify: FastifyInstance, paths: string[]) {
    let renders = 0
    await fastify.register(
      async (api: FastifyInstance) => {
        api.get('/', { config: { cache: { ttl: 60 } } }, async () => `render ${++renders}`)
        api.get('/list', { config: { cache: { ttl: 60 } } }, async () => `render ${++renders}`)
      },
      { prefix: '/api' },
    )
    await fastify.ready()
    for (const url of paths) {
      const first = await fastify.inject({ url })
      const second = await fastify.inject({ url })
      expect({ url, first: first.headers['cache-status'], second: second.headers['cache-status'] }).toEqual({
        url,
        first: expect.stringMatching(/stored/),
        second: expect.stringMatching(/hit/),
      })
      expect(second.body).toBe(first.body)
    }
  }

  it('keeps it cached when a plugin after the cache versions the URL and another replaces preHandler', async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    await fastify.register(versioning)
    await fastify.register(rolesReplacingList)
    // Before: ready() resolved and GET /v1/api was never looked up (no Cache-Status at all).
    await expectCached(fastify, ['/v1/api', '/v1/api/list'])
  })

  it('keeps it cached when the versioning plugin is registered before the cache', async () => {
    const fastify = app()
    await fastify.register(versioning)
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    // Before: ready() rejected, claiming a copy of the route was declared while it was.
    await expectCached(fastify, ['/v1/api', '/v1/api/list'])
  })
})
