import type { CacheEvent } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import type { HttpBindings } from '@hono/node-server'
import { Hono, type MiddlewareHandler } from 'hono'
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { get, listen } from './serve.js'

/*
 * @hono/node-server keeps a target as the client sent it (`?q=O'Brien`) in the URL of its own
 * Request, while a Request built again from it (`c.req.raw.clone()`, `new Request(req.url, req)`)
 * spells it as the URL parser does (`?q=O%27Brien`). Both are one URL: a stale entry of it is
 * refreshed, and never left stale with nothing counted.
 */

type Env = { Bindings: HttpBindings }

/** A clock the cache reads, moved by the test. */
function clock() {
  let now = Date.now()
  return { now: () => now, pass: (ms: number) => void (now += ms) }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const TARGET = "/search?q=O'Brien"

describe("a stale entry of a URL whose query holds a ' is refreshed", () => {
  async function searchApp(options: { layer?: MiddlewareHandler<Env>; rebuild?: boolean }) {
    const time = clock()
    const cache = cacheResponse({
      ttl: 10,
      staleWhileRevalidate: 3600,
      backend: memoryBackend(),
      now: time.now,
    })
    const errors: string[] = []
    cache.on('error', (event: CacheEvent) => errors.push(String(event.error)))
    const app = new Hono<Env>()
    if (options.layer) app.use('*', options.layer)
    let runs = 0
    app.get('/search', cache, (c) => c.text(`results for ${c.req.query('q')} #${++runs}`))
    const base = await listen(
      options.rebuild
        ? {
            fetch: ((request: Request, env: HttpBindings) =>
              app.fetch(new Request(request.url, request), env)) as Hono['fetch'],
          }
        : app,
    )
    return { cache, time, errors, runs: () => runs, search: () => get(base, TARGET) }
  }

  async function expectRefreshed(app: Awaited<ReturnType<typeof searchApp>>) {
    expect((await app.search()).text).toBe("results for O'Brien #1")
    app.time.pass(20_000)
    const stale = await app.search()
    // Served stale, refreshed behind it: the copy's URL is the request's, however each spells it.
    expect(stale.text).toBe("results for O'Brien #1")
    expect(stale.headers['cache-status']).toMatch(/hit/)
    await sleep(100)
    // Before: every request got '#1' (a stale hit), the handler never ran again, nothing counted.
    const after = await app.search()
    expect(after.text).toBe("results for O'Brien #2")
    expect(after.headers['cache-status']).toMatch(/hit/)
    expect(app.runs()).toBe(2)
    expect(app.errors).toEqual([])
  }

  it('behind a layer that clones the request (c.req.raw = c.req.raw.clone())', async () => {
    await expectRefreshed(
      await searchApp({
        layer: async (c, next) => {
          c.req.raw = c.req.raw.clone()
          await next()
        },
      }),
    )
  })

  it('behind a fetch wrapper that hands the app new Request(req.url, req)', async () => {
    await expectRefreshed(await searchApp({ rebuild: true }))
  })
})
