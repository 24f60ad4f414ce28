/**
 * `cacheResponse()` takes one argument: its options, or a TTL alone. apicache's habit
 * `cache('5 minutes', …)` written as `cacheResponse(60, { vary: ['x-tenant'] })` used to build a
 * cache without the second argument, `vary` included, and served one tenant's page to another.
 */
import { memoryBackend } from '@cache/memory'
import { configErrorOf } from '@cache/testing'
import { Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { get, listen } from './serve.js'

/** `cacheResponse` as plain JavaScript calls it, whatever its arguments. */
const callAsJavaScript = cacheResponse as unknown as (...args: unknown[]) => unknown

describe('the arguments of cacheResponse()', () => {
  it("refuses cacheResponse(60, { vary: ['x-tenant'] }) while the app is built, saying how to write it", async () => {
    const app = new Hono()
    const error = configErrorOf(() =>
      app.get('/t', callAsJavaScript(60, { vary: ['x-tenant'] }) as never, (c) =>
        c.json({ tenant: c.req.header('x-tenant') }),
      ),
    )
    expect(error.message).toMatch(/^options: cacheResponse\(\) takes one argument/)
    expect(error.message).toContain('cacheResponse({ ttl: 60, vary: ["x-tenant"] })')

    // Written as the error says, each tenant gets its own response.
    const fixed = new Hono()
    fixed.get('/t', cacheResponse({ ttl: 60, backend: memoryBackend(), vary: ['x-tenant'] }), (c) =>
      c.json({ tenant: c.req.header('x-tenant') }),
    )
    const base = await listen(fixed)
    await get(base, '/t', 'GET', { 'x-tenant': 'a' })
    await get(base, '/t', 'GET', { 'x-tenant': 'a' })
    expect(JSON.parse((await get(base, '/t', 'GET', { 'x-tenant': 'b' })).text)).toEqual({ tenant: 'b' })
  })

  it('refuses null and what is neither options nor a TTL with "expected an options object"', () => {
    for (const given of [null, false, [60], () => 60]) {
      const error = configErrorOf(() => callAsJavaScript(given))
      expect(error.setting).toBe('options')
      expect(error.message).toMatch(
        /^options: cacheResponse\(\) expected an options object or a TTL \(60, '5m'\), got /,
      )
    }
  })

  it('keeps the documented shorthand: cacheResponse(60) and cacheResponse()', async () => {
    const app = new Hono()
    let runs = 0
    app.get('/n', cacheResponse(60), (c) => c.text(`run ${++runs}`))
    app.get('/d', cacheResponse(), (c) => c.text(`run ${++runs}`))
    const base = await listen(app)
    for (const path of ['/n', '/d']) {
      const first = (await get(base, path)).text
      expect((await get(base, path)).text).toBe(first)
    }
    expect(runs).toBe(2)
  })
})
