/**
 * Stale-while-revalidate from the seat of the clients that arrive while a refresh runs, and of
 * refreshes that go wrong: nobody waits for a refresh, nobody hangs on one.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { afterAll, describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, memory, type Reply, serveEach } from './http.js'

const serve = serveEach()
const text = (reply: Reply) => reply.body.toString()

const dir = mkdtempSync(join(tmpdir(), 'cache-express-swr-'))
const bigFile = join(dir, 'big.txt')
writeFileSync(bigFile, 'z'.repeat(200 * 1024))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Polls `check` every 10 ms, for at most 3 s (a refresh runs in the background). */
async function eventually(check: () => boolean): Promise<void> {
  for (let i = 0; i < 300 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 10))
}

describe.each(EXPRESS)('stale-while-revalidate on %s', (name, express) => {
  /**
   * `/s` answers v1, then whatever `refresh` does on the runs after it. The clock is moved past
   * the ttl by `expire()`.
   */
  function staleApp(refresh: (req: any, res: any, next: any) => unknown, options = {}, wrap = false) {
    let now = 1_000_000
    const clock = () => now
    const mw = cacheResponse({
      backend: memory(clock),
      ttl: 60,
      staleWhileRevalidate: 600,
      now: clock,
      ...options,
    })
    const app = express()
    const runs = { n: 0 }
    const handler = (req: any, res: any, next: any) => {
      runs.n++
      if (runs.n === 1) return res.send('v1')
      return refresh(req, res, next)
    }
    // As a wrapper, the cache sees the handler's promise on Express 4 too.
    if (wrap) app.get('/s', mw(handler))
    else app.get('/s', mw, handler)
    app.use((_error: unknown, _req: any, res: any, _next: any) => res.status(500).send('error page'))
    return { app, mw, runs, expire: () => void (now += 61_000) }
  }

  it('answers every request inside the stale window from the stale entry while the refresh is still running', async () => {
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const { app, mw, runs, expire } = staleApp(async (_req, res) => {
      await gate
      res.send('v2')
    })
    const r = await serve(app)
    await r.request('/s')
    expire()
    // The first stale hit starts the refresh; it waits on the gate, which stays closed until all
    // of these have been answered.
    const during = await Promise.all(Array.from({ length: 10 }, () => r.request('/s', { timeout: 3_000 })))
    expect(during.map(text)).toEqual(Array(10).fill('v1'))
    expect(runs.n).toBe(2)
    release()
    await eventually(() => mw.stats.sets === 2)
    expect(text(await r.request('/s'))).toBe('v2')
  })

  it('runs one refresh, counted as stored, while its handler works on after sending', async () => {
    // r69-c: the refresh was failed a turn after it finished ("ended without being stored"),
    // counted as an error, and every stale hit meanwhile started another one.
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const { app, mw, runs, expire } = staleApp(async (_req, res) => {
      res.send('v2')
      await gate
    })
    const r = await serve(app)
    await r.request('/s')
    expire()
    await r.request('/s')
    await new Promise((resolve) => setTimeout(resolve, 50))
    // Express 4 does not hand the cache the handler's promise: stored as it finished (documented).
    const during = name === 'Express 4' ? 'v2' : 'v1'
    for (let i = 0; i < 5; i++) expect(text(await r.request('/s'))).toBe(during)
    expect(runs.n).toBe(2)
    expect(mw.stats.errors).toBe(0)
    release()
    await eventually(() => mw.stats.sets === 2)
    expect(text(await r.request('/s'))).toBe('v2')
    expect(mw.stats.errors).toBe(0)
  })

  const failures: [string, (req: any, res: any, next: any) => unknown][] = [
    ['calls next()', (_req, _res, next) => next()],
    ['calls next(error)', (_req, _res, next) => next(new Error('database down'))],
    [
      'throws',
      () => {
        throw new Error('boom')
      },
    ],
    ['answers 500', (_req, res) => res.status(500).send('nope')],
  ]
  if (name === 'Express 5') {
    failures.push([
      'rejects (an async throw)',
      async () => {
        throw new Error('async boom')
      },
    ])
  }

  it.each(failures)(
    'a refresh that %s keeps the stale entry and never hangs a request',
    async (_, refresh) => {
      const { app, mw, runs, expire } = staleApp(refresh)
      const errors: unknown[] = []
      mw.on('error', (event) => errors.push(event.error))
      const r = await serve(app)
      await r.request('/s')
      expire()
      for (let i = 0; i < 3; i++) {
        const reply = await r.request('/s', { timeout: 3_000 })
        expect(text(reply)).toBe('v1')
        await eventually(() => errors.length > i)
      }
      // One refresh per stale hit, each failure counted: the URL is never left waiting on one.
      expect(runs.n).toBe(4)
      expect(errors).toHaveLength(3)
      expect(mw.stats.errors).toBe(3)
    },
  )

  it('a refresh that streams a 200 KB file with sendFile completes and replaces the entry', async () => {
    // sendFile sends `Cache-Control: public, max-age=0` unless given a maxAge: never stored.
    const { app, mw, expire } = staleApp((_req, res) => res.sendFile(bigFile, { maxAge: '1h' }), {
      maxBodySize: '1MB',
    })
    const r = await serve(app)
    await r.request('/s')
    expire()
    expect(text(await r.request('/s', { timeout: 3_000 }))).toBe('v1')
    await eventually(() => mw.stats.sets === 2)
    const fresh = await r.request('/s', { timeout: 3_000 })
    expect(fresh.body.length).toBe(200 * 1024)
    expect(fresh.headers['cache-status']).toMatch(/hit; ttl=60/)
  })

  it('a refresh that pipes a large stream completes and replaces the entry', async () => {
    const { app, mw, expire } = staleApp((_req, res) => {
      res.type('text')
      Readable.from(Array.from({ length: 20 }, () => Buffer.alloc(8 * 1024, 'p'))).pipe(res)
    })
    const r = await serve(app)
    await r.request('/s')
    expire()
    await r.request('/s', { timeout: 3_000 })
    await eventually(() => mw.stats.sets === 2)
    expect((await r.request('/s', { timeout: 3_000 })).body.length).toBe(160 * 1024)
  })

  it("a refresh that middleware before the cache answers (a rate limiter's 429) fails at once, and the next stale hit refreshes again", async () => {
    let now = 1_000_000
    const clock = () => now
    const mw = cacheResponse({ backend: memory(clock), ttl: 60, staleWhileRevalidate: 600, now: clock })
    const errors: { operation: string; error: Error }[] = []
    mw.on('error', (event) => errors.push({ operation: event.operation ?? '', error: event.error as Error }))
    const app = express()
    // A rate limiter that turns away the third request it sees: the copy of the first refresh
    // (the first request misses, the second is a stale hit that starts the refresh).
    let seen = 0
    let turnedAway = 0
    app.use((_req: any, res: any, next: any) => {
      if (++seen === 3) {
        turnedAway++
        return res.status(429).send('slow down')
      }
      next()
    })
    let runs = 0
    app.get('/r', mw, (_req: any, res: any) => res.send(`v${++runs}`))
    const r = await serve(app)
    expect(text(await r.request('/r'))).toBe('v1')
    now += 61_000
    expect(text(await r.request('/r', { timeout: 3_000 }))).toBe('v1')
    await eventually(() => errors.length > 0)
    expect(turnedAway).toBe(1)
    expect(errors.map((e) => e.operation)).toEqual(['revalidate'])
    expect(errors[0]!.error.message).toMatch(/429 before it reached the cache/)
    expect(mw.stats.errors).toBe(1)
    // Settled at once, not held for revalidateTimeout (30 s): this stale hit starts a new refresh.
    expect(text(await r.request('/r', { timeout: 3_000 }))).toBe('v1')
    await eventually(() => mw.stats.sets === 2)
    expect(text(await r.request('/r'))).toBe('v2')
  })

  it('a refresh that never answers is abandoned after revalidateTimeout, counted, and tried again later', async () => {
    const { app, mw, runs, expire } = staleApp(() => undefined, { revalidateTimeout: '200ms' })
    const errors: Error[] = []
    mw.on('error', (event) => errors.push(event.error as Error))
    const r = await serve(app)
    await r.request('/s')
    expire()
    expect(text(await r.request('/s', { timeout: 3_000 }))).toBe('v1')
    expect(text(await r.request('/s', { timeout: 3_000 }))).toBe('v1')
    expect(runs.n).toBe(2)
    await eventually(() => errors.length === 1)
    expect(errors[0]!.message).toMatch(/revalidateTimeout/)
    expect(text(await r.request('/s', { timeout: 3_000 }))).toBe('v1')
    expect(runs.n).toBe(3)
  })

  it('never stores a refresh abandoned after revalidateTimeout whose handler worked on after sending, over a newer one', async () => {
    // r70-c: the abandoned refresh (counted as failed) was stored once its handler's work was
    // over, and put v1 back over the v2 a later refresh had stored.
    let version = 1
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const { app, mw, runs, expire } = staleApp(
      async (_req, res) => {
        const run = runs.n
        res.send(`v${version}`)
        if (run === 2) await gate
      },
      { revalidateTimeout: '200ms' },
      true,
    )
    const errors: Error[] = []
    mw.on('error', (event) => errors.push(event.error as Error))
    const r = await serve(app)
    expect(text(await r.request('/s'))).toBe('v1')
    expire()
    // A stale hit starts the first refresh, which sends v1 and works on.
    expect(text(await r.request('/s'))).toBe('v1')
    await eventually(() => errors.length === 1)
    expect(errors[0]!.message).toMatch(/revalidateTimeout/)
    version = 2
    // The next stale hit starts another refresh, which stores v2.
    await r.request('/s')
    await eventually(() => mw.stats.sets === 2)
    expect(text(await r.request('/s'))).toBe('v2')
    release()
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(text(await r.request('/s'))).toBe('v2')
    expect(mw.stats.sets).toBe(2)
  })

  it('refreshes with the protocol of the request it copies (https behind a trusted proxy)', async () => {
    let now = 1_000_000
    const clock = () => now
    const app = express()
    app.set('trust proxy', true)
    let runs = 0
    const mw = cacheResponse({ backend: memory(clock), ttl: 60, staleWhileRevalidate: 600, now: clock })
    app.get('/p', mw, (req: any, res: any) => res.send(`${req.protocol} ${++runs}`))
    const r = await serve(app)
    const https = { 'x-forwarded-proto': 'https' }
    expect(text(await r.request('/p', { headers: https }))).toBe('https 1')
    now += 61_000
    expect(text(await r.request('/p', { headers: https }))).toBe('https 1')
    await eventually(() => mw.stats.sets === 2)
    expect(text(await r.request('/p', { headers: https }))).toBe('https 2')
    expect(text(await r.request('/p'))).toBe('http 3')
  })

  it('a refresh that passes another cache is reported by the cache that started it alone', async () => {
    let now = 1_000_000
    const clock = () => now
    const backend = memory(clock)
    const errors: Error[] = []
    const outer = cacheResponse({ backend, ttl: 60, staleWhileRevalidate: 600, now: clock })
    // Its own keyPrefix, and a size limit the body exceeds: it never stores, the outer cache does.
    const inner = cacheResponse({ backend, ttl: 60, keyPrefix: 'inner', maxBodySize: '1KB', now: clock })
    for (const cache of [outer, inner]) cache.on('error', (event) => errors.push(event.error as Error))
    let runs = 0
    const app = express()
    app.use(outer)
    app.get('/n', inner, (_req: any, res: any) => res.send(`v${++runs} ${'x'.repeat(2048)}`))
    const r = await serve(app)
    expect(text(await r.request('/n')).slice(0, 2)).toBe('v1')
    await eventually(() => outer.stats.sets === 1)
    now += 61_000
    expect(text(await r.request('/n')).slice(0, 2)).toBe('v1')
    await eventually(() => outer.stats.sets === 2 || errors.length > 0)
    expect(errors).toEqual([])
    expect(outer.stats.sets).toBe(2)
    expect(text(await r.request('/n')).slice(0, 2)).toBe('v2')
  })
})
