import { createServer } from 'node:http'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CacheEvent } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { selfSignedCertificate } from '@cache/test-servers'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { cachePlugin } from '../src/index.js'
import { get as httpGet } from './http-get.js'

const apps: FastifyInstance[] = []
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()))
})

const PROXY = '127.0.0.2'

/** `options.headers` sent as given; `from` and `ca` as the shared helper takes them. */
const get = (url: string, options: { from?: string; headers?: Record<string, string>; ca?: string } = {}) =>
  httpGet(url, options.headers, options)

/** A route whose price changes, cached 60 s with 600 s of stale-while-revalidate on a settable clock. */
async function shop(made: FastifyInstance) {
  let now = 1_000_000
  const clock = () => now
  const errors: CacheEvent[] = []
  await made.register(cachePlugin, {
    backend: memoryBackend({ now: clock }),
    now: clock,
    ttl: 60,
    staleWhileRevalidate: 600,
  })
  const state = { price: 10, runs: 0 }
  made.get('/price', { config: { cache: true } }, async (request) => {
    state.runs++
    return `${request.protocol}://${request.host} price ${state.price}`
  })
  await made.ready()
  const cache = [...made.cache.routes.values()][0]!
  cache.on('error', (event) => errors.push(event))
  return {
    state,
    cache,
    errors,
    later: (ms: number) => {
      now += ms
    },
  }
}

async function settled(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 3000
  while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
  await new Promise((resolve) => setTimeout(resolve, 50))
}

describe('a stale-while-revalidate refresh is the request it refreshes', () => {
  it('behind a proxy trusted by address, with a hook admitting only the proxy: refreshed under the same key', async () => {
    const made = Fastify({ trustProxy: PROXY })
    apps.push(made)
    made.addHook('onRequest', async (request, reply) => {
      if (request.raw.socket.remoteAddress !== PROXY) return reply.code(403).send('proxy only')
    })
    const { state, cache, errors, later } = await shop(made)
    const base = await made.listen({ port: 0, host: '127.0.0.1' })
    const viaProxy = {
      from: PROXY,
      headers: { 'x-forwarded-host': 'shop.example', 'x-forwarded-proto': 'https' },
    }
    expect((await get(`${base}/price`, viaProxy)).body).toBe('https://shop.example price 10')
    state.price = 12
    later(61_000)
    expect((await get(`${base}/price`, viaProxy)).body).toBe('https://shop.example price 10')
    await settled(() => cache.stats.sets >= 2 || errors.length > 0)
    expect(errors).toEqual([])
    const after = await get(`${base}/price`, viaProxy)
    expect(after.body).toBe('https://shop.example price 12')
    expect(after.cacheStatus).toContain('hit')
    expect(state.runs).toBe(2)
  })

  it('on HTTPS: the copy is https too, and refreshes the entry clients read', async () => {
    const tls = selfSignedCertificate(mkdtempSync(join(tmpdir(), 'cache-fastify-tls-')))
    const made = Fastify({ https: { key: tls.key, cert: tls.cert } })
    apps.push(made)
    const { state, cache, errors, later } = await shop(made)
    await made.listen({ port: 0, host: '127.0.0.1' })
    const { port } = made.server.address() as { port: number }
    const url = `https://127.0.0.1:${port}/price`
    expect((await get(url, { ca: tls.ca })).body).toBe(`https://127.0.0.1:${port} price 10`)
    state.price = 12
    later(61_000)
    await get(url, { ca: tls.ca })
    await settled(() => cache.stats.sets >= 2 || errors.length > 0)
    expect(errors).toEqual([])
    const after = await get(url, { ca: tls.ca })
    expect(after.body).toBe(`https://127.0.0.1:${port} price 12`)
    expect(after.cacheStatus).toContain('hit')
  })

  it('a copy the app cannot resolve as the request (a guard on the connection, a host it resolves otherwise) is counted and emitted', async () => {
    const made = Fastify()
    apps.push(made)
    // Admits connections the server marked (as a client-certificate check would): the copy has none.
    made.addHook('onRequest', async (request, reply) => {
      if ((request.raw.socket as { admitted?: boolean }).admitted !== true) return reply.code(403).send('no')
    })
    const { state, cache, errors, later } = await shop(made)
    made.server.on('connection', (socket) => {
      ;(socket as { admitted?: boolean }).admitted = true
    })
    const base = await made.listen({ port: 0, host: '127.0.0.1' })
    await get(`${base}/price`)
    state.price = 12
    later(61_000)
    expect((await get(`${base}/price`)).body).toContain('price 10')
    await settled(() => errors.length > 0)
    expect(errors.map((event) => event.operation)).toEqual(['revalidate'])
    expect(cache.stats.errors).toBe(1)
    expect(cache.stats.sets).toBe(1)
  })
})

describe('a refresh never skips what the server does before Fastify', () => {
  type Marked = { publicView?: boolean }
  const setups: [string, () => FastifyInstance][] = [
    [
      'a serverFactory listener marking the request',
      () =>
        Fastify({
          serverFactory: (handler) =>
            createServer((req, res) => {
              ;(req as Marked).publicView = true
              handler(req, res)
            }),
        }),
    ],
    [
      "a 'request' listener prepended on app.server",
      () => {
        const made = Fastify()
        made.server.prependListener('request', (req) => {
          ;(req as Marked).publicView = true
        })
        return made
      },
    ],
  ]

  it.each(setups)('%s: the refresh is not run, the marked view stays', async (_how, make) => {
    const made = make()
    apps.push(made)
    let now = 1_000_000
    const clock = () => now
    await made.register(cachePlugin, {
      backend: memoryBackend({ now: clock }),
      now: clock,
      ttl: 60,
      staleWhileRevalidate: 600,
    })
    let runs = 0
    made.get('/report', { config: { cache: true } }, async (request) => {
      runs++
      return (request.raw as Marked).publicView ? `public summary ${runs}` : 'INTERNAL FULL REPORT'
    })
    await made.ready()
    const cache = [...made.cache.routes.values()][0]!
    const errors: CacheEvent[] = []
    cache.on('error', (event) => errors.push(event))
    const base = await made.listen({ port: 0, host: '127.0.0.1' })
    expect((await get(`${base}/report`)).body).toBe('public summary 1')
    now += 61_000
    expect((await get(`${base}/report`)).body).toBe('public summary 1')
    await settled(() => errors.length > 0 || cache.stats.sets > 1)
    for (let i = 0; i < 2; i++) expect((await get(`${base}/report`)).body).not.toContain('INTERNAL')
    expect(cache.stats.sets).toBe(1)
    expect(errors.map((event) => event.operation)).toContain('revalidate')
    now += 600_000
    expect((await get(`${base}/report`)).body).toMatch(/^public summary/)
  })
})
