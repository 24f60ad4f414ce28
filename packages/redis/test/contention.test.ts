import { CacheConflictError } from '@cache/core'
import { describe, expect, it } from 'vitest'
import { type RedisBackend, redisBackend } from '../src/index.js'
import { useSingleAndCluster } from './servers.js'

const CLIENTS = 8
const UPDATES = 250

async function contend(make: () => RedisBackend, key: string): Promise<void> {
  const clients = Array.from({ length: CLIENTS }, make)
  try {
    // All 2 000 updates of one key in flight at once: on a loaded machine one may lose its race
    // more often than atomicUpdate retries (CacheConflictError, documented). Such a one must not
    // have been applied, and every one that resolved must be.
    const settled = (
      await Promise.all(
        clients.map((cache, c) =>
          Promise.allSettled(
            Array.from({ length: UPDATES }, (_, i) =>
              cache.atomicUpdate<{ total: number; last: string }>(key, async (current) => {
                await new Promise((r) => setImmediate(r))
                return { total: (current?.total ?? 0) + 1, last: `${c}/${i}` }
              }),
            ),
          ),
        ),
      )
    ).flat()
    const failed = settled.filter((outcome) => outcome.status === 'rejected')
    for (const outcome of failed) expect(outcome.reason).toBeInstanceOf(CacheConflictError)
    expect(failed.length).toBeLessThan((CLIENTS * UPDATES) / 10)
    await Promise.all(
      clients.map((cache) => Promise.all(Array.from({ length: UPDATES }, () => cache.incr(`${key}:n`)))),
    )
    const reader = clients[0]!
    expect((await reader.get<{ total: number }>(key))!.total).toBe(CLIENTS * UPDATES - failed.length)
    expect(await reader.get(`${key}:n`)).toBe(CLIENTS * UPDATES)
  } finally {
    await Promise.all(clients.map((cache) => cache.close()))
  }
}

describe('contention across separate clients', () => {
  const servers = useSingleAndCluster()

  it(`${CLIENTS} clients x ${UPDATES} atomicUpdate and incr lose nothing (single node)`, async () => {
    await contend(
      () => redisBackend(servers.singleUrl(), { namespace: 'contention', timeout: '2s' }),
      `k${Date.now()}`,
    )
  })

  it(`${CLIENTS} clients x ${UPDATES} atomicUpdate and incr lose nothing (cluster)`, async () => {
    const url = servers.clusterUrl()
    await contend(() => redisBackend(url, { namespace: 'contention', timeout: '2s' }), `k${Date.now()}`)
  })
})
