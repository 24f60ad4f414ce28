import { memoryBackend } from '@cache/memory'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { cachePlugin } from '../src/index.js'

const apps: FastifyInstance[] = []
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()))
})

describe('storability is decided on the response as the client receives it', () => {
  it.each([
    ['Set-Cookie', 'set-cookie', 'session=visitor'],
    ['Cache-Control: private', 'cache-control', 'private'],
    ['Cache-Control: no-store', 'cache-control', 'no-store'],
  ])('an onSend hook registered after the plugin that sets %s: never stored', async (_, name, value) => {
    const app = Fastify()
    apps.push(app)
    await app.register(cachePlugin, { backend: memoryBackend() })
    app.addHook('onSend', async (_request, reply, payload) => {
      reply.header(name, value)
      return payload
    })
    let runs = 0
    app.get('/page', { config: { cache: 60 } }, async () => `page ${++runs}`)
    expect((await app.inject({ url: '/page' })).body).toBe('page 1')
    expect((await app.inject({ url: '/page' })).body).toBe('page 2')
  })

  it('an onSend hook that rewrites the payload: the rewritten bytes are stored and replayed', async () => {
    const app = Fastify()
    apps.push(app)
    await app.register(cachePlugin, { backend: memoryBackend() })
    app.addHook('onSend', async (_request, _reply, payload) => `<wrapped>${payload}</wrapped>`)
    let runs = 0
    app.get('/page', { config: { cache: 60 } }, async () => `page ${++runs}`)
    expect((await app.inject({ url: '/page' })).body).toBe('<wrapped>page 1</wrapped>')
    const hit = await app.inject({ url: '/page' })
    expect(hit.body).toBe('<wrapped>page 1</wrapped>')
    expect(hit.headers['cache-status']).toMatch(/hit/)
  })
})

describe('hosts and protocols as Fastify resolves them', () => {
  async function linkApp(trustProxy: boolean) {
    const app = Fastify({ trustProxy })
    apps.push(app)
    await app.register(cachePlugin, { backend: memoryBackend() })
    app.get(
      '/link',
      { config: { cache: 60 } },
      async (request) => `${request.protocol}://${request.host}/next`,
    )
    return app
  }

  it('X-Forwarded-Host is ignored without trustProxy, and never plants its links for the real host', async () => {
    const app = await linkApp(false)
    const attack = await app.inject({
      url: '/link',
      headers: { host: 'shop.test', 'x-forwarded-host': 'evil.test' },
    })
    expect(attack.body).toBe('http://shop.test/next')
    expect((await app.inject({ url: '/link', headers: { host: 'shop.test' } })).body).toBe(
      'http://shop.test/next',
    )
  })

  it('under trustProxy, a forwarded host and protocol are keyed as the host and protocol they name', async () => {
    const app = await linkApp(true)
    const forwarded = { host: 'lb.internal', 'x-forwarded-host': 'evil.test', 'x-forwarded-proto': 'https' }
    expect((await app.inject({ url: '/link', headers: forwarded })).body).toBe('https://evil.test/next')
    expect((await app.inject({ url: '/link', headers: { host: 'shop.test' } })).body).toBe(
      'http://shop.test/next',
    )
    expect(
      (await app.inject({ url: '/link', headers: { host: 'lb.internal', 'x-forwarded-host': 'evil.test' } }))
        .body,
    ).toBe('http://evil.test/next')
  })
})
