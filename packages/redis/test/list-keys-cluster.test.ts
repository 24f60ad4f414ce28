import { CacheUnavailableError, listKeys } from '@cache/core'
import { type RedisCluster, startRedisCluster } from '@cache/test-servers'
import calculateSlot from 'cluster-key-slot'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisBackend } from '../src/index.js'

let cluster: RedisCluster
beforeAll(async () => {
  cluster = await startRedisCluster(3)
}, 60_000)
afterAll(async () => {
  await cluster?.stop()
})

async function listAll(iterator: AsyncIterableIterator<string>): Promise<string[]> {
  const out: string[] = []
  for await (const key of iterator) out.push(key)
  return out
}

describe('keys() on a Redis Cluster', () => {
  it('lists every key once during a slot migration to a new master, a key on both nodes included', async () => {
    // What is tested is the listing: a loaded machine's first connection to the cluster may take
    // longer than the default 300 ms operation timeout.
    const cache = redisBackend({ cluster: cluster.nodes }, { namespace: 'listing', timeout: '3s' })
    const direct: Redis[] = []
    const connect = (port: number) => {
      const client = new Redis(port, '127.0.0.1')
      direct.push(client)
      return client
    }
    try {
      const moving = Array.from({ length: 40 }, (_, i) => `{m}k${i}`)
      const spread = Array.from({ length: 60 }, (_, i) => `s${i}`)
      await cache.setMany([...moving, ...spread].map((key) => ({ key, value: key })))
      const slot = calculateSlot('listing:{m}')
      // A scale-out starts: a new, empty master imports the slot and serves no slot yet.
      const added = await cluster.addMaster()
      const target = connect(added.port)
      let source: Redis | undefined
      for (const shard of cluster.shards()) {
        const client = connect(shard.master)
        if (((await client.cluster('COUNTKEYSINSLOT', slot)) as number) > 0) source = client
      }
      const [sourceId, targetId] = await Promise.all([
        source!.cluster('MYID') as Promise<string>,
        target.cluster('MYID') as Promise<string>,
      ])
      await target.cluster('SETSLOT', slot, 'IMPORTING', sourceId)
      await source!.cluster('SETSLOT', slot, 'MIGRATING', targetId)
      const keys = (await source!.cluster('GETKEYSINSLOT', slot, 20)) as string[]
      await source!.migrate('127.0.0.1', added.port, '', 0, 5000, 'KEYS', ...keys)
      // One more key is copied, not moved: for a moment both masters hold it.
      const [copied] = (await source!.cluster('GETKEYSINSLOT', slot, 1)) as string[]
      await source!.migrate('127.0.0.1', added.port, '', 0, 5000, 'COPY', 'KEYS', copied!)
      expect(await target.dbsize()).toBe(21)

      const listed = await listAll(listKeys(cache))
      expect(listed.length).toBe(100)
      expect([...listed].sort()).toEqual([...moving, ...spread].sort())
      expect((await listAll(listKeys(cache, { prefix: '{m}' }))).sort()).toEqual([...moving].sort())

      await target.cluster('SETSLOT', slot, 'STABLE')
      await source!.cluster('SETSLOT', slot, 'STABLE')
      await target.flushall()
    } finally {
      for (const client of direct) client.disconnect()
      await cache.close()
    }
  })

  it('rejects with CacheUnavailableError when a master does not answer, rather than listing part of the keys', async () => {
    const cache = redisBackend({ cluster: cluster.nodes }, { namespace: 'listing-down', timeout: '300ms' })
    // A master that answers nothing (paused; killing one would free a port another file's cluster may take).
    // It must be a master that holds some of the keys: the other test adds a master that owns no slot.
    let master: Redis | undefined
    try {
      await cache.setMany(Array.from({ length: 30 }, (_, i) => ({ key: `k${i}`, value: i })))
      for (const shard of cluster.shards()) {
        const client = new Redis(shard.master, '127.0.0.1')
        if (!master && (await client.keys('listing-down*')).length > 0) master = client
        else client.disconnect()
      }
      if (!master) throw new Error('no master holds a key')
      expect(await listAll(listKeys(cache))).toHaveLength(30)
      await master.client('PAUSE', 3000, 'ALL')
      const start = performance.now()
      await expect(listAll(listKeys(cache))).rejects.toBeInstanceOf(CacheUnavailableError)
      expect(performance.now() - start).toBeLessThan(2500)
    } finally {
      await master?.client('UNPAUSE').catch(() => undefined)
      master?.disconnect()
      await cache.close()
    }
  })
})
