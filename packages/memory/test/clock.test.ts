/**
 * The default clock is read at most once a millisecond and at least every 32 reads: an entry is
 * never answered for long past its expiry, even by a chain of awaited reads that never yields to
 * timers, and a test that moves the system time with fake timers sees entries expire at once.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { memoryBackend } from '../src/index.js'

afterEach(() => {
  vi.useRealTimers()
})

describe('the default clock', () => {
  it('a chain of awaited reads that never yields to timers sees an entry expire within 32 reads', async () => {
    const cache = memoryBackend()
    await cache.set('k', 'v', '20ms')
    expect(await cache.get('k')).toBe('v')
    // Past the expiry without letting any timer run.
    const until = Date.now() + 40
    while (Date.now() < until) {}
    let reads = 0
    while ((await cache.get('k')) !== undefined) {
      reads++
      if (reads > 100) break
    }
    expect(reads).toBeLessThan(32)
  })

  it('follows fake timers: moving the system time expires an entry at the next read', async () => {
    const cache = memoryBackend()
    await cache.set('warm', 1, 5)
    await cache.get('warm')
    vi.useFakeTimers()
    await cache.set('k', 'v', 10)
    expect(await cache.get('k')).toBe('v')
    vi.setSystemTime(Date.now() + 11_000)
    expect(await cache.get('k')).toBeUndefined()
    expect(await cache.get('warm')).toBeUndefined()
  })

  it('a write after a long synchronous stretch gets its whole TTL (the expiry is computed from the exact time)', async () => {
    const cache = memoryBackend()
    await cache.set('warm', 1, 60)
    expect(await cache.get('warm')).toBe(1) // the coarse clock has just been read
    // 150 ms of work that never yields: a timer cannot refresh the coarse clock meanwhile.
    const until = Date.now() + 150
    while (Date.now() < until) {}
    await cache.set('k', 'v', '100ms')
    await new Promise((resolve) => setTimeout(resolve, 5))
    // 5 ms of its 100 ms have passed (plus scheduling): it must still be there.
    expect(await cache.get('k')).toBe('v')
  })
})
