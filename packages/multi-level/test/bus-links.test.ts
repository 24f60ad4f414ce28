import { CacheConfigError } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import {
  freePort,
  type ManagedServer,
  type RedisCluster,
  type RedisSentinel,
  type RedisSentinelGroup,
  type RedisServer,
  startFaultProxy,
  startRedis,
  startRedisCluster,
  startRedisSentinel,
  startRedisSentinelGroup,
} from '@cache/test-servers'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { multiLevel, type RedisBus, type RedisBusConnection, redisBus } from '../src/index.js'
import { inL1, type Peer, sleep, within } from './bus-peers.js'

let redis: RedisServer
let sentinel: RedisSentinel
let cluster: RedisCluster
let group: RedisSentinelGroup
beforeAll(async () => {
  redis = await startRedis({ spawn: true })
  ;[sentinel, cluster, group] = await Promise.all([
    startRedisSentinel(redis),
    startRedisCluster(3),
    startRedisSentinelGroup(),
  ])
}, 60_000)
afterAll(async () => {
  await Promise.all([sentinel?.stop(), cluster?.stop(), group?.stop()])
  await redis?.stop()
})

const closing: { close(): Promise<unknown> }[] = []
afterEach(async () => {
  // Chains first (they stop listening), then buses and backends.
  for (const item of closing.splice(0)) await item.close()
})

/** A chain memory → redis with its own bus: one process's view of the shared cache. */
function peer(l2: string, bus: RedisBus, namespace: string): Peer {
  const l1 = memoryBackend({ namespace })
  const shared = redisBackend(l2, { namespace })
  const cache = multiLevel({ levels: [l1, shared], bus })
  cache.on('error', () => {})
  closing.push(cache, bus)
  return { cache, l1, bus }
}

/** Resolves once every peer's shared level takes writes (it holds them back during a switch-over). */
async function writable(...peers: Peer[]): Promise<void> {
  for (const { cache } of peers) {
    const took = await within(15_000, () =>
      cache.set('probe', 1).then(
        () => true,
        () => false,
      ),
    )
    expect(took).toBeGreaterThanOrEqual(0)
  }
}

function clusterUrl(): string {
  return `redis+cluster://${cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',')}`
}

/**
 * `a` writes `value`, `b` reads it into L1; resolves once that holds and `a`'s message about the
 * write has been delivered (writes do not wait for their messages).
 */
async function cachedIn(b: Peer, a: Peer, key: string, value: unknown): Promise<void> {
  await a.cache.set(key, value)
  await a.bus.flush()
  await sleep(100)
  expect(await b.cache.get(key)).toEqual(value)
  expect(inL1(b, key)).toBe(true)
}

/** `b` holds `key` in L1; a write of `a` must evict it. Resolves with the time it took (or -1). */
async function evictionTime(a: Peer, b: Peer, key: string): Promise<number> {
  await cachedIn(b, a, key, 'v1')
  await a.cache.set(key, 'v2')
  return within(2000, () => !inL1(b, key))
}

describe('redisBus accepts every connection the redis backend accepts', () => {
  const forms: [string, () => { l2: string; connection: RedisBusConnection }][] = [
    ['a redis+sentinel:// URL', () => ({ l2: sentinel.url, connection: sentinel.url })],
    ['a redis+cluster:// URL', () => ({ l2: clusterUrl(), connection: clusterUrl() })],
    [
      'ioredis Sentinel options',
      () => ({
        l2: sentinel.url,
        connection: { sentinels: [{ host: '127.0.0.1', port: sentinel.port }], name: sentinel.name },
      }),
    ],
    ['ioredis cluster options', () => ({ l2: clusterUrl(), connection: { cluster: cluster.nodes } })],
  ]
  it.each(forms)('%s', async (_, form) => {
    const { l2, connection } = form()
    const namespace = `forms${Date.now()}`
    const a = peer(l2, redisBus(connection), namespace)
    const b = peer(l2, redisBus(connection), namespace)
    await Promise.all([a.bus.ready(), b.bus.ready()])
    expect(await evictionTime(a, b, 'k')).toBeGreaterThanOrEqual(0)
  })

  it.each([
    ['single node', () => redis.url],
    ['Sentinel', () => sentinel.url],
    ['Cluster', clusterUrl],
  ])(
    'the client of a @cache/redis backend (%s): it subscribes, though the client has no offline queue',
    async (_, url) => {
      const namespace = `client${Date.now()}`
      const backendA = redisBackend(url(), { namespace })
      const backendB = redisBackend(url(), { namespace })
      closing.push(backendA, backendB)
      // A cluster client connecting on a busy machine can take longer than one call's timeout.
      await Promise.all([backendA.ready(), backendB.ready()])
      const a = peer(url(), redisBus(backendA.client), namespace)
      const b = peer(url(), redisBus(backendB.client), namespace)
      expect(await evictionTime(a, b, 'k')).toBeGreaterThanOrEqual(0)
      await Promise.all([a.bus.close(), b.bus.close()])
      // Closing the bus leaves the client it was given open.
      expect(await backendA.has('k')).toBe(true)
    },
  )

  it('rejects a bad publishTimeoutMs (the deprecated name) and a malformed URL, naming them', () => {
    expect(() => redisBus(redis.url, { publishTimeoutMs: -1 })).toThrow(/publishTimeoutMs/)
    expect(() => redisBus(redis.url, { heartbeat: 0 })).toThrow(/heartbeat/)
    expect(() => redisBus('redis+sentinel://127.0.0.1:26379')).toThrow(CacheConfigError)
    expect(() => redisBus('http://127.0.0.1')).toThrow(/not a Redis URL/)
  })
})

describe('a bus whose link goes silent', () => {
  it('notices a black-holed subscriber within 2 × heartbeat and stops serving what other processes changed', async () => {
    const proxy = await startFaultProxy({ port: redis.port })
    closing.push(proxy)
    const namespace = `silent${Date.now()}`
    const a = peer(redis.url, redisBus(redis.url, { heartbeat: '200ms' }), namespace)
    const b = peer(redis.url, redisBus(`redis://127.0.0.1:${proxy.port}`, { heartbeat: '200ms' }), namespace)
    await Promise.all([a.bus.ready(), b.bus.ready()])
    const downs: number[] = []
    b.bus.on('link-down', () => downs.push(performance.now()))

    await cachedIn(b, a, 'k', 'v1')
    const silentAt = performance.now()
    proxy.setMode('blackhole')
    await a.cache.set('k', 'v2') // b never receives this message
    const stale = await within(3000, async () => (await b.cache.get('k')) === 'v2')
    expect(stale).toBeGreaterThanOrEqual(0)
    expect(downs.length).toBe(1)
    expect(downs[0]! - silentAt).toBeLessThan(2 * 200 + 300)
    expect(b.bus.state).toBe('down')
    expect(b.bus.stats.linkDowns).toBe(1)

    // The link passes again: b takes messages again, and says so.
    const up = new Promise<void>((resolve) => b.bus.on('link-up', () => resolve()))
    proxy.setMode('pass')
    await up
    expect(b.bus.state).toBe('up')
    expect(await evictionTime(a, b, 'k2')).toBeGreaterThanOrEqual(0)
  })

  it('loses no message across a re-subscribe: a value read between the reconnect and the SUBSCRIBE is not kept', async () => {
    const namespace = `resub${Date.now()}`
    // The subscriber's SUBSCRIBE reaches Redis 300 ms late after a reconnect (a slow link), which
    // opens a window between the connection being ready and the subscription taking effect.
    let slow = false
    let subscriber: Redis | undefined
    const client = new Redis(redis.url)
    closing.push({ close: () => client.quit() })
    const duplicate = client.duplicate.bind(client)
    client.duplicate = (override?: object) => {
      subscriber = duplicate(override)
      const subscribe = subscriber.subscribe.bind(subscriber)
      subscriber.subscribe = (async (...args: Parameters<typeof subscribe>) => {
        if (slow) await sleep(300)
        return subscribe(...args)
      }) as typeof subscribe
      return subscriber
    }
    const a = peer(redis.url, redisBus(redis.url), namespace)
    const b = peer(redis.url, redisBus(client), namespace)
    await Promise.all([a.bus.ready(), b.bus.ready()])
    await cachedIn(b, a, 'k', 'v1')

    slow = true
    const admin = new Redis(redis.url)
    closing.push({ close: () => admin.quit() })
    const reconnected = new Promise((resolve) => subscriber!.once('ready', resolve))
    await admin.client('KILL', 'TYPE', 'pubsub')
    // Reconnected but not yet subscribed: b reads the current value into L1, then a changes it.
    await reconnected
    await sleep(50)
    expect(await b.cache.get('k')).toBe('v1')
    await a.cache.set('k', 'v2')
    await sleep(600) // the SUBSCRIBE has long taken effect
    expect(await b.cache.get('k')).toBe('v2')
  })
})

describe('messages lost where no link of this process failed', () => {
  it('a process that joins keeps what it cached: it learns the others’ numbers at once, not as a gap a heartbeat later', async () => {
    const namespace = `join${Date.now()}`
    const a = peer(redis.url, redisBus(redis.url, { heartbeat: '300ms' }), namespace)
    await a.bus.ready()
    await a.cache.set('k', 'v1')
    // a has sent a few heartbeats: the first payload b hears from it is not its number 1.
    await sleep(700)
    const b = peer(redis.url, redisBus(redis.url, { heartbeat: '300ms' }), namespace)
    await b.bus.ready()
    await sleep(100)
    expect(await b.cache.get('k')).toBe('v1')
    expect(inL1(b, 'k')).toBe(true)
    await sleep(1000)
    expect(inL1(b, 'k')).toBe(true)
    // And a write of a still reaches it.
    expect(await evictionTime(a, b, 'k')).toBeGreaterThanOrEqual(0)
  })

  it('Redis Cluster: subscribers killed again and again during writes; the reader resyncs instead of staying stale', async () => {
    const namespace = `kills${Date.now()}`
    const a = peer(clusterUrl(), redisBus(clusterUrl()), namespace)
    const b = peer(clusterUrl(), redisBus(clusterUrl()), namespace)
    await Promise.all([a.bus.ready(), b.bus.ready()])
    const keys = Array.from({ length: 200 }, (_, i) => `k${i}`)
    for (const key of keys) await a.cache.set(key, 'v1')
    await a.bus.flush()
    await sleep(300)
    for (const key of keys) expect(await b.cache.get(key)).toBe('v1')
    // ioredis subscribes again on another node by itself, without a close on the Cluster client:
    // messages published in between never reach it.
    const admins = cluster.nodes.map((node) => new Redis(node.port, node.host))
    closing.push({
      close: async () => {
        for (const admin of admins) admin.disconnect()
      },
    })
    const kills = setInterval(() => {
      for (const admin of admins) admin.client('KILL', 'TYPE', 'pubsub').catch(() => {})
    }, 100)
    try {
      for (const key of keys) {
        await a.cache.set(key, 'v2')
        await sleep(3)
      }
    } finally {
      clearInterval(kills)
    }
    await a.bus.flush()
    // Lost messages are found out by the next message or heartbeat of their sender (1 s).
    await sleep(2500)
    const stale = []
    for (const key of keys) if ((await b.cache.get(key)) !== 'v2') stale.push(key)
    expect(stale).toEqual([])
  })

  it('Sentinel: a process whose bus was on the old master reaches one that started after SENTINEL FAILOVER', async () => {
    const namespace = `split${Date.now()}`
    const a = peer(group.url, redisBus(group.url, { heartbeat: '200ms' }), namespace)
    await a.bus.ready()
    const keys = Array.from({ length: 50 }, (_, i) => `k${i}`)
    for (const key of keys) await a.cache.set(key, 'v1')
    await group.sentinel('failover', group.name)
    const promoted = group.replicas[0]!.port
    while ((await group.currentMaster()).port !== promoted) await sleep(20)
    await sleep(300)
    // b starts now: its bus is on the new master from the start.
    const b = peer(group.url, redisBus(group.url, { heartbeat: '200ms' }), namespace)
    await b.bus.ready()
    await writable(a, b)
    for (const key of keys) expect(await b.cache.get(key)).toBe('v1')
    for (const key of keys) await a.cache.set(key, 'v2')
    await a.bus.flush()
    await sleep(1500)
    const stale = []
    for (const key of keys) if ((await b.cache.get(key)) !== 'v2') stale.push(key)
    expect(stale).toEqual([])
  }, 30_000)

  it('Sentinel: a sentinel that slept through the switch-over and is asked first does not split the processes', async () => {
    const namespace = `slept${Date.now()}`
    const [s0, s1, s2] = group.sentinels as [ManagedServer, ManagedServer, ManagedServer]
    const through = (...sentinels: ManagedServer[]) =>
      `redis+sentinel://${sentinels.map((s) => `127.0.0.1:${s.port}`).join(',')}/${group.name}`
    // The shared level always asks an up-to-date sentinel first: only the buses are under test.
    const l2 = through(s1, s2, s0)
    const a = peer(l2, redisBus(through(s0, s1, s2), { heartbeat: '200ms' }), namespace)
    await a.bus.ready()
    const before = await group.currentMaster()
    const next = [group.master, ...group.replicas].find((server) => server.port !== before.port)!
    const asker = new Redis(s1.port, '127.0.0.1')
    closing.push({ close: async () => asker.disconnect() })
    await s0.freeze()
    try {
      await asker.call('SENTINEL', 'FAILOVER', group.name)
      const named = async () =>
        Number(((await asker.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', group.name)) as string[])[1])
      while ((await named()) !== next.port) await sleep(20)
    } finally {
      s0.thaw()
    }
    // s0 names the old master until the others' hello messages reach it (up to 2 s): b asks it
    // first, c asks one that knows.
    const b = peer(l2, redisBus(through(s0, s1, s2), { heartbeat: '200ms' }), namespace)
    const c = peer(l2, redisBus(through(s1, s0, s2), { heartbeat: '200ms' }), namespace)
    await Promise.all([b.bus.ready(), c.bus.ready()])
    await writable(a, b, c)
    const keys = Array.from({ length: 30 }, (_, i) => `k${i}`)
    const staleIn = async (readers: Peer[], value: string) => {
      const stale: string[] = []
      for (const reader of readers)
        for (const key of keys) if ((await reader.cache.get(key)) !== value) stale.push(key)
      return stale
    }
    for (const key of keys) await a.cache.set(key, 'v1')
    await sleep(500)
    expect(await staleIn([b, c], 'v1')).toEqual([])
    for (const key of keys) await c.cache.set(key, 'v2')
    await sleep(1500)
    expect(await staleIn([a, b], 'v2')).toEqual([])
    for (const key of keys) await b.cache.set(key, 'v3')
    await sleep(1500)
    expect(await staleIn([a, c], 'v3')).toEqual([])
  }, 40_000)
})

describe('publishing', () => {
  it('counts a publish that failed, and makes the other processes resync once it gets through', async () => {
    const proxy = await startFaultProxy({ port: redis.port })
    closing.push(proxy)
    const namespace = `gap${Date.now()}`
    const a = peer(
      redis.url,
      redisBus(`redis://127.0.0.1:${proxy.port}`, { publishTimeout: '200ms' }),
      namespace,
    )
    const b = peer(redis.url, redisBus(redis.url), namespace)
    await Promise.all([a.bus.ready(), b.bus.ready()])
    const busErrors: unknown[] = []
    const chainErrors: unknown[] = []
    a.bus.on('error', (event) => busErrors.push(event.error))
    a.cache.on('error', (event) => chainErrors.push(event))
    await cachedIn(b, a, 'k', 'v1')

    proxy.setMode('blackhole')
    await a.cache.set('k', 'v2') // the write itself succeeds; its message cannot leave
    expect(await within(2000, () => a.bus.stats.publishFailures > 0)).toBeGreaterThanOrEqual(0)
    expect(busErrors.length).toBeGreaterThan(0)
    expect(chainErrors).toContainEqual(expect.objectContaining({ backend: 'bus', operation: 'publish' }))
    expect(inL1(b, 'k')).toBe(true)
    proxy.setMode('pass')
    // Nobody writes: a's gap notice goes out on its own and b forgets what it cached.
    expect(await within(4000, () => !inL1(b, 'k'))).toBeGreaterThanOrEqual(0)
    expect(await b.cache.get('k')).toBe('v2')
  })

  it('reads messages in the format older versions send', async () => {
    const namespace = `compat${Date.now()}`
    const b = peer(redis.url, redisBus(redis.url), namespace)
    await b.bus.ready()
    await b.cache.set('k', 1)
    const raw = new Redis(redis.url)
    closing.push({ close: () => raw.quit() })
    await raw.publish('@cache/multi-level:invalidate', JSON.stringify({ o: 'old', n: namespace, k: ['k'] }))
    expect(await within(2000, () => !inL1(b, 'k'))).toBeGreaterThanOrEqual(0)
  })

  it('closes promptly when Redis never answered (a QUIT would wait in the offline queue)', async () => {
    const bus = redisBus(`redis://127.0.0.1:${await freePort()}`)
    await sleep(300)
    const started = performance.now()
    await bus.close()
    expect(performance.now() - started).toBeLessThan(1000)
  })
})
