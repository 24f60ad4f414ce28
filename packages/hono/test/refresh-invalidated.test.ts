import { type CacheEvent, invalidateTags } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { get, listen } from './serve.js'

/*
 * An invalidation wins over every response in flight when it ran: a stale-while-revalidate
 * refresh that read the data before `invalidateTags()` is not stored after it, over the entry a
 * later request stored.
 */

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('a background refresh in flight when invalidateTags() ran', () => {
  it('is not stored over the entry a later miss stored, and is counted as an invalidated refresh', async () => {
    let now = Date.now()
    const backend = memoryBackend()
    const cache = cacheResponse({
      ttl: 10,
      staleWhileRevalidate: 100,
      tags: ['products'],
      backend,
      now: () => now,
    })
    const errors: string[] = []
    cache.on('error', (event: CacheEvent) => errors.push(`${event.operation}: ${String(event.error)}`))
    let db = 'old'
    let delay = 0
    let runs = 0
    const app = new Hono()
    app.get('/p', cache, async (c) => {
      runs++
      const seen = db
      if (delay > 0) await sleep(delay)
      return c.text(`v=${seen}`)
    })
    const base = await listen(app)
    expect((await get(base, '/p')).text).toBe('v=old')
    now += 20_000
    delay = 300
    // A stale hit: its refresh reads 'old', and is still running when the tag is invalidated.
    expect((await get(base, '/p')).text).toBe('v=old')
    await sleep(50)
    db = 'new'
    await invalidateTags(['products'], { backend })
    delay = 0
    expect((await get(base, '/p')).text).toBe('v=new')
    await sleep(400)
    // Before: the refresh was stored over 'v=new' (under the old generation): a miss, a 4th run.
    const hit = await get(base, '/p')
    expect(hit.text).toBe('v=new')
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(runs).toBe(3)
    expect(errors).toEqual([expect.stringMatching(/^revalidate: .*not stored: .*invalidated/s)])
  })
})
