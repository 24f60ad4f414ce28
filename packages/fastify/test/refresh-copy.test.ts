import type { CacheEvent } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import Fastify, { type FastifyInstance } from 'fastify'
import { Readable } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { cachePlugin } from '../src/index.js'
import { get } from './http-get.js'

const apps: FastifyInstance[] = []
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()))
})

async function settled(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 3000
  while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
  await new Promise((resolve) => setTimeout(resolve, 50))
}

/** An app on a settable clock: 60 s fresh, 600 s stale-while-revalidate. */
async function app(options: { revalidateTimeout?: string } = {}) {
  const made = Fastify()
  apps.push(made)
  let now = 1_000_000
  const clock = () => now
  await made.register(cachePlugin, {
    backend: memoryBackend({ now: clock }),
    now: clock,
    ttl: 60,
    staleWhileRevalidate: 600,
    ...options,
  })
  return {
    made,
    later: (ms: number) => {
      now += ms
    },
  }
}

describe("a refresh's inject() copy", () => {
  it('abandoned after revalidateTimeout, closes its response: a gauge of requests in flight before the cache comes back to 0', async () => {
    const { made, later } = await app({ revalidateTimeout: '200ms' })
    let inflight = 0
    let reading = 0
    made.addHook('onRequest', async (request, reply) => {
      inflight++
      reading++
      reply.raw.once('close', () => inflight--)
      request.raw.once('close', () => reading--)
    })
    let runs = 0
    made.get('/p', { config: { cache: true } }, async () => {
      // The refresh's handler never settles.
      if (++runs > 1) await new Promise(() => {})
      return 'v1'
    })
    await made.ready()
    const cache = [...made.cache.routes.values()][0]!
    const errors: CacheEvent[] = []
    cache.on('error', (event) => errors.push(event))
    const base = await made.listen({ port: 0, host: '127.0.0.1' })
    expect((await get(`${base}/p`)).body).toBe('v1')
    later(61_000)
    expect((await get(`${base}/p`)).body).toBe('v1')
    await settled(() => errors.length > 0)
    expect(errors.map((event) => String(event.error))).toEqual([expect.stringContaining('revalidateTimeout')])
    await settled(() => inflight === 0 && reading === 0)
    expect(runs).toBe(2)
    expect(inflight).toBe(0)
    expect(reading).toBe(0)
  })

  it('carries no User-Agent when the client sent none: the entry of a UA-less client is refreshed', async () => {
    const { made, later } = await app()
    const seen: (string | undefined)[] = []
    made.addHook('onRequest', async (request) => {
      const agent = request.headers['user-agent']
      request.headers['x-device'] = agent === undefined ? 'none' : /Mobile/.test(agent) ? 'mobile' : 'desktop'
    })
    let runs = 0
    made.get('/p', { config: { cache: { vary: ['x-device'] } } }, async (request) => {
      seen.push(request.headers['user-agent'])
      return `device ${request.headers['x-device']} #${++runs}`
    })
    await made.ready()
    const cache = [...made.cache.routes.values()][0]!
    const errors: CacheEvent[] = []
    cache.on('error', (event) => errors.push(event))
    const base = await made.listen({ port: 0, host: '127.0.0.1' })
    expect((await get(`${base}/p`)).body).toBe('device none #1')
    later(61_000)
    expect((await get(`${base}/p`)).body).toBe('device none #1')
    await settled(() => errors.length > 0 || cache.stats.sets > 1)
    expect(errors.map((event) => String(event.error))).toEqual([])
    expect(seen).toEqual([undefined, undefined])
    const after = await get(`${base}/p`)
    expect(after.body).toBe('device none #2')
    expect(after.cacheStatus).toContain('hit')
  })

  it('hands the handler and the hooks no internal x-cache-* header: an entry echoing rawHeaders stores none after a refresh', async () => {
    const { made, later } = await app()
    const hookSaw: string[] = []
    made.addHook('onRequest', async (request) => {
      hookSaw.push(...Object.keys(request.headers).filter((name) => name.startsWith('x-cache')))
    })
    let runs = 0
    made.get('/headers', { config: { cache: true } }, async (request) => {
      const names: string[] = []
      for (let i = 0; i < request.raw.rawHeaders.length; i += 2)
        names.push(request.raw.rawHeaders[i]!.toLowerCase())
      return { run: ++runs, names, headers: Object.keys(request.headers) }
    })
    await made.ready()
    const cache = [...made.cache.routes.values()][0]!
    const errors: CacheEvent[] = []
    cache.on('error', (event) => errors.push(event))
    const base = await made.listen({ port: 0, host: '127.0.0.1' })
    await get(`${base}/headers`)
    later(61_000)
    await get(`${base}/headers`)
    await settled(() => errors.length > 0 || cache.stats.sets > 1)
    expect(errors.map((event) => String(event.error))).toEqual([])
    const after = await get(`${base}/headers`)
    expect(JSON.parse(after.body).run).toBe(2)
    expect(after.body).not.toContain('x-cache-')
    expect(hookSaw).toEqual([])
  })

  it("closes a successful refresh's request.raw: a gauge counting request.raw 'close' comes back to 0", async () => {
    const { made, later } = await app()
    let reading = 0
    made.addHook('onRequest', async (request) => {
      reading++
      request.raw.once('close', () => reading--)
    })
    let runs = 0
    made.get('/p', { config: { cache: true } }, async () => `v${++runs}`)
    await made.ready()
    const cache = [...made.cache.routes.values()][0]!
    const base = await made.listen({ port: 0, host: '127.0.0.1' })
    expect((await get(`${base}/p`)).body).toBe('v1')
    later(61_000)
    expect((await get(`${base}/p`)).body).toBe('v1')
    await settled(() => cache.stats.sets > 1 && reading === 0)
    expect(runs).toBe(2)
    expect(reading).toBe(0)
  })

  it('abandoned while its handler streams, runs onRequestAbort: an onRequest/onResponse/onRequestAbort gauge comes back to 0', async () => {
    const { made, later } = await app({ revalidateTimeout: '200ms' })
    let gauge = 0
    made.addHook('onRequest', async () => {
      gauge++
    })
    made.addHook('onResponse', async (_request, _reply) => {
      gauge--
    })
    made.addHook('onRequestAbort', async (_request) => {
      gauge--
    })
    let runs = 0
    made.get('/p', { config: { cache: true } }, async (_request, reply) => {
      if (++runs === 1) return 'v1'
      // The refresh streams one chunk, then nothing more.
      const body = new Readable({ read() {} })
      body.push('c1 ')
      return reply.type('text/plain').send(body)
    })
    await made.ready()
    const cache = [...made.cache.routes.values()][0]!
    const errors: CacheEvent[] = []
    cache.on('error', (event) => errors.push(event))
    const base = await made.listen({ port: 0, host: '127.0.0.1' })
    expect((await get(`${base}/p`)).body).toBe('v1')
    later(61_000)
    expect((await get(`${base}/p`)).body).toBe('v1')
    await settled(() => errors.length > 0)
    expect(errors.map((event) => String(event.error))).toEqual([expect.stringContaining('revalidateTimeout')])
    await settled(() => gauge === 0)
    expect(runs).toBe(2)
    expect(gauge).toBe(0)
  })

  it('abandoned after revalidateTimeout, then answered late by its handler: an onRequest/onResponse/onRequestAbort gauge comes back to 0, not -1', async () => {
    const { made, later } = await app({ revalidateTimeout: '200ms' })
    const gauge = { inflight: 0, aborts: 0, responses: 0 }
    made.addHook('onRequest', async () => {
      gauge.inflight++
    })
    made.addHook('onResponse', async () => {
      gauge.inflight--
      gauge.responses++
    })
    made.addHook('onRequestAbort', async (_request) => {
      gauge.inflight--
      gauge.aborts++
    })
    let runs = 0
    let answered = false
    made.get('/p', { config: { cache: true } }, async () => {
      const run = ++runs
      // The refresh's handler answers, long after revalidateTimeout.
      if (run === 2) {
        await new Promise((resolve) => setTimeout(resolve, 500))
        answered = true
      }
      return `v${run}`
    })
    await made.ready()
    const cache = [...made.cache.routes.values()][0]!
    const errors: CacheEvent[] = []
    cache.on('error', (event) => errors.push(event))
    const base = await made.listen({ port: 0, host: '127.0.0.1' })
    expect((await get(`${base}/p`)).body).toBe('v1')
    later(61_000)
    expect((await get(`${base}/p`)).body).toBe('v1')
    await settled(() => answered)
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(errors.map((event) => String(event.error))).toEqual([expect.stringContaining('revalidateTimeout')])
    // As a client hanging up: onRequestAbort once, onResponse never for the abandoned copy.
    expect(gauge).toEqual({ inflight: 0, aborts: 1, responses: 2 })
    // The late answer is not stored: the entry is still the stale one.
    expect((await get(`${base}/p`)).body).toBe('v1')
  })

  it('abandoned while a slow onRequest hook runs, starts no other refresh once the hook is done: one stale hit, one copy', async () => {
    const { made, later } = await app({ revalidateTimeout: '200ms' })
    const seen = { clients: 0, copies: 0 }
    let slow = false
    made.addHook('onRequest', async (request) => {
      if (request.raw.constructor.name === 'IncomingMessage') seen.clients++
      else seen.copies++
      // The auth service got slow.
      if (slow) await new Promise((resolve) => setTimeout(resolve, 400))
    })
    let runs = 0
    made.get('/p', { config: { cache: true } }, async () => `v${++runs}`)
    await made.ready()
    const cache = [...made.cache.routes.values()][0]!
    const errors: CacheEvent[] = []
    cache.on('error', (event) => errors.push(event))
    const base = await made.listen({ port: 0, host: '127.0.0.1' })
    expect((await get(`${base}/p`)).body).toBe('v1')
    later(61_000)
    slow = true
    expect((await get(`${base}/p`)).body).toBe('v1')
    // Long enough for the copy's hook to end twice over (400 ms each).
    await new Promise((resolve) => setTimeout(resolve, 1500))
    expect(seen).toEqual({ clients: 2, copies: 1 })
    expect(errors.map((event) => String(event.error))).toEqual([expect.stringContaining('revalidateTimeout')])
    expect(cache.stats.sets).toBe(1)
  })
})
