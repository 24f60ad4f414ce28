import { CacheConfigError, CacheUnavailableError } from '@cache/core'
import {
  type RedisSentinel,
  type RedisSentinelGroup,
  startRedisSentinel,
  startRedisSentinelGroup,
} from '@cache/test-servers'
import { Redis, type RedisOptions } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisBackend } from '../src/index.js'

/**
 * 1 master + 1 replica + 3 sentinels (quorum 2), plus one more sentinel that watches the same
 * master on its own: it never hears of a failover, so it keeps naming the old master (a sentinel
 * cut off from the others).
 */
let group: RedisSentinelGroup
let stale: RedisSentinel
beforeAll(async () => {
  group = await startRedisSentinelGroup()
  stale = await startRedisSentinel(group.master, group.name)
}, 30_000)
afterAll(async () => {
  await stale?.stop()
  await group?.stop()
})

describe('Sentinel switch-over', () => {
  it('follows a switch-over promptly although the sentinel it asks next still names the old master', async () => {
    // The client connects through the first sentinel; after +switch-master it asks the next one.
    const hosts = group.url.slice('redis+sentinel://'.length).split('/')[0]!.split(',')
    const url = `redis+sentinel://${[hosts[0], `127.0.0.1:${stale.port}`, ...hosts.slice(1)].join(',')}/${group.name}`
    const cache = redisBackend(url, { namespace: 'follow' })
    try {
      await cache.ready()
      await cache.set('k', 0)
      const calls: { at: number; ok: boolean; value: number; error?: unknown }[] = []
      let running = true
      const writer = (async () => {
        for (let i = 0; running; i++) {
          try {
            await cache.set('k', i)
            calls.push({ at: performance.now(), ok: true, value: i })
          } catch (error) {
            calls.push({ at: performance.now(), ok: false, value: i, error })
          }
          await new Promise((r) => setTimeout(r, 5))
        }
      })()
      const start = performance.now()
      await group.sentinel('failover', group.name)
      // Writes succeed again on the new master, well before the guard's 15 s limit.
      const promoted = group.replicas[0]!.port
      let back = -1
      while (performance.now() - start < 8000) {
        const last = calls.at(-1)
        if ((await group.currentMaster()).port === promoted && last?.ok && last.at > start + 200) {
          back = performance.now() - start
          break
        }
        await new Promise((r) => setTimeout(r, 50))
      }
      running = false
      await writer
      for (const call of calls.filter((c) => !c.ok)) expect(call.error).toBeInstanceOf(CacheUnavailableError)
      expect(back).toBeGreaterThan(0)
      expect(back).toBeLessThan(5000)
      // The writes acknowledged at the end went to the new master.
      const master = new Redis(promoted, '127.0.0.1')
      try {
        expect(Number(await master.get('follow:k'))).toBe(calls.filter((c) => c.ok).at(-1)!.value)
      } finally {
        master.disconnect()
      }
    } finally {
      await cache.close()
    }
  }, 20_000)

  it('a client still connecting when the switch-over ends is not left dead', async () => {
    // The client asks a frozen sentinel first: it stays connecting (sentinel timeout 2 s) while
    // the other sentinels announce +switch-master.
    const hosts = group.url.slice('redis+sentinel://'.length).split('/')[0]!
    const url = `redis+sentinel://127.0.0.1:${stale.port},${hosts}/${group.name}`
    const before = await group.currentMaster()
    const next = [group.master, ...group.replicas].find((server) => server.port !== before.port)!
    await stale.process.freeze()
    const cache = redisBackend(url, { namespace: 'connecting' })
    try {
      await group.sentinel('failover', group.name)
      while ((await group.currentMaster()).port !== next.port) await new Promise((r) => setTimeout(r, 20))
      const start = performance.now()
      let written = false
      while (!written && performance.now() - start < 10_000) {
        written = await cache.set('k', 1).then(
          () => true,
          () => false,
        )
        await new Promise((r) => setTimeout(r, 50))
      }
      expect(written).toBe(true)
      expect(cache.client.status).toBe('ready')
    } finally {
      stale.process.thaw()
      await cache.close()
    }
  }, 20_000)
})

describe('a Sentinel client passed in', () => {
  it('is refused with keyPrefix, stringNumbers or enableAutoPipelining, like one server', async () => {
    const sentinels = group.sentinels.map((s) => ({ host: '127.0.0.1', port: s.port }))
    const cases: [string, RedisOptions][] = [
      ['keyPrefix', { keyPrefix: 'pfx:' }],
      ['stringNumbers', { stringNumbers: true }],
      ['enableAutoPipelining', { enableAutoPipelining: true }],
      // A replica: reads from before writes that resolved, writes refused (READONLY).
      ['role', { role: 'slave' }],
    ]
    for (const [setting, options] of cases) {
      const client = new Redis({ sentinels, name: group.name, ...options })
      try {
        await new Promise((resolve) => client.once('ready', resolve))
        expect(() => redisBackend(client, { namespace: 'sentinel-refused', logger: false })).toThrow(
          expect.objectContaining({ setting }),
        )
        expect(() => redisBackend(client, { namespace: 'sentinel-refused', logger: false })).toThrow(
          CacheConfigError,
        )
        expect(await client.ping()).toBe('PONG')
      } finally {
        client.disconnect()
      }
    }
  })
})
