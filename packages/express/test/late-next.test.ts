/**
 * `next(error)` or `next()` called by a function after the cache once the response was sent and
 * stored (a callback-style audit write that fails, a deferred `next`): an error handler or a later
 * route ran, which a hit would skip, so the entry is removed again (counted in `stats.deletes`).
 */
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, memory, type Reply, serveEach } from './http.js'

const serve = serveEach()
const status = (reply: Reply) => String(reply.headers['cache-status'])
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe.each(EXPRESS)('a late next after the response on %s', (_name, express) => {
  const LAYOUTS = [
    ['next(error) 20 ms later, cache as middleware', 'mw', 'error'],
    ['next(error) 20 ms later, cache as wrapper', 'wrap', 'error'],
    ['next() 20 ms later, cache as middleware', 'mw', 'next'],
    ['next() on setImmediate, cache as wrapper', 'wrap', 'immediate'],
  ] as const

  it.each(LAYOUTS)(
    '%s: the entry is removed, the next request runs the handler',
    async (_title, layout, late) => {
      const app = express()
      const cache = cacheResponse({ ttl: 60, backend: memory() })
      let runs = 0
      const seen: string[] = []
      const handler = (_req: any, res: any, next: any) => {
        res.json({ n: ++runs })
        if (late === 'error') setTimeout(() => next(new Error('audit write failed')), 20)
        else if (late === 'next') setTimeout(() => next(), 20)
        else setImmediate(next)
      }
      if (layout === 'mw') app.get('/x', cache, handler)
      else app.get('/x', cache(handler))
      app.get('/x', (_req: any, _res: any, next: any) => {
        seen.push('later route')
        next()
      })
      app.use((err: any, _req: any, res: any, next: any) => {
        seen.push(`error handler: ${err.message}`)
        if (res.headersSent) return next(err)
        res.status(500).end()
      })
      const r = await serve(app)
      await r.request('/x')
      await sleep(100)
      expect(seen.length).toBeGreaterThan(0)
      const second = await r.request('/x')
      expect(second.body.toString()).toBe('{"n":2}')
      expect(status(second)).not.toMatch(/hit/)
      expect(cache.stats.deletes).toBeGreaterThanOrEqual(1)
    },
  )
})
