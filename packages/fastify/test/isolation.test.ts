import { gunzipSync } from 'node:zlib'
import { memoryBackend } from '@cache/memory'
import compress from '@fastify/compress'
import type { FastifyInstance } from 'fastify'
import { describe, expect, it } from 'vitest'
import { cachePlugin } from '../src/index.js'
import { get } from './http-get.js'
import { app } from './apps.js'

async function listen(made: FastifyInstance): Promise<string> {
  return made.listen({ port: 0, host: '127.0.0.1' })
}

describe('two apps in one process', () => {
  // A public app and an admin app behind an SSO hook, both reached with the public Host (a proxy
  // routing by path), sharing one backend: neither may replay the other's responses.
  async function pair() {
    const backend = memoryBackend()
    const pub = app()
    await pub.register(cachePlugin, { backend })
    pub.get('/stats', { config: { cache: 60 } }, async () => ({ visitors: 10 }))
    const admin = app()
    admin.addHook('onRequest', async (request, reply) => {
      if (request.headers['x-sso-user'] !== 'alice') return reply.code(403).send({ error: 'forbidden' })
    })
    await admin.register(cachePlugin, { backend })
    admin.get('/stats', { config: { cache: 60 } }, async () => ({ visitors: 10, revenue: 'SECRET' }))
    return { pub, admin }
  }

  it('keeps the entries of two servers apart, whatever Host the clients send', async () => {
    const { pub, admin } = await pair()
    const adminUrl = await listen(admin)
    const pubUrl = await listen(pub)
    const first = await get(`${adminUrl}/stats`, { host: 'shop.example', 'x-sso-user': 'alice' })
    expect(first.body).toContain('SECRET')
    const visitor = await get(`${pubUrl}/stats`, { host: 'shop.example' })
    expect(visitor.body).toBe('{"visitors":10}')
    expect(visitor.cacheStatus).not.toMatch(/hit/)
    // Each app still caches its own responses.
    expect((await get(`${pubUrl}/stats`, { host: 'shop.example' })).cacheStatus).toMatch(/hit/)
    expect(
      (await get(`${adminUrl}/stats`, { host: 'shop.example', 'x-sso-user': 'alice' })).cacheStatus,
    ).toMatch(/hit/)
  })

  it('keeps the entries of two apps apart under inject()', async () => {
    const { pub, admin } = await pair()
    const first = await admin.inject({ url: '/stats', headers: { 'x-sso-user': 'alice' } })
    expect(first.body).toContain('SECRET')
    const visitor = await pub.inject({ url: '/stats' })
    expect(visitor.body).toBe('{"visitors":10}')
    expect((await pub.inject({ url: '/stats' })).headers['cache-status']).toMatch(/hit/)
  })
})

describe('@fastify/compress', () => {
  it.each(['before', 'after'] as const)(
    'invalidating a URL reaches every Accept-Encoding variant (compress registered %s)',
    async (order) => {
      let version = 'v1'
      const made = app()
      if (order === 'before') await made.register(compress, { threshold: 0 })
      await made.register(cachePlugin, { backend: memoryBackend() })
      if (order === 'after') await made.register(compress, { threshold: 0 })
      made.get('/api/products', { config: { cache: 60 } }, async () => ({ version, pad: 'x'.repeat(2000) }))
      const address = await listen(made)
      const host = new URL(address).host
      // fetch asks for gzip, deflate (and decodes); the second client asks for nothing.
      const gzip = async () => {
        const response = await fetch(`${address}/api/products`)
        return `${((await response.json()) as { version: string }).version} ${response.headers.get('cache-status')}`
      }
      const plain = async () => {
        const response = await fetch(`${address}/api/products`, {
          headers: { 'accept-encoding': 'identity' },
        })
        return ((await response.json()) as { version: string }).version
      }
      expect(await gzip()).toMatch(/^v1 .*miss/)
      expect(await gzip()).toMatch(/^v1 .*hit/)
      expect(await plain()).toBe('v1')
      version = 'v2'
      expect(await made.cache.invalidate('/api/products', { host })).toBe(true)
      expect(await gzip()).toMatch(/^v2 /)
      expect(await plain()).toBe('v2')
      // A gzip client is still answered in gzip (as stored), with Vary.
      const raw = await made.inject({ url: '/api/products', headers: { 'accept-encoding': 'gzip' } })
      expect(raw.headers['content-encoding']).toBe('gzip')
      expect(String(raw.headers.vary)).toMatch(/accept-encoding/i)
      expect(JSON.parse(gunzipSync(raw.rawPayload).toString()).version).toBe('v2')
    },
  )
})

describe('headers hooks set on the reply', () => {
  it("sends each request's own hook headers on hits, not the first request's", async () => {
    let n = 0
    const made = app({ genReqId: () => `req-${++n}` })
    let remaining = 100
    made.addHook('onRequest', async (request, reply) => {
      reply.header('x-request-id', request.id)
      reply.header('x-ratelimit-remaining', String(--remaining))
    })
    await made.register(cachePlugin, { backend: memoryBackend() })
    made.get('/api/products', { config: { cache: 60 } }, async () => ({ products: ['lamp'] }))
    const address = await listen(made)
    const seen: string[] = []
    for (let i = 1; i <= 3; i++) {
      const response = await fetch(`${address}/api/products`)
      expect(await response.json()).toEqual({ products: ['lamp'] })
      seen.push(
        `${response.headers.get('x-request-id')} ${response.headers.get('x-ratelimit-remaining')} ${/hit/.test(response.headers.get('cache-status') ?? '') ? 'hit' : 'miss'}`,
      )
    }
    expect(seen).toEqual(['req-1 99 miss', 'req-2 98 hit', 'req-3 97 hit'])
  })

  it('stores a header the handler changed after a hook set it', async () => {
    const made = app()
    made.addHook('onRequest', async (_request, reply) => {
      reply.header('x-source', 'hook')
    })
    await made.register(cachePlugin, { backend: memoryBackend() })
    made.get('/p', { config: { cache: 60 } }, async (_request, reply) => {
      reply.header('x-source', 'handler')
      return 'p'
    })
    const address = await listen(made)
    expect((await fetch(`${address}/p`)).headers.get('x-source')).toBe('handler')
    const hit = await fetch(`${address}/p`)
    expect(hit.headers.get('cache-status')).toMatch(/hit/)
    expect(hit.headers.get('x-source')).toBe('handler')
  })
})
