/**
 * A plugin registered after the cache that rebuilds a cached route's `preHandler` property
 * (`delete route.preHandler`, then a new list with its guard last) takes away the accessor that
 * keeps the cache's lookup last: the guard would run after a hit was answered.
 */
import { memoryBackend } from '@cache/memory'
import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  preHandlerHookHandler,
  RouteOptions,
} from 'fastify'
import fp from 'fastify-plugin'
import { describe, expect, it } from 'vitest'
import { cachePlugin } from '../src/index.js'
import { app } from './apps.js'

const adminOnly = async (request: FastifyRequest, reply: FastifyReply) => {
  if (request.headers['x-role'] !== 'admin') await reply.code(403).send('forbidden')
}

/** A roles plugin whose onRoute hook rebuilds the property, placing its guard as `place` says. */
const rolesPlugin = (place: 'last' | 'first') =>
  fp(async (scope: FastifyInstance) => {
    scope.addHook('onRoute', (route: RouteOptions) => {
      if (!(route.config as { admin?: boolean } | undefined)?.admin) return
      const list = [route.preHandler ?? []].flat() as preHandlerHookHandler[]
      delete route.preHandler
      route.preHandler = (
        place === 'last' ? [...list, adminOnly] : [adminOnly, ...list]
      ) as preHandlerHookHandler[]
    })
  })

async function adminApp(place: 'last' | 'first') {
  const fastify = app()
  await fastify.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
  await fastify.register(rolesPlugin(place))
  fastify.get(
    '/admin/report',
    { config: { admin: true, cache: true } as never },
    async () => 'SECRET payroll',
  )
  return fastify
}

describe("a later plugin that deletes a cached route's preHandler and assigns a new list", () => {
  it('puts the lookup back last when the new list ends with its guard: no anonymous hit', async () => {
    const fastify = await adminApp('last')
    // Before: the app started, and after an admin's request an anonymous one got SECRET payroll (200, hit).
    await fastify.ready()
    const admin = await fastify.inject({ url: '/admin/report', headers: { 'x-role': 'admin' } })
    expect(admin.body).toBe('SECRET payroll')
    const again = await fastify.inject({ url: '/admin/report', headers: { 'x-role': 'admin' } })
    expect(again.headers['cache-status']).toMatch(/hit/)
    const anonymous = await fastify.inject({ url: '/admin/report' })
    expect(anonymous.statusCode).toBe(403)
    expect(anonymous.body).not.toContain('SECRET')
  })

  it('is accepted when the new list still ends with the lookup, and the guard runs before every hit', async () => {
    const fastify = await adminApp('first')
    await fastify.ready()
    const admin = await fastify.inject({ url: '/admin/report', headers: { 'x-role': 'admin' } })
    expect(admin.body).toBe('SECRET payroll')
    const again = await fastify.inject({ url: '/admin/report', headers: { 'x-role': 'admin' } })
    expect(again.headers['cache-status']).toMatch(/hit/)
    const anonymous = await fastify.inject({ url: '/admin/report' })
    expect(anonymous.statusCode).toBe(403)
    expect(anonymous.body).not.toContain('SECRET')
  })

  it("fails the route's requests when an onReady hook registered after the cache deleted the property", async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
    const routes: RouteOptions[] = []
    await fastify.register(
      fp(async (scope: FastifyInstance) => {
        scope.addHook('onRoute', (route) => {
          if (route.config?.cache) routes.push(route)
        })
        scope.addHook('onReady', async () => {
          for (const route of routes) {
            const list = [route.preHandler ?? []].flat() as preHandlerHookHandler[]
            delete route.preHandler
            route.preHandler = [...list, adminOnly] as preHandlerHookHandler[]
          }
        })
      }),
    )
    fastify.get('/admin/report', { config: { cache: true } }, async () => 'SECRET payroll')
    await fastify.ready()
    for (const headers of [{ 'x-role': 'admin' }, {}]) {
      const response = await fastify.inject({ url: '/admin/report', headers })
      expect(response.statusCode).toBe(500)
      expect(response.body).not.toContain('SECRET')
    }
  })
})

describe("a later plugin that deletes a cached route's preValidation and assigns a new list", () => {
  it('keeps the query check last: a query default filled in from a header makes the request bypass', async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
    await fastify.register(
      fp(async (scope: FastifyInstance) => {
        scope.addHook('onRoute', (route: RouteOptions) => {
          const list = [route.preValidation ?? []].flat()
          delete route.preValidation
          route.preValidation = [
            ...list,
            async (request: FastifyRequest) => {
              const query = request.query as { lang?: string }
              query.lang ??= String(request.headers['accept-language'] ?? 'en').slice(0, 2)
            },
          ] as RouteOptions['preValidation']
        })
      }),
    )
    fastify.get('/welcome', { config: { cache: true } as never }, async (request) =>
      (request.query as { lang?: string }).lang === 'fr' ? 'Bienvenue' : 'Welcome',
    )
    await fastify.ready()
    const fr = await fastify.inject({ url: '/welcome', headers: { 'accept-language': 'fr-FR' } })
    expect(fr.body).toBe('Bienvenue')
    // Before: the French page, stored under the bare URL, was this English client's hit.
    const en = await fastify.inject({ url: '/welcome', headers: { 'accept-language': 'en-US' } })
    expect(en.body).toBe('Welcome')
  })
})

describe("a plugin that replaces a cached route's preValidation after the route was declared", () => {
  /** A query default from Accept-Language, the only one who sets `lang` for the handler. */
  const langFromHeader = async (request: FastifyRequest) => {
    const language = request.headers['accept-language']
    const query = request.query as { lang?: string }
    if (language) query.lang ??= String(language).slice(0, 2)
  }
  const replaceList = (route: RouteOptions) => {
    const list = [route.preValidation ?? []].flat()
    delete route.preValidation
    route.preValidation = [...list, langFromHeader] as RouteOptions['preValidation']
  }
  const page = async (request: FastifyRequest) => ({
    lang: (request.query as { lang?: string }).lang ?? 'en',
  })

  /** Never the French page to a client without Accept-Language: ready() rejects, or it bypasses. */
  async function expectNoFrenchLeak(fastify: FastifyInstance) {
    let refused: unknown
    try {
      await fastify.ready()
    } catch (error) {
      refused = error
    }
    if (refused !== undefined) {
      expect(String(refused)).toMatch(/route GET \/page: .*preValidation/)
      return
    }
    await fastify.inject({ url: '/page', headers: { 'accept-language': 'fr' } })
    const english = await fastify.inject({ url: '/page' })
    expect(english.json()).toEqual({ lang: 'en' })
  }

  it('refuses, when the app starts, a plugin registered after the routes that walks them', async () => {
    const fastify = app()
    const routes: RouteOptions[] = []
    fastify.addHook('onRoute', (route) => {
      routes.push(route)
    })
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    fastify.get('/page', { config: { cache: { ttl: 60 } } }, page)
    // Before: ready() resolved, and the French page stored under /page was the next client's hit.
    await fastify.register(async () => {
      for (const route of routes) if (route.method === 'GET') replaceList(route)
    })
    await expect(fastify.ready()).rejects.toThrow(/route GET \/page: .*preValidation/)
  })

  for (const deferral of ['a promise', 'process.nextTick'] as const)
    it(`never serves the French page to an English client when its onRoute hook defers the replacement to ${deferral}`, async () => {
      const fastify = app()
      await fastify.register(cachePlugin, { backend: memoryBackend() })
      fastify.addHook('onRoute', (route) => {
        if (route.method !== 'GET') return
        if (deferral === 'a promise') Promise.resolve().then(() => replaceList(route))
        else process.nextTick(() => replaceList(route))
      })
      fastify.get('/page', { config: { cache: { ttl: 60 } } }, page)
      await expectNoFrenchLeak(fastify)
    })
})

describe("a plugin that wraps a cached route's preHandler hooks after the route was declared", () => {
  /** Wraps each hook for timing: the wrapped lookup comes first, the real one is put back last. */
  const timed = (hook: preHandlerHookHandler): preHandlerHookHandler =>
    function timedHook(this: FastifyInstance, request, reply, done) {
      const start = process.hrtime.bigint()
      return hook.call(this, request, reply, (error?: Error) => {
        request.log.debug({ hook: hook.name, ns: String(process.hrtime.bigint() - start) })
        done(error as Error)
      })
    }

  it('a guard appended after the wrapped hooks runs before every hit: no anonymous page', async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
    const routes: RouteOptions[] = []
    fastify.addHook('onRoute', (route) => void routes.push(route))
    fastify.get('/admin/report', { config: { cache: true } as never }, async () => 'SECRET payroll')
    await fastify.register(async function instrumentHooks() {
      for (const route of routes)
        route.preHandler = ([route.preHandler ?? []].flat() as preHandlerHookHandler[]).map(timed)
    })
    await fastify.register(async function adminGuard() {
      for (const route of routes)
        route.preHandler = [...([route.preHandler ?? []].flat() as preHandlerHookHandler[]), adminOnly]
    })
    await fastify.ready()
    // Before: the wrapped lookup answered the hit first; the anonymous client got SECRET payroll (200, hit).
    for (let i = 0; i < 2; i++) {
      const admin = await fastify.inject({ url: '/admin/report', headers: { 'x-role': 'admin' } })
      expect(admin.body).toBe('SECRET payroll')
      expect(admin.headers['cache-status']).toMatch(i === 0 ? /stored/ : /hit/)
    }
    const anonymous = await fastify.inject({ url: '/admin/report' })
    expect(anonymous.statusCode).toBe(403)
    expect(anonymous.body).not.toContain('SECRET')
  })

  it("a header such a guard sets for its user is that user's on every hit, never the stored one's", async () => {
    const fastify = app()
    await fastify.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
    const routes: RouteOptions[] = []
    fastify.addHook('onRoute', (route) => void routes.push(route))
    fastify.get('/report', { config: { cache: true } as never }, async () => 'report')
    await fastify.register(async function instrumentHooks() {
      for (const route of routes)
        route.preHandler = ([route.preHandler ?? []].flat() as preHandlerHookHandler[]).map(timed)
    })
    const servedTo = async (request: FastifyRequest, reply: FastifyReply) => {
      reply.header('x-served-to', request.headers['x-user'])
    }
    await fastify.register(async function userHeader() {
      for (const route of routes)
        route.preHandler = [...([route.preHandler ?? []].flat() as preHandlerHookHandler[]), servedTo]
    })
    await fastify.ready()
    const alice = await fastify.inject({ url: '/report', headers: { 'x-user': 'alice' } })
    expect(alice.headers['x-served-to']).toBe('alice')
    // Before: bob's hit carried alice's header, stored with her response.
    const bob = await fastify.inject({ url: '/report', headers: { 'x-user': 'bob' } })
    expect(bob.headers['cache-status']).toMatch(/hit/)
    expect(bob.headers['x-served-to']).toBe('bob')
  })
})

describe("a plugin that replaces a cached route's handler without calling the one it had", () => {
  it('leaves the route uncached, warned once, and never answers from an entry', async () => {
    const lines: { level: number; msg: string }[] = []
    const stream = { write: (line: string) => void lines.push(JSON.parse(line)) }
    const fastify = app({ logger: { level: 'warn', stream } })
    await fastify.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
    let mocked = 0
    await fastify.register(
      fp(async (scope: FastifyInstance) => {
        scope.addHook('onRoute', (route: RouteOptions) => {
          route.handler = async () => `mock ${++mocked}`
        })
      }),
    )
    fastify.get('/data', { config: { cache: true } as never }, async () => 'real')
    await fastify.ready()
    for (let i = 1; i <= 3; i++) {
      const reply = await fastify.inject({ url: '/data' })
      expect(reply.body).toBe(`mock ${i}`)
      expect(reply.headers['cache-status'] ?? '').not.toMatch(/hit/)
    }
    // Before: nothing said the route was no longer cached.
    expect(lines.filter((line) => /handler the cache wrapped/.test(line.msg))).toHaveLength(1)
  })
})
