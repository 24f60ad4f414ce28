import {
  type FaultProxy,
  type RedisCluster,
  type RedisServer,
  startFaultProxy,
  startRedis,
  startRedisCluster,
} from '@cache/test-servers'
import calculateSlot from 'cluster-key-slot'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RedisBackend, redisBackend } from '../src/index.js'

/** A backend whose every server is reached through a fault proxy, and direct links to check it. */
interface Setup {
  cache: RedisBackend
  /** The proxy in front of the master that serves `key`, and a direct connection to that master. */
  route(key: string): Promise<{ proxy: FaultProxy; server: Redis }>
  stop(): Promise<void>
}

async function single(): Promise<Setup> {
  const redis: RedisServer = await startRedis({ spawn: true })
  const proxy = await startFaultProxy(redis)
  const server = new Redis(redis.port, redis.host)
  const cache = redisBackend(`redis://${proxy.host}:${proxy.port}`, { namespace: 'once' })
  return {
    cache,
    route: async () => ({ proxy, server }),
    async stop() {
      await cache.close()
      server.disconnect()
      await proxy.close()
      await redis.stop()
    },
  }
}

/** A 3-master cluster; ioredis `natMap` sends each node's traffic through its own proxy. */
async function cluster(): Promise<Setup> {
  const servers: RedisCluster = await startRedisCluster(3)
  const proxies = await Promise.all(servers.nodes.map((node) => startFaultProxy(node)))
  const natMap = Object.fromEntries(
    servers.nodes.map((node, i) => [
      `${node.host}:${node.port}`,
      { host: proxies[i]!.host, port: proxies[i]!.port },
    ]),
  )
  const direct = servers.nodes.map((node) => new Redis(node.port, node.host))
  const cache = redisBackend(
    { cluster: proxies.map((p) => ({ host: p.host, port: p.port })), natMap },
    { namespace: 'once' },
  )
  return {
    cache,
    async route(key) {
      const slot = calculateSlot(`once:${key}`)
      for (const [i, server] of direct.entries()) {
        const ranges = (await server.cluster('SLOTS')) as unknown as [number, number, [string, number]][]
        const port = servers.nodes[i]!.port
        if (ranges.some(([from, to, [, owner]]) => slot >= from && slot <= to && owner === port))
          return { proxy: proxies[i]!, server }
      }
      throw new Error(`no master serves slot ${slot}`)
    },
    async stop() {
      await cache.close()
      for (const server of direct) server.disconnect()
      await Promise.all(proxies.map((p) => p.close()))
      await servers.stop()
    },
  }
}

function settle<T>(promise: Promise<T>): Promise<{ value: T } | { error: unknown }> {
  return promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  )
}

describe.each([
  ['one server', single],
  ['Redis Cluster', cluster],
])('%s: a link that drops after the server ran the command, before its reply', (_, start) => {
  let setup: Setup
  beforeAll(async () => {
    setup = await start()
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
