import { defineBackend, type MinimalBackend } from '@cache/core'
import { describe, expect, it } from 'vitest'
import {
  ABSENT,
  keyOperations,
  matchesSomeSerialOrder,
  serialOrders,
  unexplainedPairs,
} from '../src/index.js'

const op = (label: string) => keyOperations.find((o) => o.label.startsWith(label))!
const turn = () => new Promise((resolve) => setImmediate(resolve))

/** A Map store whose writes take a few turns of the event loop, as over a network. */
function slowMap(rows: Map<string, unknown>): MinimalBackend {
  return {
    name: 'slow-map',
    async get(key) {
      await turn()
      return rows.get(key)
    },
    async set(key, value) {
      await turn()
      await turn()
      rows.set(key, value)
    },
    async delete(key) {
      await turn()
      await turn()
      return rows.delete(key)
    },
    clear: async () => rows.clear(),
  }
}

describe('the serial-order checker', () => {
  it('gives the two serial orders of a pair: incr then set, and set then incr (which finds no number)', () => {
    expect(serialOrders(op('incr'), op('set'), 5)).toEqual([
      { results: [6, undefined], final: 'S' },
      { results: ['CacheNotANumberError', undefined], final: 'S' },
    ])
    expect(serialOrders(op('add'), op('delete'), ABSENT)).toEqual([
      { results: [true, true], final: ABSENT },
      { results: [true, false], final: 'A' },
    ])
  })

  it('accepts an outcome of one serial order and refuses a lost write', () => {
    expect(matchesSomeSerialOrder(op('incr'), op('set'), 5, { results: [6, undefined], final: 'S' })).toBe(
      true,
    )
    // incr read 5 before the set and wrote 6 after it: the acknowledged set is lost.
    expect(matchesSomeSerialOrder(op('incr'), op('set'), 5, { results: [6, undefined], final: 6 })).toBe(
      false,
    )
    expect(
      matchesSomeSerialOrder(op('add'), op('set'), ABSENT, { results: [true, undefined], final: 'A' }),
    ).toBe(false)
    expect(
      matchesSomeSerialOrder(op('delete'), op('set'), ABSENT, { results: [false, undefined], final: ABSENT }),
    ).toBe(false)
  })

  it('passes a backend that orders its read-then-write calls with its writes (defineBackend fallbacks)', async () => {
    expect(await unexplainedPairs(defineBackend(slowMap(new Map())))).toEqual([])
  })

  it('reports the pairs a store with racy read-then-write calls gets wrong', async () => {
    const rows = new Map<string, unknown>()
    const store = slowMap(rows)
    // Native, so defineBackend adds no ordering: each reads, then writes a few turns later.
    const racy = defineBackend({
      ...store,
      add: async (key: string, value: unknown) => {
        if ((await store.get(key)) !== undefined) return false
        await store.set(key, value)
        return true
      },
      incr: async (key: string, by = 1) => {
        const next = (((await store.get(key)) as number | undefined) ?? 0) + by
        await store.set(key, next)
        return next
      },
      atomicUpdate: async <T>(key: string, fn: (v: T | undefined) => T | Promise<T>) => {
        const next = await fn((await store.get(key)) as T | undefined)
        await store.set(key, next)
        return next
      },
      compareAndDelete: async (key: string, expected: string) =>
        (await store.get(key)) === expected && Boolean(await store.delete(key)),
    })
    const wrong = await unexplainedPairs(racy, {
      reset: (initial) => {
        rows.clear()
        if (initial !== ABSENT) rows.set('k', initial)
      },
      read: () => (rows.has('k') ? rows.get('k') : ABSENT),
    })
    expect(wrong).toContain("set(k, 'S') | add(k, 'A') from absent: results [null,true], final \"A\"")
    expect(wrong.length).toBeGreaterThan(5)
  })
})
