import { CacheTimeoutError } from '@cache/core'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisBackend } from '../src/index.js'

describe('atomicUpdate calls queued on one key against a frozen server', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis({ spawn: true })
  })
  afterAll(async () => {
    server?.process?.thaw()
    await server?.stop()
  })

  it.each([
    ['with exactly-once records', {}],
    ['with exactlyOnceWindow: false', { exactlyOnceWindow: false as const }],
  ])(
    'fails every call within its own timeout from the call, not the Nth after N × timeout (%s)',
    async (_, extra) => {
      const cache = redisBackend(server.url, {
        namespace: 'queued',
        timeout: '200ms',
        logger: false,
        ...extra,
      })
      try {
        await cache.ready()
        await cache.set('k', 0)
        await server.process!.freeze()
        const outcomes: unknown[] = []
        const calls = Array.from({ length: 8 }, () =>
          cache
            .atomicUpdate<number>('k', (n) => (n ?? 0) + 1)
            .then(
              (value) => outcomes.push(value),
              (error: unknown) => outcomes.push(error),
            ),
        )
        // Every call was made now: each has failed once its 200 ms (plus a margin for a busy
        // machine) have passed. Before, they failed one after another (2 of 8 by 600 ms, the
        // 8th after more than 1.6 s).
        await new Promise((resolve) => setTimeout(resolve, 200 + 800))
        expect(outcomes).toHaveLength(8)
        for (const outcome of outcomes) expect(outcome).toBeInstanceOf(CacheTimeoutError)
        server.process!.thaw()
        await Promise.all(calls)
        // Nothing queued behind the failure was written later: the value is untouched.
        expect(await cache.get('k')).toBe(0)
        expect(await cache.atomicUpdate<number>('k', (n) => (n ?? 0) + 1)).toBe(1)
      } finally {
        server.process!.thaw()
        await cache.close()
      }
    },
  )
})
