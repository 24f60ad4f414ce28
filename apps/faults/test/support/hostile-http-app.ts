/**
 * An app that puts `cacheResponse` where real apps put it (global middleware, route middleware,
 * handler wrapper), behind the middleware real apps run before it: a session layer that marks
 * responses private, one that sets a visitor cookie, express-session, i18n with `Vary`, an API-key
 * guard, a proxy with `trust proxy`. Every handler counts its runs and says whom it answered, so a
 * response meant for someone else is visible in the body.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer, type RequestListener, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CacheBackend } from '@cache/core'
import { cacheResponse, noteArrivals } from '@cache/express'
import compression from 'compression'
import type express from 'express'
import session from 'express-session'

export type Position = 'global middleware' | 'route middleware' | 'wrapper'
export const POSITIONS: Position[] = ['global middleware', 'route middleware', 'wrapper']

type Express = typeof express
type Handler = (req: any, res: any, next: any) => unknown

/** A 64 KB file for routes that stream with sendFile (more than a socket takes at once). */
export const BIG_FILE = join(mkdtempSync(join(tmpdir(), 'cache-faults-http-')), 'big.txt')
writeFileSync(BIG_FILE, 'f'.repeat(64 * 1024))

export interface HostileApp {
  listener: RequestListener
  runs: Map<string, number>
  /** Moves the cache's clock (ttl 60 s, stale-while-revalidate 10 min) past the ttl. */
  expire(): void
  errors: unknown[]
}

export function hostileApp(express: Express, backend: CacheBackend, position: Position): HostileApp {
  const runs = new Map<string, number>()
  const count = (route: string) => {
    const n = (runs.get(route) ?? 0) + 1
    runs.set(route, n)
    return n
  }
  let now = Date.now()
  const clock = () => now
  const keyPrefix = `hostile-${Math.random().toString(36).slice(2)}`
  const options = {
    ttl: 60,
    staleWhileRevalidate: 600,
    revalidateTimeout: '2s',
    backend,
    keyPrefix,
    now: clock,
  }
  // compression registered after a global cache is a function a hit skips: it must be listed.
  const gzipAfter = compression({ threshold: 0 })
  const cache = cacheResponse({ ...options, middlewareSkippedOnHits: [gzipAfter] })
  const errors: unknown[] = []
  cache.on('error', (event) => errors.push(event.error))
  const app = express()
  app.set('trust proxy', 'loopback')

  // Middleware before the cache, as real apps have it.
  app.use('/private', (req: any, res: any, next: any) => {
    req.user = req.get('x-session') ?? 'anonymous'
    if (req.user !== 'anonymous') res.set('cache-control', 'private')
    next()
  })
  let visitors = 0
  app.use('/form', (req: any, res: any, next: any) => {
    req.csrf = `token-${++visitors}`
    res.cookie('sid', `visitor-${visitors}`)
    next()
  })
  app.use('/session', session({ secret: 'hostile', resave: false, saveUninitialized: true }))
  app.use('/i18n', (req: any, res: any, next: any) => {
    req.locale = req.acceptsLanguages('fr', 'en') || 'en'
    res.vary('Accept-Language')
    next()
  })
  app.use('/gzip-before', compression({ threshold: 0 }))
  app.use('/search', express.text({ type: '*/*' }))
  if (position === 'global middleware') app.use(cache)
  app.use('/gzip-after', gzipAfter)

  const route = (path: string, name: string, handler: Handler, ...before: Handler[]) => {
    const counted: Handler = (req, res, next) => {
      count(name)
      return handler(req, res, next)
    }
    if (position === 'global middleware') app.get(path, ...before, counted)
    else if (position === 'route middleware') app.get(path, ...before, cache, counted)
    else app.get(path, ...before, cache(counted))
  }

  route('/private', 'private', (req, res) => res.json({ account: req.user }))
  route('/form', 'form', (req, res) => res.send(`<input name="csrf" value="${req.csrf}">`))
  route('/session/page', 'session', (req, res) => res.send(`session ${req.sessionID}`))
  route('/i18n', 'i18n', (req, res) => res.send(req.locale === 'fr' ? 'bonjour' : 'hello'))
  route('/link', 'link', (req, res) => res.send(`${req.protocol}://${req.get('host')}/next`))
  route(
    '/admin/report',
    'admin',
    (_req, res) => res.json({ revenue: 1_000_000 }),
    (req: any, res: any, next: any) =>
      req.get('x-api-key') === 'admin-key' ? next() : res.status(401).json({ error: 'api key required' }),
  )
  route('/liar', 'liar', (_req, res) => {
    res.set('content-length', '4000').type('text')
    res.end('x'.repeat(100))
  })
  route('/destroyed', 'destroyed', (_req, res) => {
    res.type('text').write('partial ')
    res.destroy()
    res.end('rest')
  })
  route('/slow-stream', 'slow-stream', async (_req, res) => {
    res.type('text').write('first ')
    await new Promise((resolve) => setTimeout(resolve, 150))
    res.end('second')
  })
  route('/search', 'search', (req, res) =>
    res.send(`results for ${typeof req.body === 'string' && req.body !== '' ? req.body : 'everything'}`),
  )
  route('/file', 'file', (_req, res) => res.sendFile(BIG_FILE))
  route('/gzip-before/text', 'gzip-before', (_req, res) => res.type('text').send('squeeze '.repeat(200)))
  route('/gzip-after/text', 'gzip-after', (_req, res) => res.type('text').send('squeeze '.repeat(200)))
  route('/slow-vary', 'slow-vary', async (req, res) => {
    await new Promise((resolve) => setTimeout(resolve, 100))
    res.vary('Accept-Language').send(`lang ${req.get('accept-language')}`)
  })
  route('/refresh', 'refresh', (_req, res, next) => {
    if (runs.get('refresh') === 1) return res.send('first')
    return next()
  })
  route('/refresh-file', 'refresh-file', (_req, res) => {
    if (runs.get('refresh-file') === 1) return res.send('first')
    return res.sendFile(BIG_FILE)
  })
  app.use((error: Error, _req: any, res: any, _next: any) => {
    if (!res.headersSent) res.status(500).json({ error: error.message })
  })
  return { listener: app as unknown as RequestListener, runs, errors, expire: () => void (now += 61_000) }
}

/** `cache.front(app)` over an API-key guarded route: the position that replayed past the guard. */
export function frontApp(express: Express, backend: CacheBackend): RequestListener {
  const cache = cacheResponse({ ttl: 60, backend, keyPrefix: `front-${Math.random().toString(36).slice(2)}` })
  const app = express()
  app.get(
    '/admin/report',
    (req: any, res: any, next: any) =>
      req.get('x-api-key') === 'admin-key' ? next() : res.status(401).json({ error: 'api key required' }),
    cache,
    (_req: any, res: any) => res.json({ revenue: 1_000_000 }),
  )
  return cache.front(app as unknown as RequestListener)
}

export async function listenOn(listener: RequestListener): Promise<{ server: Server; port: number }> {
  const server = noteArrivals(createServer(listener))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as AddressInfo).port }
}

export async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
}
