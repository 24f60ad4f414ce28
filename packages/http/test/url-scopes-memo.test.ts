/**
 * The scopes of a URL are computed once and kept for later requests: what is kept must never let
 * one URL's invalidation reach another's entries, nor miss its own.
 */
import { MemoryBackend } from '@cache/memory'
import { afterEach, describe, expect, it } from 'vitest'
import { HttpCache } from '../src/index.js'
import { type Served, send, serve } from './node-adapter.js'

const running: Served[] = []
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()))
})

describe('scopes kept per URL', () => {
  it('invalidating a path at one host leaves the same path at another host cached, with two caches sharing the kept scopes', async () => {
    const backend = new MemoryBackend()
    let runs = 0
    const handler = (_req: unknown, res: import('node:http').ServerResponse) => {
      runs++
      res.setHeader('content-type', 'text/plain')
      res.end(`run ${runs}`)
    }
    const first = new HttpCache({ backend, ttl: 60, keyPrefix: 'one' })
    const second = new HttpCache({ backend, ttl: 60, keyPrefix: 'two' })
    const a = await serve(first, handler)
    const b = await serve(second, handler)
    running.push(a, b)
    const get = (s: Served, host: string, path: string) => send(`${s.url}${path}`, { headers: { host } })
    for (const s of [a, b])
      for (const host of ['shop.test', 'other.test']) {
        await get(s, host, '/p?x=1&y=2')
        expect((await get(s, host, '/p?x=1&y=2')).headers['cache-status']).toMatch(/hit/)
      }
    // Another spelling of the same query shares its scope: invalidating it reaches the entry.
    await first.invalidate('/p?y=2&x=1', { host: 'shop.test' })
    expect((await get(a, 'shop.test', '/p?x=1&y=2')).headers['cache-status']).not.toMatch(/hit/)
    expect((await get(a, 'other.test', '/p?x=1&y=2')).headers['cache-status']).toMatch(/hit/)
    // The URL's generations are every keyPrefix's: the second cache's entry for it is gone too.
    expect((await get(b, 'shop.test', '/p?x=1&y=2')).headers['cache-status']).not.toMatch(/hit/)
    expect((await get(b, 'other.test', '/p?x=1&y=2')).headers['cache-status']).toMatch(/hit/)
    // And again, from the kept scopes: invalidated once more, missed once more.
    await get(a, 'shop.test', '/p?x=1&y=2')
    expect((await get(a, 'shop.test', '/p?x=1&y=2')).headers['cache-status']).toMatch(/hit/)
    await first.invalidate('https://shop.test/p?x=1&y=2')
    expect((await get(a, 'shop.test', '/p?x=1&y=2')).headers['cache-status']).not.toMatch(/hit/)
  })
})
