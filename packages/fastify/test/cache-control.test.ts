import { memoryBackend } from '@cache/memory'
import Fastify, { type FastifyRequest } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { cachePlugin } from '../src/index.js'
import { headerStrategy, tenantStrategy } from './apps.js'

const apps: ReturnType<typeof Fastify>[] = []
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()))
})

describe('cacheControl on a relayed response that came with an Age', () => {
  it('max-age − Age is the freshness this cache has left, on the miss and on a hit 20 s later', async () => {
    let now = 1_000_000_000_000
    const app = Fastify()
    apps.push(app)
    await app.register(cachePlugin, { backend: memoryBackend(), now: () => now })
    app.get('/relay', { config: { cache: { ttl: 60, cacheControl: true } } }, async (_request, reply) =>
      reply.header('age', '50').send('relayed from upstream'),
    )
    const base = await app.listen({ port: 0, host: '127.0.0.1' })
    const downstream = (response: Response) =>
      Number(/max-age=(\d+)/.exec(response.headers.get('cache-control') ?? '')?.[1]) -
      Number(response.headers.get('age'))
    const miss = await fetch(`${base}/relay`)
    await miss.arrayBuffer()
    expect(downstream(miss)).toBe(60)
    now += 20_000
    const hit = await fetch(`${base}/relay`)
    await hit.arrayBuffer()
    expect(hit.headers.get('age')).toBe('70')
    expect(hit.headers.get('cache-status')).toBe('@cache; hit; ttl=40')
    expect(downstream(hit)).toBe(40)
  })
})

/** A custom constraint strategy: the tenant named by `X-Tenant`, a header no CDN keys on. */
const tenant = tenantStrategy(true)

describe('cacheControl on routes Fastify chooses by a request header (constraints)', () => {
  async function served(routes: (fastify: ReturnType<typeof Fastify>) => void) {
    const app = Fastify({ routerOptions: { constraints: { tenant } } } as never)
    apps.push(app)
    await app.register(cachePlugin, { backend: memoryBackend(), cacheControl: true })
    routes(app)
    const base = await app.listen({ port: 0, host: '127.0.0.1' })
    return async (path: string, headers: Record<string, string>) => {
      const response = await fetch(`${base}${path}`, { headers })
      return { body: await response.text(), cacheControl: response.headers.get('cache-control') }
    }
  }

  it('sends a route chosen by a custom tenant strategy as private: no CDN gives acme the page of globex', async () => {
    const fetchPage = await served((app) => {
      for (const tenant of ['acme', 'globex'])
        app.get(
          '/home',
          { constraints: { tenant }, config: { cache: { ttl: 60 } } },
          async () => `home of ${tenant}`,
        )
    })
    for (const tenant of ['acme', 'globex', 'acme']) {
      const page = await fetchPage('/home', { 'x-tenant': tenant })
      expect(page.body).toBe(`home of ${tenant}`)
      // Before: public, max-age=60, with no Vary: X-Tenant.
      expect(page.cacheControl).toBe('private, max-age=60')
    }
  })

  it('sends private on the unconstrained route of a path whose constrained route names its parameter otherwise', async () => {
    const fetchPage = await served((app) => {
      app.get(
        '/users/:id',
        { config: { cache: true } },
        async (request: FastifyRequest) => `v1 ${(request.params as { id: string }).id}`,
      )
      app.get(
        '/users/:userId',
        { constraints: { version: '2.0.0' }, config: { cache: true } },
        async (request: FastifyRequest) => `v2 ${(request.params as { userId: string }).userId}`,
      )
      app.get('/n/:id(^\\d+$)', { config: { cache: true } }, async () => 'n v1')
      app.get(
        '/n/:num(^\\d+$)',
        { constraints: { version: '2.0.0' }, config: { cache: true } },
        async () => 'n v2',
      )
    })
    for (const [path, v1, v2] of [
      ['/users/7', 'v1 7', 'v2 7'],
      ['/n/7', 'n v1', 'n v2'],
    ] as const) {
      const first = await fetchPage(path, {})
      const second = await fetchPage(path, { 'accept-version': '2.0.0' })
      expect([first.body, second.body]).toEqual([v1, v2])
      // Before: public, max-age=60 on the v1 page, which a CDN keyed on the URL gives v2 clients.
      expect({ path, cacheControl: first.cacheControl }).toEqual({
        path,
        cacheControl: 'private, max-age=60',
      })
      expect({ path, cacheControl: second.cacheControl }).toEqual({
        path,
        cacheControl: 'private, max-age=60',
      })
    }
  })

  it('sends a route chosen by Accept-Version (version constraint) as private, on the miss and on the hit', async () => {
    const fetchPage = await served((app) => {
      for (const version of ['1.0.0', '2.0.0'])
        app.get(
          '/api',
          { constraints: { version }, config: { cache: { ttl: 60 } } },
          async () => `api v${version}`,
        )
    })
    for (const version of ['1.0.0', '2.0.0', '1.0.0', '2.0.0']) {
      const page = await fetchPage('/api', { 'accept-version': version })
      expect(page.body).toBe(`api v${version}`)
      expect(page.cacheControl).toBe('private, max-age=60')
    }
  })

  it('keeps a route constrained by host public: the host is part of what a CDN keys on', async () => {
    const fetchPage = await served((app) => {
      app.get(
        '/home',
        { constraints: { host: /^127\.0\.0\.1(:\d+)?$/ }, config: { cache: { ttl: 60 } } },
        async () => 'home',
      )
    })
    expect((await fetchPage('/home', {})).cacheControl).toBe('public, max-age=60')
  })

  it('marks only the stored page public on a route whose bypass reads a header, as @cache/express does: the draft gets none', async () => {
    const fetchPage = await served((app) => {
      app.get(
        '/post',
        {
          config: {
            cache: { ttl: 60, bypass: (request: FastifyRequest) => request.headers['x-preview'] === '1' },
          },
        },
        async (request: FastifyRequest) => (request.headers['x-preview'] === '1' ? 'DRAFT' : 'published'),
      )
    })
    expect(await fetchPage('/post', {})).toEqual({ body: 'published', cacheControl: 'public, max-age=60' })
    expect(await fetchPage('/post', { 'x-preview': '1' })).toEqual({ body: 'DRAFT', cacheControl: null })
  })
})

describe('cacheControl on routes constrained by a host strategy of the app’s own', () => {
  /** A `host` strategy behind a proxy: the tenant domain from X-Forwarded-Host, which a CDN does not key on. */
  const forwardedHost = () => headerStrategy('host', 'x-forwarded-host')

  for (const where of ['routerOptions.constraints', 'addConstraintStrategy'] as const)
    it(`sends them private when the strategy named host is the app's (${where}): no CDN gives the default page to acme`, async () => {
      const app = Fastify(
        where === 'routerOptions.constraints'
          ? ({ routerOptions: { constraints: { host: forwardedHost() } } } as never)
          : {},
      )
      apps.push(app)
      if (where === 'addConstraintStrategy') app.addConstraintStrategy(forwardedHost() as never)
      await app.register(cachePlugin, { backend: memoryBackend(), cacheControl: true })
      app.get('/home', { config: { cache: 60 } }, async () => 'default home')
      app.get(
        '/home',
        { config: { cache: 60 }, constraints: { host: 'acme.example' } },
        async () => 'acme home',
      )
      const base = await app.listen({ port: 0, host: '127.0.0.1' })
      for (const headers of [{}, { 'x-forwarded-host': 'acme.example' }, {}] as Record<string, string>[]) {
        const response = await fetch(`${base}/home`, { headers })
        const body = await response.text()
        expect(body).toBe('x-forwarded-host' in headers ? 'acme home' : 'default home')
        // Before: public, max-age=60 on both, though the URL and Host a CDN keys on are the same.
        expect(response.headers.get('cache-control')).toBe('private, max-age=60')
      }
    })
})
