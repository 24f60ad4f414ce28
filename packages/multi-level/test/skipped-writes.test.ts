/**
 * Writes the shared level skipped (its breaker open: known never sent) changed nothing there, so
 * other processes' faster levels still match it: nothing is published for them. A process that
 * runs on its own meanwhile (its breaker open too) keeps the lock and counter it holds privately.
 * The repair of a skipped write, once it lands, drops the key from this process's faster levels
 * too, so this process reads what the shared level holds.
 */
import { CacheConfigError } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type FaultProxy, type RedisServer, startFaultProxy, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type MultiLevelEvent, multiLevel, redisBus } from '../src/index.js'
import { peer, sleep, untilDown, untilRepaired } from './cut-off.js'
import { chaos } from './chaos.js'

// Its own server: one test runs without a namespace.
let redis: RedisServer
let proxy: FaultProxy
beforeAll(async () => {
  redis = await startRedis({ spawn: true })
  proxy = await startFaultProxy({ port: redis.port })
})
afterAll(async () => {
  await proxy?.close()
  await redis?.stop()
})

let n = 0

const proxied = () => `redis://127.0.0.1:${proxy.port}`

describe('multiLevel(memory, redis) with a bus: two processes both cut off from Redis', () => {
  it('never makes the other drop the lock and counter it holds on its own, whatever this one writes, deletes or clears meanwhile', async () => {
    const namespace = `skipped${process.pid}-${++n}`
    const busA = redisBus(redis.url, { logger: false })
    const busB = redisBus(redis.url, { logger: false })
    await Promise.all([busA.ready(), busB.ready()])
    // Only their links to Redis are cut (through the proxy); the buses stay up.
    const a = peer(proxied(), namespace, '5s', busA)
    const b = peer(proxied(), namespace, '5s', busB)
    try {
      await a.chain.set('w', 1)
      await b.chain.set('w2', 1)
      await proxy.refuse()
      proxy.dropAll()
      await Promise.all([untilDown(a), untilDown(b)])
      expect(await b.chain.add('lock', 'caller-1', '1h')).toBe(true)
      for (let i = 0; i < 3; i++) await b.chain.incr('ctr')

      const unavailable = { code: 'CACHE_UNAVAILABLE' }
      await expect(a.chain.clear()).rejects.toMatchObject(unavailable)
      await expect(a.chain.delete('lock')).rejects.toMatchObject(unavailable)
      await expect(a.chain.set('ctr', 0)).rejects.toMatchObject(unavailable)
      await expect(a.chain.setMany([{ key: 'lock', value: 'x' }])).rejects.toMatchObject(unavailable)
      await expect(a.chain.deleteMany(['lock', 'ctr'])).rejects.toMatchObject(unavailable)
      await expect(a.chain.set('__v:skipped', 2)).rejects.toMatchObject(unavailable)
      // A's own lock, then B's of the same key, each held in its own process: nothing changed on
      // Redis either, so B's add tells A nothing.
      expect(await a.chain.add('a-lock', 'a-1', '1h')).toBe(true)
      expect(await b.chain.add('a-lock', 'b-1', '1h')).toBe(true)
      await sleep(300)

      // Before: A's skipped clear (and delete) published on the bus, B dropped its memory level,
      // granted the lock to a second caller and counted from 1 again.
      expect(await b.chain.add('lock', 'caller-3', '1h')).toBe(false)
      expect(await b.chain.get('lock')).toBe('caller-1')
      expect(await b.chain.incr('ctr')).toBe(4)
      expect(await a.chain.add('a-lock', 'a-2', '1h')).toBe(false)
    } finally {
      await proxy.listen().catch(() => undefined)
      await Promise.all([a.chain.close(), b.chain.close()])
      await Promise.all([busA.close(), busB.close()])
    }
  })
})

describe('multiLevel(memory, redis): a set skipped while Redis was down, repaired when it answers', () => {
  it('is dropped from this process memory level by the repair: it reads what Redis holds, as the others do', async () => {
    const namespace = `skipped${process.pid}-${++n}`
    const busA = redisBus(redis.url, { logger: false })
    const busB = redisBus(redis.url, { logger: false })
    await Promise.all([busA.ready(), busB.ready()])
    const a = peer(proxied(), namespace, '200ms', busA)
    const b = peer(redis.url, namespace, '200ms', busB)
    try {
      await a.chain.set('k', 'old', '1h')
      expect(await b.chain.get('k')).toBe('old')
      await proxy.refuse()
      proxy.dropAll()
      await untilDown(a)
      await expect(a.chain.set('k', 'A-new', '1h')).rejects.toMatchObject({ code: 'CACHE_UNAVAILABLE' })
      // This process never serves what its write replaced.
      expect(await a.chain.get('k')).toBe('A-new')
      await proxy.listen().catch(() => undefined)
      await untilRepaired(a)
      await sleep(200)
      expect(await b.shared.get('k')).toBeUndefined()
      expect(await b.chain.get('k')).toBeUndefined()
      // Before: A kept serving its rejected write from memory until its TTL.
      expect(await a.chain.get('k')).toBeUndefined()
    } finally {
      await proxy.listen().catch(() => undefined)
      await Promise.all([a.chain.close(), b.chain.close()])
      await Promise.all([busA.close(), busB.close()])
    }
  })
})

describe('multiLevel(memory, redis without a namespace): a clear() Redis refuses', () => {
  it('is refused with CacheConfigError whatever the breaker state, and nothing is published or repaired for it', async () => {
    const busA = redisBus(redis.url, { logger: false })
    const busB = redisBus(redis.url, { logger: false })
    await Promise.all([busA.ready(), busB.ready()])
    const a = peer(proxied(), '', '300ms', busA)
    // B runs on its own meanwhile (its link is cut too), holding a lock in its memory level.
    const b = peer(proxied(), '', '5s', busB)
    try {
      await a.chain.set('w', 1)
      await b.chain.set('w2', 1)
      await expect(a.chain.clear()).rejects.toBeInstanceOf(CacheConfigError)
      expect(await a.chain.get('w')).toBe(1)
      await proxy.refuse()
      proxy.dropAll()
      await Promise.all([untilDown(a), untilDown(b)])
      expect(await b.chain.add('lock', 'b-1', '1h')).toBe(true)
      // Before: CacheUnavailableError, and the clear counted as missed (published, reported).
      await expect(a.chain.clear()).rejects.toBeInstanceOf(CacheConfigError)
      expect(a.chain.levelStats()[0]!.pendingClear).toBe(false)
      await sleep(300)
      expect(await b.chain.add('lock', 'b-2', '1h')).toBe(false)
      await proxy.listen().catch(() => undefined)
      await untilRepaired(a)
      expect(a.repairs).toEqual([])
      expect(await a.chain.get('w')).toBe(1)
    } finally {
      await proxy.listen().catch(() => undefined)
      await Promise.all([a.chain.close(), b.chain.close()])
      await Promise.all([busA.close(), busB.close()])
    }
  })
})

describe('multiLevel(memory, redis): the one report of a missed clear()', () => {
  it('counts each key the repair deleted once, however many rounds replayed it', async () => {
    const namespace = `skipped${process.pid}-${++n}`
    const shared = chaos(redisBackend(redis.url, { namespace, logger: false }))
    const chain = multiLevel({
      levels: [memoryBackend(), shared],
      breaker: { failureThreshold: 1, openFor: '100ms' },
      logger: false,
    })
    const repairs: string[] = []
    chain.on('error', (event: MultiLevelEvent) => {
      if (event.operation === 'repair') repairs.push(String(event.error))
    })
    const keys = ['r1', 'r2', 'r3']
    try {
      shared.down = true
      await expect(chain.set('r0', 1)).rejects.toMatchObject({ code: 'CACHE_UNAVAILABLE' })
      for (const key of keys)
        await expect(chain.set(key, 'a')).rejects.toMatchObject({ code: 'CACHE_UNAVAILABLE' })
      await expect(chain.clear()).rejects.toMatchObject({ code: 'CACHE_UNAVAILABLE' })
      // The probe's replay answers slowly; the same keys are written again while it runs.
      shared.down = false
      shared.delayMs = 150
      for (let i = 0; i < 100 && chain.levelStats()[1]!.state !== 'half-open'; i++) await sleep(10)
      expect(chain.levelStats()[1]!.state).toBe('half-open')
      for (const key of keys) await chain.set(key, 'b').catch(() => undefined)
      for (let i = 0; i < 200 && chain.levelStats()[1]!.state !== 'closed'; i++) await sleep(10)
      expect(chain.levelStats()[1]!.state).toBe('closed')
      expect(repairs).toHaveLength(1)
      // r0..r3: four keys, some deleted in two rounds. Before: "the 7 keys".
      expect(repairs[0]).toMatch(/the 4 keys this process changed/)
    } finally {
      shared.delayMs = 0
      await chain.close()
    }
  })
})
