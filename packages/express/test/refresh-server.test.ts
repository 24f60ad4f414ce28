/**
 * A stale-while-revalidate refresh runs a copy of the request in the app directly: what the
 * server did to the request before the app (a `request` listener of its own, an `emit` wrapper)
 * never happens to the copy. From the seat of a public server whose listener marks its requests:
 * its clients must never be served what the app renders for unmarked (internal) requests.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http'
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, memory, serveEach } from './http.js'

const serve = serveEach()

async function eventually(check: () => boolean): Promise<void> {
  for (let i = 0; i < 300 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 10))
}

type Marked = IncomingMessage & { publicView?: boolean }

/** Ways a server marks its requests before the app runs. */
const servers: [string, (app: any) => Server][] = [
  [
    "a prepended 'request' listener",
    (app) => {
      const server = createServer(app)
      server.prependListener('request', (req: Marked) => {
        req.publicView = true
      })
      return server
    },
  ],
  [
    "an 'emit' wrapper inside noteArrivals' (an APM shim installed first)",
    (app) => {
      const server = createServer(app)
      const emit = server.emit
      server.emit = function (this: Server, event: string, ...args: any[]) {
        if (event === 'request') (args[0] as Marked).publicView = true
        return (emit as (...all: any[]) => boolean).call(this, event, ...args)
      } as typeof server.emit
      return server
    },
  ],
]

describe.each(EXPRESS)(
  'a refresh on %s never skips what the server does before the app',
  (_name, express) => {
    it.each(servers)('%s: the refresh is not run, the marked view stays', async (_how, make) => {
      let now = 1_000_000
      const clock = () => now
      const mw = cacheResponse({ backend: memory(clock), ttl: 60, staleWhileRevalidate: 600, now: clock })
      const errors: unknown[] = []
      mw.on('error', (event) => errors.push(event))
      const app = express()
      let runs = 0
      app.get('/report', mw, (req: Marked, res) => {
        runs++
        res.send(req.publicView ? `public summary ${runs}` : 'INTERNAL FULL REPORT')
      })
      const r = await serve({ listen: (...args: any[]) => make(app).listen(...args) })
      expect((await r.request('/report')).body.toString()).toBe('public summary 1')
      now += 61_000
      expect((await r.request('/report')).body.toString()).toBe('public summary 1')
      await eventually(() => errors.length > 0 || mw.stats.sets > 1)
      for (let i = 0; i < 2; i++)
        expect((await r.request('/report')).body.toString()).not.toContain('INTERNAL')
      expect(mw.stats.sets).toBe(1)
      expect(errors.map((event: any) => [event.operation, String(event.error.message)])).toContainEqual([
        'revalidate',
        expect.stringContaining('was not run'),
      ])
      // Past the stale window: a normal miss, through the server's listeners.
      now += 600_000
      expect((await r.request('/report')).body.toString()).toMatch(/^public summary/)
    })

    it('an app the server calls alone is still refreshed in the background', async () => {
      let now = 1_000_000
      const clock = () => now
      const mw = cacheResponse({ backend: memory(clock), ttl: 60, staleWhileRevalidate: 600, now: clock })
      const app = express()
      let runs = 0
      app.get('/report', mw, (_req, res) => res.send(`v${++runs}`))
      const r = await serve({ listen: (...args: any[]) => createServer(app).listen(...args) })
      await r.request('/report')
      now += 61_000
      expect((await r.request('/report')).body.toString()).toBe('v1')
      await eventually(() => mw.stats.sets > 1)
      expect((await r.request('/report')).body.toString()).toBe('v2')
    })
  },
)
