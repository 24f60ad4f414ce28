/**
 * An option name that is not an option (`varyy`, `privte`) is refused while the app is built:
 * dropped, it would take a safety option with it and serve one user's response to another.
 */
import { CacheConfigError } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import { type CacheResponseOptions, cacheResponse } from '../src/index.js'
import { get, listen } from './serve.js'

describe('option names', () => {
  it('refuses cacheResponse({ varyy }) while the app is built, naming vary', () => {
    const app = new Hono()
    let error: unknown
    try {
      app.get(
        '/me',
        cacheResponse({ backend: memoryBackend(), varyy: ['x-user'] } as CacheResponseOptions),
        (c) => c.text(`hello ${c.req.header('x-user')}`),
      )
    } catch (caught) {
      error = caught
    }
    expect(error).toBeInstanceOf(CacheConfigError)
    expect((error as CacheConfigError).setting).toBe('varyy')
    expect((error as CacheConfigError).message).toBe(
      'varyy: not an option of cacheResponse(); did you mean `vary`?',
    )
  })

  it('refuses a misspelt directive of cacheControl and a misspelt middlewareSkippedOnHits', () => {
    expect(() =>
      cacheResponse({ backend: memoryBackend(), cacheControl: { privte: true } as never }),
    ).toThrow(/^privte: not an option of `cacheControl`/)
    expect(() =>
      cacheResponse({ backend: memoryBackend(), middlewareSkipedOnHits: [] } as CacheResponseOptions),
    ).toThrow(/did you mean `middlewareSkippedOnHits`/)
  })

  it('accepts every documented option, and caches with them', async () => {
    const all = {
      ttl: 60,
      backend: memoryBackend(),
      keyPrefix: 'all',
      vary: ['x-user'],
      key: (c) => c.req.path,
      statuses: [200],
      maxBodySize: '512KB',
      allowAuthorized: false,
      allowCookies: false,
      staleWhileRevalidate: 10,
      revalidateTimeout: '10s',
      collapseTimeout: '2s',
      tags: ['t'],
      statusHeader: 'x-cache',
      cacheName: 'edge',
      etag: true,
      now: Date.now,
      bypass: () => false,
      cacheControl: { maxAge: 10, sMaxAge: 20, staleWhileRevalidate: 5, public: false },
      middlewareSkippedOnHits: [],
    } satisfies Required<CacheResponseOptions>
    const app = new Hono()
    let runs = 0
    app.get('/all', cacheResponse(all), (c) => c.text(`run ${++runs}`))
    const base = await listen(app)
    expect((await get(base, '/all')).headers['x-cache']).toBe('MISS')
    const hit = await get(base, '/all')
    expect(hit.headers['x-cache']).toBe('HIT')
    expect(hit.text).toBe('run 1')
  })
})

describe('a settings class', () => {
  it("keys each user apart with a key() reading the instance's own state through this", async () => {
    const HEADER = Symbol('header')
    class PerUser {
      readonly ttl = 60
      readonly backend = memoryBackend()
      readonly [HEADER] = 'x-user'
      key(c: { req: { path: string; header(name: string): string | undefined } }) {
        return `${c.req.path}|${c.req.header(this[HEADER])}`
      }
    }
    const app = new Hono()
    app.get('/me', cacheResponse(new PerUser() as CacheResponseOptions), (c) =>
      c.text(`hello ${c.req.header('x-user')}`),
    )
    const url = await listen(app)
    expect((await get(url, '/me', 'GET', { 'x-user': 'alice' })).text).toBe('hello alice')
    // Before: key() ran on a copy of the options without the symbol field: bob got alice's page.
    const bob = await get(url, '/me', 'GET', { 'x-user': 'bob' })
    expect(bob.text).toBe('hello bob')
    const alice = await get(url, '/me', 'GET', { 'x-user': 'alice' })
    expect(alice.text).toBe('hello alice')
    expect(alice.headers['cache-status']).toMatch(/hit/)
  })
})
