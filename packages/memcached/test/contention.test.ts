import { CacheConflictError } from '@cache/core'
import { startMemcached } from '@cache/test-servers'
import { afterAll, describe, expect, it } from 'vitest'
import { memcachedBackend } from '../src/index.js'

const server = await startMemcached({ spawn: true })
afterAll(() => server.stop())

/** Eight backends with their own connections: what eight processes would do. */
function clients(namespace: string) {
  return Array.from({ length: 8 }, () => memcachedBackend(server.server, { namespace, timeout: 2 }))
}

describe('contention across connections', () => {
  it('8 clients x 250 atomicUpdate() lose no update (CAS)', async () => {
    const all = clients('cas')
    try {
      const outcomes = await Promise.allSettled(
        all.flatMap((cache) =>
          Array.from({ length: 250 }, () => cache.atomicUpdate<number>('total', (n = 0) => n + 1)),
        ),
      )
      // Each acknowledged update counted once. Under heavy contention (a busy machine) a call may
      // give up after maxAttempts conflicts, as documented: it then wrote nothing.
      const applied = outcomes.filter((outcome) => outcome.status === 'fulfilled').length
      for (const outcome of outcomes)
        if (outcome.status === 'rejected') expect(outcome.reason).toMatchObject({ code: 'CACHE_CONFLICT' })
      expect(applied).toBeGreaterThan(1000)
      expect(await all[0]!.get('total')).toBe(applied)
    } finally {
      await Promise.all(all.map((c) => c.close()))
    }
  })

  it('8 clients x 100 incr() with mixed signs give the exact total', async () => {
    const all = clients('incr')
    try {
      const steps = all.flatMap((_, i) => Array.from({ length: 100 }, () => (i % 4 === 3 ? -2 : 3)))
      const outcomes = await Promise.allSettled(steps.map((by, j) => all[Math.floor(j / 100)]!.incr('n', by)))
      // 6 clients add 3, 2 clients take 2, 100 times each. Each acknowledged step counts once; on a
      // busy machine a call may give up after maxAttempts conflicts, as documented, having written nothing.
      let total = 0
      for (const [j, outcome] of outcomes.entries()) {
        if (outcome.status === 'fulfilled') total += steps[j]!
        else expect(outcome.reason).toMatchObject({ code: 'CACHE_CONFLICT' })
      }
      expect(outcomes.filter((outcome) => outcome.status === 'fulfilled').length).toBeGreaterThan(400)
      expect(await all[0]!.get('n')).toBe(total)
    } finally {
      await Promise.all(all.map((c) => c.close()))
    }
  })

  it('8 clients x 100 incr() race to create a counter and count exactly', async () => {
    const all = clients('create')
    try {
      const outcomes = await Promise.allSettled(
        all.flatMap((cache) => Array.from({ length: 100 }, () => cache.incr('fresh', 1, 60))),
      )
      // Every acknowledged increment has its own result, and they are 1…n (none lost or doubled);
      // a documented give-up (CacheConflictError) wrote nothing.
      const results: number[] = []
      for (const outcome of outcomes)
        if (outcome.status === 'fulfilled') results.push(outcome.value)
        else expect(outcome.reason).toMatchObject({ code: 'CACHE_CONFLICT' })
      expect(results.length).toBeGreaterThan(400)
      expect(new Set(results).size).toBe(results.length)
      expect(Math.max(...results)).toBe(results.length)
      expect(await all[0]!.get('fresh')).toBe(results.length)
    } finally {
      await Promise.all(all.map((c) => c.close()))
    }
  })

  it('only one of 8 clients add()s a lock', async () => {
    const all = clients('lock')
    try {
      const won = await Promise.all(all.map((cache, i) => cache.add('lock', i, 10)))
      expect(won.filter(Boolean)).toHaveLength(1)
    } finally {
      await Promise.all(all.map((c) => c.close()))
    }
  })

  it('atomicUpdate() gives up with CacheConflictError after maxAttempts, each attempt beaten by another writer', async () => {
    const [cache, other] = [
      memcachedBackend(server.server, { namespace: 'beaten', timeout: 2, maxAttempts: 3 }),
      memcachedBackend(server.server, { namespace: 'beaten', timeout: 2 }),
    ]
    try {
      let calls = 0
      const update = cache.atomicUpdate<number>('k', async () => {
        calls++
        await other.set('k', calls) // written between this attempt's read and its write
        return -1
      })
      await expect(update).rejects.toThrow(CacheConflictError)
      await expect(update).rejects.toThrow(/after 3 conflicting attempts/)
      await expect(update).rejects.toMatchObject({ key: 'k' })
      expect(calls).toBe(3)
      expect(await other.get('k')).toBe(3)
    } finally {
      await Promise.all([cache.close(), other.close()])
    }
  })
})
