import { execFileSync } from 'node:child_process'
import {
  type FaultProxy,
  type RedisCluster,
  type RedisServer,
  requireBinary,
  startFaultProxy,
  startRedis,
  startRedisCluster,
} from '@cache/test-servers'
import calculateSlot from 'cluster-key-slot'
import { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll } from 'vitest'
import { type RedisBackend, type RedisBackendOptions, redisBackend } from '../src/index.js'

/**
 * A redis-server and a 3-master cluster for the calling test file (or `describe`), started before
 * its tests and stopped after them. The URLs are read once the servers are up.
 */
export function useSingleAndCluster(): { singleUrl(): string; clusterUrl(): string } {
  let single: RedisServer | undefined
  let cluster: RedisCluster | undefined
  beforeAll(async () => {
    ;[single, cluster] = await Promise.all([startRedis(), startRedisCluster(3)])
  }, 60_000)
  afterAll(async () => {
    await Promise.all([single?.stop(), cluster?.stop()])
  })
  return {
    singleUrl: () => single!.url,
    clusterUrl: () => `redis+cluster://${cluster!.nodes.map((n) => `${n.host}:${n.port}`).join(',')}`,
  }
}

/** The seed nodes of a `redis+cluster://` URL (as {@link useSingleAndCluster} gives it). */
function nodesOf(url: string): { host: string; port: number }[] {
  return url
    .slice('redis+cluster://'.length)
    .split(',')
    .map((node) => ({ host: node.split(':')[0]!, port: Number(node.split(':')[1]) }))
}

/** A ready backend in `namespace` on `url`, and a raw client of the same node or cluster, to check what the server holds. */
export async function openWithRaw(
  url: string,
  namespace: string,
  options: RedisBackendOptions,
): Promise<{ cache: RedisBackend; raw: Redis | Cluster }> {
  const cache = redisBackend(url, { namespace, ...options })
  await cache.ready()
  return { cache, raw: cache.client.isCluster ? new Cluster(nodesOf(url)) : new Redis(url) }
}

function cli(port: number, ...command: string[]): string {
  return execFileSync(requireBinary('redis-cli'), ['-h', '127.0.0.1', '-p', String(port), ...command], {
    stdio: 'pipe',
  }).toString()
}

/** Every key of `namespace` on the masters of the cluster now. */
export async function keysOn(cluster: RedisCluster, namespace: string): Promise<string[]> {
  const keys: string[] = []
  for (const { master } of cluster.shards()) {
    const client = new Redis(master, '127.0.0.1')
    try {
      keys.push(...(await client.keys(`${namespace}:*`)))
    } finally {
      client.disconnect()
    }
  }
  return keys
}

/** `count` keys (as the backend names them, without the namespace) that the master on `port` serves. */
export function keysServedBy(port: number, namespace: string, count: number, prefix = 'k'): string[] {
  const lines = cli(port, 'cluster', 'slots').trim().split('\n')
  // redis-cli prints CLUSTER SLOTS flat: from, to, host, port, id, [host, port, id]…
  const ranges: [number, number][] = []
  for (let i = 0; i < lines.length; i++) {
    if (/^\d+$/.test(lines[i]!) && /^\d+$/.test(lines[i + 1] ?? '') && lines[i + 3] === String(port))
      ranges.push([Number(lines[i]), Number(lines[i + 1])])
  }
  const keys: string[] = []
  for (let i = 0; keys.length < count; i++) {
    const slot = calculateSlot(`${namespace}:${prefix}${i}`)
    if (ranges.some(([from, to]) => slot >= from && slot <= to)) keys.push(`${prefix}${i}`)
  }
  return keys
}

/**
 * `CLUSTER FAILOVER` on the replica at `port`, until it has taken over: Redis abandons a manual
 * failover its master does not agree to in time (on a busy machine), so it is asked again (three
 * times at most) while the node is still a replica.
 */
export async function switchOver(cluster: RedisCluster, port: number): Promise<void> {
  const replica = new Redis(port, '127.0.0.1')
  try {
    for (let attempt = 1; ; attempt++) {
      if ((await replica.role())[0] !== 'master') await replica.cluster('FAILOVER')
      try {
        await cluster.failedOver(port, 6000)
        return
      } catch (error) {
        if (attempt === 3) throw error
      }
    }
  } finally {
    replica.disconnect()
  }
}

/** A backend whose every server is reached through a fault proxy, and direct links to check it. */
export interface ProxiedSetup {
  cache: RedisBackend
  /** The proxy in front of the master that serves `key`, and a direct connection to that master. */
  route(key: string): Promise<{ proxy: FaultProxy; server: Redis }>
  stop(): Promise<void>
}

/** One redis-server behind a fault proxy, and a backend in `namespace` through it. */
export async function singleBehindProxy(
  namespace: string,
  options: RedisBackendOptions = {},
): Promise<ProxiedSetup> {
  const redis: RedisServer = await startRedis({ spawn: true })
  const proxy = await startFaultProxy(redis)
  const server = new Redis(redis.port, redis.host)
  const cache = redisBackend(`redis://${proxy.host}:${proxy.port}`, { namespace, ...options })
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

/** A 3-master cluster, each node behind its own fault proxy (ioredis `natMap`), and a backend in `namespace` through them. */
export async function clusterBehindProxies(
  namespace: string,
  options: RedisBackendOptions = {},
): Promise<ProxiedSetup> {
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
    { namespace, ...options },
  )
  return {
    cache,
    async route(key) {
      const slot = calculateSlot(`${namespace}:${key}`)
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
