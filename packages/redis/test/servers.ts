import { execFileSync } from 'node:child_process'
import {
  type RedisCluster,
  type RedisServer,
  requireBinary,
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
