import { describe, expect, it } from 'vitest'
import { type CacheBackend, defineBackend, type MinimalBackend } from '../src/index.js'

/**
 * Two calls on one key, issued together in one process, must end as if they had run one after
 * the other in some order: each call's result and the final value are those of one of the two
 * serial orders. The store answers after a number of turns of the event loop, so a fallback's
 * read and its write can straddle the other call's write.
 *
 * The same checker as `unexplainedPairs` of @cache/testing, which other packages use: core keeps
 * its own copy because @cache/testing depends on @cache/core (core's tests cannot import it).
 */

const ABSENT = Symbol('absent')
type State = unknown | typeof ABSENT

interface Op {
  label: string
  run(backend: CacheBackend): Promise<unknown>
  /** The result and the next state when the call runs alone on `state`. */
  model(state: State): { result: unknown; state: State }
}

const ops: Op[] = [
  {
    label: "set(k, 'S')",
    run: (b) => b.set('k', 'S'),
    model: () => ({ result: undefined, state: 'S' }),
  },
  {
    label: 'delete(k)',
    run: (b) => b.delete('k'),
    model: (s) => ({ result: s !== ABSENT, state: ABSENT }),
  },
  {
    label: "setMany([k: 'M'])",
    run: (b) => b.setMany([{ key: 'k', value: 'M' }]),
    model: () => ({ result: undefined, state: 'M' }),
  },
  {
    label: 'deleteMany([k])',
    run: (b) => b.deleteMany(['k']),
    model: (s) => ({ result: s === ABSENT ? 0 : 1, state: ABSENT }),
  },
  { label: 'clear()', run: (b) => b.clear(), model: () => ({ result: undefined, state: ABSENT }) },
  {
    label: "add(k, 'A')",
    run: (b) => b.add('k', 'A'),
    model: (s) => (s === ABSENT ? { result: true, state: 'A' } : { result: false, state: s }),
  },
  {
    label: 'incr(k)',
    run: (b) => b.incr('k'),
    model: (s) => {
      if (s === ABSENT) return { result: 1, state: 1 }
      if (!Number.isSafeInteger(s)) return { result: 'CacheNotANumberError', state: s }
      return { result: (s as number) + 1, state: (s as number) + 1 }
    },
  },
  {
    label: "compareAndDelete(k, 'old')",
    run: (b) => b.compareAndDelete!('k', 'old'),
    model: (s) => (s === 'old' ? { result: true, state: ABSENT } : { result: false, state: s }),
  },
  {
    label: 'atomicUpdate(k, v => [v])',
    run: (b) => b.atomicUpdate('k', (v) => [v ?? null]),
    model: (s) => {
      const next = [s === ABSENT ? null : s]
      return { result: next, state: next }
    },
  },
]

/** A store over a Map whose calls each take their own number of event-loop turns. */
function slowStore(rows: Map<string, unknown>, turns: { get: number; write: number }): MinimalBackend {
  const wait = async (n: number) => {
    for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve))
  }
  return {
    name: 'slow',
    async get(key) {
      await wait(turns.get)
      return rows.get(key)
    },
    async set(key, value) {
      await wait(turns.write)
      rows.set(key, value)
    },
    async delete(key) {
      await wait(turns.write)
      return rows.delete(key)
    },
    async clear() {
      await wait(turns.write)
      rows.clear()
    },
  }
}

/** The same store with synchronous methods. */
function syncStore(rows: Map<string, unknown>): MinimalBackend {
  return {
    name: 'sync',
    get: (key) => rows.get(key),
    set: (key, value) => void rows.set(key, value),
    delete: (key) => rows.delete(key),
    clear: () => rows.clear(),
  }
}

async function outcome(call: Promise<unknown>): Promise<unknown> {
  try {
    return await call
  } catch (error) {
    return (error as Error).constructor.name
  }
}

/** Runs `a` and `b` together on every initial state; returns the outcomes no serial order explains. */
async function unexplained(backend: CacheBackend, rows: Map<string, unknown>, a: Op, b: Op) {
  const wrong: string[] = []
  for (const initial of [ABSENT, 5, 'old'] as State[]) {
    rows.clear()
    if (initial !== ABSENT) rows.set('k', initial)
    const results = await Promise.all([outcome(a.run(backend)), outcome(b.run(backend))])
    const final: State = rows.has('k') ? rows.get('k') : ABSENT
    const serial = (first: Op, second: Op, swap: boolean) => {
      const one = first.model(initial)
      const two = second.model(one.state)
      return { results: swap ? [two.result, one.result] : [one.result, two.result], final: two.state }
    }
    const explained = [serial(a, b, false), serial(b, a, true)].some(
      (order) =>
        JSON.stringify(order.results) === JSON.stringify(results) &&
        (order.final === ABSENT ? final === ABSENT : JSON.stringify(order.final) === JSON.stringify(final)),
    )
    if (!explained) {
      const shown = final === ABSENT ? 'absent' : JSON.stringify(final)
      wrong.push(
        `${a.label} | ${b.label} from ${initial === ABSENT ? 'absent' : JSON.stringify(initial)}: results ${JSON.stringify(results)}, final ${shown}`,
      )
    }
  }
  return wrong
}

async function everyPair(make: (rows: Map<string, unknown>) => MinimalBackend) {
  const rows = new Map<string, unknown>()
  const backend = defineBackend(make(rows))
  const wrong: string[] = []
  for (const a of ops) for (const b of ops) wrong.push(...(await unexplained(backend, rows, a, b)))
  return wrong
}

describe('defineBackend: the read-then-write fallbacks and the writes of the same process', () => {
  for (const turns of [
    { get: 1, write: 5 },
    { get: 5, write: 1 },
    { get: 2, write: 2 },
    { get: 0, write: 3 },
  ]) {
    it(`never lose an acknowledged write: every pair of calls on one key ends as some serial order would (reads ${turns.get} turns, writes ${turns.write})`, async () => {
      expect(await everyPair((rows) => slowStore(rows, turns))).toEqual([])
    })
  }

  it('keeps a synchronous store in the order of the calls: a set then a get in one tick reads the new value', async () => {
    const rows = new Map<string, unknown>()
    const backend = defineBackend(syncStore(rows))
    expect(await everyPair(syncStore)).toEqual([])
    await backend.set('k', 1)
    const [, read, , deleted] = await Promise.all([
      backend.set('k', 2),
      backend.get('k'),
      backend.delete('k'),
      backend.get('k'),
    ])
    expect([read, deleted]).toEqual([2, undefined])
  })

  it('orders a native method of the store with the fallbacks: a native incr is not lost by a fallback atomicUpdate', async () => {
    const rows = new Map<string, unknown>()
    const store = slowStore(rows, { get: 1, write: 3 })
    const backend = defineBackend({
      ...store,
      // Native, and atomic in the store: one step.
      incr: async (key: string, by = 1) => {
        const next = ((rows.get(key) as number | undefined) ?? 0) + by
        rows.set(key, next)
        return next
      },
    })
    rows.set('k', 1)
    const update = backend.atomicUpdate<number>('k', (v) => (v ?? 0) * 10)
    // The fallback has read 1 and is writing 10 when the native incr is called.
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve))
    const [updated, counted] = await Promise.all([update, backend.incr('k')])
    // atomicUpdate first: 10, then 11; incr first: 2, then 20.
    expect([updated, counted, rows.get('k')]).toSatisfy(
      (r: unknown[]) => JSON.stringify(r) === '[10,11,11]' || JSON.stringify(r) === '[20,2,20]',
    )
  })

  it('lets a fallback through while writes of other keys keep arriving: it waits only for those already in flight', async () => {
    const rows = new Map<string, unknown>()
    const backend = defineBackend(slowStore(rows, { get: 1, write: 5 }))
    const turn = () => new Promise((resolve) => setImmediate(resolve))
    let turns = 0
    let counted: number | undefined
    let counter: Promise<number> | undefined
    const writes: Promise<void>[] = []
    // A new write of another key every turn, each overlapping the next: never a moment without
    // one in flight. The incr arrives in the middle of them.
    while (counted === undefined && turns < 200) {
      writes.push(backend.set(`other:${turns % 7}`, turns))
      if (turns === 10)
        counter = backend.incr('c').then((n) => {
          counted = turns
          return n
        })
      await turn()
      turns++
    }
    await Promise.all(writes)
    expect(await counter).toBe(1)
    expect(counted).toBeLessThan(60)
  })

  it('adds no ordering to a store that implements every read-then-write itself', async () => {
    const rows = new Map<string, unknown>()
    const calls: string[] = []
    const store = slowStore(rows, { get: 0, write: 3 })
    const backend = defineBackend({
      ...store,
      set: async (key: string, value: unknown) => {
        calls.push(`set ${String(value)}`)
        await store.set(key, value)
      },
      add: async () => true,
      incr: async () => 1,
      atomicUpdate: async () => 1 as never,
      compareAndDelete: async () => true,
    })
    // Both writes reach the store at once: the store orders them itself.
    const both = Promise.all([backend.set('k', 1), backend.set('k', 2)])
    expect(calls).toEqual(['set 1', 'set 2'])
    await both
  })
})
