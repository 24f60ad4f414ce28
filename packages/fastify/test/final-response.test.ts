import type { AddressInfo } from 'node:net'
import { connect } from 'node:net'
import { pipeline, Readable } from 'node:stream'
import { createGzip, type Gzip } from 'node:zlib'
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

describe('a malformed Vary', () => {
  it.each(['"X-User"', 'X-User;q=1'])(
    'Vary: %s matches no request header: never stored, each user gets their own page',
    async (vary) => {
      const app = Fastify()
      apps.push(app)
      await app.register(cachePlugin, { backend: memoryBackend() })
      app.get('/me', { config: { cache: 60 } }, async (request, reply) => {
        reply.header('vary', vary)
        return `account of ${request.headers['x-user']}`
      })
      const alice = await app.inject({ url: '/me', headers: { 'x-user': 'alice' } })
      expect(alice.body).toBe('account of alice')
      expect(alice.headers['cache-status']).toBe('@cache; fwd=uri-miss; detail=vary')
      expect((await app.inject({ url: '/me', headers: { 'x-user': 'bob' } })).body).toBe('account of bob')
    },
  )
})

describe('a source that fails half-way behind a transform', () => {
  /** Two rows, then the cursor fails (or, once `state.fail` is false, a third row and the end). */
  function rows(state: { fail: boolean }) {
    const chunks = ['row1\n', 'row2\n']
    return new Readable({
      read() {
        if (chunks.length > 0) return void this.push(chunks.shift())
        if (!state.fail) {
          this.push('row3\n')
          return void this.push(null)
        }
        setTimeout(() => this.destroy(new Error('cursor failed')), 5)
      },
    })
  }

  /** A GET on a socket of its own: the bytes, whatever state the response was left in. */
  function raw(port: number): Promise<{ head: string; body: Buffer }> {
    return new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1', () =>
        socket.write('GET /export HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n'),
      )
      const chunks: Buffer[] = []
      socket.on('data', (chunk: Buffer) => chunks.push(chunk))
      const done = () => {
        const data = Buffer.concat(chunks)
        const split = data.indexOf('\r\n\r\n')
        resolve({ head: data.subarray(0, split).toString('latin1'), body: data.subarray(split + 4) })
      }
      socket.on('close', done)
      socket.on('error', () => undefined)
    })
  }

  // What the response can see of the stream it is sent: whether it ended, failed or was destroyed.
  // Not the streams piped into it (a writable does not know its sources): a handler that ends the
  // transform itself after its source failed makes a cut body look whole (see the README).
  it.each([
    ['stream.pipeline(source, gzip)', (source: Readable, gz: Gzip) => pipeline(source, gz, () => {})],
    [
      'a gzip the handler destroys when its source fails',
      (source: Readable, gz: Gzip) => {
        source.on('error', () => gz.destroy())
        return source.pipe(gz)
      },
    ],
  ])('through %s: not stored', async (_how, wire) => {
    const app = Fastify()
    apps.push(app)
    await app.register(cachePlugin, { backend: memoryBackend() })
    const state = { fail: true }
    let runs = 0
    app.get('/export', { config: { cache: 60 } }, (_request, reply) => {
      runs++
      reply.header('content-encoding', 'gzip').send(wire(rows(state), createGzip()))
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const port = (app.server.address() as AddressInfo).port
    await raw(port)
    state.fail = false
    const whole = await raw(port)
    expect(whole.head).toMatch(/cache-status: @cache; fwd=uri-miss; stored/i)
    const hit = await raw(port)
    expect(hit.head).toMatch(/cache-status: @cache; hit/i)
    expect(runs).toBe(2)
  })
})

describe('a header an onRequest hook set and the handler removed', () => {
  it('does not come back on hits (X-Robots-Tag: noindex, Cache-Control: no-store)', async () => {
    const app = Fastify()
    apps.push(app)
    await app.register(cachePlugin, { backend: memoryBackend() })
    app.addHook('onRequest', async (_request, reply) => {
      reply.header('x-robots-tag', 'noindex')
      reply.header('cache-control', 'no-store')
    })
    let runs = 0
    const handler = async (_request: unknown, reply: { removeHeader(name: string): unknown }) => {
      reply.removeHeader('x-robots-tag')
      reply.removeHeader('cache-control')
      return `public page ${++runs}`
    }
    app.get('/plain', handler)
    app.get('/page', { config: { cache: 60 } }, handler)
    await app.listen({ port: 0, host: '127.0.0.1' })
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
    const plain = await fetch(`${base}/plain`)
    await plain.text()
    expect(plain.headers.get('x-robots-tag')).toBeNull()
    expect(plain.headers.get('cache-control')).toBeNull()
    await (await fetch(`${base}/page`)).text()
    const hit = await fetch(`${base}/page`)
    expect(await hit.text()).toBe('public page 2')
    expect(hit.headers.get('cache-status')).toMatch(/hit/)
    expect(hit.headers.get('x-robots-tag')).toBeNull()
    expect(hit.headers.get('cache-control')).toBeNull()
  })
})

describe('a header the handler sets is its own, whatever a hook before the cache set', () => {
  it('replays a Content-Language the handler set to the value an onRequest hook had set on the miss', async () => {
    const app = Fastify()
    apps.push(app)
    await app.register(cachePlugin, { backend: memoryBackend() })
    app.addHook('onRequest', async (request, reply) => {
      reply.header('content-language', String(request.headers['accept-language'] ?? 'en').slice(0, 2))
    })
    app.get('/fr-only', { config: { cache: 60 } }, async (_request, reply) => {
      reply.header('content-language', 'fr')
      return '<p>Bonjour</p>'
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
    const miss = await fetch(`${base}/fr-only`, { headers: { 'accept-language': 'fr' } })
    await miss.text()
    expect(miss.headers.get('content-language')).toBe('fr')
    const hit = await fetch(`${base}/fr-only`, { headers: { 'accept-language': 'en' } })
    await hit.text()
    expect(hit.headers.get('cache-status')).toMatch(/hit/)
    expect(hit.headers.get('content-language')).toBe('fr')
  })

  it('removes on hits a header the handler removed, even when it was absent on the miss', async () => {
    const app = Fastify()
    apps.push(app)
    await app.register(cachePlugin, { backend: memoryBackend() })
    app.addHook('onRequest', async (request, reply) => {
      if (request.headers['x-debug'] !== undefined) reply.header('x-debug-backend', 'node-7')
    })
    app.get('/page', { config: { cache: 60 } }, async (_request, reply) => {
      reply.removeHeader('x-debug-backend')
      return 'page'
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
    await (await fetch(`${base}/page`)).text()
    const hit = await fetch(`${base}/page`, { headers: { 'x-debug': '1' } })
    await hit.text()
    expect(hit.headers.get('cache-status')).toMatch(/hit/)
    expect(hit.headers.get('x-debug-backend')).toBeNull()
  })
})
