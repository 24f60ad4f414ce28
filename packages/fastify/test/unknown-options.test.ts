import { configErrorOfAsync } from '@cache/testing'
import { memoryBackend } from '@cache/memory'
import { describe, expect, it } from 'vitest'
import { type CachePluginOptions, type RouteCacheOptions, cachePlugin } from '../src/index.js'
import { app } from './apps.js'

const ALL_ROUTE_OPTIONS = () =>
  ({
    ttl: 60,
    backend: memoryBackend(),
    keyPrefix: 'all',
    vary: ['x-user'],
    key: (req) => req.url,
    statuses: [200],
    maxBodySize: '512KB',
    allowAuthorized: false,
    allowCookies: false,
    staleWhileRevalidate: 10,
    revalidateTimeout: '10s',
    collapseTimeout: '2s',
    tags: ['t'],
    statusHeader: 'x-cache',
    cacheName: 'edge',
    etag: true,
    now: Date.now,
    bypass: () => false,
    cacheControl: { maxAge: 10, sMaxAge: 20, staleWhileRevalidate: 5, public: false },
  }) satisfies Required<RouteCacheOptions>

describe('option names of the Fastify plugin', () => {
  it('refuses a misspelt plugin option at registration, naming it', async () => {
    const fastify = app()
    const error = await configErrorOfAsync(() =>
      fastify.register(cachePlugin, { backend: memoryBackend(), varyy: ['x-user'] } as CachePluginOptions),
    )
    expect(error.setting).toBe('varyy')
    expect(error.message).toMatch(
      /^varyy: not an option of cachePlugin; did you mean `vary`\? if it is one of @fastify\/autoload's shared `options`/,
    )
  })

  it("refuses a misspelt option of a route's config.cache, naming the route", async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    const error = await configErrorOfAsync(async () => {
      fastify.get(
        '/me',
        { config: { cache: { ttl: 60, varyy: ['x-user'] } as RouteCacheOptions } },
        async (req) => `hello ${req.headers['x-user']}`,
      )
      await fastify.ready()
    })
    expect(error.setting).toBe('varyy')
    expect(error.message).toBe('varyy: not an option of config.cache of route /me; did you mean `vary`?')
  })

  it('refuses a misspelt directive of cacheControl in a route, and of fastify.cache.invalidate()', async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    const error = await configErrorOfAsync(async () => {
      fastify.get('/x', { config: { cache: { cacheControl: { privte: true } as never } } }, async () => 'x')
      await fastify.ready()
    })
    expect(error.setting).toBe('privte')
    const other = app()
    await other.register(cachePlugin, { backend: memoryBackend() })
    other.get('/y', { config: { cache: 60 } }, async () => 'y')
    await other.ready()
    await expect(other.cache.invalidate('/y', { hots: 'a.test' } as never)).rejects.toThrow(
      /did you mean `host`/,
    )
  })

  it('accepts every plugin and route option, and what fastify.register reads (prefix, logLevel, logSerializers)', async () => {
    const fastify = app()
    let runs = 0
    const all = {
      ...ALL_ROUTE_OPTIONS(),
      decorateAs: 'cache',
      prefix: '/api',
      logLevel: 'warn',
      logSerializers: { req: () => 'req' },
    } satisfies Required<CachePluginOptions> & Parameters<typeof fastify.register>[1]
    await fastify.register(cachePlugin, all)
    fastify.get('/all', { config: { cache: ALL_ROUTE_OPTIONS() } }, async () => `run ${++runs}`)
    fastify.get('/defaults', { config: { cache: true } }, async () => `run ${++runs}`)
    expect((await fastify.inject('/all')).headers['x-cache']).toBe('MISS')
    const hit = await fastify.inject('/all')
    expect(hit.headers['x-cache']).toBe('HIT')
    expect(hit.body).toBe('run 1')
    expect((await fastify.inject('/defaults')).body).toBe('run 2')
    expect((await fastify.inject('/defaults')).body).toBe('run 2')
  })
})

describe('options given as a settings class', () => {
  class Settings {
    get backend() {
      return memoryBackend()
    }
    get ttl() {
      return 60
    }
    get vary() {
      return ['accept-language']
    }
  }

  it.each(['plugin', 'route', 'Object.create'] as const)(
    'a vary held in a getter (%s) keys the response: one language is never served to another',
    async (form) => {
      const fastify = app()
      const settings =
        form === 'Object.create'
          ? Object.create({ backend: memoryBackend(), ttl: 60, vary: ['accept-language'] })
          : new Settings()
      await fastify.register(cachePlugin, form === 'route' ? { backend: memoryBackend() } : settings)
      fastify.get('/hello', { config: { cache: form === 'route' ? settings : true } }, async (req) => ({
        lang: req.headers['accept-language'],
      }))
      const en = await fastify.inject({ url: '/hello', headers: { 'accept-language': 'en' } })
      const fr = await fastify.inject({ url: '/hello', headers: { 'accept-language': 'fr' } })
      expect(en.json()).toEqual({ lang: 'en' })
      // Before: the getter was never read (Object.keys), vary was dropped: fr got en's body.
      expect(fr.json()).toEqual({ lang: 'fr' })
    },
  )
})
