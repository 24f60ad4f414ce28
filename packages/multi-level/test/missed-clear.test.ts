/**
 * A `clear()` the shared level missed (failed, or skipped while this process could not reach it)
 * was rejected to the caller. Other processes go on using the namespace meanwhile: a lock taken,
 * a counter counted, a value written after that rejection must outlive this process's return.
 */
import { type FaultProxy, type RedisServer, startFaultProxy, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisBus } from '../src/index.js'
import { peer, sleep, untilDown, untilRepaired } from './cut-off.js'

// Its own server: these tests freeze it.
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

describe.each([
  ['without a bus', false],
  ['with a bus', true],
])('multiLevel(memory, redis) %s: a clear() missed while this process was cut off', (_label, withBus) => {
  it('is never replayed on Redis: locks, counters and values other processes wrote after it stay; what this process changed is repaired', async () => {
    const namespace = `missed${process.pid}-${++n}`
    const buses = withBus
      ? [redisBus(redis.url, { logger: false }), redisBus(redis.url, { logger: false })]
      : []
    await Promise.all(buses.map((bus) => bus.ready()))
    // A reaches Redis through the proxy: its link alone is cut.
    const a = peer(`redis://127.0.0.1:${proxy.port}`, namespace, '300ms', buses[0])
    const b = peer(redis.url, namespace, '300ms', buses[1])
    const c = peer(redis.url, namespace, '300ms')
    try {
      await a.chain.set('before', 'old', '1h')
      await a.chain.set('after', 'old', '1h')
      await a.chain.set('kept', 'old', '1h')
      await proxy.refuse()
      proxy.dropAll()
      await untilDown(a)
      await expect(a.chain.delete('before')).rejects.toMatchObject({ code: 'CACHE_UNAVAILABLE' })
      const missed = await a.chain.clear().then(
        () => undefined,
        (error: Error) => error,
      )
      expect(missed).toMatchObject({ code: 'CACHE_UNAVAILABLE' })
      // Before: it said the clear was "repaired on redis as soon as it answers"; it never is.
      expect(missed!.message).toMatch(/clear is never replayed on redis/)
      expect(missed!.message).not.toMatch(/as soon as it answers/)
      await expect(a.chain.set('after', 'new', '1h')).rejects.toMatchObject({ code: 'CACHE_UNAVAILABLE' })
      // After the rejection, B works on as usual.
      expect(await b.chain.add('lock', 'B', '1h')).toBe(true)
      for (let i = 0; i < 5; i++) await b.chain.incr('ctr')
      await b.chain.set('profile', 'B wrote this', '1h')
      await proxy.listen()
      await untilRepaired(a)
      await sleep(100)
      // Before: A's probe replayed the clear on the namespace, and C took B's lock too.
      expect(await b.shared.get('lock')).toBe('B')
      expect(await c.chain.add('lock', 'C', '1h')).toBe(false)
      expect(await b.shared.get('ctr')).toBe(5)
      expect(await b.chain.incr('ctr')).toBe(6)
      expect(await b.shared.get('profile')).toBe('B wrote this')
      // What A changed before and after the clear is repaired there, one key at a time.
      expect(await b.shared.get('before')).toBeUndefined()
      expect(await b.shared.get('after')).toBeUndefined()
      // Not cleared: A reads what Redis holds, as the others do.
      expect(await a.chain.get('kept')).toBe('old')
      expect(await a.chain.get('lock')).toBe('B')
      expect(a.repairs).toHaveLength(1)
      expect(a.repairs[0]).toMatch(/clear\(\) it missed is not repaired/)
      expect(a.repairs[0]).toMatch(/the 2 keys this process changed/)
      expect(a.repairs[0]).not.toMatch(/except/)
    } finally {
      await proxy.listen().catch(() => undefined)
      await Promise.all([a.chain.close(), b.chain.close(), c.chain.close()])
      await Promise.all(buses.map((bus) => bus.close()))
    }
  })
})

describe('multiLevel(memory, redis) with a bus: a clear() missed by one process while another one is still skipping Redis', () => {
  it('never makes the other one drop the lock and counter it holds on its own meanwhile', async () => {
    const namespace = `missed${process.pid}-${++n}`
    const busA = redisBus(redis.url, { logger: false })
    const busB = redisBus(redis.url, { logger: false })
    await Promise.all([busA.ready(), busB.ready()])
    const a = peer(redis.url, namespace, '400ms', busA)
    // B's breaker stays open long after Redis is back: it locks and counts in this process only.
    const b = peer(redis.url, namespace, '4s', busB)
    try {
      await a.chain.set('w', 1)
      await b.chain.get('w')
      await redis.process!.freeze()
      try {
        await Promise.all([untilDown(a), untilDown(b)])
        await expect(a.chain.clear()).rejects.toMatchObject({ code: 'CACHE_UNAVAILABLE' })
      } finally {
        redis.process!.thaw()
      }
      await busB.ready()
      await sleep(50)
      expect(b.chain.levelStats()[1]!.state).not.toBe('closed')
      expect(await b.chain.add('lock', 'job-1', '1h')).toBe(true)
      expect([await b.chain.incr('ctr'), await b.chain.incr('ctr')]).toEqual([1, 2])
      await untilRepaired(a)
      await sleep(200)
      expect(b.chain.levelStats()[1]!.state).not.toBe('closed')
      // Before: A's repair published "clear", B emptied its memory level and granted the lock again.
      expect(await b.chain.add('lock', 'job-2', '1h')).toBe(false)
      expect(await b.chain.incr('ctr')).toBe(3)
    } finally {
      redis.process!.thaw()
      await Promise.all([a.chain.close(), b.chain.close()])
      await Promise.all([busA.close(), busB.close()])
    }
  })
})
