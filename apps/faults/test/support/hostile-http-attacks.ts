/**
 * Building blocks for the attacks that put `cacheResponse` in positions a first reading of the
 * app does not show: a guard registered as its own route, a cache wrapped in another function, a
 * pipelined request whose client leaves, a client that never reads, an error after the body
 * started, a sub-app with its own `trust proxy`, a copy of Express the cache never saw, a source
 * that fails half-way, a raw request target.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import type express from 'express'

type Express = typeof express
type Handler = (req: any, res: any, next: any) => unknown

const dir = mkdtempSync(join(tmpdir(), 'cache-faults-attacks-'))
/** Served by `express.static`: more than the socket buffers of a client that reads nothing take. */
export const STATIC_DIR = join(dir, 'static')
/** 8 MB: larger than the default `maxBodySize` and than loopback socket buffers. */
export const HUGE_FILE = join(dir, 'static', 'huge.bin')
/** 100 KB: under `maxBodySize`, over a socket's write buffer. */
export const MEDIUM_FILE = join(dir, 'medium.bin')
mkdirSync(STATIC_DIR)
writeFileSync(HUGE_FILE, Buffer.alloc(8 * 1024 * 1024, 'h'))
writeFileSync(MEDIUM_FILE, Buffer.alloc(100 * 1024, 'm'))

/**
 * Sends `first` and `second` pipelined on one connection, reads nothing, and closes the
 * connection after `ms`: the response to `second` is queued behind `first` and never gets a socket.
 */
export async function pipelineAndLeave(
  port: number,
  first: string,
  second: string,
  host: string,
  ms = 200,
): Promise<void> {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  socket.pause()
  socket.write(
    `GET ${first} HTTP/1.1\r\nHost: ${host}\r\n\r\nGET ${second} HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
  )
  await new Promise((resolve) => setTimeout(resolve, ms))
  socket.destroy()
  await new Promise((resolve) => setTimeout(resolve, 100))
}

/** A client that requests `path` and never reads the response; `destroy()` it when done. */
export function neverReads(port: number, path: string, host: string): Socket {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  socket.pause()
  socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`)
  return socket
}

/** An API-key guard: 403 without the key. */
export const requireKey: Handler = (req, res, next) =>
  req.headers['x-api-key'] === 'admin-key' ? next() : res.status(403).send('forbidden')

/** What real apps wrap their async handlers in. */
export const asyncHandler =
  (fn: Handler): Handler =>
  (req, res, next) =>
    Promise.resolve(fn(req, res, next)).catch(next)

/**
 * A guard that the route answering the request does not list: every way an app registers one
 * besides `app.get(path, guard, handler)`. `secret` answers `/admin/payroll`.
 */
export const SEPARATE_GUARDS: [string, (app: any, express: Express, secret: Handler) => void][] = [
  [
    'app.all on a pattern',
    (app, _express, secret) => {
      app.all(/^\/admin\//, requireKey)
      app.get('/admin/payroll', secret)
    },
  ],
  [
    'the same path registered twice',
    (app, _express, secret) => {
      app.get('/admin/payroll', requireKey)
      app.get('/admin/payroll', secret)
    },
  ],
  [
    'app.param',
    (app, _express, secret) => {
      app.param('page', (req: any, res: any, next: any) => requireKey(req, res, next))
      app.get('/admin/:page', secret)
    },
  ],
  [
    'router.all in a mounted router',
    (app, express, secret) => {
      const router = express.Router()
      router.all(/.*/, requireKey)
      router.get('/payroll', secret)
      app.use('/admin', router)
    },
  ],
  [
    'app.use after the cache',
    (app, _express, secret) => {
      app.use('/admin', requireKey)
      app.get('/admin/payroll', secret)
    },
  ],
  [
    'router.param in a mounted router',
    (app, express, secret) => {
      const router = express.Router()
      router.param('page', (req: any, res: any, next: any) => requireKey(req, res, next))
      router.get('/:page', secret)
      app.use('/admin', router)
    },
  ],
  [
    'a router passed as the route handler',
    (app, express, secret) => {
      const router = express.Router()
      router.use(requireKey)
      router.get('/admin/payroll', secret)
      app.get('/admin/payroll', router)
    },
  ],
  [
    'app.use in a mounted sub-app',
    (app, express, secret) => {
      const admin = express()
      admin.use(requireKey)
      admin.get('/payroll', secret)
      app.use('/admin', admin)
    },
  ],
]

/** Loads the report into `req.report` and passes on, as a first handler of a route does. */
export const loadReport: Handler = (req, _res, next) => {
  req.report = 'SECRET report'
  next()
}
export const renderReport: Handler = (req, res) => res.send(req.report ?? 'SECRET report')

/**
 * Every way a route lists a guard after a cache that does not look like `cache` to a
 * function-identity check: wrapped in an arrow function, in an async wrapper, as a bound
 * decorated method, as a wrapped handler that passes on.
 */
export const HIDDEN_CACHES: [string, (app: any, cache: any) => void][] = [
  [
    'an arrow function around the middleware',
    (app, cache) =>
      app.get('/r', (req: any, res: any, next: any) => cache(req, res, next), requireKey, renderReport),
  ],
  [
    'asyncHandler(cache(load))',
    (app, cache) => app.get('/r', asyncHandler(cache(loadReport)), requireKey, renderReport),
  ],
  [
    'a decorated controller method passed bound',
    (app, cache) => {
      class Reports {
        load(req: any, res: any, next: any) {
          return loadReport(req, res, next)
        }
      }
      const descriptor = Object.getOwnPropertyDescriptor(Reports.prototype, 'load')!
      Object.defineProperty(Reports.prototype, 'load', cache(Reports.prototype, 'load', descriptor))
      const controller = new Reports()
      app.get('/r', controller.load.bind(controller), requireKey, renderReport)
    },
  ],
  [
    'one guarded handler after a wrapped one',
    (app, cache) =>
      app.get('/r', cache(loadReport), (req: any, res: any, next: any) =>
        requireKey(req, res, () => renderReport(req, res, next)),
      ),
  ],
  [
    'route middleware whose handler passes on to app-level middleware',
    (app, cache) => {
      app.get('/r', cache, loadReport)
      app.use('/r', requireKey, renderReport)
    },
  ],
  [
    'a wrapped handler that passes on to app-level middleware',
    (app, cache) => {
      app.get('/r', cache(loadReport))
      app.use('/r', requireKey, renderReport)
    },
  ],
]

/**
 * A copy of Express that nothing else in this process has loaded (a plugin that bundles its own):
 * the package and every module it requires are loaded anew; the module cache is left as it was.
 */
export function freshExpress(id: 'express' | 'express4'): Express {
  const require = createRequire(import.meta.url)
  const cache = require.cache
  const saved = Object.entries(cache)
  for (const key of Object.keys(cache)) delete cache[key]
  try {
    return require(id) as Express
  } finally {
    for (const key of Object.keys(cache)) delete cache[key]
    for (const [key, module] of saved) cache[key] = module
  }
}

/**
 * A handler that pipes a source which sends `{"items":[1,2,` and then fails (while `state.fail`),
 * and ends the response itself when it does: the failure is swallowed.
 */
export function swallowingPipe(state: { fail: boolean }): Handler {
  return (_req, res) => {
    const chunks = ['{"items":[1,2,', '3]}']
    const source = new Readable({
      read() {
        if (chunks.length > (state.fail ? 1 : 0)) return void this.push(chunks.shift())
        if (!state.fail) return void this.push(null)
        setTimeout(() => this.destroy(new Error('disk read failed')), 10)
      },
    })
    res.type('json')
    source.on('error', () => res.end())
    source.pipe(res)
  }
}

/** Sends `target` byte for byte (Node's client would not send a raw `#`); the reply's body. */
export function rawGet(port: number, target: string, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () =>
      socket.write(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
    )
    let data = ''
    socket.setEncoding('latin1')
    socket.on('data', (chunk) => {
      data += chunk
    })
    socket.on('end', () => resolve(data.slice(data.indexOf('\r\n\r\n') + 4)))
    socket.on('error', reject)
    socket.setTimeout(5_000, () => socket.destroy(new Error(`GET ${target} timed out`)))
  })
}
