import type { CacheBackend } from '@cache/core'
import { type RedisServer, startRedis } from '@cache/test-servers'
import KeyvRedis from '@keyv/redis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { keyvBackend } from '../src/index.js'

/**
 * Two calls on one key, issued together in one process, must end as if they had run one after the
 * other in some order: each call's result and the final value are those of one of the two serial
 * orders. `add`, `incr`, `atomicUpdate` and `compareAndDelete` read, then write; a `set` or
 * `delete` landing in between must not be acknowledged and then lost.
 */

const ABSENT = Symbol('absent')
type State = unknown | typeof ABSENT

interface Op {
  label: string
  run(backend: CacheBackend): Promise<unknown>
  model(state: State): { result: unknown; state: State }
}

const ops: Op[] = [
  { label: "set(k, 'S')", run: (b) => b.set('k', 'S'), model: () => ({ result: undefined, state: 'S' }) },
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

async function outcome(call: Promise<unknown>): Promise<unknown> {
  try {
    return await call
  } catch (error) {
    return (error as Error).constructor.name
  }
}

/** Every pair of calls from every initial state; the outcomes that no serial order explains. */
async function unexplainedPairs(backend: CacheBackend, pairs: [Op, Op][] = allPairs()): Promise<string[]> {
  const wrong: string[] = []
  for (const [a, b] of pairs) {
    for (const initial of [ABSENT, 5, 'old'] as State[]) {
      await backend.delete('k')
      if (initial !== ABSENT) await backend.set('k', initial)
      const results = await Promise.all([outcome(a.run(backend)), outcome(b.run(backend))])
      const entry = await backend.getEntry('k')
      const final: State = entry === undefined ? ABSENT : entry.value
      const serial = (first: Op, second: Op, swap: boolean) => {
        const one = first.model(initial)
        const two = second.model(one.state)
        return { results: swap ? [two.result, one.result] : [one.result, two.result], final: two.state }
      }
      const same = (x: State, y: State) =>
        x === ABSENT || y === ABSENT ? x === y : JSON.stringify(x) === JSON.stringify(y)
      const explained = [serial(a, b, false), serial(b, a, true)].some(
        (order) => JSON.stringify(order.results) === JSON.stringify(results) && same(order.final, final),
      )
      if (!explained) {
        const show = (s: State) => (s === ABSENT ? 'absent' : JSON.stringify(s))
        wrong.push(
          `${a.label} | ${b.label} from ${show(initial)}: results ${JSON.stringify(results)}, final ${show(final)}`,
        )
      }
    }
  }
  return wrong
}

function allPairs(): [Op, Op][] {
  return ops.flatMap((a) => ops.map((b): [Op, Op] => [a, b]))
}

/** A Keyv store over a Map whose calls each take their own number of event-loop turns. */
function slowStore(turns: { get: number; write: number }) {
  const rows = new Map<string, unknown>()
  const wait = async (n: number) => {
    for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve))
  }
  return {
    opts: {},
    namespace: undefined as string | undefined,
    on() {
      return this
    },
    async get(key: string) {
      await wait(turns.get)
      return rows.get(key)
    },
    async set(key: string, value: unknown) {
      await wait(turns.write)
      rows.set(key, value)
      return true
    },
    async delete(key: string) {
      await wait(turns.write)
      return rows.delete(key)
    },
    async clear() {
      await wait(turns.write)
      rows.clear()
    },
  }
}

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
})

describe('keyv: writes of one process and the per-key queue of add/incr/atomicUpdate/compareAndDelete', () => {
  it('never loses an acknowledged set: add, incr and compareAndDelete racing a set (Map store)', async () => {
    const cache = keyvBackend(new Map(), { namespace: 'lw' })
    await cache.delete('k')
    const added = await Promise.all([cache.add('k', 'A'), cache.set('k', 'S')])
    const afterAdd = await cache.get('k')
    await cache.set('k', 5)
    const counted = await Promise.all([cache.incr('k'), cache.set('k', 'S')])
    const afterIncr = await cache.get('k')
    await cache.set('k', 'old')
    const deleted = await Promise.all([cache.compareAndDelete('k', 'old'), cache.set('k', 'S')])
    const afterDelete = await cache.get('k')
    expect({ added, afterAdd, counted, afterIncr, deleted, afterDelete }).toEqual({
      added: [true, undefined],
      afterAdd: 'S',
      counted: [6, undefined],
      afterIncr: 'S',
      deleted: [true, undefined],
      afterDelete: 'S',
    })
  })

  it('ends every pair of calls on one key as some serial order would (Map store)', async () => {
    expect(await unexplainedPairs(keyvBackend(new Map(), { namespace: 'pairs' }))).toEqual([])
  })

  for (const turns of [
    { get: 1, write: 5 },
    { get: 5, write: 1 },
    { get: 0, write: 3 },
  ]) {
    it(`ends every pair of calls on one key as some serial order would (a store whose reads take ${turns.get} turns, writes ${turns.write})`, async () => {
      expect(await unexplainedPairs(keyvBackend(slowStore(turns) as never, { namespace: 'pairs' }))).toEqual(
        [],
      )
    })
  }

  it('ends every pair of calls on one key as some serial order would (@keyv/redis on a real Redis)', async () => {
    const cache = keyvBackend(new KeyvRedis(redis.url), { namespace: 'pairs', closeStore: true })
    try {
      expect(await unexplainedPairs(cache)).toEqual([])
    } finally {
      await cache.close()
    }
  })

  it('still sends a set then a delete of one key to the store in that order', async () => {
    const cache = keyvBackend(slowStore({ get: 0, write: 2 }) as never)
    await cache.set('k', 1)
    const [, removed] = await Promise.all([cache.set('k', 2), cache.delete('k'), cache.set('k', 3)])
    expect([removed, await cache.get('k')]).toEqual([true, 3])
  })
})
