import { startRedis } from '@cache/test-servers'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisBackend } from '../src/index.js'
import { clusterBehindProxies, type ProxiedSetup, singleBehindProxy } from './servers.js'

function settle<T>(promise: Promise<T>): Promise<{ value: T } | { error: unknown }> {
  return promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  )
}

describe.each([
  ['one server', singleBehindProxy],
  ['Redis Cluster', clusterBehindProxies],
])('%s: a link that drops after the server ran the command, before its reply', (_, start) => {
  let setup: ProxiedSetup
  beforeAll(async () => {
    setup = await start('once')
    await setup.cache.ready()
    // Every master has served this backend once: the links are up before the faults start.
    for (let i = 0; i < 30; i++) {
      await setup.cache.incr(`warm-up-${i}`)
      await setup.cache.atomicUpdate<number>(`warm-up-${i}`, (n) => (n ?? 0) + 1)
    }
  }, 60_000)
  afterAll(() => setup?.stop())

  it('applies an incr exactly once and reports what the server counted', async () => {
    const key = `hits-${Date.now()}`
    const { proxy, server } = await setup.route(key)
    const dropped = proxy.dropNextReply()
    const outcome = await settle(setup.cache.incr(key))
    await dropped
    expect(outcome).toEqual({ value: 1 })
    expect(await server.get(`once:${key}`)).toBe('1')
    expect(await setup.cache.incr(key)).toBe(2)
  })

  it('settles an incr refused past the safe integers as refused: RangeError, the counter unchanged', async () => {
    const key = `edge-${Date.now()}`
    const { proxy, server } = await setup.route(key)
    await server.set(`once:${key}`, String(Number.MAX_SAFE_INTEGER))
    const dropped = proxy.dropNextReply()
    const outcome = await settle(setup.cache.incr(key))
    await dropped
    expect((outcome as { error?: unknown }).error).toBeInstanceOf(RangeError)
    expect(await server.get(`once:${key}`)).toBe(String(Number.MAX_SAFE_INTEGER))
    expect(await setup.cache.incr(key, -1)).toBe(Number.MAX_SAFE_INTEGER - 1)
  })

  it('applies an atomicUpdate exactly once and reports what the server stored', async () => {
    const key = `total-${Date.now()}`
    const { proxy, server } = await setup.route(key)
    let dropped: Promise<void> | undefined
    const outcome = await settle(
      setup.cache.atomicUpdate<number>(key, (current) => {
        // Armed after the read: the link drops right after the compare-and-set ran.
        dropped ??= proxy.dropNextReply()
        return (current ?? 0) + 1
      }),
    )
    await dropped
    expect(outcome).toEqual({ value: 1 })
    expect(await server.get(`once:${key}`)).toBe('1')
  })
})

describe('outcome records and clear()', () => {
  it('clear() never removes the outcome records: a settled call stays settled through it', async () => {
    const redis = await startRedis({ spawn: true })
    const cache = redisBackend(redis.url, { namespace: 'fenced' })
    const raw = new Redis(redis.port, redis.host)
    try {
      await cache.incr('n')
      await cache.atomicUpdate<number>('total', (n) => (n ?? 0) + 1)
      const records = await raw.dbsize()
      expect(records).toBe(4) // two keys and their two records
      await cache.clear()
      expect(await cache.get('n')).toBeUndefined()
      // The records (a late copy of a settled call finds its outcome or fence there) are left.
      expect(await raw.dbsize()).toBe(2)
      expect(await raw.keys('fenced:*')).toEqual([])
    } finally {
      raw.disconnect()
      await cache.close()
      await redis.stop()
    }
  })
})
