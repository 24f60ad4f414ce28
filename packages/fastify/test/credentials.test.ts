/**
 * The `Authorization` and `Cookie` rules are about what the client sent (`request.raw.rawHeaders`),
 * whatever a hook before the cache did to the headers: an auth hook that moves the credential into
 * `request.user` and deletes it, a session hook that takes `sid=` out of `Cookie`.
 */
import { memoryBackend } from '@cache/memory'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { cachePlugin, type RouteCacheOptions } from '../src/index.js'
import { get } from './http-get.js'

const apps: FastifyInstance[] = []
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()))
})

type WithUser = FastifyRequest & { user?: string | null }

/** An app whose `/me` answers the page of `request.user`, with `consume` as an onRequest hook. */
async function serve(cache: RouteCacheOptions, consume: (request: WithUser) => void): Promise<string> {
  const app = Fastify()
  apps.push(app)
  await app.register(cachePlugin, { backend: memoryBackend() })
  app.decorateRequest('user', null)
  app.addHook('onRequest', async (request) => consume(request as WithUser))
  app.get(
    '/me',
    { config: { cache } },
    async (request) => `page of ${(request as WithUser).user ?? 'anonymous'}`,
  )
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  return `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
}

/**
 * Moves the credential into `request.user` and deletes the header (from `raw.headers` too, with
 * `raw`; from `raw.rawHeaders` as well, with `'lines'`, so that nothing downstream logs it).
 */
function moveInto(name: 'authorization' | 'cookie', raw: boolean | 'lines' = false) {
  return (request: WithUser) => {
    const value = request.headers[name]
    if (value === undefined) return
    request.user = String(value).split(/[= ]/)[1]
    delete request.headers[name]
    if (raw) delete request.raw.headers[name]
    if (raw === 'lines') {
      const lines = request.raw.rawHeaders
      for (let i = lines.length - 2; i >= 0; i -= 2) if (lines[i]!.toLowerCase() === name) lines.splice(i, 2)
    }
  }
}

describe.each([
  ['authorization', { authorization: 'Bearer alice' }],
  ['cookie', { cookie: 'sid=alice' }],
] as const)('%s the client sent, removed by a hook before the cache', (name, alice) => {
  it.each([
    ['deleted from request.headers', false],
    ['deleted from request.raw.headers too', true],
    ['deleted from request.raw.rawHeaders too', 'lines'],
  ] as const)('bypasses (%s): the user’s page is never replayed to anyone', async (_how, raw) => {
    const url = await serve({ ttl: 60 }, moveInto(name, raw))
    const first = await get(`${url}/me`, alice)
    expect(first.body).toBe('page of alice')
    expect(first.cacheStatus).toBe(`@cache; fwd=request; detail=${name}`)
    expect((await get(`${url}/me`)).body).toBe('page of anonymous')
    expect((await get(`${url}/me`, alice)).cacheStatus).toBe(`@cache; fwd=request; detail=${name}`)
  })

  it('with the allow option and a response Vary naming it, never makes the user’s page the variant without it', async () => {
    const app = Fastify()
    apps.push(app)
    await app.register(cachePlugin, { backend: memoryBackend() })
    app.decorateRequest('user', null)
    app.addHook('onRequest', async (request) => moveInto(name)(request as WithUser))
    const allow = name === 'cookie' ? { allowCookies: true } : { allowAuthorized: true }
    app.get('/me', { config: { cache: { ttl: 60, ...allow } } }, async (request, reply) => {
      reply.header('vary', name)
      return `page of ${(request as WithUser).user ?? 'anonymous'}`
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
    expect((await get(`${url}/me`, alice)).body).toBe('page of alice')
    expect((await get(`${url}/me`)).body).toBe('page of anonymous')
    const hit = await get(`${url}/me`, alice)
    expect(hit.body).toBe('page of alice')
    expect(hit.cacheStatus).toMatch(/hit/)
  })
})

describe('allowCookies with vary: cookie', () => {
  /** A session hook: `sid=` out of the Cookie into `request.user`, the other cookies passed on. */
  const session = (request: WithUser) => {
    const parts = String(request.headers.cookie ?? '')
      .split(/;\s*/)
      .filter(Boolean)
    const sid = parts.find((p) => p.startsWith('sid='))
    if (sid !== undefined) request.user = sid.slice(4)
    const rest = parts.filter((p) => !p.startsWith('sid=')).join('; ')
    if (rest === '') delete request.headers.cookie
    else request.headers.cookie = rest
  }
  /** The same hook, rewriting the Cookie line in `request.raw.rawHeaders` too. */
  const sessionLines = (request: WithUser) => {
    session(request)
    const lines = request.raw.rawHeaders
    for (let i = lines.length - 2; i >= 0; i -= 2) {
      if (lines[i]!.toLowerCase() !== 'cookie') continue
      if (request.headers.cookie === undefined) lines.splice(i, 2)
      else lines[i + 1] = String(request.headers.cookie)
    }
  }
  const hooks = [
    ['a hook rewriting request.headers', session],
    ['a hook rewriting request.raw.rawHeaders too', sessionLines],
  ] as const

  it.each(hooks)(
    'keys on the Cookie the client sent (%s): Bob never gets Alice’s page, nor does a client sending what was left of hers',
    async (_how, session) => {
      const url = await serve({ ttl: 60, allowCookies: true, vary: ['cookie'] }, session)
      expect((await get(`${url}/me`, { cookie: 'sid=alice; theme=dark' })).body).toBe('page of alice')
      expect((await get(`${url}/me`, { cookie: 'sid=bob; theme=dark' })).body).toBe('page of bob')
      expect((await get(`${url}/me`, { cookie: 'theme=dark' })).body).toBe('page of anonymous')
      const hit = await get(`${url}/me`, { cookie: 'sid=alice; theme=dark' })
      expect(hit.body).toBe('page of alice')
      expect(hit.cacheStatus).toMatch(/hit/)
    },
  )

  it.each(hooks)(
    'refreshes a stale entry with the Cookie the client sent (%s; the session hook runs on it again)',
    async (_how, session) => {
      let now = 1_000_000
      const clock = () => now
      const app = Fastify()
      apps.push(app)
      await app.register(cachePlugin, { backend: memoryBackend({ now: clock }), now: clock })
      app.decorateRequest('user', null)
      app.addHook('onRequest', async (request) => session(request as WithUser))
      let runs = 0
      const cache = { ttl: 60, staleWhileRevalidate: 600, allowCookies: true, vary: ['cookie'] }
      app.get(
        '/me',
        { config: { cache } },
        async (request) => `page of ${(request as WithUser).user ?? 'anonymous'} #${++runs}`,
      )
      await app.listen({ port: 0, host: '127.0.0.1' })
      const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
      const alice = { cookie: 'sid=alice; theme=dark' }
      expect((await get(`${url}/me`, alice)).body).toBe('page of alice #1')
      now += 61_000
      expect((await get(`${url}/me`, alice)).body).toBe('page of alice #1')
      const routeCache = [...app.cache.routes.values()][0]!
      for (let i = 0; i < 300 && routeCache.stats.sets < 2; i++) await new Promise((r) => setTimeout(r, 10))
      expect((await get(`${url}/me`, alice)).body).toBe('page of alice #2')
    },
  )
})

describe('a stale-while-revalidate refresh', () => {
  it('sends a header that came on two lines as Node read it: the refreshed entry is the one the client reads', async () => {
    const app = Fastify()
    apps.push(app)
    await app.register(cachePlugin, { backend: memoryBackend() })
    let runs = 0
    app.get(
      '/lang',
      { config: { cache: { ttl: 0.2, staleWhileRevalidate: 10, vary: ['accept-language'] } } },
      async (request) => `${request.headers['accept-language']} #${++runs}`,
    )
    await app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = app.server.address() as { port: number }
    const url = `http://127.0.0.1:${port}/lang`
    const twoLines = { 'accept-language': ['fr', 'de'] } as unknown as Record<string, string>
    expect((await get(url, twoLines)).body).toBe('fr, de #1')
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect((await get(url, twoLines)).body).toBe('fr, de #1') // stale, refreshed in the background
    const deadline = Date.now() + 3000
    while (runs < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    await new Promise((resolve) => setTimeout(resolve, 50))
    const after = await get(url, twoLines)
    expect(after.body).toBe('fr, de #2')
    expect(after.cacheStatus).toMatch(/hit/)
  })
})

describe('an auth hook that empties or deletes request.raw.rawHeaders', () => {
  it.each([
    ['empties', (request: WithUser) => (request.raw.rawHeaders = [])],
    ['deletes', (request: WithUser) => delete (request.raw as { rawHeaders?: string[] }).rawHeaders],
  ] as const)('%s it: a stale entry of Alice is never refreshed with the guest page', async (_how, clear) => {
    let now = 1_000_000
    const clock = () => now
    const app = Fastify()
    apps.push(app)
    await app.register(cachePlugin, { backend: memoryBackend({ now: clock }), now: clock })
    app.decorateRequest('user', null)
    app.addHook('onRequest', async (request) => {
      const auth = request.headers.authorization
      if (auth === undefined) return
      ;(request as WithUser).user = auth.slice(7)
      delete request.headers.authorization
      clear(request as WithUser)
    })
    let runs = 0
    const cache = { ttl: 60, staleWhileRevalidate: 600, allowAuthorized: true, vary: ['authorization'] }
    app.get(
      '/me',
      { config: { cache } },
      async (request) => `hello ${(request as WithUser).user ?? 'guest'} #${++runs}`,
    )
    await app.listen({ port: 0, host: '127.0.0.1' })
    const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
    const alice = { authorization: 'Bearer alice' }
    expect((await get(`${url}/me`, alice)).body).toBe('hello alice #1')
    now += 61_000
    expect((await get(`${url}/me`, alice)).body).toBe('hello alice #1')
    const routeCache = [...app.cache.routes.values()][0]!
    for (let i = 0; i < 300 && routeCache.stats.sets + routeCache.stats.errors < 2; i++)
      await new Promise((r) => setTimeout(r, 10))
    // Before: "hello guest #2", a hit under Alice's key. Refreshed with her token, or (a copy
    // whose key the hook changed) not stored: the stale entry is hers until it expires.
    expect((await get(`${url}/me`, alice)).body).toMatch(/^hello alice #[12]$/)
  })
})

describe('under app.inject(), which no server emits', () => {
  /** The `/me` app of {@link serve}, not listening: driven by `inject()` alone. */
  async function injected(cache: RouteCacheOptions, consume: (request: WithUser) => void) {
    const app = Fastify()
    apps.push(app)
    await app.register(cachePlugin, { backend: memoryBackend() })
    app.decorateRequest('user', null)
    app.addHook('onRequest', async (request) => consume(request as WithUser))
    app.get(
      '/me',
      { config: { cache } },
      async (request) => `page of ${(request as WithUser).user ?? 'anonymous'}`,
    )
    return app
  }

  it.each([
    ['authorization', { authorization: 'Bearer alice' }],
    ['cookie', { cookie: 'sid=alice' }],
  ] as const)(
    'a %s a hook deleted from headers and rawHeaders bypasses: a guest inject() never gets the user’s page',
    async (name, alice) => {
      const app = await injected({ ttl: 60 }, moveInto(name, 'lines'))
      const first = await app.inject({ url: '/me', headers: alice })
      expect(first.body).toBe('page of alice')
      expect(first.headers['cache-status']).toBe(`@cache; fwd=request; detail=${name}`)
      // Before: Alice's page, a hit.
      const guest = await app.inject({ url: '/me' })
      expect(guest.body).toBe('page of anonymous')
    },
  )

  it('allowAuthorized with vary: authorization keys on the Authorization sent: Bob never gets Alice’s page', async () => {
    const app = await injected(
      { ttl: 60, allowAuthorized: true, vary: ['authorization'] },
      moveInto('authorization', 'lines'),
    )
    expect((await app.inject({ url: '/me', headers: { authorization: 'Bearer alice' } })).body).toBe(
      'page of alice',
    )
    expect((await app.inject({ url: '/me', headers: { authorization: 'Bearer bob' } })).body).toBe(
      'page of bob',
    )
    expect((await app.inject({ url: '/me' })).body).toBe('page of anonymous')
    const hit = await app.inject({ url: '/me', headers: { authorization: 'Bearer alice' } })
    expect(hit.body).toBe('page of alice')
    expect(hit.headers['cache-status']).toMatch(/hit/)
  })

  it('a GET whose body a hook took off (content-length line deleted) bypasses: the page made from it is never replayed', async () => {
    const app = await injected({ ttl: 60 }, (request) => {
      const length = request.headers['content-length']
      if (length === undefined) return
      request.user = 'body'
      delete request.headers['content-length']
      const lines = request.raw.rawHeaders
      for (let i = lines.length - 2; i >= 0; i -= 2)
        if (lines[i]!.toLowerCase() === 'content-length') lines.splice(i, 2)
    })
    app.addContentTypeParser('text/plain', { parseAs: 'string' }, (_request, body, done) => done(null, body))
    const first = await app.inject({ url: '/me', payload: 'x', headers: { 'content-type': 'text/plain' } })
    expect(first.body).toBe('page of body')
    expect((await app.inject({ url: '/me' })).body).toBe('page of anonymous')
  })
})
