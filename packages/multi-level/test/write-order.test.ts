import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CacheBackend } from '@cache/core'
import { diskBackend } from '@cache/disk'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { multiLevel } from '../src/index.js'

let redis: RedisServer
const dir = mkdtempSync(join(tmpdir(), 'cache-multi-level-order-'))
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
  rmSync(dir, { recursive: true, force: true })
})

let n = 0
const shares = {
  redis: () => {
    const namespace = `order${++n}`
    return () => redisBackend(redis.url, { namespace })
  },
  disk: () => {
    const path = join(dir, `disk${++n}`)
    return () => diskBackend({ path, namespace: 'order' })
  },
}

type Chain = ReturnType<typeof multiLevel>

/**
 * Runs `race` on a chain whose fast levels are in this process, then compares what this chain
 * reads with what the shared level holds, as another process would read it. No TTL anywhere: a
 * copy that disagrees would be served for good.
 */
async function agreesWithShared(
  share: () => () => CacheBackend,
  race: (chain: Chain) => Promise<unknown>[] | Promise<Promise<unknown>[]>,
  levels: (shared: CacheBackend) => CacheBackend[] = (shared) => [memoryBackend(), shared],
) {
  const make = share()
  const chain = multiLevel(...levels(make()))
  const other = make()
  try {
    for (let round = 0; round < 8; round++) {
      await chain.set('k', 'old')
      await Promise.allSettled(await race(chain))
      const here = await chain.get('k')
      const there = await other.get('k')
      expect({ round, here }).toEqual({ round, here: there })
    }
  } finally {
    await chain.close()
    await other.close()
  }
}

describe('multiLevel keeps the faster levels in the shared level order', () => {
  it('never keeps a value in L1 that a clear() issued with it removed from Redis', async () => {
    await agreesWithShared(shares.redis, (c) => [c.set('k', 'new'), c.clear()])
    await agreesWithShared(shares.redis, (c) => [c.clear(), c.set('k', 'new')])
  })

  it('never backfills L1 with what a read got from Redis before a clear() issued with it removed it', async () => {
    // A process starting (L1 empty) reads a key another process wrote, while it clears the chain:
    // the read may reach Redis before the clear's UNLINK does, and must not copy that into L1.
    for (const levels of [
      (shared: CacheBackend) => [memoryBackend(), shared],
      (shared: CacheBackend) => [memoryBackend(), diskBackend({ path: join(dir, `l2-${++n}`) }), shared],
    ]) {
      const make = shares.redis()
      const other = make()
      try {
        for (let round = 0; round < 8; round++) {
          const chain = multiLevel(...levels(make()))
          await other.set('k', 'before-clear')
          await Promise.all([chain.clear(), round % 2 ? chain.get('k') : chain.getMany(['k'])])
          const here = await chain.get('k')
          await chain.close()
          expect({ round, here }).toEqual({ round, here: await other.get('k') })
        }
      } finally {
        await other.close()
      }
    }
  })

  it('never keeps a setMany value in L1 that a delete issued with it removed from Redis', async () => {
    await agreesWithShared(shares.redis, (c) => [c.setMany([{ key: 'k', value: 'new' }]), c.delete('k')])
    await agreesWithShared(shares.redis, (c) => [
      c.setMany([{ key: 'k', value: 'new' }]),
      c.deleteMany(['k']),
    ])
  })

  it('never keeps an add value in L1 that a delete issued with it removed from Redis', async () => {
    await agreesWithShared(shares.redis, async (c) => {
      await c.delete('k')
      return [c.add('k', 'new'), c.delete('k')]
    })
  })

  it('never keeps a set value in L1 that incr, atomicUpdate or compareAndDelete replaced in Redis', async () => {
    await agreesWithShared(shares.redis, (c) => [c.set('k', 5), c.incr('k')])
    await agreesWithShared(shares.redis, (c) => [c.set('k', 5), c.atomicUpdate('k', (v: unknown) => `${v}!`)])
    await agreesWithShared(shares.redis, (c) => [c.set('k', 'new'), c.compareAndDelete('k', 'new')])
  })

  it('never keeps a value in L1 that a delete issued with it removed from a SQLite file', async () => {
    await agreesWithShared(shares.disk, (c) => [c.set('k', 'new'), c.delete('k')])
    await agreesWithShared(shares.disk, (c) => [c.set('k', 'new'), c.clear()])
    await agreesWithShared(shares.disk, (c) => [c.set('k', 'a'), c.set('k', 'b'), c.delete('k')])
  })

  it('keeps a middle disk level in the order of Redis too', async () => {
    const middle = () => diskBackend({ path: join(dir, `middle${++n}`), namespace: 'order' })
    const three = (shared: CacheBackend) => [memoryBackend(), middle(), shared]
    await agreesWithShared(shares.redis, (c) => [c.set('k', 'new'), c.delete('k')], three)
    await agreesWithShared(shares.redis, (c) => [c.set('k', 'new'), c.clear()], three)
  })

  it('still copies a write that nothing overlapped into L1', async () => {
    const make = shares.redis()
    const shared = make()
    const chain = multiLevel(memoryBackend(), shared)
    await Promise.all([chain.set('a', 1), chain.delete('b'), chain.setMany([{ key: 'c', value: 3 }])])
    expect(await chain.levels[0]!.backend.get('a')).toBe(1)
    expect(await chain.levels[0]!.backend.get('c')).toBe(3)
    await chain.close()
  })
})
