/**
 * `cacheResponse()` takes one argument: its options, or a TTL alone. apicache's habit
 * `cache('5 minutes', …)` written as `cacheResponse(60, { vary: ['x-tenant'] })` used to build a
 * cache without the second argument, `vary` included, and served one tenant's page to another.
 */
import { configErrorOf } from '@cache/testing'
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, memory, serveEach } from './http.js'

const serve = serveEach()

/** `cacheResponse` as plain JavaScript calls it, whatever its arguments. */
const callAsJavaScript = cacheResponse as unknown as (...args: unknown[]) => unknown

describe.each(EXPRESS)('the arguments of cacheResponse() on %s', (_name, express) => {
  it("refuses cacheResponse(60, { vary: ['x-tenant'] }) while the app is built, saying how to write it", async () => {
    const app = express()
    const error = configErrorOf(() =>
      app.get(
        '/t',
        callAsJavaScript(60, { backend: memory(), vary: ['x-tenant'] }) as never,
        (req: any, res: any) => res.json({ tenant: req.get('x-tenant') }),
      ),
    )
    expect(error.message).toMatch(/^options: cacheResponse\(\) takes one argument/)
    expect(error.message).toContain('cacheResponse({ ttl: 60, backend: …, vary: ["x-tenant"] })')

    // Written as the error says, each tenant gets its own response.
    const fixed = express()
    fixed.get('/t', cacheResponse({ ttl: 60, backend: memory(), vary: ['x-tenant'] }), (req, res) => {
      res.json({ tenant: req.get('x-tenant') })
    })
    const r = await serve(fixed)
    await r.request('/t', { headers: { 'x-tenant': 'a' } })
    await r.request('/t', { headers: { 'x-tenant': 'a' } })
    const b = await r.request('/t', { headers: { 'x-tenant': 'b' } })
    expect(JSON.parse(b.body.toString())).toEqual({ tenant: 'b' })
  })

  it('refuses any second argument, even one that is not options', () => {
    expect(configErrorOf(() => callAsJavaScript({ ttl: 60 }, { vary: ['x-tenant'] })).message).toMatch(
      /takes one argument.*write cacheResponse\(\{ ttl: 60, vary: \["x-tenant"\] \}\)/,
    )
    expect(configErrorOf(() => callAsJavaScript('5m', 'private')).setting).toBe('options')
  })

  it('refuses null and what is neither options nor a TTL with "expected an options object"', () => {
    for (const given of [null, true, ['x-tenant'], () => 60]) {
      const error = configErrorOf(() => callAsJavaScript(given))
      expect(error.setting).toBe('options')
      expect(error.message).toMatch(
        /^options: cacheResponse\(\) expected an options object or a TTL \(60, '5m'\), got /,
      )
    }
  })

  it('keeps the documented shorthand: a TTL alone, or nothing', async () => {
    const app = express()
    let runs = 0
    app.get('/n', cacheResponse(60), (_req, res) => res.send(`run ${++runs}`))
    app.get('/s', cacheResponse('5m'), (_req, res) => res.send(`run ${++runs}`))
    app.get('/d', cacheResponse(), (_req, res) => res.send(`run ${++runs}`))
    const r = await serve(app)
    for (const path of ['/n', '/s', '/d']) {
      const first = (await r.request(path)).body.toString()
      expect((await r.request(path)).body.toString()).toBe(first)
    }
    expect(runs).toBe(3)
  })
})
