import { CacheUnavailableError } from '@cache/core'
import { execFileSync } from 'node:child_process'
import { type RedisCluster, requireBinary, startRedisCluster } from '@cache/test-servers'
import calculateSlot from 'cluster-key-slot'
import { Cluster, Redis } from 'ioredis'
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

  it('clear() during a slot migration to a new master removes the keys already moved there', async () => {
    const cache = redisBackend({ cluster: cluster.nodes }, { namespace: 'moving' })
    const direct: Redis[] = []
    const connect = (port: number) => {
      const client = new Redis(port, '127.0.0.1')
      direct.push(client)
      return client
    }
    try {
      // 40 keys in one slot (a hash tag), 40 spread over the others.
      const moving = Array.from({ length: 40 }, (_, i) => `{m}k${i}`)
      const spread = Array.from({ length: 40 }, (_, i) => `s${i}`)
      await cache.setMany([...moving, ...spread].map((key) => ({ key, value: key })))
      const slot = calculateSlot('moving:{m}')
      // A scale-out starts: a new, empty master imports the slot; half its keys have moved.
      const added = await cluster.addMaster()
      const target = connect(added.port)
      const owner = cluster.shards().find((shard) => ownsSlot(shard.master, slot))!
      const source = connect(owner.master)
      const [sourceId, targetId] = await Promise.all([
        source.cluster('MYID') as Promise<string>,
        target.cluster('MYID') as Promise<string>,
      ])
      await target.cluster('SETSLOT', slot, 'IMPORTING', sourceId)
      await source.cluster('SETSLOT', slot, 'MIGRATING', targetId)
      const keys = (await source.cluster('GETKEYSINSLOT', slot, 20)) as string[]
      expect(keys).toHaveLength(20)
      await source.migrate('127.0.0.1', added.port, '', 0, 5000, 'KEYS', ...keys)
      expect(await target.dbsize()).toBe(20)

      await cache.clear()
      const left: string[] = []
      for (const node of cluster.nodes) {
        const client = connect(node.port)
        if ((await client.role())[0] === 'master') left.push(...(await client.keys('moving:*')))
      }
      expect(left).toEqual([])
      // Read one by one (ioredis follows ASK for single commands): no value is served. (A read
      // sent to the new master before the client's first connection to it is up fails.)
      const values = await Promise.all(
        [...moving, ...spread].map((key) => cache.get(key).catch((error: unknown) => error)),
      )
      for (const value of values) if (value !== undefined) expect(value).toBeInstanceOf(CacheUnavailableError)

      // A client that follows those ASKs to a master it cannot reach yet, then closes: the ASKING
      // ioredis queued for each must not end as an unhandled rejection (which stops a Node process).
      const unhandled: unknown[] = []
      const record = (reason: unknown) => unhandled.push(reason)
      process.on('unhandledRejection', record)
      const frozen = cluster.processOn(added.port)
      await frozen.freeze()
      try {
        const late = redisBackend(
          { cluster: cluster.nodes.slice(0, 3) },
          { namespace: 'moving', timeout: '200ms' },
        )
        await late.ready()
        const reads = await Promise.all(moving.map((key) => late.get(key).catch((error: unknown) => error)))
        for (const read of reads) expect(read).toBeInstanceOf(CacheUnavailableError)
        await late.close()
        await new Promise((resolve) => setTimeout(resolve, 200))
      } finally {
        frozen.thaw()
        process.off('unhandledRejection', record)
      }
      expect(unhandled).toEqual([])

      // The migration is called off: the slot stays with its owner.
      await target.cluster('SETSLOT', slot, 'STABLE')
      await source.cluster('SETSLOT', slot, 'STABLE')
    } finally {
      for (const client of direct) client.disconnect()
      await cache.close()
    }
  })

  it('fails fast for keys of a master that died, and keeps serving the others', async () => {
    const cache = redisBackend({ cluster: cluster.nodes }, { namespace: 'partial', timeout: '200ms' })
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

/** True when the master on `port` serves `slot`, as CLUSTER SLOTS on that master says. */
function ownsSlot(port: number, slot: number): boolean {
  const out = execFileSync(requireBinary('redis-cli'), ['-p', String(port), 'cluster', 'slots']).toString()
  const lines = out.trim().split('\n')
  for (let i = 0; i + 3 < lines.length; i++) {
    if (/^\d+$/.test(lines[i]!) && /^\d+$/.test(lines[i + 1]!) && lines[i + 3] === String(port)) {
      if (slot >= Number(lines[i]) && slot <= Number(lines[i + 1])) return true
    }
  }
  return false
}
