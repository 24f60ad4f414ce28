/**
 * An entry is replayed only at the place in the app it was made at. A guard that turns a request
 * away with `next('route')` or `next('router')` sends it to another route for the same URL: that
 * route's cache must never answer it with what the guarded route stored.
 */
import { request as httpRequest } from 'node:http'
import { describe, expect, it } from 'vitest'
import { cacheResponse, invalidateResponse, invalidateResponsePrefix } from '../src/index.js'
import { EXPRESS, memory, type Reply, serveEach } from './http.js'

const serve = serveEach()
const json = (reply: Reply) => JSON.parse(reply.body.toString())
const isHit = (reply: Reply) => /hit|collapsed/.test(String(reply.headers['cache-status']))
const internal = { 'x-api-key': 'k-internal' }
const SECRET = { view: 'internal', dbPassword: 'hunter2' }
const PUBLIC = { view: 'public', ok: true }

/** Sends a request from a chosen loopback address, as a client on another host would. */
function getFrom(port: number, path: string, localAddress: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, path, localAddress, agent: false, timeout: 5_000 },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
        )
      },
    )
    req.on('error', reject)
    req.end()
  })
}

const SHAPES = ['two caches', 'one shared cache', 'next(router)', 'handler wrapper'] as const

describe.each(EXPRESS)('a guard that sends rejected requests on, on %s', (_name, express) => {
  function app(shape: (typeof SHAPES)[number]) {
    const a = express()
    const backend = memory()
    const guard = (skip: string) => (req: any, _res: any, next: any) =>
      req.get('x-api-key') === 'k-internal' ? next() : next(skip)
    const shared = cacheResponse({ ttl: 60, backend })
    const c1 = shape === 'one shared cache' ? shared : cacheResponse({ ttl: 60, backend })
    const c2 = shape === 'one shared cache' ? shared : cacheResponse({ ttl: 60, backend })
    const secret = (_req: any, res: any) => res.json(SECRET)
    const open = (_req: any, res: any) => res.json(PUBLIC)
    if (shape === 'next(router)') {
      const inner = express.Router()
      inner.use(guard('router'))
      inner.get('/status', c1, secret)
      a.use(inner)
    } else if (shape === 'handler wrapper') {
      a.get('/status', guard('route'), c1(secret))
    } else {
      a.get('/status', guard('route'), c1, secret)
    }
    if (shape === 'handler wrapper') a.get('/status', c2(open))
    else a.get('/status', c2, open)
    return { a, backend, c1, c2 }
  }

  it.each(SHAPES)('%s: an outsider never gets what an internal caller filled', async (shape) => {
    const r = await serve(app(shape).a)
    expect(json(await r.request('/status', { headers: internal }))).toEqual(SECRET)
    const outsider = await r.request('/status')
    expect(json(outsider)).toEqual(PUBLIC)
    // Each route still caches its own response.
    expect(isHit(await r.request('/status', { headers: internal }))).toBe(true)
    const again = await r.request('/status')
    expect(json(again)).toEqual(PUBLIC)
    expect(isHit(again)).toBe(true)
  })

  it('an IP allowlist guard: 127.0.0.2 never gets the view 127.0.0.1 filled', async () => {
    const a = express()
    const cache = cacheResponse({ ttl: 60, backend: memory() })
    const internalOnly = (req: any, _res: any, next: any) => (req.ip === '127.0.0.1' ? next() : next('route'))
    a.get('/status', internalOnly, cache, (_req: any, res: any) => res.json(SECRET))
    a.get('/status', cache, (_req: any, res: any) => res.json(PUBLIC))
    const r = await serve(a)
    expect(json(await getFrom(r.port, '/status', '127.0.0.1'))).toEqual(SECRET)
    expect(json(await getFrom(r.port, '/status', '127.0.0.2'))).toEqual(PUBLIC)
  })

  it('a router mounted twice, once behind a guard router: the unguarded mount never replays the guarded one', async () => {
    const a = express()
    const cache = cacheResponse({ ttl: 60, backend: memory() })
    let runs = 0
    const shared = express.Router()
    shared.get('/report', cache, (req: any, res: any) =>
      res.json({ run: ++runs, key: req.get('x-api-key') ?? null }),
    )
    const guarded = express.Router()
    guarded.use((req: any, _res: any, next: any) =>
      req.get('x-api-key') === 'k-internal' ? next() : next('router'),
    )
    guarded.use(shared)
    a.use(guarded)
    a.use((req: any, _res: any, next: any) => {
      req.headers['x-seen-by-audit'] = '1'
      next()
    })
    a.use(shared)
    const r = await serve(a)
    expect(json(await r.request('/report', { headers: internal }))).toEqual({ run: 1, key: 'k-internal' })
    expect(json(await r.request('/report'))).toEqual({ run: 2, key: null })
  })

  it('invalidation by URL, prefix and clear() reaches the entries of every route', async () => {
    const { a, backend, c1, c2 } = app('two caches')
    const r = await serve(a)
    const fill = async () => {
      await r.request('/status', { headers: internal })
      await r.request('/status')
      expect(isHit(await r.request('/status', { headers: internal }))).toBe(true)
      expect(isHit(await r.request('/status'))).toBe(true)
    }
    const bothMiss = async () => {
      expect(isHit(await r.request('/status', { headers: internal }))).toBe(false)
      expect(isHit(await r.request('/status'))).toBe(false)
    }
    await fill()
    expect(await c1.invalidate(`${r.url}/status`)).toBe(true)
    await bothMiss()
    expect(isHit(await r.request('/status'))).toBe(true)
    await invalidateResponse(`${r.url}/status`, { backend })
    await bothMiss()
    await invalidateResponsePrefix('http', { backend })
    await bothMiss()
    await c2.clear()
    await bothMiss()
  })
})
