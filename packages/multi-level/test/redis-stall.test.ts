import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { multiLevel } from '../src/index.js'

describe('a chain whose process, not its Redis, stalls past the timeout', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis({ spawn: true })
  })
  afterAll(async () => {
    await server?.stop()
  })

  it('keeps the healthy shared level in use: no failure, no level-down, no breaker, no private counts', async () => {
    const redis = redisBackend(server.url, { namespace: 'stalled-chain', timeout: '100ms', logger: false })
    const chain = multiLevel({
      levels: [memoryBackend(), redis],
      breaker: { failureThreshold: 2, openFor: '1s' },
      logger: false,
    })
    const events: string[] = []
    chain.on('level-down', () => events.push('level-down'))
    chain.on('error', (event) => events.push(`error ${String(event.error)}`))
    try {
      await redis.ready('10s')
      for (let i = 0; i < 12; i++) await chain.set(`k${i}`, `v${i}`)
      for (let round = 0; round < 4; round++) {
        const calls: Promise<unknown>[] = [
          ...Array.from({ length: 12 }, (_, i) => chain.get(`miss${round}:${i}`)),
          ...Array.from({ length: 4 }, (_, i) => chain.set(`w${i}`, round)),
          chain.incr('counter'),
        ]
        // The commands are written (even rounds) or not yet (odd rounds); then 300 ms of
        // synchronous work in this process.
        if (round % 2 === 0) await new Promise((resolve) => setImmediate(resolve))
        const until = performance.now() + 300
        while (performance.now() < until) {}
        const settled = await Promise.allSettled(calls)
        expect(
          settled.filter((s) => s.status === 'rejected').map((s) => String(s.reason)),
          `round ${round}`,
        ).toEqual([])
        expect((settled[16] as PromiseFulfilledResult<unknown>).value).toBe(round + 1)
      }
      expect(events).toEqual([])
      const shared = chain.levelStats()[1]!
      expect(shared).toMatchObject({ state: 'closed', errors: 0, timeouts: 0, opened: 0, divergedKeys: 0 })
      expect(redis.stats.errors).toBe(0)
      expect(await redis.get('counter')).toBe(4)
    } finally {
      await chain.close()
    }
  })
})
