/**
 * `app.cache.invalidate*` in an app whose plugin has no cached route resolved: a writer service
 * that registers cachePlugin only to invalidate the readers' pages (a process of its own, sharing
 * the readers' Redis), and an app flushing at boot, before `ready()`. Each must reach the
 * backend, as the exported `invalidateTags` / `invalidateResponse` do.
 */
import { fork } from 'node:child_process'
import { redisBackend } from '@cache/redis'
import { type RedisServer, startRedis } from '@cache/test-servers'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cachePlugin } from '../src/index.js'
import { app } from './apps.js'
import { get } from './http-get.js'

const WRITER = new URL('./fixtures/writer-app.mjs', import.meta.url)

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => redis?.stop())

const backends: { close(): Promise<void> }[] = []
afterAll(async () => {
  await Promise.all(backends.splice(0).map((backend) => backend.close()))
})

function backendOf(namespace: string) {
  const backend = redisBackend(redis.url, { namespace, timeout: '3s' })
  backends.push(backend)
  return backend
}

/** A reader: one cached route, tagged `products`, whose body changes with each render. */
async function reader(namespace: string) {
  const fastify = app()
  await fastify.register(cachePlugin, { backend: backendOf(namespace) })
  let renders = 0
  fastify.get(
    '/products',
    { config: { cache: { ttl: 300, tags: ['products'] } } },
    async () => `render ${++renders}`,
  )
  await fastify.listen({ port: 0, host: '127.0.0.1' })
  const host = `127.0.0.1:${(fastify.server.address() as { port: number }).port}`
  return { host, page: () => get(`http://${host}/products`) }
}

/** Runs the writer process once; what its `app.cache` call resolved. */
function write(namespace: string, what: string, target: string, host = ''): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = fork(WRITER, [redis.url, namespace, what, target, host], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    let answer: { status: number; body: { resolved: unknown } } | undefined
    child.on('message', (message) => {
      answer = message as typeof answer
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      if (code !== 0 || answer === undefined)
        reject(new Error(`writer-app.mjs exited with ${code ?? signal}`))
      else if (answer.status !== 200)
        reject(new Error(`writer answered ${answer.status}: ${JSON.stringify(answer.body)}`))
      else resolve(answer.body.resolved)
    })
  })
}

const fresh = () => `writer-${Math.random().toString(36).slice(2)}`

describe('a writer service with cachePlugin and no cached route, in a process of its own', () => {
  it.each([
    ['invalidateTags', 'tags', 'products'],
    ['invalidatePrefix', 'prefix', 'http'],
    ['invalidate', 'url', '/products'],
  ])("app.cache.%s reaches the readers' pages", async (_name, what, target) => {
    const namespace = fresh()
    const { host, page } = await reader(namespace)
    await page()
    const before = await page()
    expect(before).toMatchObject({ body: 'render 1', cacheStatus: expect.stringMatching(/hit/) })
    await write(namespace, what, target, host)
    // Before: the writer's calls resolved having reached nothing; render 1 was served on.
    expect((await page()).body).toBe('render 2')
  })

  it('app.cache.invalidate resolves false there, as documented: the entry is another process’s, and invalidated all the same', async () => {
    const namespace = fresh()
    const { host, page } = await reader(namespace)
    await page()
    expect(await write(namespace, 'url', '/products', host)).toBe(false)
    expect((await page()).body).toBe('render 2')
  })
})

describe('an app invalidating before it is ready (a flush at boot)', () => {
  it('reaches the entries its previous deployment stored', async () => {
    const namespace = fresh()
    const { page } = await reader(namespace)
    await page()
    expect((await page()).cacheStatus).toMatch(/hit/)
    const booting: FastifyInstance = app()
    await booting.register(cachePlugin, { backend: backendOf(namespace) })
    booting.get(
      '/products',
      { config: { cache: { ttl: 300, tags: ['products'] } } },
      async () => 'new deploy',
    )
    await booting.cache.invalidateTags(['products'])
    expect((await page()).body).toBe('render 2')
    await booting.cache.invalidatePrefix('http')
    expect((await page()).body).toBe('render 3')
  })

  it("reaches a route's own backend given in its config.cache", async () => {
    const namespace = fresh()
    const { page } = await reader(namespace)
    await page()
    const booting: FastifyInstance = app()
    await booting.register(cachePlugin, { backend: backendOf(fresh()) })
    booting.get(
      '/products',
      { config: { cache: { ttl: 300, tags: ['products'], backend: backendOf(namespace) } } },
      async () => 'new deploy',
    )
    await booting.cache.invalidateTags(['products'])
    expect((await page()).body).toBe('render 2')
  })
})
