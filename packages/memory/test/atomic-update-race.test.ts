import { describe, expect, it } from 'vitest'
import { memoryBackend } from '../src/index.js'

/** A write acknowledged while an async updater runs is never lost: the outcome is some serial order. */
describe('atomicUpdate with an async fn and a set or delete of the same key meanwhile', () => {
  it.each([{}, { clone: true }, { maxSize: '1MB' }])('keeps the set (options %o)', async (options) => {
    const cache = memoryBackend(options)
    await cache.set('k', 1)
    let runs = 0
    const update = cache.atomicUpdate<number>('k', async (current) => {
      runs++
      await new Promise((resolve) => setTimeout(resolve, 10))
      return (current ?? 0) + 1
    })
    await new Promise((resolve) => setTimeout(resolve, 2))
    await cache.set('k', 100)
    const result = await update
    // Serial orders: set then update (101), or update then set (100, but the update saw 1 → 2 first).
    expect(result).toBe(101)
    expect(await cache.get('k')).toBe(101)
    expect(runs).toBe(2)
  })

  it('keeps the delete', async () => {
    const cache = memoryBackend()
    await cache.set('k', 1)
    const update = cache.atomicUpdate<number>('k', async (current) => {
      await new Promise((resolve) => setTimeout(resolve, 10))
      return (current ?? 0) + 1
    })
    await new Promise((resolve) => setTimeout(resolve, 2))
    expect(await cache.delete('k')).toBe(true)
    expect(await update).toBe(1)
    expect(await cache.get('k')).toBe(1)
  })
})
