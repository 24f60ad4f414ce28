import type { AddressInfo } from 'node:net'
import { invalidateResponsePrefix, invalidateTags } from '@cache/http'
import type { HttpCacheHarness, SafetyApp, SafetyResponse } from '@cache/testing'
import { type ServerType, serve } from '@hono/node-server'
import { noteArrivals } from '../src/index.js'
import { type Context, Hono, type MiddlewareHandler } from 'hono'
import { compress } from 'hono/compress'
import { cacheResponse, type ResponseCacheMiddleware } from '../src/index.js'

/** The safety table's routes on Hono over `@hono/node-server`, `cacheResponse` as route middleware. */
export const honoHarness: HttpCacheHarness = {
  async mount(routes, setup) {
    const app = new Hono()
    if (setup.compression === 'before') app.use(compress())
    const caches: ResponseCacheMiddleware[] = []
    for (const route of routes) {
      // Compression after the cache: its work is in the stored bytes, so hits may skip it.
      const after = setup.compression === 'after' ? [compress()] : []
      const cache = cacheResponse({
        middlewareSkippedOnHits: after,
        backend: setup.backend,
        now: setup.now,
        ttl: route.cache.ttl,
        keyPrefix: route.cache.keyPrefix,
        ...(route.cache.staleWhileRevalidate === undefined
          ? {}
          : { staleWhileRevalidate: route.cache.staleWhileRevalidate }),
        ...(route.cache.tags === undefined ? {} : { tags: route.cache.tags }),
        ...(route.cache.vary === undefined ? {} : { vary: route.cache.vary }),
      })
      caches.push(cache)
      const before = route.before
      if (before !== undefined)
        app.use(route.path, async (c, next) => {
          for (const [name, value] of Object.entries(before))
            for (const v of [value].flat()) c.header(name, v, { append: true })
          await next()
        })
      const chain = [cache, ...after]
      const handler = async (c: Context) => {
        const url = new URL(c.req.raw.url)
        const headers: Record<string, string> = {}
        for (const [name, value] of c.req.raw.headers) headers[name] = value
        return answer(
          c,
          await route.handle({ method: c.req.method, url: url.pathname + url.search, headers }),
        )
      }
      const on = app.on as (method: string, path: string, ...handlers: MiddlewareHandler[]) => Hono
      for (const method of route.methods ?? ['GET']) on.call(app, method, route.path, ...chain, handler)
    }
    const server = await new Promise<ServerType>((resolve) => {
      const s = noteArrivals(serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s)))
    })
    const safetyApp: SafetyApp = {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      async invalidate(path, host) {
        for (const cache of caches) await cache.invalidate(path, { host })
      },
      async invalidatePrefix(keyPrefix) {
        await invalidateResponsePrefix(keyPrefix, { backend: setup.backend })
      },
      async invalidateTags(tags) {
        await invalidateTags([...tags], { backend: setup.backend })
      },
      async close() {
        ;(server as { closeAllConnections?: () => void }).closeAllConnections?.()
        await new Promise((resolve) => server.close(resolve))
      },
    }
    return safetyApp
  },
}

/** The plan as Hono answers it: `c.body` with the whole body, or a `ReadableStream` of its chunks. */
async function answer(c: Context, plan: SafetyResponse): Promise<Response> {
  if (plan.delay) await sleep(plan.delay)
  const headers = new Headers()
  for (const [name, value] of Object.entries(plan.headers ?? {}))
    for (const v of [value].flat()) headers.append(name, v)
  if (plan.declaredLength !== undefined) headers.set('content-length', String(plan.declaredLength))
  const status = plan.status ?? 200
  if (plan.chunks === undefined) {
    const body =
      plan.body === undefined ? null : typeof plan.body === 'string' ? plan.body : new Uint8Array(plan.body)
    return c.newResponse(body, { status: status as 200, headers })
  }
  const chunks = plan.chunks
  let i = 0
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (i >= chunks.length) return controller.close()
      if (i > 0 && plan.failAfterFirstChunk) return controller.error(new Error('source failed'))
      if (i > 0 && plan.chunkDelay) await sleep(plan.chunkDelay)
      const chunk = chunks[i++]!
      controller.enqueue(typeof chunk === 'string' ? new TextEncoder().encode(chunk) : new Uint8Array(chunk))
    },
  })
  return c.newResponse(stream, { status: status as 200, headers })
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
