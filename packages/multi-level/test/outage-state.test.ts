/**
 * Invalidation state while the shared level is unreachable. What a process computes then must
 * never be served once the shared level is back and another process has invalidated: nothing
 * this process decided alone may outlive the outage.
 */
import { cached, invalidateTags } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { multiLevel } from '../src/index.js'

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis({ spawn: true })
})
afterAll(async () => {
  await redis?.stop()
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
let n = 0

/** One process's chain and memoized lookup of a shared "database" row. */
function app(ns: string, db: { version: string }) {
  const chain = multiLevel({
    levels: [memoryBackend(), redisBackend(redis.url, { namespace: ns, timeout: '200ms' })],
    breaker: { failureThreshold: 3, openFor: '300ms' },
  })
  chain.on('error', () => {})
  const row = cached(async (id: number) => `${db.version} ${id}`, {
    backend: chain,
    name: 'row',
    ttl: 600,
    tags: (id) => [`row:${ns}:${id}`],
  })
  return { chain, row, tag: `row:${ns}:1` }
}

describe('state created while the shared level is down never outlives the outage', () => {
  it('after a restart, another process invalidates: this one never serves what it computed during the outage', async () => {
    const ns = `outage-state${process.pid}-${++n}`
    const db = { version: 'v0' }
    const a = app(ns, db)
    try {
      expect(await a.row(1)).toBe('v0 1')
      await redis.process!.kill()
      db.version = 'v1'
      for (let i = 0; i < 4; i++) expect(await a.row(1)).toBe('v1 1')
      await redis.process!.start()
      db.version = 'v2'
      const b = app(ns, db)
      await b.row.invalidate(1)
      await b.row.clear()
      await invalidateTags([b.tag], { backend: b.chain })
      expect(await b.row(1)).toBe('v2 1')
      await b.chain.close()
      // Past the breaker's open period: the next call finds a probe due.
      await sleep(500)
      expect(await a.row(1)).toBe('v2 1')
      await sleep(100)
      expect(await a.row(1)).toBe('v2 1')
    } finally {
      await a.chain.close()
    }
  })

  it('and never again during a second outage, after the breaker closed in between', async () => {
    const ns = `outage-state${process.pid}-${++n}`
    const db = { version: 'v0' }
    const a = app(ns, db)
    const other = cached(async (id: number) => id, { backend: a.chain, name: 'other' })
    try {
      expect(await a.row(1)).toBe('v0 1')
      await redis.process!.kill()
      db.version = 'v1'
      for (let i = 0; i < 4; i++) expect(await a.row(1)).toBe('v1 1')
      await redis.process!.start()
      // Unrelated work until the breaker has closed again.
      for (let i = 0; i < 20 && a.chain.levelStats()[1]!.state !== 'closed'; i++) {
        await other(i)
        await sleep(100)
      }
      expect(a.chain.levelStats()[1]!.state).toBe('closed')
      db.version = 'v2'
      const b = app(ns, db)
      await b.row.clear()
      await invalidateTags([b.tag], { backend: b.chain })
      await b.chain.close()
      await redis.process!.kill()
      for (let i = 0; i < 5; i++) {
        expect(await a.row(1)).toBe('v2 1')
        await sleep(150)
      }
    } finally {
      if (!redis.process!.running) await redis.process!.start()
      await a.chain.close()
    }
  })
})
