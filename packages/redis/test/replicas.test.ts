import { CacheUnavailableError } from '@cache/core'
import { type RedisCluster, type RedisServer, startRedis, startRedisCluster } from '@cache/test-servers'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CacheReplicationError, type RedisBackend, redisBackend } from '../src/index.js'
import { keysServedBy, switchOver } from './servers.js'

/**
 * `replicas`: a write resolves only once replicas have it. Against a master with one replica,
 * and a 3-master + 3-replica cluster whose replica takes over under load.
 */
let master: RedisServer
let replica: RedisServer
let cluster: RedisCluster
const open: RedisBackend[] = []

beforeAll(async () => {
  master = await startRedis({ spawn: true })
  const args = ['--replicaof', master.host, String(master.port), '--repl-diskless-sync-delay', '0']
  ;[replica, cluster] = await Promise.all([
    startRedis({ spawn: true, args }),
    startRedisCluster(3, { replicas: 1 }),
  ])
  // Synced once a write of the master's is acknowledged by its replica.
  const admin = new Redis(master.port, master.host)
  try {
    await admin.set('synced', 1)
    while (Number(await admin.call('WAIT', 1, 100)) < 1) await admin.set('synced', 1)
  } finally {
    admin.disconnect()
  }
}, 60_000)
afterAll(async () => {
  await Promise.all(open.map((cache) => cache.close()))
  replica?.process?.thaw()
  await Promise.all([replica?.stop(), cluster?.stop()])
  await master?.stop()
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function backend(url: string, options: Parameters<typeof redisBackend>[1]): RedisBackend {
  const cache = redisBackend(url, options)
  open.push(cache)
  return cache
}

async function failure(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => 'resolved',
    (error: unknown) => error,
  )
}

describe('replicas: writes acknowledged only once replicated', () => {
  it('with the replica frozen no write is acknowledged: the first says it was applied, the next are not sent', async () => {
    const cache = backend(master.url, { namespace: 'frozen', replicas: 1 })
    await cache.set('before', 1)
    await cache.set('lock', 'mine')
    const direct = new Redis(master.port, master.host)
    await replica.process!.freeze()
    try {
      // The first write waits for the replica in vain: the master applied it, and says so.
      const first = await failure(cache.set('k', 1))
      expect(first).toBeInstanceOf(CacheReplicationError)
      expect(first).toBeInstanceOf(CacheUnavailableError)
      expect((first as CacheReplicationError).applied).toBe(true)
      expect((first as CacheReplicationError).acknowledged).toBe(0)
      expect(await direct.get('frozen:k')).toBe('1')
      // The master is known short of replicas: the next writes fail at once, not applied.
      const calls: [string, () => Promise<unknown>][] = [
        ['add', () => cache.add('fresh', 1)],
        ['delete', () => cache.delete('before')],
        ['incr', () => cache.incr('n')],
        ['atomicUpdate', () => cache.atomicUpdate<number>('u', (v) => (v ?? 0) + 1)],
        ['setMany', () => cache.setMany([{ key: 'm1', value: 1 }])],
        ['deleteMany', () => cache.deleteMany(['lock'])],
        ['compareAndDelete', () => cache.compareAndDelete('lock', 'mine')],
      ]
      for (const [name, call] of calls) {
        const start = performance.now()
        const error = await failure(call())
        expect(error, name).toBeInstanceOf(CacheUnavailableError)
        expect(error, name).not.toBeInstanceOf(CacheReplicationError)
        expect(performance.now() - start, name).toBeLessThan(100)
      }
      // A second later one write probes the master first: the replica still does not answer.
      await sleep(1100)
      expect(await failure(cache.incr('n'))).not.toBeInstanceOf(CacheReplicationError)
      const stored = await direct.mget('frozen:fresh', 'frozen:before', 'frozen:n', 'frozen:u', 'frozen:m1')
      expect(stored).toEqual([null, '1', null, null, null])
      expect(await direct.get('frozen:lock')).toBe('"mine"')
    } finally {
      replica.process!.thaw()
      direct.disconnect()
    }
    // The replica catches up: writes are acknowledged again, and none of the refused ones counted.
    const start = performance.now()
    while ((await failure(cache.set('after', 1))) !== 'resolved') {
      expect(performance.now() - start).toBeLessThan(10_000)
      await sleep(100)
    }
    expect(await cache.incr('n')).toBe(1)
  }, 30_000)

  it('a master without replicas (one just promoted) refuses writes at once, without applying them', async () => {
    const lone = await startRedis({ spawn: true })
    const cache = redisBackend(lone.url, { namespace: 'lone', replicas: 1 })
    const direct = new Redis(lone.port, lone.host)
    try {
      const burst = await Promise.all(Array.from({ length: 20 }, (_, i) => failure(cache.incr(`n${i % 2}`))))
      for (const error of burst) {
        expect(error).toBeInstanceOf(CacheUnavailableError)
        expect(error).not.toBeInstanceOf(CacheReplicationError)
      }
      expect(await failure(cache.set('k', 1))).toBeInstanceOf(CacheUnavailableError)
      expect(await direct.keys('lone:*')).toEqual([])
    } finally {
      direct.disconnect()
      await cache.close()
      await lone.stop()
    }
  })

  it('keeps call order: a read issued after a write in the same tick sees it, once the master is known to have its replicas', async () => {
    const cache = backend(master.url, { namespace: 'ordered', replicas: 1 })
    await cache.set('warm', 1)
    await cache.set('c', 5)
    await cache.set('d', 'old')
    await cache.set('l', 'mine')
    const [, afterSet, , afterIncr, , afterMany, , afterDelete, , lockHeld] = await Promise.all([
      cache.set('s', 'new'),
      cache.get('s'),
      cache.incr('c'),
      cache.get('c'),
      cache.setMany([{ key: 'm', value: 'new' }]),
      cache.getMany(['m']),
      cache.deleteMany(['d']),
      cache.has('d'),
      cache.compareAndDelete('l', 'mine'),
      cache.has('l'),
    ])
    expect({ afterSet, afterIncr, afterMany, afterDelete, lockHeld }).toEqual({
      afterSet: 'new',
      afterIncr: 6,
      afterMany: ['new'],
      afterDelete: false,
      lockHeld: false,
    })
  })

  it('rejects a replica count that is not a whole number', () => {
    expect(() => redisBackend(master.url, { replicas: 1.5 })).toThrow(/replicas/)
    expect(() => redisBackend(master.url, { replicas: -1 })).toThrow(/replicas/)
  })

  it('CLUSTER FAILOVER TAKEOVER under incr load: no acknowledged increment is lost', async () => {
    const cache = backend(`redis+cluster://${cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',')}`, {
      namespace: 'takeover',
      replicas: 1,
    })
    await cache.ready()
    const shard = cluster.shards().find((s) => s.replicas.length > 0)!
    const counters = keysServedBy(shard.master, 'takeover', 4)
    const acknowledged = new Map(counters.map((key) => [key, 0]))
    const errors: unknown[] = []
    let running = true
    const worker = async (offset: number) => {
      for (let i = offset; running; i++) {
        const key = counters[i % counters.length]!
        try {
          await cache.incr(key)
          acknowledged.set(key, acknowledged.get(key)! + 1)
        } catch (error) {
          errors.push(error)
          await sleep(5)
        }
      }
    }
    const workers = Array.from({ length: 8 }, (_, i) => worker(i))
    await sleep(1000)
    // The replica takes over at once, without the master's agreement: whatever it had not
    // received yet is gone.
    const promoted = new Redis(shard.replicas[0]!, '127.0.0.1')
    try {
      await promoted.call('CLUSTER', 'FAILOVER', 'TAKEOVER')
      while (!(await promoted.info('replication')).includes('role:master')) await sleep(20)
      // Load goes on until the client follows the new master.
      await sleep(2500)
      running = false
      await Promise.all(workers)
      const counted = [...acknowledged.values()].reduce((a, b) => a + b, 0)
      expect(counted).toBeGreaterThan(100)
      let stored = 0
      for (const key of counters) stored += Number((await promoted.get(`takeover:${key}`)) ?? 0)
      for (const error of errors) expect(error).toBeInstanceOf(CacheUnavailableError)
      // Every acknowledged increment survived; a surplus only where a failure said "applied".
      const applied = errors.filter((error) => error instanceof CacheReplicationError).length
      expect(stored).toBeGreaterThanOrEqual(counted)
      expect(stored - counted).toBeLessThanOrEqual(applied)
    } finally {
      promoted.disconnect()
    }
  }, 30_000)

  it('a client that only writes follows a planned CLUSTER FAILOVER within a second (a MOVED reply renews its slot map)', async () => {
    const cache = backend(`redis+cluster://${cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',')}`, {
      namespace: 'planned',
      replicas: 1,
    })
    await cache.ready()
    const shard = cluster.shards().find((s) => s.replicas.length > 0)!
    const [key] = keysServedBy(shard.master, 'planned', 1)
    await cache.set(key!, 0)
    const promoted = new Redis(shard.replicas[0]!, '127.0.0.1')
    try {
      await switchOver(cluster, shard.replicas[0]!)
      // Nothing but writes: no read renews the client's slot map.
      const start = performance.now()
      let written = -1
      const errors: unknown[] = []
      for (let i = 1; performance.now() - start < 5000 && written < 0; i++) {
        try {
          await cache.set(key!, i)
          written = i
        } catch (error) {
          errors.push(error)
          await sleep(50)
        }
      }
      expect(written, `still failing after 5 s: ${String(errors.at(-1))}`).toBeGreaterThan(0)
      expect(performance.now() - start).toBeLessThan(1500)
      for (const error of errors) expect(error).toBeInstanceOf(CacheUnavailableError)
      // The write went to the new master, and the next ones go there too.
      expect(await promoted.get(`planned:${key}`)).toBe(JSON.stringify(written))
      await cache.set(key!, 'after')
      await cache.delete(key!)
      expect(await promoted.exists(`planned:${key}`)).toBe(0)
    } finally {
      promoted.disconnect()
    }
  }, 30_000)
})
