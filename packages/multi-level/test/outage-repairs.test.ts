/**
 * What a process changed while Redis was frozen (SIGSTOP) is repaired on Redis once it answers
 * again; the repair must reach the other processes too: a tag invalidation or a delete is never
 * lost, whatever else happened in the same outage, and another process that read the old value
 * back from Redis before the repair drops it when the repair lands.
 */
import { cached, invalidateTags } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  type InvalidationBus,
  type MultiLevelBackend,
  type MultiLevelEvent,
  multiLevel,
  redisBus,
} from '../src/index.js'

// Its own server: these tests freeze it.
let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis({ spawn: true })
})
afterAll(async () => {
  await redis?.stop()
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
let n = 0

/** One process's chain: its own memory level, Redis (150 ms timeout), and bus if given. */
function peer(
  url: string,
  options: {
    namespace: string
    openFor: string
    failureThreshold?: number
    bus?: InvalidationBus
    stateTtl?: string
  },
) {
  const chain = multiLevel({
    levels: [
      memoryBackend(),
      redisBackend(url, { namespace: options.namespace, timeout: '150ms', logger: false }),
    ],
    breaker: { failureThreshold: options.failureThreshold ?? 1, openFor: options.openFor },
    bus: options.bus,
    stateTtl: options.stateTtl,
    logger: false,
  })
  const errors: MultiLevelEvent[] = []
  chain.on('error', (event) => errors.push(event))
  return { chain, errors }
}

/** Calls until the chain has skipped Redis (its breaker opened). */
async function untilDown(chain: MultiLevelBackend): Promise<void> {
  for (let i = 0; i < 100 && chain.levelStats()[1]!.state === 'closed'; i++) {
    await chain.get('__down?').catch(() => undefined)
    await sleep(20)
  }
  expect(chain.levelStats()[1]!.state).not.toBe('closed')
}

/** Calls until the chain uses Redis again (its probe closed the breaker). */
async function untilBack(chain: MultiLevelBackend): Promise<void> {
  for (let i = 0; i < 150 && chain.levelStats()[1]!.state !== 'closed'; i++) {
    await chain.get('__back?').catch(() => undefined)
    await sleep(30)
  }
  expect(chain.levelStats()[1]!.state).toBe('closed')
}

/** Calls until the chain uses Redis again with nothing left to repair. */
async function untilRepaired(chain: MultiLevelBackend, ms = 8000): Promise<void> {
  const done = () => {
    const level = chain.levelStats()[1]!
    return level.state === 'closed' && level.pendingKeys === 0 && !level.pendingClear
  }
  const deadline = Date.now() + ms
  while (!done() && Date.now() < deadline) {
    await chain.get('__up?').catch(() => undefined)
    await sleep(30)
  }
  expect(chain.levelStats()[1]).toMatchObject({ state: 'closed', pendingKeys: 0, pendingClear: false })
}

/** What `read` answers once it stops being `stale`, or after `ms`. */
async function settled<T>(read: () => Promise<T>, stale: T, ms = 1000): Promise<T> {
  const deadline = Date.now() + ms
  let value = await read()
  while (value === stale && Date.now() < deadline) {
    await sleep(30)
    value = await read()
  }
  return value
}

describe('multiLevel(memory, redis without a namespace): clear() during the outage (never replayed on Redis)', () => {
  it('still repairs the tag invalidation and the delete made before it: no result from before them is served', async () => {
    // A namespace-less backend owns its database.
    const url = `${redis.url}/3`
    const a = peer(url, { namespace: '', openFor: '300ms' })
    const b = peer(url, { namespace: '', openFor: '300ms' })
    const other = redisBackend(url, { namespace: '', logger: false })
    let calls = 0
    const lookup = cached(async (_id: number) => `result#${++calls}`, {
      backend: b.chain,
      name: 'lookup',
      tags: ['t'],
      ttl: '1h',
    })
    try {
      await a.chain.set('session', 'alice', '1h')
      expect(await lookup(1)).toBe('result#1')
      expect(await lookup(1)).toBe('result#1')
      await redis.process!.freeze()
      try {
        await untilDown(a.chain)
        await expect(invalidateTags(['t'], { backend: a.chain })).rejects.toMatchObject({
          code: 'CACHE_UNAVAILABLE',
        })
        await expect(a.chain.delete('session')).rejects.toMatchObject({ code: 'CACHE_UNAVAILABLE' })
        await expect(a.chain.clear()).rejects.toMatchObject({ code: 'CACHE_UNAVAILABLE' })
      } finally {
        redis.process!.thaw()
      }
      await untilRepaired(a.chain)
      await untilRepaired(b.chain)
      // Before: the clear emptied the repair list, then was refused: B served result#1 for good.
      expect(await lookup(1)).toBe('result#2')
      expect(await other.get('session')).toBeUndefined()
      const repairs = a.errors.filter((e) => e.operation === 'repair').map((e) => String(e.error))
      expect(repairs).toHaveLength(1)
      expect(repairs[0]).toMatch(/clear\(\) it missed is not repaired there/)
      expect(repairs[0]).toMatch(/2 keys this process changed/)
    } finally {
      redis.process!.thaw()
      await other.delete('session')
      await Promise.all([a.chain.close(), b.chain.close(), other.close()])
    }
  })
})

describe('multiLevel(memory, redis) with a bus: a repair after an outage', () => {
  it.each([
    ['delete', (chain: MultiLevelBackend) => chain.delete('K')],
    ['set', (chain: MultiLevelBackend) => chain.set('K', 'v2', '1h')],
  ] as const)(
    '%s: another process that read the old value back before the repair drops it when the repair lands',
    async (_name, write) => {
      const namespace = `repairs${process.pid}-${++n}`
      const busA = redisBus(redis.url, { logger: false })
      const busB = redisBus(redis.url, { logger: false })
      await Promise.all([busA.ready(), busB.ready()])
      // B comes back long before A's probe repairs Redis.
      const a = peer(redis.url, { namespace, openFor: '1500ms', bus: busA })
      const b = peer(redis.url, { namespace, openFor: '100ms', bus: busB })
      try {
        await a.chain.set('K', 'v1', '1h')
        expect(await b.chain.get('K')).toBe('v1')
        await redis.process!.freeze()
        try {
          await untilDown(a.chain)
          await expect(write(a.chain)).rejects.toMatchObject({ code: 'CACHE_UNAVAILABLE' })
        } finally {
          redis.process!.thaw()
        }
        await untilBack(b.chain)
        await sleep(200)
        // Allowed: A's write was rejected, and is not repaired yet. B keeps it in its memory level.
        expect(await b.chain.get('K')).toBe('v1')
        expect(await b.chain.levels[0]!.backend.get('K')).toBe('v1')
        await untilRepaired(a.chain)
        expect(await b.chain.levels[1]!.backend.get('K')).toBeUndefined()
        // Before: nobody was told of the repair, and B served v1 until its TTL (1 h).
        expect(await settled(() => b.chain.get('K'), 'v1')).toBeUndefined()
      } finally {
        redis.process!.thaw()
        await Promise.all([a.chain.close(), b.chain.close()])
        await Promise.all([busA.close(), busB.close()])
      }
    },
  )

  it('a tag invalidation repaired on Redis reaches the process that copied the old generation meanwhile (stateTtl 20 s)', async () => {
    const namespace = `repairs${process.pid}-${++n}`
    const busA = redisBus(redis.url, { logger: false })
    const busB = redisBus(redis.url, { logger: false })
    await Promise.all([busA.ready(), busB.ready()])
    const a = peer(redis.url, { namespace, openFor: '2s', bus: busA, stateTtl: '20s' })
    const b = peer(redis.url, { namespace, openFor: '200ms', bus: busB, stateTtl: '20s' })
    let calls = 0
    const lookup = cached(async (_id: number) => `result#${++calls}`, {
      backend: b.chain,
      name: 'lookup',
      tags: ['t'],
      ttl: '1h',
    })
    try {
      expect(await lookup(1)).toBe('result#1')
      expect(await lookup(1)).toBe('result#1')
      await redis.process!.freeze()
      try {
        await Promise.all([untilDown(a.chain), untilDown(b.chain)])
        await expect(invalidateTags(['t'], { backend: a.chain })).rejects.toMatchObject({
          code: 'CACHE_UNAVAILABLE',
        })
      } finally {
        redis.process!.thaw()
      }
      await untilBack(b.chain)
      // Allowed: the invalidation is not on Redis yet. B copies the old generation for 20 s.
      expect(await lookup(1)).toBe('result#1')
      await untilRepaired(a.chain)
      // Before: B served result#1 for the whole stateTtl.
      expect(await settled(() => lookup(1), 'result#1')).toBe('result#2')
    } finally {
      redis.process!.thaw()
      await Promise.all([a.chain.close(), b.chain.close()])
      await Promise.all([busA.close(), busB.close()])
    }
  })
})
