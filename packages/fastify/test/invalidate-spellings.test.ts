/**
 * Fastify's router options send several spellings of one URL to one handler: invalidating the URL
 * reaches the entry of every spelling, in this process and from another one sharing the backend.
 */
import { fork } from 'node:child_process'
import type { CacheBackend } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { FORWARDED_HOST_SPELLINGS, HOST_SPELLINGS } from '@cache/testing'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { cachePlugin, invalidateResponse } from '../src/index.js'
import { get as httpGet } from './http-get.js'

const INVALIDATE = new URL('./fixtures/invalidate-response.mjs', import.meta.url)

const apps: FastifyInstance[] = []
afterEach(async () => {
  await Promise.all(
    apps.splice(0).map((app) => {
      app.server.closeAllConnections()
      return app.close()
    }),
  )
})

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => redis?.stop())

/** GET with the request target exactly as given (fetch would normalise some spellings). */
const get = (port: number, target: string, headers: Record<string, string> = {}) =>
  httpGet(`http://127.0.0.1:${port}`, headers, { target })

const ROUTER = {
  ignoreDuplicateSlashes: true,
  useSemicolonDelimiter: true,
  ignoreTrailingSlash: true,
  caseSensitive: false,
}

/** An app with every normalising router option, and one cached route answering a price. */
async function start(backend: CacheBackend = memoryBackend(), trustProxy = false) {
  const app = Fastify({ routerOptions: ROUTER, trustProxy })
  apps.push(app)
  await app.register(cachePlugin, { backend, ttl: 60 })
  const state = { price: 10 }
  app.get('/api/products', { config: { cache: true } }, async (request) => ({
    price: state.price,
    query: request.query,
  }))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return { app, state, port, host: `127.0.0.1:${port}` }
}

/** Every spelling Fastify, with the options above, routes to `/api/products` without a query. */
const SPELLINGS = [
  '/api/products',
  '/api//products',
  '//api/products',
  '/api/products/',
  '/API/products',
  '/Api//Products/',
  '/api/products;jsessionid=abc',
  '/api/product%73',
]

async function fill(port: number, targets: readonly string[]) {
  for (const target of targets) {
    await get(port, target)
    // Stored: the second request is a hit of the spelling's own entry.
    expect((await get(port, target)).cacheStatus, target).toMatch(/hit/)
  }
}

async function prices(port: number, targets: readonly string[]) {
  const seen: Record<string, number> = {}
  for (const target of targets) seen[target] = JSON.parse((await get(port, target)).body).price
  return seen
}

describe('invalidating a URL reaches every spelling the Fastify router sends to its route', () => {
  it.each(['app.cache.invalidate', 'invalidateResponse'] as const)(
    '%s(/api/products) reaches //, trailing-slash, upper-case and ;param spellings',
    async (how) => {
      const { app, state, port, host } = await start()
      await fill(port, SPELLINGS)
      state.price = 12
      if (how === 'app.cache.invalidate') await app.cache.invalidate('/api/products', { host })
      else await invalidateResponse(`http://${host}/api/products`)
      expect(await prices(port, SPELLINGS)).toEqual(Object.fromEntries(SPELLINGS.map((s) => [s, 12])))
    },
  )

  it('a ;param spelling is reached from the query Fastify reads it as, and from its own spelling', async () => {
    const { app, state, port, host } = await start()
    // useSemicolonDelimiter: the handler reads `;page=2` as the query `?page=2`.
    expect(JSON.parse((await get(port, '/api/products;page=2')).body).query).toEqual({ page: '2' })
    const paged = ['/api/products?page=2', '/api/products;page=2', '/api//products;page=2']
    await fill(port, paged)
    state.price = 12
    await app.cache.invalidate('/api/products?page=2', { host })
    expect(await prices(port, paged)).toEqual(Object.fromEntries(paged.map((s) => [s, 12])))
    state.price = 13
    await invalidateResponse(`http://${host}/api/products;page=2`)
    expect(await prices(port, paged)).toEqual(Object.fromEntries(paged.map((s) => [s, 13])))
  })

  it('another query is another URL: invalidating /api/products leaves ?page=2 stored', async () => {
    const { app, state, port, host } = await start()
    const paged = ['/api/products?page=2', '/api/products;page=2']
    await fill(port, paged)
    state.price = 12
    await app.cache.invalidate('/api/products', { host })
    // A `;` parameter is also read as one to ignore (`;jsessionid=…`): that spelling is renewed too.
    expect(await prices(port, paged)).toEqual({ '/api/products?page=2': 10, '/api/products;page=2': 12 })
  })

  it('an invalidation from another process sharing Redis reaches every spelling', async () => {
    const namespace = `fastify-spellings-${Math.random().toString(36).slice(2)}`
    const backend = redisBackend(redis.url, { namespace })
    try {
      const { state, port, host } = await start(backend)
      await fill(port, SPELLINGS)
      state.price = 12
      await runChild([redis.url, namespace, `http://${host}/api/products`])
      expect(await prices(port, SPELLINGS)).toEqual(Object.fromEntries(SPELLINGS.map((s) => [s, 12])))
    } finally {
      await backend.close()
    }
  })
})

describe('a host not spelled as a URL spells it', () => {
  it('bypasses (Host: shop.test:080, 127.1, [0:0:0:0:0:0:0:1]): invalidating the URL could not reach its entry', async () => {
    const { state, port } = await start()
    for (const [host] of HOST_SPELLINGS) {
      expect((await get(port, '/api/products', { host })).cacheStatus, host).toMatch(
        /fwd=request; detail=url/,
      )
      state.price++
      expect(JSON.parse((await get(port, '/api/products', { host })).body).price, host).toBe(state.price)
    }
  })

  it('bypasses through X-Forwarded-Host under trustProxy (shop.test:080 over http, shop.test:0443 over https)', async () => {
    const { state, port } = await start(memoryBackend(), true)
    for (const [proto, host] of FORWARDED_HOST_SPELLINGS) {
      const headers = { 'x-forwarded-host': host, 'x-forwarded-proto': proto }
      await get(port, '/api/products', headers)
      state.price++
      expect(JSON.parse((await get(port, '/api/products', headers)).body).price, host).toBe(state.price)
    }
  })

  it('its spelling as a URL is stored, and reached from any spelling in the URL or in `host`', async () => {
    const { app, state, port } = await start()
    for (const [other, host] of HOST_SPELLINGS) {
      for (const invalidate of [
        () => invalidateResponse(`http://${other}/api/products`),
        () => app.cache.invalidate('/api/products', { host: other }),
      ]) {
        await get(port, '/api/products', { host })
        expect((await get(port, '/api/products', { host })).cacheStatus, host).toMatch(/hit/)
        state.price++
        await invalidate()
        expect(
          JSON.parse((await get(port, '/api/products', { host })).body).price,
          `${other} -> ${host}`,
        ).toBe(state.price)
      }
    }
  })
})

/** Runs the invalidation fixture in a child process; rejects unless it exits with 0. */
function runChild(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = fork(INVALIDATE, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      if (code === 0) resolve()
      else reject(new Error(`invalidate-response.mjs exited with ${code ?? signal}`))
    })
  })
}
