/**
 * A stale hit an adapter cannot refresh faithfully in the background (`backgroundRefresh` says
 * no): the client's own request runs the handler and refreshes the entry, the stale entry is
 * never served to it.
 */
import { MemoryBackend } from '@cache/memory'
import { afterEach, describe, expect, it } from 'vitest'
import { HttpCache } from '../src/index.js'
import { type Served, send, serve, until } from './node-adapter.js'

const running: Served[] = []
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()))
})

describe('a stale hit the adapter cannot refresh in the background', () => {
  async function start(faithful: (user: string | undefined) => boolean, startsRefresh = true) {
    let now = 1_000_000
    let version = 1
    const cache = new HttpCache({
      backend: new MemoryBackend(),
      ttl: 10,
      staleWhileRevalidate: 60,
      now: () => now,
    })
    const served = await serve(cache, (_req, res) => res.end(`v${version}`), {
      backgroundRefresh: (req) => faithful(req.headers['x-user'] as string | undefined),
      startsRefresh: () => startsRefresh,
    })
    running.push(served)
    return {
      ...served,
      cache,
      pass: (ms: number) => void (now += ms),
      bump: () => void version++,
    }
  }

  it('is answered fresh by the client’s own request, which refreshes the entry: no stale page, no background copy', async () => {
    const app = await start(() => false)
    expect(String((await send(`${app.url}/a`)).body)).toBe('v1')
    app.bump()
    app.pass(20_000)
    const own = await send(`${app.url}/a`)
    // Before: 'v1', a stale hit, and a background copy refreshing it.
    expect(String(own.body)).toBe('v2')
    expect(own.headers['cache-status']).toBe('@cache; fwd=stale; stored; detail=refresh-in-request')
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(app.calls()).toBe(2)
    const hit = await send(`${app.url}/a`)
    expect(String(hit.body)).toBe('v2')
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(app.calls()).toBe(2)
  })

  it('is answered fresh by the client’s own request when the adapter could not start a copy (revalidate returned false)', async () => {
    const app = await start(() => true, false)
    const errors: unknown[] = []
    app.cache.on('error', (event) => errors.push(event.error))
    expect(String((await send(`${app.url}/a`)).body)).toBe('v1')
    app.bump()
    app.pass(20_000)
    const own = await send(`${app.url}/a`)
    // Before: 'v1', a stale hit, and no refresh at all: the entry stayed stale, nothing counted.
    expect(String(own.body)).toBe('v2')
    expect(own.headers['cache-status']).toBe('@cache; fwd=stale; stored; detail=refresh-in-request')
    const hit = await send(`${app.url}/a`)
    expect(String(hit.body)).toBe('v2')
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(app.calls()).toBe(2)
    expect(errors).toEqual([])
  })

  it('leaves fresh hits and entries past staleWhileRevalidate as they were', async () => {
    const app = await start(() => false)
    expect(String((await send(`${app.url}/a`)).body)).toBe('v1')
    app.bump()
    app.pass(5_000)
    const fresh = await send(`${app.url}/a`)
    expect(String(fresh.body)).toBe('v1')
    expect(fresh.headers['cache-status']).toMatch(/hit/)
    app.pass(100_000)
    const expired = await send(`${app.url}/a`)
    expect(String(expired.body)).toBe('v2')
    expect(expired.headers['cache-status']).toBe('@cache; fwd=uri-miss; stored')
  })

  it('is served stale and refreshed in the background when the adapter says it can be', async () => {
    const app = await start(() => true)
    expect(String((await send(`${app.url}/a`)).body)).toBe('v1')
    app.bump()
    app.pass(20_000)
    expect(String((await send(`${app.url}/a`)).body)).toBe('v1')
    await until(() => app.calls() === 2, 'the refresh')
  })
})
