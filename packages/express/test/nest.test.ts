/**
 * `@cacheResponse` on a real NestJS 11 app (Express platform) listening on a port: in any order
 * with `@Get`, `@UseGuards`, `@UseInterceptors` and a pipe, for handlers that return a value and
 * for handlers that write with `@Res()`.
 */
import 'reflect-metadata'
import type { CacheBackend } from '@cache/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { memory, type Reply, request } from './http.js'

/** What the fixture exports; it is compiled (and typechecked) in legacy decorator mode on its own. */
interface NestFixture {
  startNest(backend: CacheBackend): Promise<{
    app: { close(): Promise<void> }
    runs: { counts: Map<string, number> }
    ReportsController: Function
    stale: { stats: { sets: number; errors: number } }
    clock: { now: number }
    port: number
  }>
}
// A path the TC39-mode typecheck of this file does not follow into the legacy-mode fixture.
const FIXTURE: string = './fixtures/nest/app.js'

let nest: Awaited<ReturnType<NestFixture['startNest']>>
beforeAll(async () => {
  const { startNest } = (await import(FIXTURE)) as NestFixture
  nest = await startNest(memory())
})
afterAll(async () => {
  await nest.app.close()
})

const get = (path: string, headers: Record<string, string> = {}) => request(nest.port, path, { headers })
const json = (reply: Reply) => JSON.parse(reply.body.toString())
const admin = { 'x-api-key': 'admin-key' }
const runs = (route: string) => nest.runs.counts.get(route) ?? 0

describe('@cacheResponse on a NestJS controller', () => {
  it.each(['above', 'below', 'guard-above'])(
    '%s: the route exists, the guard still runs, and an admin response is never served to an anonymous client',
    async (route) => {
      const anonymousFirst = await get(`/reports/${route}?n=1`)
      expect(anonymousFirst.status).toBe(403)
      const miss = await get(`/reports/${route}?n=1`, admin)
      expect(miss.status).toBe(200)
      expect(json(miss)).toEqual({ route, n: 1, run: 1 })
      expect(miss.headers['x-intercepted']).toBe('yes')
      const hit = await get(`/reports/${route}?n=1`, admin)
      expect(hit.headers['cache-status']).toMatch(/hit/)
      expect(json(hit)).toEqual({ route, n: 1, run: 1 })
      expect(hit.headers['x-intercepted']).toBe('yes')
      const guardRuns = runs('guard')
      const anonymous = await get(`/reports/${route}?n=1`)
      expect(anonymous.status).toBe(403)
      expect(anonymous.body.toString()).not.toContain('"run"')
      expect(runs('guard')).toBe(guardRuns + 1)
      expect(runs(route)).toBe(1)
    },
  )

  it('runs the pipe: a value it rejects is answered 400 every time and never stored', async () => {
    for (let i = 0; i < 2; i++) {
      const bad = await get('/reports/below?n=abc', admin)
      expect(bad.status).toBe(400)
      expect(bad.headers['cache-status']).not.toMatch(/hit/)
    }
    expect(json(await get('/reports/below?n=7', admin))).toMatchObject({ n: 7 })
  })

  it('caches a handler that returns a string, and one that returns after an await', async () => {
    const first = await get('/reports/text')
    expect(first.status).toBe(200)
    expect(first.body.toString()).toBe('plain text 1')
    const second = await get('/reports/text')
    expect(second.body.toString()).toBe('plain text 1')
    expect(second.headers['cache-status']).toMatch(/hit/)
    const replies = await Promise.all(Array.from({ length: 5 }, () => get('/reports/async')))
    for (const reply of replies) expect(json(reply)).toEqual({ route: 'async', run: 1 })
  })

  it('caches a handler that writes with @Res(), and one with @Res({ passthrough: true })', async () => {
    expect(json(await get('/reports/with-res'))).toEqual({ route: 'with-res', run: 1 })
    const hit = await get('/reports/with-res')
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(json(hit)).toEqual({ route: 'with-res', run: 1 })
    await get('/reports/passthrough')
    const pass = await get('/reports/passthrough')
    expect(pass.status).toBe(200)
    expect(pass.headers['x-handler']).toBe('set')
    expect(json(pass)).toEqual({ route: 'passthrough', run: 1 })
  })

  it('never stores a response that @Header made Cache-Control: private', async () => {
    await get('/reports/private')
    expect(json(await get('/reports/private'))).toEqual({ route: 'private', run: 2 })
  })

  it('refreshes a stale entry in the background through the guard, keeping it when the refresh throws', async () => {
    expect(json(await get('/reports/stale', admin))).toEqual({ route: 'stale', run: 1 })
    nest.clock.now += 61_000
    expect(json(await get('/reports/stale', admin))).toEqual({ route: 'stale', run: 1 })
    for (let i = 0; i < 300 && nest.stale.stats.errors < 1; i++) await new Promise((r) => setTimeout(r, 10))
    expect(nest.stale.stats.errors).toBe(1)
    expect(json(await get('/reports/stale', admin))).toEqual({ route: 'stale', run: 1 })
    for (let i = 0; i < 300 && nest.stale.stats.sets < 2; i++) await new Promise((r) => setTimeout(r, 10))
    expect(json(await get('/reports/stale', admin))).toEqual({ route: 'stale', run: 3 })
    expect((await get('/reports/stale')).status).toBe(403)
  })

  it('keeps every metadata key other decorators attached to the handler, in any order', () => {
    const proto = nest.ReportsController.prototype as unknown as Record<string, Function>
    for (const method of ['above', 'below', 'guardAbove']) {
      const keys = Reflect.getOwnMetadataKeys(proto[method]!)
      for (const key of ['path', 'method', '__guards__', '__interceptors__']) expect(keys).toContain(key)
      expect(Reflect.getOwnMetadata('__guards__', proto[method]!)).toHaveLength(1)
    }
  })
})
