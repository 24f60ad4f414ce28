import { execFile } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { CacheSerializationError, cached, resetCache } from '@cache/core'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { memoryBackend } from '../src/index.js'

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures')

/*
 * What memoize does on the memory backend only: its sync fast path, its default TTL, LRU
 * eviction, value checks and maxSize. cached() and @cache themselves are tested in @cache/core.
 */
describe('cached() on the memory backend', () => {
  let backend: ReturnType<typeof memoryBackend>
  beforeEach(() => {
    backend = memoryBackend()
  })

  it("keeps results for their own ttl on a backend whose default TTL is shorter (the function's invalidation state never expires)", async () => {
    vi.useFakeTimers()
    try {
      const short = memoryBackend({ defaultTtl: '1s' })
      const calls = { sync: 0, async: 0 }
      const sync = cached(
        (x: number) => {
          calls.sync++
          return x
        },
        { backend: short, name: 'long-sync', ttl: '1h' },
      )
      const async = cached(
        async (x: number) => {
          calls.async++
          return x
        },
        { backend: short, name: 'long-async', ttl: '1h' },
      )
      sync(1)
      await async(1)
      vi.advanceTimersByTime(1_500)
      expect(sync(1)).toBe(1)
      expect(await async(1)).toBe(1)
      expect(calls).toEqual({ sync: 1, async: 1 })
      vi.advanceTimersByTime(3_600_000)
      sync(1)
      await async(1)
      expect(calls).toEqual({ sync: 2, async: 2 })
    } finally {
      vi.useRealTimers()
    }
  })

  it('never serves a result from before clear() once LRU pressure evicted the invalidation state', async () => {
    const small = memoryBackend({ maxKeys: 4 })
    let db = 'old'
    const f = cached(async (id: number) => `${db} ${id}`, { backend: small, name: 'evicted' })
    expect(await f(1)).toBe('old 1')
    db = 'new'
    await f.clear()
    // Keep the entry recently used while other keys push everything else out of the LRU.
    for (let i = 0; i < 4; i++) {
      await small.get(f.keyFor(1))
      await small.set(`filler:${i}`, i)
    }
    expect(await small.has(f.keyFor(1))).toBe(true) // the old entry survived, its state did not
    expect(await f(1)).toBe('new 1')
  })

  it('refuses a result a shared backend could not store, as they do, without counting an error', async () => {
    class Point {
      constructor(readonly x: number) {}
    }
    const f = cached(async (x: number) => new Point(x), { backend, name: 'point' })
    await expect(f(1)).rejects.toBeInstanceOf(CacheSerializationError)
    await expect(f(1)).rejects.toThrow(/Point/)
    expect(f.stats.errors).toBe(0)
    const sync = cached((x: number) => new Point(x), { backend, name: 'syncPoint' })
    expect(() => sync(1)).toThrow(CacheSerializationError)
    // In production (or with checkValues: false) memory stores references, class instances too.
    const loose = cached(async (x: number) => new Point(x), {
      backend: memoryBackend({ checkValues: false }),
      name: 'loosePoint',
    })
    expect(await loose(1)).toBeInstanceOf(Point)
  })

  it('never leaves an unhandled rejection behind a sync function (--unhandled-rejections=strict)', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--unhandled-rejections=strict', join(fixtures, 'sync-unhandled.mjs')],
      { timeout: 10_000 },
    )
    expect(JSON.parse(stdout)).toEqual({
      'condition throws': { threw: 'Error' },
      'unless throws': { threw: 'Error' },
      'strict, result over maxSize': { threw: 'CacheValueTooLargeError' },
      'result over maxSize': { returned: 1000 },
      'result not serializable': { threw: 'CacheSerializationError' },
    })
  })

  it('keeps a sync function sync on an in-process backend', () => {
    const fn = vi.fn((a: number, b: number) => a + b)
    const add = cached(fn, { backend, name: 'add' })
    expect(add(1, 2)).toBe(3)
    expect(add(1, 2)).toBe(3)
    expect(fn).toHaveBeenCalledTimes(1)
  })
})

describe('the default cache, with @cache/memory installed', () => {
  afterEach(() => resetCache())

  it('is built from the environment (memory by default) on first use', async () => {
    const { getBackend, cacheSet, cacheGet, cacheIncr, cacheAtomicUpdate, cacheDelete, cacheFlush } =
      await import('@cache/core')
    await resetCache()
    expect(getBackend().name).toBe('memory')
    await cacheSet('a', { x: 1 }, '1m')
    expect(await cacheGet('a')).toEqual({ x: 1 })
    expect(await cacheIncr('hits')).toBe(1)
    expect(await cacheIncr('hits', 2)).toBe(3)
    expect(await cacheAtomicUpdate<number[]>('list', (l = []) => [...l, 1])).toEqual([1])
    expect(await cacheDelete('a')).toBe(true)
    await cacheFlush()
    expect(await cacheGet('hits')).toBeUndefined()
  })
})
