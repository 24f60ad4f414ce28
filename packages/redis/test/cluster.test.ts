import { CacheUnavailableError } from '@cache/core'
import { type RedisCluster, startRedisCluster } from '@cache/test-servers'
import { Cluster } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisBackend } from '../src/index.js'

let cluster: RedisCluster
beforeAll(async () => {
  cluster = await startRedisCluster(3)
}, 60_000)
afterAll(async () => {
  await cluster?.stop()
})

describe('Redis Cluster', () => {
  it('spreads keys over every master and clears the namespace on all of them', async () => {
    const cache = redisBackend({ cluster: cluster.nodes }, { namespace: 'spread' })
    const other = redisBackend({ cluster: cluster.nodes }, { namespace: 'spreadOther' })
    try {
      const keys = Array.from({ length: 600 }, (_, i) => `k${i}`)
      await cache.setMany(keys.map((key, i) => ({ key, value: i, ttl: 60 })))
      await other.set('k1', 'kept')
      const masters = (cache.client as Cluster).nodes('master')
      expect(masters).toHaveLength(3)
      for (const node of masters) expect((await node.keys('spread:*')).length).toBeGreaterThan(100)
      expect(await cache.getMany(keys)).toEqual(keys.map((_, i) => i))
      expect(await cache.deleteMany(keys.slice(0, 100))).toBe(100)
      await cache.clear()
      for (const node of masters) expect(await node.keys('spread:*')).toEqual([])
      expect(await other.get('k1')).toBe('kept')
    } finally {
      await Promise.all([cache.close(), other.close()])
    }
  })

  it('uses a Cluster passed in and leaves it open', async () => {
    const client = new Cluster(cluster.nodes)
    try {
      const cache = redisBackend(client, { namespace: 'mine' })
      await cache.set('{user1}:a', 1)
      expect(await cache.incr('{user1}:a')).toBe(2)
      await cache.close()
      expect(client.status).toBe('ready')
      expect(await client.get('mine:{user1}:a')).toBe('2')
    } finally {
      client.disconnect()
    }
  })

  it('fails fast for keys of a master that died, and keeps serving the others', async () => {
    const cache = redisBackend({ cluster: cluster.nodes }, { namespace: 'partial', timeout: 200 })
    try {
      const keys = Array.from({ length: 30 }, (_, i) => `k${i}`)
      await cache.setMany(keys.map((key) => ({ key, value: key })))
      const victim = cluster.processes[2]!
      await victim.kill()
      const results = await Promise.all(
        keys.map(async (key) => {
          const start = performance.now()
          const outcome = await cache.get(key).then(
            (value) => ({ value }),
            (error: unknown) => ({ error }),
          )
          return { ...outcome, ms: performance.now() - start }
        }),
      )
      const failed = results.filter((r) => 'error' in r)
      const served = results.filter((r) => 'value' in r)
      expect(failed.length).toBeGreaterThan(0)
      expect(served.length).toBeGreaterThan(0)
      for (const r of failed) expect((r as { error: unknown }).error).toBeInstanceOf(CacheUnavailableError)
      // ioredis retries a closed node briefly (slots refresh); the operation timeout bounds it.
      for (const r of results) expect(r.ms).toBeLessThan(200 + 300)
    } finally {
      await cache.close()
    }
  })
})
