import { memcachedBackend } from '@cache/memcached'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type MemcachedServer, type RedisServer, startMemcached, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { multiLevel } from '../src/index.js'
import { memcachedPeer } from './cut-off.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** What `read` answers once it stops being `stale`, or after `ms`. */
async function settledRead(read: () => Promise<unknown>, stale: unknown, ms = 1500): Promise<unknown> {
  const deadline = Date.now() + ms
  let value = await read()
  while (value === stale && Date.now() < deadline) {
    await sleep(50)
    value = await read()
  }
  return value
}

describe('a deleteMany on memcached of which one key was never sent', () => {
  let redis: RedisServer
  let memcached: MemcachedServer
  beforeAll(async () => {
    ;[redis, memcached] = await Promise.all([startRedis({ spawn: true }), startMemcached({ spawn: true })])
  })
  afterAll(async () => {
    await Promise.all([redis?.stop(), memcached?.stop()])
  })

  const peer = (namespace: string) => memcachedPeer(redis.url, memcached.server, namespace)

  it('drops and publishes the keys it did delete: no process serves the deleted k2 afterwards', async () => {
    const namespace = `partly${Date.now()}`
    const a = peer(namespace)
    const b = peer(namespace)
    try {
      await Promise.all([a.ready, b.ready])
      await a.chain.setMany([
        { key: 'k', value: 'old' },
        { key: 'k2', value: 'old2' },
      ])
      await sleep(100)
      expect(await b.chain.get('k2')).toBe('old2')
      expect(await a.chain.get('k2')).toBe('old2')
      // a's own atomicUpdate holds k longer than the timeout: k's delete gives up unsent, k2's is applied.
      const [updated, deleted] = await Promise.allSettled([
        a.chain.atomicUpdate('k', async () => {
          await sleep(700)
          return 'upd'
        }),
        a.chain.deleteMany(['k', 'k2']),
      ])
      expect(updated.status).toBe('fulfilled')
      expect(deleted.status).toBe('rejected')
      const shared = memcachedBackend(memcached.server, { namespace, logger: false })
      expect(await shared.get('k2')).toBeUndefined()
      await shared.close()
      // Before: the batch was taken as never sent: a and b served 'old2' until their TTL.
      expect(await a.chain.get('k2')).toBeUndefined()
      expect(await settledRead(() => b.chain.get('k2'), 'old2')).toBeUndefined()
    } finally {
      await Promise.all([a.chain.close(), b.chain.close()])
    }
  })
})

describe('the error of a write sent to Redis whose failure opened the breaker', () => {
  let redis: RedisServer
  beforeAll(async () => {
    redis = await startRedis({ spawn: true })
  })
  afterAll(async () => {
    redis.process?.thaw()
    await redis?.stop()
  })

  it('says it was sent and may have been applied, not that it did not reach Redis', async () => {
    const chain = multiLevel({
      levels: [
        memoryBackend(),
        redisBackend(redis.url, { namespace: 'sent', timeout: '100ms', logger: false }),
      ],
      breaker: { failureThreshold: 3, openFor: '30s' },
      logger: false,
    })
    try {
      await chain.set('k', 'old')
      await redis.process!.freeze()
      const messages: string[] = []
      for (let i = 1; i <= 4; i++) {
        const error = await chain.set('k', `new${i}`).then(
          () => undefined,
          (e: Error) => e,
        )
        messages.push(error?.message ?? 'resolved')
      }
      redis.process!.thaw()
      await sleep(300)
      const check = redisBackend(redis.url, { namespace: 'sent', logger: false })
      expect(await check.get('k')).toBe('new3')
      await check.close()
      // #3 opened the breaker: sent all the same (Redis applied it on resume).
      expect(messages[2]).not.toMatch(/did not reach/)
      expect(messages[2]).toMatch(/may have applied it/)
      // #4 was skipped (breaker open): never sent.
      expect(messages[3]).toMatch(/did not reach the shared level/)
    } finally {
      redis.process!.thaw()
      await chain.close()
    }
  })
})
