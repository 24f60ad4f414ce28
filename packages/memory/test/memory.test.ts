import { CacheValueTooLargeError, type CacheEvent, CacheConfigError } from '@cache/core'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { estimateSize, memoryBackend } from '../src/index.js'

describe('memoryBackend', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('evicts the least recently used entry on the 129th insert into maxKeys: 128', async () => {
    const cache = memoryBackend({ maxKeys: 128 })
    for (let i = 0; i < 128; i++) await cache.set(`k${i}`, i)
    await cache.get('k0') // k0 is now the most recently used; k1 the least
    await cache.set('k128', 128)
    expect(cache.size).toBe(128)
    expect(await cache.has('k1')).toBe(false)
    expect(await cache.get('k0')).toBe(0)
    expect(await cache.get('k128')).toBe(128)
  })

  it('limits by bytes with maxSize and evicts the least recently used', async () => {
    const cache = memoryBackend({ maxSize: '10KB' })
    const value = 'x'.repeat(1000) // about 2 KB each
    for (let i = 0; i < 10; i++) await cache.set(`k${i}`, value)
    expect(cache.calculatedSize).toBeLessThanOrEqual(10 * 1024)
    expect(await cache.has('k0')).toBe(false)
    expect(await cache.has('k9')).toBe(true)
  })

  it('throws CacheValueTooLargeError for a value larger than maxSize', async () => {
    const cache = memoryBackend({ maxSize: '1KB' })
    await expect(cache.set('big', 'x'.repeat(4096))).rejects.toThrow(CacheValueTooLargeError)
    expect(await cache.has('big')).toBe(false)
  })

  it('uses a custom sizeOf', async () => {
    const cache = memoryBackend({ maxSize: 100, sizeOf: () => 40 })
    await cache.set('a', 1)
    await cache.set('b', 2)
    await cache.set('c', 3)
    expect(await cache.has('a')).toBe(false)
  })

  it('stores references by default and clones with clone: true', async () => {
    const plain = memoryBackend()
    const cloning = memoryBackend({ clone: true })
    const value = { n: 1 }
    await plain.set('k', value)
    await cloning.set('k', value)
    value.n = 2
    expect(await plain.get('k')).toBe(value)
    expect(await cloning.get('k')).toEqual({ n: 1 })
    const read = (await cloning.get<{ n: number }>('k'))!
    read.n = 3
    expect(await cloning.get('k')).toEqual({ n: 1 })
  })

  it('clone: true refuses values it cannot clone', async () => {
    const cache = memoryBackend({ clone: true })
    await expect(cache.set('f', { f: () => 1 })).rejects.toThrow(TypeError)
  })

  it('applies the default TTL and reports expiresAt', async () => {
    vi.useFakeTimers({ now: 1_000_000 })
    const cache = memoryBackend({ defaultTtl: '10s' })
    await cache.set('k', 1)
    expect(await cache.getEntry('k')).toEqual({ value: 1, expiresAt: 1_010_000 })
    vi.advanceTimersByTime(10_000)
    expect(await cache.get('k')).toBeUndefined()
  })

  it('uses an injected clock', async () => {
    let now = 0
    const cache = memoryBackend({ now: () => now })
    await cache.set('k', 1, 1)
    now = 999
    expect(await cache.get('k')).toBe(1)
    now = 1000
    expect(await cache.get('k')).toBeUndefined()
  })

  it('keeps the counter expiry on later increments', async () => {
    vi.useFakeTimers({ now: 0 })
    const cache = memoryBackend()
    await cache.incr('c', 1, 10)
    vi.advanceTimersByTime(5000)
    await cache.incr('c', 1, 3600)
    expect((await cache.getEntry('c'))?.expiresAt).toBe(10_000)
  })

  it('incr by 0 on a stored -0 stores the 0 it answers, and keeps the expiry', async () => {
    const cache = memoryBackend()
    await cache.set('z', -0, 60)
    const before = (await cache.getEntry('z'))!.expiresAt
    expect(Object.is(await cache.incr('z', 0), 0)).toBe(true)
    const after = await cache.getEntry('z')
    expect(Object.is(after?.value, 0)).toBe(true)
    expect(after?.expiresAt).toBe(before)
    expect(Object.is(await cache.get('z'), 0)).toBe(true)
  })

  it('counts hits, misses, sets and deletes, and emits events to listeners', async () => {
    const cache = memoryBackend()
    const events: string[] = []
    const listener = (e: CacheEvent) => events.push(`${e.key}`)
    cache.on('hit', listener).on('miss', listener)
    await cache.set('a', 1)
    await cache.get('a')
    await cache.get('b')
    await cache.delete('a')
    expect(cache.stats).toMatchObject({ hits: 1, misses: 1, sets: 1, deletes: 1 })
    expect(events).toEqual(['a', 'b'])
    cache.off('hit', listener).off('miss', listener)
    await cache.get('a')
    expect(events).toHaveLength(2)
  })

  it('offers sync access for memoized sync functions', () => {
    const cache = memoryBackend()
    cache.sync.set('k', 'v', 60)
    expect(cache.sync.getEntry('k')?.value).toBe('v')
    expect(cache.sync.get?.('k')).toBe('v')
  })

  it('sync get counts like get, misses expired entries and clones when asked', () => {
    let now = 1_000
    const cache = memoryBackend({ now: () => now, clone: true })
    const value = { n: 1 }
    cache.sync.set('k', value, 1)
    const got = cache.sync.get?.<{ n: number }>('k')
    expect(got).toEqual(value)
    expect(got).not.toBe(value)
    expect(cache.sync.get?.('missing')).toBeUndefined()
    now += 1_000
    expect(cache.sync.get?.('k')).toBeUndefined()
    expect(cache.stats).toMatchObject({ hits: 1, misses: 2 })
  })

  it('rejects bad options', () => {
    expect(() => memoryBackend({ maxKeys: 0 })).toThrow(CacheConfigError)
    expect(() => memoryBackend({ maxSize: '1XB' })).toThrow(/maxSize/)
    expect(() => memoryBackend({ defaultTtl: -1 })).toThrow(/defaultTtl/)
  })

  it('rejects non-string keys with a typed error', async () => {
    const cache = memoryBackend()
    await expect(cache.get(42 as never)).rejects.toMatchObject({ code: 'CACHE_KEY' })
    await expect(cache.set(null as never, 1)).rejects.toMatchObject({ code: 'CACHE_KEY' })
  })
})

describe('estimateSize', () => {
  it('grows with the value', () => {
    expect(estimateSize('a'.repeat(100))).toBeGreaterThan(estimateSize('a'))
    expect(estimateSize(Buffer.alloc(1000))).toBeGreaterThanOrEqual(1000)
    expect(estimateSize({ a: [1, 2, 3], m: new Map([[1, 'x']]) })).toBeGreaterThan(estimateSize({}))
  })
})

describe('clone: true', () => {
  it('refuses a class instance instead of returning a plain object', async () => {
    class Point {
      constructor(readonly x: number) {}
      norm() {
        return Math.abs(this.x)
      }
    }
    const cache = memoryBackend({ clone: true })
    const error = await cache.set('p', { nested: [new Point(1)] }).catch((e) => e)
    expect(error).toBeInstanceOf(TypeError)
    expect(error.message).toContain('$.nested[0]')
    expect(await cache.has('p')).toBe(false)
  })

  it('still clones Dates, Maps, Sets, Buffers and cycles', async () => {
    const cache = memoryBackend({ clone: true })
    const value: Record<string, unknown> = {
      d: new Date(5),
      m: new Map([[1, new Set([2])]]),
      b: Buffer.from('hi'),
    }
    value.self = value
    await cache.set('v', value)
    const back = (await cache.get<Record<string, unknown>>('v'))!
    expect(back.self).toBe(back)
    expect(back.d).toEqual(new Date(5))
    expect(Buffer.isBuffer(back.b)).toBe(true)
    expect(back.m).toEqual(new Map([[1, new Set([2])]]))
  })
})

describe('maxSize bounds what values keep alive', () => {
  it('measures a doubly linked list and a tree with parent links at once, each object once', async () => {
    type Node = { n: number; prev?: Node; next?: Node; children?: Node[]; parent?: Node }
    const nodes: Node[] = Array.from({ length: 2_000 }, (_, n) => ({ n }))
    for (let i = 1; i < nodes.length; i++) {
      nodes[i]!.prev = nodes[i - 1]
      nodes[i - 1]!.next = nodes[i]
    }
    const root: Node = { n: -1, children: [] }
    for (let i = 0; i < 50; i++) root.children!.push({ n: i, parent: root, children: [] })
    const cache = memoryBackend({ maxSize: '10MB', checkValues: false })
    const started = performance.now()
    await cache.set('list', nodes[0])
    await cache.set('tree', root)
    expect(performance.now() - started).toBeLessThan(2_000)
    // Each node: overhead, three keys and their values: no more than a few hundred bytes each.
    expect(estimateSize(nodes[0])).toBeGreaterThan(2_000 * 16)
    expect(estimateSize(nodes[0])).toBeLessThan(2_000 * 200)
  })

  it('counts the memory a view keeps alive and values nested deeper than any cap', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024)
    const cache = memoryBackend({ maxSize: '1MB' })
    await expect(cache.set('view', big.subarray(0, 10))).rejects.toBeInstanceOf(CacheValueTooLargeError)
    let deep: Record<string, unknown> = { leaf: 'x'.repeat(1000) }
    for (let i = 0; i < 5_000; i++) deep = { a: deep }
    expect(estimateSize(deep)).toBeGreaterThan(5_000 * 16)
  })
})
