import { CacheTimeoutError, CacheUnavailableError, type Duration } from '@cache/core'
import { type RedisCluster, startRedisCluster } from '@cache/test-servers'
import { type Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RedisBackend, redisBackend } from '../src/index.js'
import { keysOn, keysServedBy, switchOver } from './servers.js'

/**
 * A 3-master + 3-replica cluster (`cluster-node-timeout` 2 s) whose masters die or hand over one
 * test after another. Each test builds its own client, as an app that starts after the last
 * failover would.
 */
let cluster: RedisCluster
let url: string
const open: RedisBackend[] = []

beforeAll(async () => {
  cluster = await startRedisCluster(3, { replicas: 1 })
  url = `redis+cluster://${cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',')}`
}, 60_000)
afterAll(async () => {
  await Promise.all(open.map((cache) => cache.close()))
  await cluster?.stop()
})

function backend(namespace: string, timeout: Duration = '1s'): RedisBackend {
  const cache = redisBackend(url, { namespace, timeout })
  open.push(cache)
  return cache
}

async function timed<T>(op: () => Promise<T>): Promise<{ ms: number; value?: T; error?: unknown }> {
  const start = performance.now()
  try {
    const value = await op()
    return { ms: performance.now() - start, value }
  } catch (error) {
    return { ms: performance.now() - start, error }
  }
}

async function get(port: number, key: string): Promise<string | null> {
  const client = new Redis(port, '127.0.0.1')
  try {
    return await client.get(key)
  } finally {
    client.disconnect()
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * The shards once each lists its replica: after a switch-over (or right after start-up) a node
 * takes a moment to be listed as the replica of its shard again.
 */
async function settledShards() {
  let shards = cluster.shards()
  for (let i = 0; i < 100 && shards.some((shard) => shard.replicas.length !== 1); i++) {
    await sleep(100)
    shards = cluster.shards()
  }
  return shards
}

describe('Redis Cluster with replicas, through failovers', () => {
  it("serves a new client's first burst while it connects, and ready() waits for every master", async () => {
    const cache = backend('burst')
    const burst = await Promise.all(Array.from({ length: 300 }, (_, i) => timed(() => cache.set(`k${i}`, i))))
    expect(burst.filter((r) => r.error !== undefined).map((r) => String(r.error))).toEqual([])

    const fresh = backend('burst')
    await fresh.ready()
    const masters = (fresh.client as Cluster).nodes('master')
    expect(masters).toHaveLength(3)
    for (const node of masters) expect(node.status).toBe('ready')
    expect(await fresh.getMany(['k0', 'k150', 'k299'])).toEqual([0, 150, 299])
  })

  it('clear() after a switch-over the client has not seen removes the keys of the new master', async () => {
    const cache = backend('handover')
    await cache.ready()
    await cache.setMany(Array.from({ length: 300 }, (_, i) => ({ key: `k${i}`, value: i })))
    const [shard] = await settledShards()
    // CLUSTER FAILOVER: the replica takes over, the old master stays up as its replica; no link drops.
    await switchOver(cluster, shard!.replicas[0]!)

    await cache.clear()
    expect(await keysOn(cluster, 'handover')).toEqual([])
  }, 40_000)

  it('fails an incr at once during CLUSTERDOWN and never applies it later', async () => {
    const cache = backend('down', '300ms')
    await cache.ready()
    const [, victim, healthy] = await settledShards()
    expect(victim!.replicas).toHaveLength(1)
    const [key] = keysServedBy(healthy!.master, 'down', 1)
    await cluster.processOn(victim!.master).kill()
    // Between the master being marked failed and its replica taking over, every node refuses
    // every slot: ioredis used to retry then, after the call had timed out.
    await cluster.down()
    const outcome = await timed(() => cache.incr(key!))
    await cluster.failedOver(victim!.replicas[0]!)
    await sleep(1000)

    expect(await get(healthy!.master, `down:${key}`)).toBeNull()
    expect(outcome.error).toBeInstanceOf(CacheUnavailableError)
    expect(outcome.error).not.toBeInstanceOf(CacheTimeoutError)
    expect(outcome.ms).toBeLessThan(300)
  })

  it('fails calls for a dead master fast, follows the promoted replica and counts exactly', async () => {
    const cache = backend('dead')
    await cache.ready()
    const victim = cluster.shards().find((s) => s.replicas.length > 0)
    const others = cluster.shards().filter((s) => s.master !== victim!.master)
    const lost = keysServedBy(victim!.master, 'dead', 5)
    const kept = others.flatMap((s) => keysServedBy(s.master, 'dead', 5))
    await cluster.processOn(victim!.master).kill()

    const lostCalls: { ms: number; error?: unknown }[] = []
    const keptCalls: { ms: number; error?: unknown }[] = []
    let counted = 0
    const deadline = Date.now() + 15_000
    for (let round = 0; Date.now() < deadline; round++) {
      const key = lost[round % lost.length]!
      const call = await timed(() => cache.incr(key))
      lostCalls.push(call)
      if (call.error === undefined) counted++
      keptCalls.push(await timed(() => cache.get(kept[round % kept.length]!)))
      if (call.error === undefined && counted >= 20) break
      await sleep(20)
    }

    // The other shards serve until the dead master is marked failed; from then until its replica
    // takes over, every node answers CLUSTERDOWN (cluster-require-full-coverage): fast failures.
    expect(keptCalls.filter((c) => c.error === undefined).length).toBeGreaterThan(0)
    for (const call of keptCalls.filter((c) => c.error !== undefined)) {
      expect(String(call.error)).toMatch(/CLUSTERDOWN/)
      expect(call.ms).toBeLessThan(500)
    }
    const failures = lostCalls.filter((c) => c.error !== undefined)
    expect(failures.length).toBeGreaterThan(0)
    for (const failure of failures) expect(failure.error).toBeInstanceOf(CacheUnavailableError)
    // The first calls may wait out the link that is going down; once the master is known down
    // calls fail without waiting for the timeout (1000 ms).
    const known = failures.slice(2)
    expect(known.length).toBeGreaterThan(0)
    for (const failure of known) expect(failure.ms).toBeLessThan(500)
    expect(counted).toBe(20)
    const promoted = victim!.replicas[0]!
    let stored = 0
    for (const key of lost) stored += Number((await get(promoted, `dead:${key}`)) ?? 0)
    expect(stored).toBe(counted)
  })

  it('clear() right after a master died removes the keys its promoted replica holds', async () => {
    const cache = backend('cleared')
    await cache.ready()
    await cache.setMany(Array.from({ length: 300 }, (_, i) => ({ key: `k${i}`, value: i })))
    const victim = cluster.shards().find((s) => s.replicas.length > 0)!
    await cluster.processOn(victim.master).kill()
    await cluster.failedOver(victim.replicas[0]!)

    await cache.clear()
    expect(await keysOn(cluster, 'cleared')).toEqual([])
  })
})
