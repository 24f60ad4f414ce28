import { cached } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type RedisServer, recorder, startRedis } from '@cache/test-servers'
import { generationKey } from '@cache/core/backend'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type MultiLevelEvent, multiLevel } from '../src/index.js'

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
})

let n = 0
const chainOnRedis = (logger?: ReturnType<typeof recorder>) =>
  multiLevel({
    levels: [
      memoryBackend(),
      redisBackend(redis.url, { namespace: `events${++n}`, logger: logger ?? false }),
    ],
    logger: logger ?? false,
  })

describe('multiLevel events', () => {
  it('deleteMany emits one delete event per key it removed, as stats.deletes counts', async () => {
    const chain = chainOnRedis()
    try {
      const deleted: string[] = []
      chain.on('delete', (event) => deleted.push(event.key!))
      await chain.setMany([
        { key: 'a', value: 1 },
        { key: 'b', value: 2 },
      ])
      // 'c' only in the shared level (another process wrote it): a key any level held counts.
      await chain.levels[1]!.backend.set('c', 3)
      const before = chain.stats.deletes
      expect(await chain.deleteMany(['a', 'b', 'c', 'absent'])).toBe(3)
      expect(deleted.sort()).toEqual(['a', 'b', 'c'])
      expect(chain.stats.deletes - before).toBe(3)
      expect(await chain.deleteMany(['a', 'b'])).toBe(0)
      expect(deleted).toHaveLength(3)
    } finally {
      await chain.close()
    }
  })

  it("a memoized function's invalidate() on a chain emits the delete it counts", async () => {
    const chain = chainOnRedis()
    try {
      const deleted: string[] = []
      chain.on('delete', (event) => deleted.push(event.key!))
      let calls = 0
      const square = cached(async (x: number) => ++calls && x * x, {
        backend: chain,
        ttl: 60,
        name: 'square',
      })
      await square(3)
      const before = chain.stats.deletes
      await square.invalidate(3)
      expect(chain.stats.deletes - before).toBe(deleted.length)
      expect(deleted.length).toBeGreaterThan(0)
    } finally {
      await chain.close()
    }
  })
})

describe('multiLevel closed with calls in flight', () => {
  it("lets an invalidation's state write in flight finish too (generation keys)", async () => {
    const chain = chainOnRedis()
    const shared = chain.levels[1]!.backend as unknown as { namespace: string }
    const state = generationKey('fn', 'memo', 'closing')
    const writes = [chain.set(state, 7), chain.incr(generationKey('fn', 'memo', 'closing', '1'))]
    const settled = Promise.allSettled(writes)
    await chain.close()
    expect((await settled).map((outcome) => outcome.status)).toEqual(['fulfilled', 'fulfilled'])
    const after = redisBackend(redis.url, { namespace: shared.namespace })
    try {
      expect(await after.get(state)).toBe(7)
    } finally {
      await after.close()
    }
  })

  it('lets the writes in flight finish on every level first, and reports no level as failing', async () => {
    const logger = recorder()
    const chain = chainOnRedis(logger)
    const shared = chain.levels[1]!.backend as unknown as { namespace: string }
    const events: MultiLevelEvent[] = []
    chain.on('error', (event) => events.push(event))
    chain.on('level-down', (event) => events.push(event))
    await chain.set('count', 10)
    const slow = async () => {
      await new Promise((resolve) => setTimeout(resolve, 20))
      return 1
    }
    const calls = [chain.set('written', 'x'), chain.incr('count'), chain.atomicUpdate('updated', slow)]
    const settled = Promise.allSettled(calls)
    await chain.close()
    expect(await settled).toEqual([
      { status: 'fulfilled', value: undefined },
      { status: 'fulfilled', value: 11 },
      { status: 'fulfilled', value: 1 },
    ])
    await expect(chain.get('written')).rejects.toMatchObject({ name: 'CacheClosedError' })
    const after = redisBackend(redis.url, { namespace: shared.namespace })
    try {
      expect(await after.getMany(['written', 'count', 'updated'])).toEqual(['x', 11, 1])
    } finally {
      await after.close()
    }
    await new Promise((resolve) => setTimeout(resolve, 100)) // no repair or probe runs after close()
    expect(events).toEqual([])
    expect(chain.stats.errors).toBe(0)
    expect(chain.levelStats().map((level) => [level.errors, level.opened])).toEqual([
      [0, 0],
      [0, 0],
    ])
    expect(logger.lines).toEqual([])
  })
})
