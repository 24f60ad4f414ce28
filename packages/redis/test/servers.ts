import { type RedisCluster, type RedisServer, startRedis, startRedisCluster } from '@cache/test-servers'
import { afterAll, beforeAll } from 'vitest'

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
