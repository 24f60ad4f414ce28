import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { multiLevel } from '../src/index.js'

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis({ spawn: true })
})
afterAll(async () => {
  await redis?.stop()
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('listeners of a chain that throw', () => {
  it('neither change what a call answers, nor keep the breaker shut, nor escape; each is logged once', async () => {
    const namespace = `throwing${Date.now()}`
    const logged: string[] = []
    const logger = { warn: (m: string) => logged.push(m), error: (m: string) => logged.push(m) }
    const cache = multiLevel({
      levels: [
        memoryBackend({ namespace }),
        redisBackend(redis.url, { namespace, timeout: 0.3, logger: false }),
      ],
      breaker: { failureThreshold: 2, openFor: '200ms' },
      logger,
    })
    const escaped: unknown[] = []
    const onEscaped = (error: unknown) => escaped.push(error)
    process.on('uncaughtException', onEscaped)
    process.on('unhandledRejection', onEscaped)
    const thrown: string[] = []
    for (const name of ['error', 'level-down', 'level-up'] as const)
      cache.on(name, () => {
        thrown.push(name)
        throw new Error(`${name} listener`)
      })
    try {
      await cache.set('kept', 'value', 60)
      await redis.process!.kill()
      // Served from the memory level while Redis is gone: the listener's failure is not the call's.
      for (let i = 0; i < 4; i++) {
        expect(await cache.get('kept')).toBe('value')
        expect(await cache.get(`absent${i}`)).toBeUndefined()
      }
      expect(thrown).toContain('error')
      // The breaker opened all the same, and its listener was told.
      expect(cache.levels[1]!.breaker.state).not.toBe('closed')
      expect(thrown).toContain('level-down')
      await redis.process!.start()
      const deadline = Date.now() + 10_000
      while (cache.levels[1]!.breaker.state !== 'closed' && Date.now() < deadline) {
        await cache.get('absent').catch(() => undefined)
        await sleep(20)
      }
      expect(cache.levels[1]!.breaker.state).toBe('closed')
      expect(thrown).toContain('level-up')
      await sleep(20)
      expect(escaped).toEqual([])
      for (const name of ['error', 'level-down', 'level-up'])
        expect(
          logged.filter((line) => line.includes(`'${name}' listener threw`)),
          name,
        ).toHaveLength(1)
    } finally {
      process.off('uncaughtException', onEscaped)
      process.off('unhandledRejection', onEscaped)
      await cache.close()
    }
  }, 30_000)
})
