/**
 * The Express app the load tests drive, built as a user would: response caching with
 * `cacheResponse` on one route, a service memoized with the `@cache` decorator behind another,
 * and an uncached route. Every handler takes `HANDLER_MS` of simulated work.
 */
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type CacheBackend, cache } from '@cache/core'
import { cacheResponse, noteArrivals } from '@cache/express'
import express from 'express'
import { sleep } from './bounded.js'

export const HANDLER_MS = 5

export interface RunningApp {
  url: string
  close(): Promise<void>
}

export async function startApp(backend: CacheBackend): Promise<RunningApp> {
  class Catalog {
    // Each app this factory starts defines the class again: a distinct class under the same
    // name, which memoize refuses to key by default. A `name` shares the keys deliberately.
    @cache({ ttl: 30, backend, namespace: 'catalog', name: 'Catalog.product' })
    async product(id: string) {
      await sleep(HANDLER_MS)
      return { id, name: `product ${id}` }
    }
  }
  const catalog = new Catalog()
  const app = express()
  app.get('/page/:id', cacheResponse({ ttl: 30, backend }), async (req, res) => {
    await sleep(HANDLER_MS)
    res.json({ id: req.params.id, kind: 'page' })
  })
  app.get('/product/:id', async (req, res) => {
    res.json(await catalog.product(req.params.id))
  })
  app.get('/live/:id', async (req, res) => {
    await sleep(HANDLER_MS)
    res.json({ id: req.params.id, kind: 'live' })
  })
  const server: Server = await new Promise((resolve) => {
    const s = noteArrivals(app.listen(0, '127.0.0.1', () => resolve(s)))
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** Mostly cached routes over more ids than L1 holds (so reads reach the remote level), some uncached. */
export function mixedPaths(ids: number): () => string {
  let n = 0
  return () => {
    n++
    const id = Math.floor(Math.random() * ids)
    const route = n % 10 === 0 ? 'live' : n % 2 === 0 ? 'page' : 'product'
    return `/${route}/${id}`
  }
}

/** The body of a response to `/route/id` always names its id. */
export function idInBody(path: string): string {
  return `"id":"${path.split('/')[2]}"`
}
