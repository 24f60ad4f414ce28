import { type RedisServer, startRedis } from '@cache/test-servers'
import { unexplainedPairs } from '@cache/testing'
import KeyvRedis from '@keyv/redis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { keyvBackend } from '../src/index.js'

/**
 * Two calls on one key, issued together in one process, must end as if they had run one after the
 * other in some order: each call's result and the final value are those of one of the two serial
 * orders (`unexplainedPairs` of @cache/testing). `add`, `incr`, `atomicUpdate` and
 * `compareAndDelete` read, then write; a `set` or `delete` landing in between must not be
 * acknowledged and then lost.
 */

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
