import { describe, expect, it } from 'vitest'
import type { Driver } from '../src/contestant.js'
import { BATCH_SIZE, batches, KEY_COUNT, keys, ORDER_LENGTH, order } from '../src/data.js'
import { LatencySampler, loopFor, turnOrder } from '../src/measure.js'

/** The key indexes a worker's loop reads, in the order it reads them. */
function readsOfOneLoop(n: number): number[] {
  const read: number[] = []
  const driver: Driver = {
    get: (_key, index) => {
      read.push(index)
      return 'hit'
    },
    set: () => undefined,
  }
  const run = loopFor(
    driver,
    'get-hit',
    { sync: true, concurrency: 1 },
    { gets: 0, hits: 0 },
    new LatencySampler(),
  )
  run(n)
  return read
}

describe('the key order every loop walks', () => {
  it('is not 0, 1, 2… nor any short run of neighbours', () => {
    const read = readsOfOneLoop(20_000)
    expect(read).toHaveLength(20_000)
    let neighbours = 0
    for (let s = 1; s < read.length; s++) if (read[s] === read[s - 1]! + 1) neighbours++
    // Uniform draws give a neighbour about once in 10 000 steps.
    expect(neighbours).toBeLessThan(20)
  })

  it('is the same sequence for every contestant', () => {
    expect(readsOfOneLoop(5000)).toEqual(readsOfOneLoop(5000))
  })

  it('covers the key set about evenly', () => {
    expect(order).toHaveLength(ORDER_LENGTH)
    const counts = new Uint32Array(10)
    for (let s = 0; s < ORDER_LENGTH; s++) counts[Math.floor((order[s]! * 10) / KEY_COUNT)]!++
    for (const count of counts) expect(Math.abs(count - ORDER_LENGTH / 10)).toBeLessThan(ORDER_LENGTH / 100)
    expect(Math.max(...order)).toBeLessThan(KEY_COUNT)
  })

  it('gives getMany batches of distinct keys matching their indexes', () => {
    for (const batch of batches) {
      expect(new Set(batch.keys).size).toBe(BATCH_SIZE)
      expect(batch.indexes.map((i) => keys[i])).toEqual(batch.keys)
    }
  })
})

describe('turnOrder', () => {
  it('runs every pair of rows once in each order over two rounds', () => {
    const rows = ['a', 'b', 'c', 'd']
    const place = (round: number, row: string) => turnOrder(rows, round).indexOf(row)
    for (const x of rows)
      for (const y of rows) {
        if (x === y) continue
        // Over rounds 0 and 1, x runs before y exactly once.
        const before = [0, 1].filter((r) => place(r, x) < place(r, y)).length
        expect(before).toBe(1)
      }
    expect(turnOrder(rows, 2)).toEqual(rows)
    expect(rows).toEqual(['a', 'b', 'c', 'd'])
  })
})
