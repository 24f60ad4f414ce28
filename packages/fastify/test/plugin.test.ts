import { CacheConfigError } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { cachePlugin } from '../src/index.js'

const apps: FastifyInstance[] = []
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()))
})

async function build(): Promise<FastifyInstance> {
  const app = Fastify()
  apps.push(app)
  await app.register(cachePlugin, { backend: memoryBackend() })
  return app
}

const requireKey = async (request: FastifyRequest, reply: FastifyReply) => {
  if (request.headers['x-api-key'] !== 'admin-key') return reply.code(403).send('forbidden')
}

describe('guards', () => {
  it.each([
    [
      'a route preHandler',
      (app: FastifyInstance) =>
        app.get('/payroll', { preHandler: requireKey, config: { cache: 60 } }, async () => 'SECRET payroll'),
    ],
    [
      'a route preValidation',
      (app: FastifyInstance) =>
        app.get(
          '/payroll',
          { preValidation: requireKey, config: { cache: 60 } },
          async () => 'SECRET payroll',
        ),
    ],
    [
      'an onRequest hook of an encapsulated plugin',
      (app: FastifyInstance) =>
        app.register(async (admin) => {
          admin.addHook('onRequest', requireKey)
          admin.get('/payroll', { config: { cache: 60 } }, async () => 'SECRET payroll')
        }),
    ],
    [
      'a preHandler hook of an encapsulated plugin, added after the route',
      (app: FastifyInstance) =>
        app.register(async (admin) => {
          admin.get('/payroll', { config: { cache: 60 } }, async () => 'SECRET payroll')
          admin.addHook('preHandler', requireKey)
        }),
    ],
  ])('a hit never skips %s: an admin fills the cache, an anonymous client gets 403', async (_, mount) => {
    const app = await build()
    await mount(app)
    const admin = { 'x-api-key': 'admin-key' }
    expect((await app.inject({ url: '/payroll', headers: admin })).body).toBe('SECRET payroll')
    const hit = await app.inject({ url: '/payroll', headers: admin })
    expect(hit.headers['cache-status']).toMatch(/hit/)
    const anonymous = await app.inject({ url: '/payroll' })
    expect(anonymous.statusCode).toBe(403)
    expect(anonymous.body).not.toContain('SECRET')
  })
})

describe('config.cache', () => {
  it('caches under fastify.inject, as the application tests of a Fastify app run it', async () => {
    const app = await build()
    let runs = 0
    app.get('/count', { config: { cache: 60 } }, async () => `run ${++runs}`)
    expect((await app.inject({ url: '/count' })).body).toBe('run 1')
    const second = await app.inject({ url: '/count' })
    expect(second.body).toBe('run 1')
    expect(second.headers['cache-status']).toMatch(/hit/)
  })

  it.each([
    ['true', true],
    ['a TTL', 60],
    ['a duration string', '1m'],
    ['options', { ttl: 60, tags: ['t'] }],
  ])('accepts %s', async (_, cache) => {
    const app = await build()
    let runs = 0
    app.get('/c', { config: { cache } }, async () => `run ${++runs}`)
    await app.inject({ url: '/c' })
    expect((await app.inject({ url: '/c' })).body).toBe('run 1')
  })

  it('leaves routes without config.cache, and with cache: false, alone', async () => {
    const app = await build()
    let runs = 0
    app.get('/plain', async () => `run ${++runs}`)
    app.get('/off', { config: { cache: false } }, async () => `run ${++runs}`)
    for (const url of ['/plain', '/plain', '/off', '/off']) await app.inject({ url })
    expect(runs).toBe(4)
    expect((await app.inject({ url: '/plain' })).headers['cache-status']).toBeUndefined()
  })

  it.each([
    ['a malformed ttl', { ttl: 'abc' }, /ttl/],
    ['a ttl of 0', { ttl: 0 }, /ttl/],
    ['a status that is never stored', { statuses: [500] }, /statuses/],
    ['a number that is not a TTL', -1, /ttl/],
    ['null', null, /config\.cache/],
  ])('refuses %s with a CacheConfigError naming the option', async (_, cache, message) => {
    const app = await build()
    const declare = () => app.get('/bad', { config: { cache: cache as never } }, async () => 'x')
    expect(declare).toThrow(CacheConfigError)
    expect(declare).toThrow(message)
  })

  it('refuses bad plugin options when the plugin registers', async () => {
    const app = Fastify()
    apps.push(app)
    await expect(app.register(cachePlugin, { keyPrefix: '' })).rejects.toThrow(CacheConfigError)
  })
})

describe('fastify.cache', () => {
  it("refuses to register over another plugin's cache decorator (@fastify/caching), and takes decorateAs", async () => {
    const { default: caching } = await import('@fastify/caching')
    const app = Fastify()
    apps.push(app)
    await app.register(caching, { privacy: 'public', expiresIn: 60 })
    await expect(app.register(cachePlugin, { backend: memoryBackend() })).rejects.toThrow(/decorateAs/)
    const other = Fastify()
    apps.push(other)
    await other.register(caching, { privacy: 'public', expiresIn: 60 })
    await other.register(cachePlugin, { backend: memoryBackend(), decorateAs: 'responses' })
    let runs = 0
    other.get('/r', { config: { cache: 60 } }, async () => `run ${++runs}`)
    await other.inject({ url: '/r', headers: { host: 'shop.test' } })
    await (other as unknown as { responses: typeof other.cache }).responses.invalidate('/r', {
      host: 'shop.test',
    })
    expect((await other.inject({ url: '/r', headers: { host: 'shop.test' } })).body).toBe('run 2')
  })

  it('runs onResponse hooks and the request log for hits', async () => {
    const app = await build()
    const seen: number[] = []
    app.addHook('onResponse', async (_request, reply) => {
      seen.push(reply.statusCode)
    })
    app.get('/t', { config: { cache: 60 } }, async () => 'x')
    await app.inject({ url: '/t' })
    expect((await app.inject({ url: '/t' })).headers['cache-status']).toMatch(/hit/)
    expect(seen).toEqual([200, 200])
  })

  it('invalidates a URL under every keyPrefix of the app, by prefix and by tag', async () => {
    const app = await build()
    let version = 1
    app.get(
      '/a',
      { config: { cache: { keyPrefix: 'shop:a', tags: ['prices'] } } },
      async () => `a v${version}`,
    )
    app.get('/b', { config: { cache: { keyPrefix: 'shop:b' } } }, async () => `b v${version}`)
    const body = async (url: string) => (await app.inject({ url, headers: { host: 'shop.test' } })).body
    expect([await body('/a'), await body('/b')]).toEqual(['a v1', 'b v1'])
    version = 2
    await app.cache.invalidate('/b', { host: 'shop.test' })
    expect([await body('/a'), await body('/b')]).toEqual(['a v1', 'b v2'])
    version = 3
    await app.cache.invalidateTags(['prices'])
    expect([await body('/a'), await body('/b')]).toEqual(['a v3', 'b v2'])
    version = 4
    await app.cache.invalidatePrefix('shop')
    expect([await body('/a'), await body('/b')]).toEqual(['a v4', 'b v4'])
  })
})

describe('over HTTP/2 (Fastify({ http2: true }))', () => {
  it('bypasses, and says so: nothing is claimed stored, no shared Cache-Control is added', async () => {
    const http2 = await import('node:http2')
    const app = Fastify({ http2: true })
    await app.register(cachePlugin, { backend: memoryBackend(), cacheControl: true })
    let runs = 0
    app.get('/products', { config: { cache: 60 } }, async () => `products (run ${++runs})`)
    await app.listen({ port: 0, host: '127.0.0.1' })
    const address = app.server.address() as { port: number }
    const client = http2.connect(`http://127.0.0.1:${address.port}`)
    const get = () =>
      new Promise<{ body: string; status: string; cc: unknown }>((resolve, reject) => {
        const request = client.request({ ':path': '/products' })
        let body = ''
        let headers: Record<string, unknown> = {}
        request.on('response', (h) => {
          headers = h
        })
        request.setEncoding('utf8')
        request.on('data', (chunk) => {
          body += chunk
        })
        request.on('error', reject)
        request.on('end', () =>
          resolve({ body, status: String(headers['cache-status']), cc: headers['cache-control'] }),
        )
        request.end()
      })
    try {
      const first = await get()
      const second = await get()
      expect([first.body, second.body]).toEqual(['products (run 1)', 'products (run 2)'])
      for (const reply of [first, second]) {
        expect(reply.status).toMatch(/fwd=request; detail=http2/)
        expect(reply.cc).toBeUndefined()
      }
    } finally {
      client.close()
      await app.close()
    }
  })
})
