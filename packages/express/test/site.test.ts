/**
 * An entry is replayed only at the place in the app it was made at. A guard that turns a request
 * away with `next('route')` or `next('router')` sends it to another route for the same URL: that
 * route's cache must never answer it with what the guarded route stored.
 */
import { createServer } from 'node:http'
import { describe, expect, it, vi } from 'vitest'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cache, cacheResponse, invalidateResponse, invalidateResponsePrefix } from '../src/index.js'
import type { MemoryBackend } from '@cache/memory'
import { EXPRESS, freshCopy, memory, type Reply, request, serveEach } from './http.js'

const serve = serveEach()
const json = (reply: Reply) => JSON.parse(reply.body.toString())
const isHit = (reply: Reply) => /hit|collapsed/.test(String(reply.headers['cache-status']))
const internal = { 'x-api-key': 'k-internal' }
const SECRET = { view: 'internal', dbPassword: 'hunter2' }
const PUBLIC = { view: 'public', ok: true }

/** Sends a request from a chosen loopback address, as a client on another host would. */
const getFrom = (port: number, path: string, localAddress: string) => request(port, path, { localAddress })

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

describe.each(EXPRESS)(
  'routers and apps made by one factory, picked per request by a function, on %s',
  (_name, express) => {
    const requireRole = (role: string) => (req: any, res: any, next: any) =>
      req.role === role ? next() : res.sendStatus(403)
    const withRole = (req: any, _res: any, next: any) => {
      req.role = req.get('x-api-key') === 'k-internal' ? 'admin' : 'user'
      next()
    }

    /** Two routers (or sub-apps) of the same text, one per role, and a function that picks one. */
    function picked(shape: 'router' | 'sub-app') {
      const backend = memory()
      const make = (role: string, data: object) => {
        const r: any = shape === 'router' ? express.Router() : express()
        r.get('/report', requireRole(role), cacheResponse({ ttl: 60, backend }), (_req: any, res: any) =>
          res.json(data),
        )
        return r
      }
      const admin = make('admin', SECRET)
      const user = make('user', PUBLIC)
      const a = express()
      a.use(withRole)
      a.use((req: any, res: any, next: any) => (req.role === 'admin' ? admin : user)(req, res, next))
      return a
    }

    it.each(['router', 'sub-app'] as const)(
      '%s: a user never gets the admin response; neither is stored (detail=site)',
      async (shape) => {
        const r = await serve(picked(shape))
        for (let round = 0; round < 3; round++) {
          const admin = await r.request('/report', { headers: internal })
          expect(json(admin)).toEqual(SECRET)
          const user = await r.request('/report')
          expect(json(user)).toEqual(PUBLIC)
          expect(user.headers['cache-status']).toMatch(/fwd=request; detail=site/)
          expect(admin.headers['cache-status']).toMatch(/fwd=request; detail=site/)
        }
      },
    )

    it('two cached handlers of one text picked by a function on one route: the second one seen bypasses', async () => {
      const cache = cacheResponse({ ttl: 60, backend: memory() })
      const report = (data: object) => (_req: any, res: any, _next: any) => res.json(data)
      const forAdmin = cache(report(SECRET))
      const forUser = cache(report(PUBLIC))
      const a = express()
      a.use(withRole)
      a.get('/report', (req: any, res: any, next: any) =>
        (req.role === 'admin' ? forAdmin : forUser)(req, res, next),
      )
      const r = await serve(a)
      for (let round = 0; round < 3; round++) {
        expect(json(await r.request('/report', { headers: internal }))).toEqual(SECRET)
        const user = await r.request('/report')
        expect(json(user)).toEqual(PUBLIC)
        expect(user.headers['cache-status']).toMatch(/detail=site/)
      }
    })

    it.each([
      ['a router mounted with app.use(path)', '/api/report'],
      ['nested routers', '/api/v1/report'],
      ['a sub-app mounted with app.use(path)', '/sub/report'],
      ['a sub-app in a mounted router', '/api/sub/report'],
      ['app.route()', '/route'],
      ['app.all()', '/all'],
    ])('%s still caches', async (_shape, path) => {
      const backend = memory()
      const cache = cacheResponse({ ttl: 60, backend })
      let runs = 0
      const answer = (_req: any, res: any) => res.json({ run: ++runs })
      const a = express()
      const api = express.Router()
      const v1 = express.Router()
      const sub = express()
      const inner = express()
      api.get('/report', requireRole('user'), cache, answer)
      v1.get('/report', cache, answer)
      sub.get('/report', cache, answer)
      inner.get('/report', cache, answer)
      api.use('/v1', v1)
      api.use('/sub', inner)
      a.use(withRole)
      a.use('/api', api)
      a.use('/sub', sub)
      a.route('/route').get(cache, answer)
      a.all('/all', cache, answer)
      const r = await serve(a)
      await r.request(path)
      await r.request(path)
      const third = await r.request(path)
      expect(isHit(third)).toBe(true)
      expect(runs).toBeLessThanOrEqual(2)
    })
  },
)

describe.each(EXPRESS)('apps that differ only in what runs before the route, on %s', (_name, express) => {
  const requireRole = (role: string) =>
    function guard(req: any, res: any, next: any) {
      return req.get('x-role') === role ? next() : res.status(403).send('forbidden')
    }
  /** The same route in every app: what it answers depends on what ran before it. */
  const report = (req: any, res: any) => res.json({ audience: req.audience ?? 'anyone', data: req.data })
  const audience = (who: string, data: string) => (req: any) => {
    req.audience = who
    req.data = data
  }

  /** An app whose one cached route answers what `role` may see. */
  function cachedReport(backend: MemoryBackend, role: string, data: string) {
    const a = express()
    a.get('/report', cacheResponse({ ttl: 60, backend }), (req: any, res: any) => {
      audience(role, data)(req)
      report(req, res)
    })
    return a
  }

  it('two live apps of one factory, guards configured apart: a client of one never gets the other one’s entry, whatever Host it sends', async () => {
    const backend = memory()
    const make = (role: string, data: string) => {
      const a = express()
      a.get('/report', requireRole(role), cacheResponse({ ttl: 60, backend }), (req: any, res: any) => {
        audience(role, data)(req)
        report(req, res)
      })
      return a
    }
    const admin = await serve(make('admin', 'ADMIN-ONLY'))
    const user = await serve(make('user', 'public'))
    expect(json(await admin.request('/report', { headers: { 'x-role': 'admin' } })).data).toBe('ADMIN-ONLY')
    for (let i = 0; i < 3; i++) {
      const spoofed = await user.request('/report', {
        headers: { 'x-role': 'user', host: `127.0.0.1:${admin.port}` },
      })
      expect(json(spoofed).data).toBe('public')
      // Its own entry from the second request on.
      expect(isHit(spoofed)).toBe(i > 0)
    }
  })

  it('two apps of one factory that the server’s own listener picks between: no site, from the first request on', async () => {
    const backend = memory()
    const make = (role: string, data: string) => cachedReport(backend, role, data)
    const forAdmin = make('admin', 'ADMIN-ONLY')
    const forUser = make('user', 'public')
    const server = createServer((req, res) =>
      (req.headers['x-role'] === 'admin' ? forAdmin : forUser)(req as any, res as any),
    )
    const r = await serve({ listen: (...args: any[]) => server.listen(...args) })
    // The process's cache hooks Express on its first request (as a restarted process would).
    await r.request('/report', { headers: { 'x-role': 'user' } })
    for (let i = 0; i < 3; i++) {
      const admin = await r.request('/report', { headers: { 'x-role': 'admin' } })
      expect(json(admin).data).toBe('ADMIN-ONLY')
      expect(admin.headers['cache-status']).toMatch(/detail=site/)
      const user = await r.request('/report', { headers: { 'x-role': 'user' } })
      expect(json(user).data).toBe('public')
      expect(user.headers['cache-status']).toMatch(/detail=site/)
    }
  })

  const SHAPES = [
    'app.use(guard)',
    'router.use(guard)',
    'app.get(path, guard) before the route',
    'app.param',
  ] as const

  /** One deployment: its guard code is the only difference (`code` is part of the guard's source). */
  function deployment(shape: (typeof SHAPES)[number], backend: MemoryBackend, code: 'admin' | 'user') {
    const guard =
      code === 'admin'
        ? function requireAdminKey(req: any, _res: any, next: any) {
            audience('admin', 'ADMIN-ONLY')(req)
            return req.get('x-api-key') === 'k-internal' ? next() : next(new Error('forbidden'))
          }
        : function publicAccess(req: any, _res: any, next: any) {
            audience('user', 'public')(req)
            next()
          }
    const a = express()
    const cache = cacheResponse({ ttl: 60, backend })
    if (shape === 'app.use(guard)') {
      a.use(guard)
      a.get('/api/report', cache, report)
    } else if (shape === 'router.use(guard)') {
      const api = express.Router()
      api.use(guard)
      api.get('/report', cache, report)
      a.use('/api', api)
    } else if (shape === 'app.get(path, guard) before the route') {
      a.get('/api/report', guard)
      a.get('/api/report', cache, report)
    } else {
      a.param('part', guard)
      a.get('/api/:part', cache, report)
    }
    return a
  }

  it.each(SHAPES)(
    '%s: another deployment whose guard differs in code never replays the first one’s entries',
    async (shape) => {
      const backend = memory()
      const admin = await serve(deployment(shape, backend, 'admin'))
      expect(json(await admin.request('/api/report', { headers: internal })).data).toBe('ADMIN-ONLY')
      expect(isHit(await admin.request('/api/report', { headers: internal }))).toBe(true)
      await admin.close()
      // The other deployment, as another process would run it: same route, port, Host and backend.
      const user = await serve(deployment(shape, backend, 'user'), admin.port)
      const answer = await user.request('/api/report')
      expect(json(answer).data).toBe('public')
      expect(isHit(answer)).toBe(false)
    },
  )

  it.each(SHAPES)(
    '%s: a deployment of the same code keeps the entries of the one before it',
    async (shape) => {
      const backend = memory()
      const first = await serve(deployment(shape, backend, 'user'))
      expect(json(await first.request('/api/report')).data).toBe('public')
      await first.close()
      const next = await serve(deployment(shape, backend, 'user'), first.port)
      const answer = await next.request('/api/report')
      expect(json(answer).data).toBe('public')
      expect(isHit(answer)).toBe(true)
    },
  )

  it.each(['never mounted', 'mounted elsewhere'] as const)(
    'a mounted sub-app whose handle picks between apps %s has no site',
    async (picked) => {
      const backend = memory()
      const make = (role: string, data: string) => cachedReport(backend, role, data)
      const forAdmin = make('admin', 'ADMIN-ONLY')
      const forUser = make('user', 'public')
      const a = express()
      a.get('/health', cacheResponse({ ttl: 60, backend }), (_req: any, res: any) => res.json({ ok: true }))
      // Mounted normally elsewhere: their `parent` is the app.
      if (picked === 'mounted elsewhere') {
        a.use('/internal/admin', forAdmin)
        a.use('/internal/public', forUser)
      }
      const picker = express()
      a.use(picker)
      ;(picker as any).handle = (req: any, res: any, done: any) =>
        (req.get('x-role') === 'admin' ? (forAdmin as any) : (forUser as any)).handle(req, res, done)
      const r = await serve(a)
      await r.request('/health')
      for (const role of ['admin', 'user', 'admin', 'user']) {
        const reply = await r.request('/report', { headers: { 'x-role': role } })
        expect(json(reply).data).toBe(role === 'admin' ? 'ADMIN-ONLY' : 'public')
        expect(reply.headers['cache-status']).toMatch(/detail=site/)
      }
      // Through their own mounts they cache.
      if (picked === 'mounted elsewhere') {
        await r.request('/internal/admin/report')
        expect(isHit(await r.request('/internal/admin/report'))).toBe(true)
      }
    },
  )

  it.each(['before', 'after'] as const)(
    'a sub-app whose handle is replaced (%s it is mounted) to pick an app per request has no site',
    async (when) => {
      const backend = memory()
      const make = (role: string, data: string) => cachedReport(backend, role, data)
      const forAdmin = make('admin', 'ADMIN-ONLY')
      const forUser = make('user', 'public')
      const a = express()
      a.get('/health', cacheResponse({ ttl: 60, backend }), (_req: any, res: any) => res.json({ ok: true }))
      const picker = express()
      const pick = (req: any, res: any, done: any) =>
        (req.get('x-role') === 'admin' ? (forAdmin as any) : (forUser as any)).handle(req, res, done)
      if (when === 'before') (picker as any).handle = pick
      a.use(picker)
      if (when === 'after') (picker as any).handle = pick
      const r = await serve(a)
      // The process's cache hooks Express on its first request.
      await r.request('/health')
      const first = await r.request('/report', { headers: { 'x-role': 'admin' } })
      expect(json(first).data).toBe('ADMIN-ONLY')
      expect(first.headers['cache-status']).toMatch(/detail=site/)
      const user = await r.request('/report', { headers: { 'x-role': 'user' } })
      expect(json(user).data).toBe('public')
      expect(user.headers['cache-status']).toMatch(/detail=site/)
    },
  )
})

describe.each(EXPRESS)('what a site holds beyond the routes, on %s', (_name, express) => {
  const audienceApp = (backend: MemoryBackend, data: string, cacheWith = cacheResponse) => {
    const a = express()
    a.get('/report', cacheWith({ ttl: 60, backend }), (_req: any, res: any) => res.json({ data }))
    return a
  }

  /** Listens on `address` (`host:port`, or a Unix socket path); resolves once listening. */
  function listenAt(app: any, address: { host: string; port: number } | string) {
    return new Promise<import('node:http').Server>((resolve) => {
      const server: import('node:http').Server =
        typeof address === 'string'
          ? app.listen(address, () => resolve(server))
          : app.listen(address.port, address.host, () => resolve(server))
    })
  }
  const close = (server: import('node:http').Server) =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  /** One name for the service on both interfaces, as a proxy in front would send. */
  const getAt = (address: { host: string; port: number } | string, path: string) =>
    typeof address === 'string'
      ? request(0, path, { socketPath: address, headers: { host: 'api.example' } })
      : request(address.port, path, { host: address.host, headers: { host: 'api.example' } })

  it.each(['two addresses, one port', 'two Unix sockets'] as const)(
    'two servers of one process (%s) never share an entry, also after a restart',
    async (shape) => {
      const backend = memory()
      const dir = mkdtempSync(join(tmpdir(), 'cache-site-'))
      const probe = await listenAt(express(), { host: '127.0.0.1', port: 0 })
      const port = (probe.address() as { port: number }).port
      await close(probe)
      const internal = shape === 'two Unix sockets' ? join(dir, 'internal.sock') : { host: '127.0.0.1', port }
      const external = shape === 'two Unix sockets' ? join(dir, 'public.sock') : { host: '127.0.0.2', port }
      try {
        for (let run = 0; run < 2; run++) {
          // The same service started twice (a restart, with the package loaded afresh as a new
          // process would): the internal API, and the public one.
          vi.resetModules()
          const fresh = ((await import('../src/index.js')) as typeof import('../src/index.js')).cacheResponse
          const a = await listenAt(audienceApp(backend, 'ADMIN-ONLY', fresh), internal)
          const b = await listenAt(audienceApp(backend, 'public', fresh), external)
          try {
            if (run === 0) expect(json(await getAt(internal, '/report')).data).toBe('ADMIN-ONLY')
            const answer = await getAt(external, '/report')
            expect(json(answer).data).toBe('public')
          } finally {
            await close(a)
            await close(b)
          }
        }
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    },
  )

  it.each(['another port', 'the same port on another address', 'another Unix socket'] as const)(
    'a server that closes and listens again (%s) never shares an entry with the server now at its old address',
    async (shape) => {
      const backend = memory()
      const dir = mkdtempSync(join(tmpdir(), 'cache-site-'))
      const a = express()
      a.get('/x', cacheResponse({ ttl: 60, backend }), (req: any, res: any) =>
        res.json({ at: req.socket.server.address() }),
      )
      const first = shape === 'another Unix socket' ? join(dir, 'a.sock') : { host: '127.0.0.1', port: 0 }
      const moved = await listenAt(a, first)
      const old = shape === 'another Unix socket' ? first : (moved.address() as { port: number })
      const oldAddress = typeof old === 'string' ? old : { host: '127.0.0.1', port: old.port }
      const servers = [moved]
      try {
        await getAt(oldAddress, '/warm')
        expect(json(await getAt(oldAddress, '/x')).at).toEqual(moved.address())
        await close(moved)
        const next =
          shape === 'another Unix socket'
            ? join(dir, 'b.sock')
            : shape === 'another port'
              ? { host: '127.0.0.1', port: 0 }
              : { host: '127.0.0.2', port: (oldAddress as { port: number }).port }
        await new Promise<void>((resolve) =>
          typeof next === 'string'
            ? moved.listen(next, resolve)
            : moved.listen(next.port, next.host, resolve),
        )
        const newAddress =
          typeof next === 'string'
            ? next
            : { host: next.host, port: (moved.address() as { port: number }).port }
        // Another server of the same app now listens where the first one did, and fills the entry.
        servers.push(await listenAt(a, oldAddress))
        const there = await getAt(oldAddress, '/x')
        expect(json(there).at).toEqual(servers[1]!.address())
        const here = await getAt(newAddress, '/x')
        expect(isHit(here)).toBe(false)
        expect(json(here).at).toEqual(moved.address())
        expect(isHit(await getAt(newAddress, '/x'))).toBe(true)
      } finally {
        for (const s of servers) if (s.listening) await close(s)
        rmSync(dir, { recursive: true, force: true })
      }
    },
  )

  it('a decorated method of two instances that a route picks between: the second one seen bypasses', async () => {
    const backend = memory()
    class ReportsController {
      constructor(private readonly data: string) {}
      @cache({ ttl: 60, backend })
      list(_req: any, res: any, _next?: any) {
        res.json({ data: this.data })
      }
    }
    const internalOnly = new ReportsController('ADMIN-ONLY')
    const everyone = new ReportsController('public')
    const a = express()
    a.get('/reports', (req: any, res: any, next: any) =>
      (req.get('x-api-key') === 'k-internal' ? internalOnly : everyone).list(req, res, next),
    )
    const r = await serve(a)
    await r.request('/reports', { headers: internal })
    expect(json(await r.request('/reports', { headers: internal })).data).toBe('ADMIN-ONLY')
    for (let i = 0; i < 3; i++) {
      const outsider = await r.request('/reports')
      expect(json(outsider).data).toBe('public')
      expect(outsider.headers['cache-status']).toMatch(/detail=site/)
    }
  })

  it('under trust proxy, a forged Host behind X-Forwarded-Host keeps its own entry', async () => {
    const a = express()
    a.set('trust proxy', 'loopback')
    const backend = memory()
    a.get('/reset', cacheResponse({ ttl: 60, backend }), (req: any, res: any) =>
      res.json({ action: `${req.protocol}://${req.get('host')}/reset/confirm` }),
    )
    const r = await serve(a)
    const forged = await r.request('/reset', {
      headers: { host: 'evil.example', 'x-forwarded-host': 'shop.example' },
    })
    expect(json(forged).action).toBe('http://evil.example/reset/confirm')
    const victim = await r.request('/reset', {
      headers: { host: 'shop.example', 'x-forwarded-host': 'shop.example' },
    })
    expect(json(victim).action).toBe('http://shop.example/reset/confirm')
    expect(isHit(victim)).toBe(false)
    // Each is cached, and invalidating the URL reaches both.
    const victimHeaders = { host: 'shop.example', 'x-forwarded-host': 'shop.example' }
    const forgedHeaders = { host: 'evil.example', 'x-forwarded-host': 'shop.example' }
    expect(isHit(await r.request('/reset', { headers: victimHeaders }))).toBe(true)
    expect(isHit(await r.request('/reset', { headers: forgedHeaders }))).toBe(true)
    await invalidateResponse('http://shop.example/reset', { backend })
    expect(isHit(await r.request('/reset', { headers: victimHeaders }))).toBe(false)
    expect(isHit(await r.request('/reset', { headers: forgedHeaders }))).toBe(false)
  })

  it('a function put before a cached route while the app serves: the route makes new entries, the old one is not replayed', async () => {
    const a = express()
    let made = 0
    a.get('/catalog', cacheResponse({ ttl: 60, backend: memory() }), (_req: any, res: any) =>
      res.json({ made: ++made }),
    )
    const r = await serve(a)
    expect(json(await r.request('/catalog')).made).toBe(1)
    expect(isHit(await r.request('/catalog'))).toBe(true)
    // Added at the end of the app's stack, then moved in front of everything (a late-registered guard).
    a.use((req: any, _res: any, next: any) => {
      req.audited = true
      next()
    })
    const stack = ((a as any)._router ?? (a as any).router).stack as unknown[]
    stack.unshift(stack.pop())
    const after = await r.request('/catalog')
    expect(isHit(after)).toBe(false)
    expect(json(after).made).toBe(2)
    expect(isHit(await r.request('/catalog'))).toBe(true)
  })

  it('a param callback registered while the app serves: the route makes new entries, the old one is not replayed', async () => {
    const a = express()
    let made = 0
    a.get('/items/:id', cacheResponse({ ttl: 60, backend: memory() }), (req: any, res: any) =>
      res.json({ id: req.params.id, made: ++made }),
    )
    const r = await serve(a)
    expect(json(await r.request('/items/7')).made).toBe(1)
    expect(isHit(await r.request('/items/7'))).toBe(true)
    a.param('id', (req: any, _res: any, next: any, id: string) => {
      req.item = id
      next()
    })
    const after = await r.request('/items/7')
    expect(isHit(after)).toBe(false)
    expect(json(after).made).toBe(2)
    expect(isHit(await r.request('/items/7'))).toBe(true)
  })
})

/**
 * The first request a copy of Express serves with a cache starts before the cache observes its
 * dispatch: its site is searched for in the app's routers. A router mounted twice holds the cache
 * at two places, and that request cannot tell which one it came through.
 */
describe.each([
  ['Express 4', 'express4'],
  ['Express 5', 'express'],
] as const)('a router mounted twice, from the first request on, on %s', (_name, id) => {
  const ORDERS = ['public mount first', 'admin mount first'] as const
  const FIRST = ['admin', 'public', 'admin after a warm-up', 'public after a warm-up'] as const

  function app(order: (typeof ORDERS)[number]) {
    type Express = typeof import('express')
    // A copy of Express no cache has seen yet, as in a process that just started.
    const express = freshCopy<Express>(id)
    const a = express()
    const shared = express.Router()
    shared.get('/dashboard', cacheResponse({ ttl: 60, backend: memory() }), (req: any, res: any) =>
      res.send(req.isAdmin ? 'ADMIN: revenue' : 'public dashboard'),
    )
    const isAdmin = (req: any) => req.get('x-role') === 'admin'
    const pub = express.Router()
    pub.use((req: any, _res: any, next: any) => (isAdmin(req) ? next('router') : next()))
    pub.use(shared)
    const adm = express.Router()
    adm.use((req: any, _res: any, next: any) => {
      if (!isAdmin(req)) return next('router')
      req.isAdmin = true
      next()
    })
    adm.use(shared)
    if (order === 'public mount first') a.use(pub, adm)
    else a.use(adm, pub)
    a.get('/other', (_req: any, res: any) => res.send('other'))
    return a
  }

  describe.each(ORDERS)('%s', (order) => {
    it.each(FIRST)('first request %s: each audience only ever gets its own page', async (first) => {
      const r = await serve(app(order))
      if (first.endsWith('warm-up')) await r.request('/other')
      const admin = { headers: { 'x-role': 'admin' } }
      const page = (reply: Reply) => reply.body.toString()
      const opening = await r.request('/dashboard', first.startsWith('admin') ? admin : {})
      expect(page(opening)).toBe(first.startsWith('admin') ? 'ADMIN: revenue' : 'public dashboard')
      // It cannot tell which mount it came through: it bypasses.
      expect(opening.headers['cache-status']).toMatch(/detail=site/)
      for (let i = 0; i < 2; i++) {
        const user = await r.request('/dashboard')
        expect(page(user)).toBe('public dashboard')
        expect(isHit(user)).toBe(i > 0)
        const boss = await r.request('/dashboard', admin)
        expect(page(boss)).toBe('ADMIN: revenue')
        expect(isHit(boss)).toBe(i > 0)
      }
    })
  })
})

/**
 * A router both mounted and called from middleware (for admins), on the first request a copy of
 * Express serves with a cache: nothing tells which way that request came, so it bypasses.
 */
describe.each([
  ['Express 4', 'express4'],
  ['Express 5', 'express'],
] as const)(
  'a router mounted and also called from middleware, from the first request on, on %s',
  (_name, id) => {
    const HANDED = ['req', 'Object.create(req)', 'a Proxy of req'] as const
    function app(handed: (typeof HANDED)[number]) {
      type Express = typeof import('express')
      const express = freshCopy<Express>(id)
      const a = express()
      const shared = express.Router()
      shared.get('/dashboard', cacheResponse({ ttl: 60, backend: memory() }), (req: any, res: any) =>
        res.send(req.isAdmin ? 'ADMIN: revenue' : 'public dashboard'),
      )
      a.use((req: any, res: any, next: any) => {
        if (req.get('x-role') !== 'admin') return next()
        req.isAdmin = true
        const given =
          handed === 'req' ? req : handed === 'a Proxy of req' ? new Proxy(req, {}) : Object.create(req)
        ;(shared as any)(given, res, next)
      })
      a.use(shared)
      a.get('/other', (_req: any, res: any) => res.send('other'))
      return a
    }

    it.each(HANDED)(
      'first request an admin one (router given %s): the public never gets the admin page',
      async (handed) => {
        const r = await serve(app(handed))
        await r.request('/other')
        const admin = { headers: { 'x-role': 'admin' } }
        const page = (reply: Reply) => reply.body.toString()
        const opening = await r.request('/dashboard', admin)
        expect(page(opening)).toBe('ADMIN: revenue')
        expect(opening.headers['cache-status']).toMatch(/detail=site/)
        for (let i = 0; i < 2; i++) {
          const user = await r.request('/dashboard')
          expect(page(user)).toBe('public dashboard')
          expect(isHit(user)).toBe(i > 0)
          const boss = await r.request('/dashboard', admin)
          expect(page(boss)).toBe('ADMIN: revenue')
          expect(boss.headers['cache-status']).toMatch(/detail=site/)
        }
      },
    )
  },
)
