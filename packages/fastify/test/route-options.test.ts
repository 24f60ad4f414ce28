/**
 * How the plugin reads a route's cache options, from the position of an app whose options reach
 * it in ways a plain literal does not: names given with `undefined` by a helper, options held in
 * non-enumerable properties or a get-only Proxy, and `config.cache` changed by another plugin's
 * `onRoute` hook registered after the cache. Each test: a real server on loopback, alice asks
 * first, bob must never receive alice's body.
 */
import type { AddressInfo } from 'node:net'
import { memoryBackend } from '@cache/memory'
import { configErrorOfAsync } from '@cache/testing'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { describe, expect, it } from 'vitest'
import { type CachePluginOptions, type RouteCacheOptions, cachePlugin } from '../src/index.js'
import { get } from './http-get.js'
import { app } from './apps.js'

/** What the second client (bob) receives from `path` after the first (alice) asked, each by `header`. */
async function bobAfterAlice(
  fastify: FastifyInstance,
  path = '/me',
  header = 'x-user',
  [first, second] = ['alice', 'bob'],
): Promise<string> {
  await fastify.listen({ port: 0, host: '127.0.0.1' })
  const { port } = fastify.server.address() as AddressInfo
  await get(`http://127.0.0.1:${port}${path}`, { [header]: first })
  return (await get(`http://127.0.0.1:${port}${path}`, { [header]: second })).body
}

const byUser = (request: FastifyRequest) => `${request.url}|${String(request.headers['x-user'])}`

/** The ways a settings object may hold `vary` that `Object.keys` and a spread do not see. */
const hiddenVary: Record<string, (extra: object) => object> = {
  'a non-enumerable property': (extra) => Object.defineProperty({ ...extra }, 'vary', { value: ['x-user'] }),
  'a non-enumerable getter': (extra) =>
    Object.defineProperty({ ...extra }, 'vary', { get: () => ['x-user'] }),
  'a get-only Proxy': (extra) => {
    const plain: Record<string, unknown> = { ...extra, vary: ['x-user'] }
    return new Proxy({}, { get: (_, name) => plain[name as string], has: (_, name) => name in plain })
  },
}

describe('options held where Object.keys does not look', () => {
  /** A settings class whose key() reads its own state through `this` (a symbol field). */
  const HEADER = Symbol('header')
  class PerUser {
    readonly [HEADER] = 'x-user'
    key(request: FastifyRequest) {
      return `${request.url}|${String(request.headers[this[HEADER]])}`
    }
  }
  for (const level of ['plugin', 'route'] as const) {
    it(`keys with a settings class's key() reading this, at the ${level} level: bob never gets alice's page`, async () => {
      const fastify = app()
      const backend = memoryBackend()
      await fastify.register(
        cachePlugin,
        (level === 'plugin' ? Object.assign(new PerUser(), { backend }) : { backend }) as CachePluginOptions,
      )
      const cache = level === 'route' ? (new PerUser() as RouteCacheOptions) : true
      fastify.get('/me', { config: { cache } }, async (req) => `hello ${req.headers['x-user']}`)
      // Before: key() ran on a copy of the options without the symbol field; every user keyed alike.
      expect(await bobAfterAlice(fastify)).toBe('hello bob')
    })
  }

  for (const [shape, make] of Object.entries(hiddenVary)) {
    it(`keys on a plugin-level vary given as ${shape}: bob never gets alice's page`, async () => {
      const fastify = app()
      await fastify.register(cachePlugin, make({ backend: memoryBackend() }) as CachePluginOptions)
      fastify.get('/me', { config: { cache: true } }, async (req) => `hello ${req.headers['x-user']}`)
      expect(await bobAfterAlice(fastify)).toBe('hello bob')
    })

    it(`keys on a route's vary given as ${shape}: bob never gets alice's page`, async () => {
      const fastify = app()
      await fastify.register(cachePlugin, { backend: memoryBackend() })
      fastify.get('/me', { config: { cache: make({ ttl: 60 }) as RouteCacheOptions } }, async (req) => {
        return `hello ${req.headers['x-user']}`
      })
      expect(await bobAfterAlice(fastify)).toBe('hello bob')
    })
  }
})

describe('a route option given as undefined (a helper passing an unset setting through)', () => {
  const pluginLevel: Record<string, CachePluginOptions> = {
    vary: { vary: ['x-user'] },
    key: { key: byUser },
    bypass: { bypass: (req) => req.headers['x-user'] !== undefined },
  }
  for (const [name, options] of Object.entries(pluginLevel))
    it(`is refused rather than erasing the plugin's ${name}: bob never gets alice's page`, async () => {
      const fastify = app()
      let refused: string | undefined
      let bobGot: string | undefined
      try {
        await fastify.register(cachePlugin, { backend: memoryBackend(), ...options })
        fastify.get(
          '/me',
          { config: { cache: { ttl: 30, [name]: undefined } } },
          async (req) => `hello ${req.headers['x-user']}`,
        )
        bobGot = await bobAfterAlice(fastify)
      } catch (error) {
        refused = (error as Error).message
      }
      // Before: no error, and bob received "hello alice".
      expect({ refused, bobGot }).toEqual({
        refused: `${name}: given as undefined in config.cache of route /me; leave the name out to keep the plugin's setting`,
        bobGot: undefined,
      })
    })
})

describe("config.cache changed by a plugin's onRoute hook registered after the cache", () => {
  /** A tenant plugin that adds its header to the vary of every cached route. */
  const tenantPlugin = (mode: 'push' | 'replace') =>
    fp(
      async (fastify: FastifyInstance) => {
        fastify.addHook('onRoute', (route) => {
          const config = route.config as { cache?: unknown } | undefined
          const cache = config?.cache as RouteCacheOptions | undefined
          if (config === undefined || cache === undefined || typeof cache !== 'object') return
          const vary = (cache.vary ?? []) as string[]
          if (mode === 'push') cache.vary = [...vary, 'x-tenant']
          else config.cache = { ...cache, vary: [...vary, 'x-tenant'] }
        })
      },
      { name: `tenant-${mode}` },
    )

  for (const mode of ['push', 'replace'] as const)
    it(`honours a vary the later hook adds (${mode}): tenant globex never gets acme's page`, async () => {
      const fastify = app()
      await fastify.register(cachePlugin, { backend: memoryBackend() })
      await fastify.register(tenantPlugin(mode))
      fastify.get('/dashboard', { config: { cache: { ttl: 60 } } }, async (req) => ({
        tenant: req.headers['x-tenant'],
      }))
      // Before: the cache read config.cache in its own onRoute hook; globex got {"tenant":"acme"}.
      expect(await bobAfterAlice(fastify, '/dashboard', 'x-tenant', ['acme', 'globex'])).toBe(
        '{"tenant":"globex"}',
      )
    })

  it('refuses, when the app starts, a config.cache a later hook adds to a route that had none', async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    await fastify.register(
      fp(async (scope: FastifyInstance) => {
        scope.addHook('onRoute', (route) => {
          route.config = { ...route.config, cache: { ttl: 60 } }
        })
      }),
    )
    fastify.get('/me', async (req) => `hello ${req.headers['x-user']}`)
    const error = await configErrorOfAsync(() => fastify.ready())
    expect(error.message).toBe(
      "config.cache: route /me: set by an onRoute hook that runs after cachePlugin's, which reads only the routes it saw cached; register the plugin that sets it before cachePlugin, or set config.cache on the route",
    )
  })
})
