import type { CacheBackend } from '@cache/core'
import { memcachedBackend } from '@cache/memcached'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type MemcachedServer, type RedisServer, startMemcached, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type MultiLevelBackend, multiLevel, redisBus } from '../src/index.js'
import { memcachedPeer } from './cut-off.js'

/*
 * A write the shared level failed while frozen (SIGSTOP) is published before the caller hears of
 * it, but the level may apply it (Redis) or undo it (memcached's bump) only when it resumes:
 * after another process, told to drop its copies, read the keys again. That process must not keep
 * what it read in between: the writer tells it again once the level has answered a read issued
 * after the failure.
 */

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Reads `keys` through `chain` (one by one, as a hot reader does) for `ms`. */
async function hammer(chain: MultiLevelBackend, keys: readonly string[], ms: number): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    for (const key of keys) await chain.get(key).catch(() => {})
    await new Promise((resolve) => setImmediate(resolve))
  }
}

/** The keys for which `chain` serves something else than `shared` holds. */
async function differing(chain: MultiLevelBackend, shared: CacheBackend, keys: readonly string[]) {
  const out: string[] = []
  for (const key of keys) {
    const [served, held] = [await chain.get(key), await shared.get(key)]
    if (served !== held)
      out.push(`${key}: serves ${String(served).slice(0, 8)}, shared ${String(held).slice(0, 8)}`)
  }
  return out
}

describe('a setMany that timed out on a frozen Redis, applied when it resumes', () => {
  let redis: RedisServer
  beforeAll(async () => {
    redis = await startRedis({ spawn: true })
  })
  afterAll(async () => {
    redis?.process?.thaw()
    await redis?.stop()
  })

  function peer(): { chain: MultiLevelBackend; ready: Promise<void> } {
    const bus = redisBus(redis.url, { logger: false, publishTimeout: '2s' })
    const chain = multiLevel({
      levels: [
        memoryBackend(),
        redisBackend(redis.url, { namespace: 'late', timeout: '100ms', logger: false }),
      ],
      bus,
      logger: false,
    })
    return { chain, ready: bus.ready() }
  }

  it('is told again once Redis answers after it: no process serves the old value afterwards', async () => {
    const a = peer()
    const b = peer()
    const shared = redisBackend(redis.url, { namespace: 'late', logger: false })
    const pad = 'x'.repeat(20_000)
    try {
      await Promise.all([a.ready, b.ready])
      for (let round = 0; round < 3; round++) {
        const keys = Array.from({ length: 300 }, (_, i) => `r${round}k${i}`)
        await a.chain.setMany(keys.map((key) => ({ key, value: 'old', ttl: 300 })))
        await hammer(b.chain, keys, 30)
        await redis.process!.freeze()
        await expect(
          a.chain.setMany(keys.map((key) => ({ key, value: `new${pad}`, ttl: 300 }))),
        ).rejects.toMatchObject({ code: 'CACHE_UNAVAILABLE' })
        const reading = hammer(b.chain, keys.slice(-3), 1500)
        redis.process!.thaw()
        await reading
        await sleep(500)
        // Before: b kept 'old' for some of the last keys (read between the message and the SETs).
        expect(await differing(b.chain, shared, keys)).toEqual([])
        expect(await differing(a.chain, shared, keys)).toEqual([])
      }
    } finally {
      redis.process!.thaw()
      await Promise.all([a.chain.close(), b.chain.close(), shared.close()])
    }
  }, 60_000)
})

describe('a setMany given up on a frozen memcached, hidden by its bump when it resumes', () => {
  let redis: RedisServer
  let memcached: MemcachedServer
  beforeAll(async () => {
    ;[redis, memcached] = await Promise.all([startRedis({ spawn: true }), startMemcached({ spawn: true })])
  })
  afterAll(async () => {
    memcached?.process?.thaw()
    await Promise.all([redis?.stop(), memcached?.stop()])
  })

  const peer = (namespace: string) => memcachedPeer(redis.url, memcached.server, namespace)

  it('is told again once memcached answers after it: no process keeps the value reported failed', async () => {
    const namespace = `late${Date.now()}`
    const a = peer(namespace)
    const b = peer(namespace)
    const shared = memcachedBackend(memcached.server, { namespace, logger: false })
    try {
      await Promise.all([a.ready, b.ready])
      for (let round = 0; round < 6; round++) {
        const keys = Array.from({ length: 20 }, (_, i) => `r${round}k${i}`)
        await a.chain.setMany(keys.map((key) => ({ key, value: 'old', ttl: 300 })))
        await hammer(b.chain, keys, 30)
        const reading = hammer(b.chain, keys, 1500)
        await sleep(50)
        await memcached.process!.freeze()
        await expect(
          a.chain.setMany(keys.map((key) => ({ key, value: 'failed-write', ttl: 300 }))),
        ).rejects.toThrow()
        await sleep(150)
        memcached.process!.thaw()
        await reading
        await sleep(800)
        // Before: in some rounds b kept 'failed-write' (the read in flight at the resume).
        expect(await differing(b.chain, shared, keys)).toEqual([])
      }
    } finally {
      memcached.process!.thaw()
      await Promise.all([a.chain.close(), b.chain.close(), shared.close()])
    }
  }, 60_000)
})
