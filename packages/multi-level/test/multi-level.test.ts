import { CacheUnavailableError, cached, defineBackend, isCacheError, CacheConfigError } from '@cache/core'
import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { diskBackend } from '@cache/disk'
import { memoryBackend } from '@cache/memory'
import { describe, expect, it } from 'vitest'
import { type MultiLevelEvent, multiLevel } from '../src/index.js'
import { chaos } from './chaos.js'

/** A clock the test moves by hand, shared by the chain and its memory levels. */
function manualClock(start = 1_700_000_000_000) {
  const clock = { t: start, now: () => clock.t }
  return clock
}

function twoLevels(options: { failureThreshold?: number; openFor?: number; maxPendingKeys?: number } = {}) {
  const clock = manualClock()
  const l1 = memoryBackend({ now: clock.now })
  const l2 = chaos(memoryBackend({ now: clock.now }))
  const cache = multiLevel({
    levels: [l1, l2],
    now: clock.now,
    breaker: { failureThreshold: options.failureThreshold ?? 2, openFor: options.openFor ?? 5 },
    ...(options.maxPendingKeys === undefined ? {} : { maxPendingKeys: options.maxPendingKeys }),
  })
  return { clock, l1, l2, cache }
}

/** Lets the background probe of a level run. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 5))

describe('multiLevel reads', () => {
  it('answers an L1 hit from L1 alone, without calling L2', async () => {
    const { l2, cache } = twoLevels()
    await cache.set('k', 'v')
    const calls = l2.calls
    expect(await cache.get('k')).toBe('v')
    expect(await cache.getEntry('k')).toEqual({ value: 'v' })
    expect(l2.calls).toBe(calls)
    expect(cache.levels[0]!.stats.hits).toBe(2)
    expect(cache.levels[1]!.stats.hits).toBe(0)
  })

  it('answers a stored undefined, null and empty string from L1 as hits, without calling L2', async () => {
    const { l1, l2, cache } = twoLevels()
    await cache.set('undefined', undefined)
    await cache.set('null', null)
    await cache.set('empty', '')
    const calls = l2.calls
    expect(await cache.get('undefined')).toBeUndefined()
    expect(await cache.get('null')).toBeNull()
    expect(await cache.get('empty')).toBe('')
    expect(l2.calls).toBe(calls)
    expect(cache.levels[0]!.stats).toMatchObject({ hits: 3, misses: 0 })
    expect(cache.stats).toMatchObject({ hits: 3, misses: 0 })
    expect(l1.stats).toMatchObject({ hits: 3, misses: 0 })
    // A miss in L1 is counted once there, then read from L2.
    await l1.delete('null')
    expect(await cache.get('null')).toBeNull()
    expect(l1.stats).toMatchObject({ hits: 3, misses: 1 })
    expect(cache.levels[1]!.stats.hits).toBe(1)
  })

  it('backfills L1 with the remaining TTL, not the full TTL', async () => {
    const { clock, l1, l2, cache } = twoLevels()
    await l2.set('k', 'v', 10)
    clock.t += 4000
    expect(await cache.get('k')).toBe('v')
    const source = await l2.getEntry('k')
    const copy = await l1.getEntry('k')
    expect(copy).toEqual({ value: 'v', expiresAt: source!.expiresAt })
    expect(cache.levels[0]!.stats.backfills).toBe(1)
    clock.t += 6000
    expect(await l1.get('k')).toBeUndefined()
    expect(await cache.get('k')).toBeUndefined()
  })

  it('backfills an entry without expiry without expiry', async () => {
    const { clock, l1, l2, cache } = twoLevels()
    await l2.set('k', 'v')
    expect(await cache.getEntry('k')).toEqual({ value: 'v' })
    clock.t += 365 * 86_400_000
    expect(await l1.getEntry('k')).toEqual({ value: 'v' })
  })

  it('does not backfill an entry that expires before it could be copied', async () => {
    const clock = manualClock()
    const l1 = memoryBackend({ now: clock.now })
    // The level reports an expiry already in the past (its clock runs behind the chain's).
    const l2 = memoryBackend({ now: () => clock.now() - 10_000 })
    const cache = multiLevel({ levels: [l1, l2], now: clock.now })
    await l2.set('k', 'v', 5)
    expect(await cache.get('k')).toBe('v')
    expect(await l1.has('k')).toBe(false)
  })

  it('backfills every faster level from L3', async () => {
    const clock = manualClock()
    const [a, b, c] = [0, 1, 2].map(() => memoryBackend({ now: clock.now }))
    const cache = multiLevel({ levels: [a!, b!, c!], now: clock.now })
    await c!.set('k', 1, 60)
    clock.t += 30_000
    expect(await cache.get('k')).toBe(1)
    const expiresAt = (await c!.getEntry('k'))!.expiresAt
    expect((await a!.getEntry('k'))!.expiresAt).toBe(expiresAt)
    expect((await b!.getEntry('k'))!.expiresAt).toBe(expiresAt)
    expect(cache.levelStats().map((l) => [l.hits, l.misses])).toEqual([
      [0, 1],
      [0, 1],
      [1, 0],
    ])
  })

  it('does not backfill a value read before a concurrent write to the same key', async () => {
    const { l1, l2, cache } = twoLevels()
    await l2.set('k', 'old')
    l2.delayMs = 30 // L2 has read 'old'; its answer is on the way
    const read = cache.get('k')
    await new Promise((resolve) => setTimeout(resolve, 5))
    l2.delayMs = 0
    await cache.set('k', 'new') // completes while the read is still in flight
    expect(await read).toBe('old')
    expect(await l1.get('k')).toBe('new')
    expect(await cache.get('k')).toBe('new')
  })

  it('getMany reads L1 in one call and the misses from deeper levels, backfilling them', async () => {
    const { l1, l2, cache } = twoLevels()
    await l1.set('a', 1)
    await l2.set('b', 2, 60)
    expect(await cache.getMany(['a', 'b', 'c'])).toEqual([1, 2, undefined])
    expect(await l1.get('b')).toBe(2)
    expect(cache.levels[0]!.stats).toMatchObject({ hits: 1, misses: 2 })
    expect(cache.levels[1]!.stats).toMatchObject({ hits: 1, misses: 1 })
  })
})

describe('multiLevel writes', () => {
  it('set, delete and clear reach every level', async () => {
    const { l1, l2, cache } = twoLevels()
    await cache.set('a', 1)
    await cache.setMany([
      { key: 'b', value: 2 },
      { key: 'c', value: 3 },
    ])
    expect(await l1.getMany(['a', 'b', 'c'])).toEqual([1, 2, 3])
    expect(await l2.getMany(['a', 'b', 'c'])).toEqual([1, 2, 3])
    expect(await cache.delete('a')).toBe(true)
    expect([await l1.has('a'), await l2.has('a')]).toEqual([false, false])
    expect(await cache.deleteMany(['b', 'x'])).toBe(1)
    expect([await l1.has('b'), await l2.has('b')]).toEqual([false, false])
    await cache.clear()
    expect([await l1.has('c'), await l2.has('c')]).toEqual([false, false])
  })

  it('delete reports a key held only by a deeper level', async () => {
    const { l2, cache } = twoLevels()
    await l2.set('k', 1)
    expect(await cache.delete('k')).toBe(true)
  })

  it('stores nothing anywhere when the shared level refuses a value', async () => {
    const l1 = memoryBackend()
    const l2 = memoryBackend({ clone: true }) // refuses functions, as a serializing backend does
    const cache = multiLevel(l1, l2)
    await expect(cache.set('k', { f: () => 1 })).rejects.toMatchObject({ code: 'CACHE_SERIALIZATION' })
    expect(await l1.has('k')).toBe(false)
    expect(cache.stats.errors).toBe(0)
  })

  it('rejects a bad TTL with a RangeError before writing anything', async () => {
    const { l1, cache } = twoLevels()
    await expect(cache.set('k', 1, -1)).rejects.toThrow(RangeError)
    await expect(cache.setMany([{ key: 'k', value: 1, ttl: 'soon' }])).rejects.toThrow(RangeError)
    expect(await l1.has('k')).toBe(false)
  })

  it('keeps a value too large for L1 in L2, and drops the older L1 copy', async () => {
    const l1 = memoryBackend({ maxSize: 1000 })
    const l2 = memoryBackend()
    const cache = multiLevel(l1, l2)
    await cache.set('k', 'small')
    const big = 'x'.repeat(5000)
    await cache.set('k', big)
    expect(await l1.has('k')).toBe(false)
    expect(await cache.get('k')).toBe(big)
  })

  it('add() is decided by the shared level', async () => {
    const { l1, l2, cache } = twoLevels()
    await l2.set('taken', 'other process')
    expect(await cache.add('taken', 'mine')).toBe(false)
    expect(await l1.has('taken')).toBe(false)
    expect(await cache.add('free', 'mine')).toBe(true)
    expect(await l1.get('free')).toBe('mine')
  })

  it('incr and atomicUpdate run on the shared level and evict the key from L1', async () => {
    const { l1, l2, cache } = twoLevels()
    await cache.set('n', 5)
    await l2.set('n', 10) // another process moved the shared counter
    expect(await cache.incr('n', 2)).toBe(12)
    expect(await l1.has('n')).toBe(false)
    expect(await cache.get('n')).toBe(12)
    expect(await l1.get('n')).toBe(12)
    expect(await cache.atomicUpdate<number>('n', (v) => (v ?? 0) * 2)).toBe(24)
    expect(await l1.has('n')).toBe(false)
    expect(await l2.get('n')).toBe(24)
  })

  it('rethrows what atomicUpdate fn throws without blaming the level', async () => {
    const { cache } = twoLevels({ failureThreshold: 1 })
    await expect(
      cache.atomicUpdate('k', () => {
        throw new Error('boom')
      }),
    ).rejects.toThrow('boom')
    expect(cache.levels[1]!.breaker.state).toBe('closed')
    expect(cache.stats.errors).toBe(0)
  })
})

describe('multiLevel with a failing level', () => {
  it('keeps serving from L1 while L2 is down, counts the failures and opens the breaker', async () => {
    const { l2, cache } = twoLevels({ failureThreshold: 2 })
    const events: [string, MultiLevelEvent][] = []
    cache.on('error', (e) => events.push(['error', e]))
    cache.on('level-down', (e) => events.push(['level-down', e]))
    await cache.set('warm', 'v')
    l2.down = true
    expect(await cache.get('warm')).toBe('v')
    expect(await cache.get('cold')).toBeUndefined()
    // A write the shared level did not take reaches L1, and is reported.
    await expect(cache.set('new', 1)).rejects.toBeInstanceOf(CacheUnavailableError)
    expect(await cache.get('new')).toBe(1)
    expect(await cache.incr('counter')).toBe(1)
    expect(cache.levels[1]!.breaker.state).toBe('open')
    expect(cache.levels[1]!.stats.errors).toBe(2)
    expect(cache.levels[1]!.stats.opened).toBe(1)
    expect(cache.levels[1]!.stats.skipped).toBeGreaterThan(0)
    expect(events.map(([name]) => name)).toEqual(['error', 'error', 'level-down'])
    expect(events[0]![1]).toMatchObject({ backend: 'chaos(memory)', level: 1, operation: 'get', key: 'cold' })
    const calls = l2.calls
    await cache.get('cold')
    expect(l2.calls).toBe(calls) // skipped, not tried
  })

  it('an L1 hit ends a run of L1 failures: its breaker opens only after failures in a row', async () => {
    // An in-process L1 whose synchronous reads fail while `failing` is set (its writes keep working).
    const memory = memoryBackend()
    let failing = false
    const fail = () => {
      throw new CacheUnavailableError('memory', 'memory: read failed')
    }
    const sync = memory.sync!
    const l1 = Object.create(memory) as typeof memory
    Object.defineProperty(l1, 'sync', {
      value: {
        ...sync,
        getOr: <T, M>(key: string, miss: M) => (failing ? fail() : sync.getOr!<T, M>(key, miss)),
        getEntry: <T>(key: string) => (failing ? fail() : sync.getEntry<T>(key)),
      },
    })
    const cache = multiLevel({
      levels: [l1, memoryBackend()],
      breaker: { failureThreshold: 2 },
      logger: false,
    })
    await cache.set('k', 'v')
    for (let round = 0; round < 3; round++) {
      failing = true
      expect(await cache.get('k')).toBe('v') // from L2
      failing = false
      expect(await cache.get('k')).toBe('v') // an L1 hit
      expect(cache.levels[0]!.breaker.state).toBe('closed')
    }
    expect(cache.levels[0]!.stats).toMatchObject({ errors: 3, hits: 3, opened: 0 })
    failing = true
    await cache.get('k')
    await cache.get('k')
    expect(cache.levels[0]!.breaker.state).toBe('open')
  })

  it('writes made while L2 was down are replayed as deletes before L2 is used again, and dropped from L1 with them', async () => {
    const { clock, l2, cache } = twoLevels({ failureThreshold: 1, openFor: 5 })
    const events: string[] = []
    cache.on('level-up', () => events.push('up'))
    await cache.set('gone', 'old')
    await cache.set('changed', 'old')
    l2.down = true
    await expect(cache.delete('gone')).rejects.toBeInstanceOf(CacheUnavailableError)
    await expect(cache.set('changed', 'new')).rejects.toBeInstanceOf(CacheUnavailableError)
    expect(cache.levelStats()[1]).toMatchObject({ state: 'open', pendingKeys: 2 })
    l2.down = false // back, still holding the old values
    expect(await l2.get('gone')).toBe('old')
    clock.t += 5000
    await cache.get('anything') // starts the probe; this read skips L2
    await settle()
    expect(events).toEqual(['up'])
    expect(cache.levelStats()[1]).toMatchObject({ state: 'closed', pendingKeys: 0 })
    expect(await l2.has('gone')).toBe(false)
    expect(await l2.has('changed')).toBe(false)
    expect(await cache.get('gone')).toBeUndefined()
    // The repair deleted it on L2 and drops it from L1 too: this process reads what L2 holds, as
    // the others do, rather than its rejected write until its TTL.
    expect(await cache.get('changed')).toBeUndefined()
  })

  it('a delete failed before the breaker opened, in the run of failures that opened it, is replayed too', async () => {
    const { clock, l2, cache } = twoLevels({ failureThreshold: 3, openFor: 5 })
    await cache.set('gone', 'old')
    l2.down = true
    // Failed while L2 was still in use: not repaired on its own (it may have been applied, and
    // other processes may have written the key since) …
    await expect(cache.delete('gone')).rejects.toBeInstanceOf(CacheUnavailableError)
    expect(cache.levelStats()[1]).toMatchObject({ state: 'closed', pendingKeys: 0 })
    // … but L2 was down: the failures that follow open its breaker, and the delete is repaired.
    await cache.get('a')
    await cache.get('b')
    expect(cache.levelStats()[1]).toMatchObject({ state: 'open', pendingKeys: 1 })
    l2.down = false
    expect(await l2.get('gone')).toBe('old')
    clock.t += 5000
    await cache.get('anything')
    await settle()
    expect(cache.levelStats()[1]).toMatchObject({ state: 'closed', pendingKeys: 0 })
    expect(await l2.has('gone')).toBe(false)
    expect(await cache.get('gone')).toBeUndefined()
  })

  it('a delete failed once, followed by a success, is not repaired: L2 keeps what it holds', async () => {
    const { l2, cache } = twoLevels({ failureThreshold: 3, openFor: 5 })
    await cache.set('gone', 'old')
    l2.down = true
    await expect(cache.delete('gone')).rejects.toBeInstanceOf(CacheUnavailableError)
    l2.down = false
    // Another process writes the key (a lock, a counter) once L2 answers.
    await l2.inner.set('gone', 'theirs')
    expect(await cache.get('gone')).toBe('theirs')
    l2.down = true
    await cache.get('a')
    await cache.get('b')
    await cache.get('c')
    expect(cache.levelStats()[1]).toMatchObject({ state: 'open', pendingKeys: 0 })
    l2.down = false
    expect(await l2.inner.get('gone')).toBe('theirs')
  })

  it('never clears the shared level that missed more keys than it can remember: reported, and L1 emptied', async () => {
    const { clock, l1, l2, cache } = twoLevels({ failureThreshold: 1, maxPendingKeys: 3 })
    const repairs: MultiLevelEvent[] = []
    cache.on('error', (e) => e.operation === 'repair' && repairs.push(e))
    await l2.set('untouched', 1) // another process's counter or lock
    await cache.set('cached', 'old')
    l2.down = true
    for (let i = 0; i < 5; i++)
      await expect(cache.set(`k${i}`, i)).rejects.toThrow(
        i === 0 ? /sent to the shared level .* may have applied it/ : /did not reach/,
      )
    expect(cache.levelStats()[1]).toMatchObject({ pendingClear: false, pendingKeys: 3 })
    expect(repairs).toHaveLength(1)
    expect(String(repairs[0]!.error)).toMatch(/maxPendingKeys \(3\)/)
    l2.down = false
    await l2.inner.set('cached', 'theirs')
    clock.t += 5000
    await cache.get('x')
    await settle()
    expect(cache.levels[1]!.breaker.state).toBe('closed')
    expect(await l2.inner.get('untouched')).toBe(1)
    // This process's faster level was emptied: it reads what L2 holds, as the others do.
    expect(await l1.has('k4')).toBe(false)
    expect(await cache.get('cached')).toBe('theirs')
    // The next outage that overflows is told too.
    l2.down = true
    await cache.get('y').catch(() => undefined)
    for (let i = 0; i < 5; i++) await expect(cache.set(`again${i}`, i)).rejects.toThrow(/did not reach/)
    expect(repairs).toHaveLength(2)
  })

  it('keeps invalidation state to repair past maxPendingKeys: an invalidation during an outage reaches the others', async () => {
    const { clock, l2, cache } = twoLevels({ failureThreshold: 1, maxPendingKeys: 3 })
    const elsewhere = multiLevel(memoryBackend(), l2.inner)
    let db = 'v1'
    const here = cached(async (id: number) => `${db}-${id}`, { backend: cache, name: 'f' })
    const there = cached(async (id: number) => `${db}-${id}`, { backend: elsewhere, name: 'f' })
    expect(await here(1)).toBe('v1-1')
    expect(await there(1)).toBe('v1-1')
    db = 'v2'
    l2.down = true
    for (let i = 0; i < 5; i++)
      await expect(cache.set(`k${i}`, i)).rejects.toThrow(
        i === 0 ? /sent to the shared level .* may have applied it/ : /did not reach/,
      )
    await expect(here.invalidate(1)).rejects.toBeInstanceOf(CacheUnavailableError)
    l2.down = false
    clock.t += 5000
    await cache.get('x')
    await settle()
    expect(cache.levels[1]!.breaker.state).toBe('closed')
    expect(await there(1)).toBe('v2-1')
    expect(await here(1)).toBe('v2-1')
  })

  it('a faster level that missed more keys than it can remember is cleared', async () => {
    const l1 = chaos(memoryBackend())
    const cache = multiLevel({
      levels: [l1, memoryBackend()],
      breaker: { failureThreshold: 1 },
      maxPendingKeys: 3,
      logger: false,
    })
    await l1.set('stale', 'old')
    l1.down = true
    for (let i = 0; i < 5; i++) await cache.set(`k${i}`, i)
    expect(cache.levelStats()[0]).toMatchObject({ pendingClear: true })
  })

  it('reopens the breaker when the probe fails, and keeps the repairs for later', async () => {
    const { clock, l2, cache } = twoLevels({ failureThreshold: 1 })
    l2.down = true
    await expect(cache.set('k', 1)).rejects.toBeInstanceOf(CacheUnavailableError)
    clock.t += 5000
    await cache.get('x')
    await settle()
    expect(cache.levelStats()[1]).toMatchObject({ state: 'open', pendingKeys: 1 })
    l2.down = false
    clock.t += 5000
    await cache.get('x')
    await settle()
    expect(cache.levelStats()[1]).toMatchObject({ state: 'closed', pendingKeys: 0 })
  })

  it('records writes that arrive while the probe runs', async () => {
    const { clock, l2, cache } = twoLevels({ failureThreshold: 1 })
    await cache.set('k', 'old')
    l2.down = true
    await expect(cache.delete('k')).rejects.toBeInstanceOf(CacheUnavailableError)
    l2.down = false
    l2.delayMs = 10
    clock.t += 5000
    await cache.get('x') // probe starts and takes a while
    await l2.inner.set('late', 'old') // what L2 held before …
    // … deleted during the probe: L2 is still skipped, so the delete is reported as not shared
    await expect(cache.delete('late')).rejects.toBeInstanceOf(CacheUnavailableError)
    await new Promise((resolve) => setTimeout(resolve, 60))
    expect(cache.levels[1]!.breaker.state).toBe('closed')
    expect(await l2.inner.has('late')).toBe(false)
  })

  it('reports a clear() the shared level failed in use; this process reads what it holds, and a retry clears it', async () => {
    const { l1, l2, cache } = twoLevels({ failureThreshold: 3 })
    await cache.set('k', 'old')
    l2.failNext('clear')
    await expect(cache.clear()).rejects.toBeInstanceOf(CacheUnavailableError)
    expect(await l1.has('k')).toBe(false)
    // Maybe applied, and other processes write meanwhile: not cleared again on its own.
    expect(cache.levelStats()[1]).toMatchObject({ state: 'closed', pendingClear: false })
    expect(await cache.get('k')).toBe('old')
    await cache.clear()
    expect(await l2.inner.has('k')).toBe(false)
    expect(await cache.get('k')).toBeUndefined()
  })

  it('never repeats a clear() failed in use, even once the failures that follow open the breaker: told once, and what this process changed is repaired', async () => {
    const { clock, l2, cache } = twoLevels({ failureThreshold: 3, openFor: 5 })
    const repairs: MultiLevelEvent[] = []
    cache.on('error', (e) => e.operation === 'repair' && repairs.push(e))
    await cache.set('k', 'old') // e.g. another process's lock
    await cache.set('mine', 'old')
    l2.down = true
    await expect(cache.clear()).rejects.toBeInstanceOf(CacheUnavailableError)
    await expect(cache.delete('mine')).rejects.toBeInstanceOf(CacheUnavailableError)
    await cache.get('b')
    expect(cache.levelStats()[1]).toMatchObject({ state: 'open', pendingClear: false, pendingKeys: 1 })
    l2.down = false
    clock.t += 5000
    await cache.get('anything')
    await settle()
    // Before: the probe cleared L2 (the level was down): every other process's keys went with it.
    expect(await l2.inner.get('k')).toBe('old')
    expect(await l2.inner.has('mine')).toBe(false)
    expect(cache.levelStats()[1]).toMatchObject({ state: 'closed', pendingClear: false, pendingKeys: 0 })
    // This process reads what L2 holds, as the others do.
    expect(await cache.get('k')).toBe('old')
    expect(repairs).toHaveLength(1)
    expect(String(repairs[0]!.error)).toMatch(/clear\(\) it missed is not repaired there/)
    expect(String(repairs[0]!.error)).toMatch(/the 1 key this process changed then is repaired/)
  })

  it.each([
    ['before', 2],
    ['after', 1],
  ] as const)(
    'a clear() missed with more keys than maxPendingKeys changed %s it: the report of the clear says which keys are not repaired',
    async (when, events) => {
      const { clock, l2, cache } = twoLevels({ failureThreshold: 1, maxPendingKeys: 3 })
      const repairs: string[] = []
      cache.on('error', (e) => e.operation === 'repair' && repairs.push(String(e.error)))
      l2.down = true
      const changes = async () => {
        for (let i = 0; i < 5; i++)
          await expect(cache.set(`k${i}`, i)).rejects.toThrow(
            i === 0 && when === 'before'
              ? /sent to the shared level .* may have applied it/
              : /did not reach/,
          )
      }
      if (when === 'before') await changes()
      await expect(cache.clear()).rejects.toBeInstanceOf(CacheUnavailableError)
      if (when === 'after') await changes()
      l2.down = false
      clock.t += 5000
      await cache.get('x')
      await settle()
      expect(cache.levels[1]!.breaker.state).toBe('closed')
      // One report per overflow (told as it happens), and the clear's own, with the keys it leaves.
      expect(repairs).toHaveLength(events)
      expect(repairs.at(-1)).toMatch(/clear\(\) it missed is not repaired there/)
      expect(repairs.at(-1)).toMatch(
        /the 3 keys this process changed then are repaired one by one, except those past maxPendingKeys \(3\)/,
      )
    },
  )

  it('fails with CacheUnavailableError only when no level answers', async () => {
    const a = chaos(memoryBackend())
    const b = chaos(memoryBackend())
    const cache = multiLevel(a, b)
    a.down = true
    b.down = true
    const error = await cache.get('k').catch((e) => e)
    expect(error).toBeInstanceOf(CacheUnavailableError)
    expect(isCacheError(error)).toBe(true)
    await expect(cache.set('k', 1)).rejects.toBeInstanceOf(CacheUnavailableError)
    await expect(cache.incr('k')).rejects.toBeInstanceOf(CacheUnavailableError)
  })

  it('runs incr on L1 only once the shared level is known down, and drops that count when it is back', async () => {
    const { clock, l1, l2, cache } = twoLevels({ failureThreshold: 1 })
    await l2.inner.set('n', 10)
    l2.down = true
    // The failure that opens the breaker is reported: the level was in use when the call began.
    await expect(cache.incr('n')).rejects.toBeInstanceOf(CacheUnavailableError)
    expect(await cache.incr('n')).toBe(1)
    expect(await cache.incr('n')).toBe(2)
    expect(cache.levelStats()[1]).toMatchObject({ state: 'open', pendingKeys: 0, divergedKeys: 1 })
    l2.down = false
    clock.t += 5000
    await cache.get('x') // the probe starts
    for (let i = 0; i < 50 && cache.levelStats()[1]!.state !== 'closed'; i++) await settle()
    expect(await l2.inner.get('n')).toBe(10) // not erased by the repair
    expect(await l1.has('n')).toBe(false) // the private count is gone
    expect(await cache.get('n')).toBe(10)
    expect(await cache.incr('n')).toBe(11)
  })

  it('reports an incr, atomicUpdate, add or compareAndDelete the shared level failed, and answers none from L1', async () => {
    const { l1, l2, cache } = twoLevels({ failureThreshold: 5 })
    await cache.set('n', 10)
    await cache.set('lock', 'theirs')
    for (const [method, call] of [
      ['incr', () => cache.incr('n')],
      ['atomicUpdate', () => cache.atomicUpdate<number>('n', (v) => (v ?? 0) + 1)],
      ['add', () => cache.add('free', 'mine')],
      ['get', () => cache.compareAndDelete('lock', 'theirs')], // read, then deleted
    ] as const) {
      l2.failNext(method)
      await expect(call()).rejects.toThrow(/connection reset/)
    }
    expect(cache.levelStats()[1]).toMatchObject({ state: 'closed', pendingKeys: 0, errors: 4 })
    expect(await l2.inner.get('n')).toBe(10)
    expect(await l2.inner.get('lock')).toBe('theirs')
    expect(await l2.inner.has('free')).toBe(false)
    expect(await l1.has('n')).toBe(false) // the copy may be outdated: dropped
    expect(await cache.incr('n')).toBe(11)
  })
})

describe('multiLevel construction', () => {
  it('takes a chain wrapped in Object.create or a Proxy as the chain it wraps', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ml-same-disk-'))
    const open: { close(): Promise<void> }[] = []
    try {
      const shared = (name: string) => defineBackend({ ...rowsStore(new Map()), name, shared: true })
      // Two disk backends on one directory and namespace are two processes' view of one store:
      // accepted (chains of one app built twice over one configuration). Tenants need their own
      // disk namespace (see the README).
      open.push(multiLevel(diskBackend({ path: dir }), shared('a')))
      open.push(multiLevel(diskBackend({ path: dir }), shared('a')))
      // r67: a chain wrapped in Object.create or a Proxy, given as a level, is that chain: its
      // levels are its own, not another chain's. Before: refused as taken by another chain.
      for (const wrap of [(chain: object) => Object.create(chain), (chain: object) => new Proxy(chain, {})]) {
        const inner = multiLevel(memoryBackend(), shared('inner'))
        const outer = multiLevel(memoryBackend(), wrap(inner))
        open.push(outer, inner)
        await outer.set('k', 1)
        expect(await outer.get('k')).toBe(1)
      }
    } finally {
      for (const chain of open) await chain.close().catch(() => {})
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('never copies a value read from a deeper level into a faster level other processes share', async () => {
    // r67: [memory, disk, redis] on three processes of one machine: one read the old value from
    // the shared level just before another's write resolved, and copied it into the disk over the
    // new one; a third, already told of the write, read it back from the disk and kept it. A
    // faster level other processes share is written by writes only. Before: backfilled.
    const dir = mkdtempSync(join(tmpdir(), 'ml-no-disk-backfill-'))
    const rows = new Map<string, unknown>()
    const last = defineBackend({ ...rowsStore(rows), name: 'rows', shared: true })
    const chain = multiLevel({ levels: [memoryBackend(), diskBackend({ path: dir }), last], stateTtl: '1s' })
    const look = diskBackend({ path: dir })
    try {
      await last.set('written-elsewhere', 'old')
      expect(await chain.get('written-elsewhere')).toBe('old')
      expect(await look.get('written-elsewhere')).toBeUndefined()
      // What a write of this process puts there, it holds.
      await chain.set('written-here', 'new')
      expect(await look.get('written-here')).toBe('new')
      expect(chain.levelStats()[0]!.backfills).toBe(1)
      expect(chain.levelStats()[1]!.backfills).toBe(0)
      // r69: nor the invalidation state a memoized call reads (`__v:` keys), copied there for
      // stateTtl. Before: copied, and a read of this process answered before another's
      // invalidation put the old state where the machine's other processes read it.
      const price = cached(async (id: number) => `price ${id}`, {
        name: 'price',
        backend: chain,
        ttl: 60,
        tags: ['prices'],
      })
      expect(await price(1)).toBe('price 1')
      expect(await price(2)).toBe('price 2')
      const state = [...rows.keys()].filter((key) => key.startsWith('__v'))
      expect(state.length).toBeGreaterThan(0)
      for (const key of state) expect(await look.get(key), key).toBeUndefined()
    } finally {
      await chain.close()
      await look.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('refuses a chain whose last level is memory behind a shared one: no other process would see its writes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ml-order-'))
    const disk = diskBackend({ path: dir })
    try {
      // Before: accepted; each process's memory was the level the chain counted as shared.
      for (const make of [
        () => multiLevel(disk, memoryBackend()),
        () => multiLevel({ levels: [disk, memoryBackend()] }),
      ]) {
        expect(make).toThrow(CacheConfigError)
        expect(make).toThrow(/memory.*last.*fastest first/s)
      }
      // A chain given as a level: its own last level is what counts.
      expect(() => multiLevel(multiLevel(disk), memoryBackend())).toThrow(CacheConfigError)
      expect(() => multiLevel(disk, multiLevel(memoryBackend()))).toThrow(CacheConfigError)
      // A chain of the CommonJS build inside one of this build.
      const built = createRequire(import.meta.url)(join(__dirname, '../dist/index.cjs')) as {
        multiLevel: typeof multiLevel
      }
      expect(() => multiLevel(disk, built.multiLevel(memoryBackend()))).toThrow(CacheConfigError)
      // A store of this process that says so (`shared: false`), under any name.
      const rows = new Map<string, unknown>()
      const own = defineBackend({ ...rowsStore(rows), name: 'rows', shared: false })
      expect(() => multiLevel(disk, own)).toThrow(/rows, which holds its entries in this process, is last/)
      // A store that does not say, under a name no build of @cache has: not known to be shared,
      // so refused last behind a shared level until it says. Before: accepted, and each process
      // counted in its own Map.
      const unsaid = defineBackend({ ...rowsStore(rows), name: 'rows' })
      expect(() => multiLevel(disk, unsaid)).toThrow(/rows is last.*does not say.*shared: true/s)
      const said = multiLevel({
        levels: [disk, defineBackend({ ...rowsStore(new Map()), name: 'rows', shared: true })],
        closeLevels: false,
      })
      await said.set('said', 1)
      expect(await said.get('said')).toBe(1)
      // One disk level as the faster level of two chains over other shared levels: each would be
      // answered with the other's entries. Refused while the first is open. Before: accepted.
      expect(() =>
        multiLevel(disk, defineBackend({ ...rowsStore(new Map()), name: 'other', shared: true })),
      ).toThrow(/the disk level is already a faster level of another chain/)
      await said.close()
      // The same store wrapped (defineBackend, Object.create, a Proxy, a one-level chain) is the
      // same store: refused as a faster level of a second open chain. Before (r66): accepted, and
      // tenant b read tenant a's entries from it.
      const l1 = memoryBackend()
      const tenantA = multiLevel(l1, defineBackend({ ...rowsStore(new Map()), name: 'a', shared: true }))
      for (const wrapped of [defineBackend(l1), Object.create(l1), new Proxy(l1, {}), multiLevel(l1)])
        expect(() =>
          multiLevel(wrapped, defineBackend({ ...rowsStore(new Map()), name: 'b', shared: true })),
        ).toThrow(/the memory level is already a faster level of another chain/)
      await tenantA.close()
      // A construction refused for another reason claims nothing.
      const l1b = memoryBackend()
      const rowsB = defineBackend({ ...rowsStore(new Map()), name: 'b', shared: true })
      expect(() => multiLevel({ levels: [l1b, rowsB], maxPendingKeys: -1 })).toThrow(/maxPendingKeys/)
      await multiLevel(l1b, rowsB).close()
      // Closed with `closeLevels: false`, the disk level still holds that chain's entries: it
      // stays that chain's. Before (r66): released, and the next chain read them.
      expect(() =>
        multiLevel(disk, defineBackend({ ...rowsStore(new Map()), name: 'other', shared: true })),
      ).toThrow(/closed with `closeLevels: false`/)
      // A backend with every method is not given to defineBackend: its `shared` is checked here.
      // Before: `'false'` (truthy text) was taken as it came, and the chain accepted.
      const full = Object.assign(Object.create(memoryBackend()), { shared: 'false' })
      expect(() => multiLevel(memoryBackend(), disk, full)).toThrow(/shared: expected true or false/)
      // A bus given as its URL, or `true`: refused, naming what to give. Before: a TypeError from
      // inside (this.bus?.subscribe is not a function).
      for (const bus of ['redis://127.0.0.1:6379', true])
        expect(() => multiLevel({ levels: [memoryBackend(), disk], bus: bus as never })).toThrow(
          /bus: expected a bus made by redisBus\(url\)/,
        )
      expect(() => multiLevel({ levels: [memoryBackend(), disk], maxPendingKeys: '10' as never })).toThrow(
        'maxPendingKeys: expected a whole number of keys, 0 or more, got the string "10"',
      )
      // Not a boolean (from a configuration file): refused, not read as "not said".
      expect(() => defineBackend({ ...rowsStore(rows), shared: 'false' as never })).toThrow(
        /shared: expected true or false/,
      )
      // Disk is this machine's: last behind a level other machines share (redis, memcached, or a
      // store that says so), processes on two machines would count apart. Before: accepted.
      const network = defineBackend({ ...rowsStore(new Map()), name: 'remote', shared: true })
      expect(() => multiLevel(network, disk)).toThrow(
        /disk, which only this machine's processes see, is last.*\[disk, remote\]/s,
      )
      expect(() => multiLevel(memoryBackend(), network, disk)).toThrow(CacheConfigError)
      expect(() => multiLevel(multiLevel(network), multiLevel(disk))).toThrow(CacheConfigError)
      const hostOnly = defineBackend({ ...rowsStore(new Map()), name: 'files', shared: true, hostOnly: true })
      expect(() => multiLevel(network, hostOnly)).toThrow(/files, which only this machine's processes see/)
      expect(() => defineBackend({ ...rowsStore(new Map()), hostOnly: 'yes' as never })).toThrow(
        /hostOnly: expected true or false/,
      )
      const secondDisk = diskBackend({ path: join(dir, 'second') })
      const accepted = multiLevel({ levels: [secondDisk, network] })
      expect(accepted.shared).toBe(true)
      await accepted.close()
      const right = multiLevel(memoryBackend(), disk)
      await right.set('k', 1)
      expect(await right.get('k')).toBe(1)
      // In-process levels only: nothing is shared, nothing to refuse.
      expect(await multiLevel(memoryBackend(), memoryBackend()).get('k')).toBeUndefined()
    } finally {
      await disk.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('accepts levels as arguments or as options, and needs at least one', async () => {
    const single = multiLevel(memoryBackend())
    await single.set('k', 1)
    expect(await single.get('k')).toBe(1)
    expect(() => multiLevel()).toThrow(/at least one backend/)
    expect(() => multiLevel({ levels: [] })).toThrow(/at least one backend/)
    expect(() => multiLevel({} as never)).toThrow(expect.objectContaining({ setting: 'levels' }) as never)
    expect(() => multiLevel({ levels: [memoryBackend()], breaker: { failureThreshold: 0 } })).toThrow(
      CacheConfigError,
    )
    expect(() => multiLevel({ levels: [memoryBackend()], breaker: { openFor: -1 } })).toThrow(
      CacheConfigError,
    )
  })

  it('completes a minimal custom level', async () => {
    const store = new Map<string, unknown>()
    const custom = {
      get: async (k: string) => store.get(k) as never,
      set: async (k: string, v: unknown) => void store.set(k, v),
      delete: async (k: string) => store.delete(k),
      clear: async () => store.clear(),
    }
    const cache = multiLevel(memoryBackend(), custom)
    await cache.set('k', 'v')
    expect(store.get('k')).toBe('v')
  })

  it('closes its levels once, and can leave them open', async () => {
    const l1 = chaos(memoryBackend())
    let closed = 0
    const l2 = chaos(memoryBackend())
    l2.close = async () => void closed++
    const cache = multiLevel(l1, memoryBackend(), l2)
    await cache.close()
    await cache.close()
    expect(closed).toBe(1)
    const kept = multiLevel({ levels: [memoryBackend(), l2], closeLevels: false })
    await kept.close()
    expect(closed).toBe(1)
  })
})

describe('multiLevel stats', () => {
  it.each([
    ['without copies of invalidation state', 0],
    ['with copies of invalidation state in L1', '1m'],
  ] as const)('counts only lookups of entries as hits and misses, %s', async (_, stateTtl) => {
    const l1 = memoryBackend()
    const l2 = memoryBackend()
    const cache = multiLevel({ levels: [l1, l2], stateTtl })
    // Memoize reads the entry's generations (function, arguments, tag) with every lookup.
    const f = cached(async (id: number) => `value ${id}`, { backend: cache, name: 'counted', tags: ['t'] })
    expect(await f(1)).toBe('value 1')
    expect(await f(1)).toBe('value 1')
    expect(await f(1)).toBe('value 1')
    expect(cache.levelStats().map((l) => [l.name, l.hits, l.misses])).toEqual([
      ['memory', 2, 1],
      ['memory', 0, 1],
    ])
    expect(cache.stats).toMatchObject({ hits: 2, misses: 1 })
    await cache.close()
  })
})

/** get/set/delete over a Map: a store of this process, for defineBackend. */
function rowsStore(rows: Map<string, unknown>) {
  return {
    get: (key: string) => rows.get(key),
    set: (key: string, value: unknown) => void rows.set(key, value),
    delete: (key: string) => rows.delete(key),
  }
}
