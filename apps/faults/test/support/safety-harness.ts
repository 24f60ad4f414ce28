import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  cacheResponse,
  invalidateResponsePrefix,
  invalidateTags,
  noteArrivals,
  type ResponseCacheHandler,
} from '@cache/express'
import compression from 'compression'
import express from 'express'
import type { HttpCacheHarness, SafetyApp, SafetyResponse } from '@cache/testing'

/** The safety table's routes on Express 5 with `cacheResponse` as route middleware. */
export const expressHarness: HttpCacheHarness = {
  async mount(routes, setup) {
    const app = express()
    const zip = compression()
    if (setup.compression === 'before') app.use(zip)
    const caches = new Map<string, ResponseCacheHandler>()
    for (const route of routes) {
      const cache = cacheResponse({
        backend: setup.backend,
        now: setup.now,
        ttl: route.cache.ttl,
        keyPrefix: route.cache.keyPrefix,
        ...(route.cache.staleWhileRevalidate === undefined
          ? {}
          : { staleWhileRevalidate: route.cache.staleWhileRevalidate }),
        ...(route.cache.tags === undefined ? {} : { tags: route.cache.tags }),
        ...(route.cache.vary === undefined ? {} : { vary: route.cache.vary }),
        ...(setup.compression === 'after' ? { middlewareSkippedOnHits: [zip] } : {}),
      })
      caches.set(route.path, cache)
      const before = route.before
      if (before !== undefined)
        app.use(route.path, (_req, res, next) => {
          for (const [name, value] of Object.entries(before)) res.append(name, value)
          next()
        })
      const handler = async (req: express.Request, res: express.Response) =>
        answer(res, await route.handle({ method: req.method, url: req.originalUrl, headers: req.headers }))
      const chain: express.RequestHandler[] = [cache]
      if (setup.compression === 'after') chain.push(zip)
      for (const method of route.methods ?? ['GET']) {
        app[method.toLowerCase() as 'get'](route.path, ...chain, handler)
      }
    }
    const server = await new Promise<Server>((resolve) => {
      const s = noteArrivals(app.listen(0, '127.0.0.1', () => resolve(s)))
    })
    const safetyApp: SafetyApp = {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      async invalidate(path, host) {
        for (const cache of caches.values()) await cache.invalidate(path, { host })
      },
      async invalidatePrefix(keyPrefix) {
        await invalidateResponsePrefix(keyPrefix, { backend: setup.backend })
      },
      async invalidateTags(tags) {
        await invalidateTags([...tags], { backend: setup.backend })
      },
      async close() {
        server.closeAllConnections()
        await new Promise((resolve) => server.close(resolve))
      },
    }
    return safetyApp
  },
}

async function answer(res: express.Response, plan: SafetyResponse): Promise<void> {
  if (plan.delay) await sleep(plan.delay)
  res.status(plan.status ?? 200)
  for (const [name, value] of Object.entries(plan.headers ?? {})) res.append(name, value)
  if (plan.declaredLength !== undefined) res.setHeader('content-length', String(plan.declaredLength))
  if (plan.chunks === undefined) {
    res.end(plan.body)
    return
  }
  for (const [i, chunk] of plan.chunks.entries()) {
    if (i > 0 && plan.failAfterFirstChunk) {
      res.destroy(new Error('source failed'))
      return
    }
    if (i > 0 && plan.chunkDelay) await sleep(plan.chunkDelay)
    if (res.destroyed) return
    res.write(chunk)
  }
  res.end()
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
