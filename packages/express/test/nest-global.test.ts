/**
 * `app.use(cacheResponse())` in a NestJS 11 app (Express platform), over real HTTP, with and
 * without Nest's body parsers: Nest's guards run inside the route function it registers, so the
 * global cache never stores what that function answers; `@cacheResponse` on the handler is the
 * cache that runs after guards.
 */
import 'reflect-metadata'
import type { CacheBackend } from '@cache/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { memory, type Reply, request } from './http.js'

interface GlobalNestFixture {
  startGlobalNest(options: { bodyParser: boolean; backend: CacheBackend }): Promise<{
    app: { close(): Promise<void> }
    runs: { counts: Map<string, number> }
    port: number
  }>
}
// A path the TC39-mode typecheck of this file does not follow into the legacy-mode fixture.
const FIXTURE: string = './fixtures/nest/global.js'

describe.each([
  ['with', true],
  ['without', false],
])("a global Express-level cache in a Nest app %s Nest's body parsers", (_, bodyParser) => {
  let nest: Awaited<ReturnType<GlobalNestFixture['startGlobalNest']>>
  beforeAll(async () => {
    const { startGlobalNest } = (await import(FIXTURE)) as GlobalNestFixture
    nest = await startGlobalNest({ bodyParser, backend: memory() })
  })
  afterAll(async () => {
    await nest.app.close()
  })
  const get = (path: string, headers: Record<string, string> = {}) => request(nest.port, path, { headers })
  const json = (reply: Reply) => JSON.parse(reply.body.toString())
  const admin = { 'x-api-key': 'admin-key' }
  const runs = (route: string) => nest.runs.counts.get(route) ?? 0

  it('never replays what a Nest guard let through to an anonymous client', async () => {
    const first = await get('/admin/payroll', admin)
    expect(json(first)).toEqual({ payroll: 'SECRET', run: 1 })
    expect(first.headers['cache-status']).toBe('@cache; fwd=uri-miss; detail=hidden-middleware')
    for (let i = 0; i < 2; i++) {
      const anonymous = await get('/admin/payroll')
      expect(anonymous.status).toBe(403)
      expect(anonymous.body.toString()).not.toContain('SECRET')
    }
    expect(json(await get('/admin/payroll', admin))).toEqual({ payroll: 'SECRET', run: 2 })
  })

  it('stores no Nest route, guarded or not: the route function runs hidden middleware', async () => {
    await get('/admin/open?n=1')
    const second = await get('/admin/open?n=1')
    expect(json(second)).toEqual({ open: '1', run: 2 })
    expect(second.headers['cache-status']).toMatch(/detail=hidden-middleware/)
  })

  it('@cacheResponse with its own keyPrefix caches after the guard, and the global cache never replays its entry', async () => {
    const before = runs('decorated')
    expect(json(await get('/admin/decorated', admin))).toEqual({ decorated: 'SECRET', run: before + 1 })
    const hit = await get('/admin/decorated', admin)
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(json(hit)).toEqual({ decorated: 'SECRET', run: before + 1 })
    const anonymous = await get('/admin/decorated')
    expect(anonymous.status).toBe(403)
    expect(anonymous.body.toString()).not.toContain('SECRET')
  })

  it("@cacheResponse sharing the global cache's backend and keyPrefix stores nothing the global cache could replay", async () => {
    const first = await get('/admin/decorated-shared', admin)
    expect(json(first)).toMatchObject({ decorated: 'SECRET' })
    expect(first.headers['cache-status']).not.toMatch(/stored/)
    for (let i = 0; i < 2; i++) {
      await get('/admin/decorated-shared', admin)
      const anonymous = await get('/admin/decorated-shared')
      expect(anonymous.status).toBe(403)
      expect(anonymous.body.toString()).not.toContain('SECRET')
    }
  })
})
