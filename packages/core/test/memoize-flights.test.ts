import { describe, expect, it } from 'vitest'
import { cached } from '../src/index.js'
import { mapBackend } from './map-backend.js'

/** Reads answered 1-8 ms after they were sent, in an order unrelated to the order they were sent. */
const jittery = () => mapBackend({ latency: (call) => 1 + ((call * 7) % 8) })

describe('single-flight covers the read: concurrent misses in one process', () => {
  it('run the function once when 100 callers miss at the same time', async () => {
    for (let trial = 0; trial < 5; trial++) {
      let runs = 0
      const load = cached(
        async (id: number) => {
          runs++
          await new Promise((resolve) => setTimeout(resolve, 5))
          return { id, run: runs }
        },
        { backend: jittery(), name: `concurrentMisses${trial}`, ttl: 60 },
      )
      const results = await Promise.all(Array.from({ length: 100 }, () => load(1)))
      expect(runs).toBe(1)
      expect(new Set(results.map((r) => r.run))).toEqual(new Set([1]))
    }
  })

  it('hand every waiter the same error when the function fails', async () => {
    for (let trial = 0; trial < 5; trial++) {
      let runs = 0
      const boom = cached(
        async (_id: number) => {
          runs++
          await new Promise((resolve) => setTimeout(resolve, 5))
          throw new Error(`failure #${runs}`)
        },
        { backend: jittery(), name: `concurrentFailures${trial}`, ttl: 60 },
      )
      const outcomes = await Promise.allSettled(Array.from({ length: 100 }, () => boom(1)))
      expect(runs).toBe(1)
      const messages = new Set(outcomes.map((o) => (o as PromiseRejectedResult).reason.message))
      expect(messages).toEqual(new Set(['failure #1']))
    }
  })

  it('share one run between the handles that share a name', async () => {
    let runs = 0
    const backend = jittery()
    const load = async (id: number) => {
      runs++
      await new Promise((resolve) => setTimeout(resolve, 5))
      return id
    }
    const reader = cached(load, { backend, name: 'sharedFlight' })
    const admin = cached(load, { backend, name: 'sharedFlight' })
    await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? reader(1) : admin(1))))
    expect(runs).toBe(1)
  })
})
