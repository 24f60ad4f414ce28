import { CacheValueTooLargeError, CacheConfigError } from '@cache/core'
import { startMemcached } from '@cache/test-servers'
import memjs from 'memjs'
import { afterAll, describe, expect, it } from 'vitest'
import { memcachedBackend } from '../src/index.js'
import { serverKeys } from './raw.js'

const server = await startMemcached({ spawn: true })
afterAll(() => server.stop())

describe('value size limit', () => {
  it("refuses a value over the server's own item size limit (-I), read from the server, not maxValueSize", async () => {
    const small = await startMemcached({ spawn: true, maxItemSize: '1m' })
    const cache = memcachedBackend(small.server, { namespace: 'server-limit', maxValueSize: '4MB' })
    try {
      const error = await cache.set('k', 'x'.repeat(2_000_000)).catch((e) => e)
      expect(error).toBeInstanceOf(CacheValueTooLargeError)
      expect(error.message).toMatch(
        /refused by the memcached server 127\.0\.0\.1:\d+ \(its item size limit, -I: item_size_max 1048576 bytes/,
      )
      expect(error.message).not.toMatch(/4194304/)
      expect(await cache.has('k')).toBe(false)
    } finally {
      await cache.close()
      await small.stop()
    }
  })

  it('throws CacheValueTooLargeError before sending a value over maxValueSize', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'big', maxValueSize: '4KB' })
    try {
      await cache.set('warm', 1)
      const sent = cache.stats.operations
      const error = await cache.set('k', 'x'.repeat(5000)).catch((e) => e)
      expect(error).toBeInstanceOf(CacheValueTooLargeError)
      expect(error).toMatchObject({ size: 5002, limit: 4096, key: 'k' })
      await expect(cache.add('k', 'x'.repeat(5000))).rejects.toBeInstanceOf(CacheValueTooLargeError)
      await expect(cache.atomicUpdate('k', () => 'x'.repeat(5000))).rejects.toBeInstanceOf(
        CacheValueTooLargeError,
      )
      // Only the atomicUpdate's read went out (with the generation read sent alongside it): no
      // write was attempted.
      expect(cache.stats.operations).toBe(sent + 2)
      expect(await cache.has('k')).toBe(false)
    } finally {
      await cache.close()
    }
  })

  it('defaults to memcached item limit: just under 1 MB fits, 1 MB does not', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'mb' })
    try {
      // JSON adds two quotes to a string.
      const fits = 'a'.repeat(1024 * 1024 - 512 - 2)
      await cache.set('y'.repeat(240), fits)
      expect(await cache.get('y'.repeat(240))).toBe(fits)
      await expect(cache.set('k', `${fits}a`)).rejects.toBeInstanceOf(CacheValueTooLargeError)
    } finally {
      await cache.close()
    }
  })

  it('maps the server refusing a value to CacheValueTooLargeError', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'srv', maxValueSize: '2MB' })
    try {
      await expect(cache.set('k', 'z'.repeat(1.5 * 1024 * 1024))).rejects.toBeInstanceOf(
        CacheValueTooLargeError,
      )
    } finally {
      await cache.close()
    }
  })

  it('compresses values over compressThreshold, so more fits', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'zip', compressThreshold: '1KB' })
    try {
      const repetitive = 'abc'.repeat(600_000)
      await cache.set('k', repetitive)
      expect(await cache.get('k')).toBe(repetitive)
    } finally {
      await cache.close()
    }
  })
})

describe('serializers', () => {
  it('round-trips values with the v8 serializer, counters included', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'v8', serializer: 'v8' })
    try {
      const value = { when: new Date(0), list: [1, 2], map: new Map([[1, 'a']]) }
      await cache.set('k', value)
      expect(await cache.get('k')).toEqual(value)
      await cache.set('n', 5)
      expect(await cache.incr('n', 2)).toBe(7)
      expect(await cache.get('n')).toBe(7)
    } finally {
      await cache.close()
    }
  })
})

describe('incr', () => {
  it('counts below zero and back, and keeps the expiry it was created with', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'neg' })
    try {
      expect(await cache.incr('n', -5, 3600)).toBe(-5)
      expect(await cache.incr('n', 2)).toBe(-3)
      expect(await cache.incr('n', 10)).toBe(7)
      expect(await cache.incr('n', -7)).toBe(0)
      expect(await cache.incr('n', 0)).toBe(0)
      const { expiresAt } = (await cache.getEntry('n'))!
      expect(expiresAt).toBeGreaterThan(Date.now() + 3500_000)
      expect(expiresAt).toBeLessThanOrEqual(Date.now() + 3601_000)
    } finally {
      await cache.close()
    }
  })

  it('works on a number stored with set()', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'setnum' })
    try {
      await cache.set('n', 41)
      expect(await cache.incr('n')).toBe(42)
      await cache.set('f', 1.5)
      await expect(cache.incr('f')).rejects.toMatchObject({ code: 'CACHE_NOT_A_NUMBER' })
    } finally {
      await cache.close()
    }
  })
})

describe('incr at the edge of exact numbers', () => {
  it('refuses an increment past Number.MAX_SAFE_INTEGER with RangeError, and leaves the counter as it was', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'edge-up' })
    const other = memcachedBackend(server.server, { namespace: 'edge-up' })
    try {
      await cache.set('id', Number.MAX_SAFE_INTEGER - 1)
      expect(await cache.incr('id')).toBe(Number.MAX_SAFE_INTEGER)
      // memcached would hold 2^53 exactly, but the number a caller gets would not be the counter's.
      for (let i = 0; i < 3; i++) await expect(cache.incr('id')).rejects.toThrow(RangeError)
      await expect(cache.incr('id', 5)).rejects.toThrow(RangeError)
      expect(await other.get('id')).toBe(Number.MAX_SAFE_INTEGER)
      expect(await other.incr('id', -1)).toBe(Number.MAX_SAFE_INTEGER - 1)
    } finally {
      await Promise.all([cache.close(), other.close()])
    }
  })

  it('refuses a decrement below Number.MIN_SAFE_INTEGER with RangeError, and leaves the counter as it was', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'edge-down' })
    try {
      await cache.set('floor', Number.MIN_SAFE_INTEGER + 1)
      expect(await cache.incr('floor', -1)).toBe(Number.MIN_SAFE_INTEGER)
      await expect(cache.incr('floor', -1)).rejects.toThrow(RangeError)
      expect(await cache.get('floor')).toBe(Number.MIN_SAFE_INTEGER)
    } finally {
      await cache.close()
    }
  })
})

describe('stats and events', () => {
  it('counts hits, misses, sets, deletes and latency, and emits events', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'stats' })
    const events: string[] = []
    cache.on('hit', (e) => events.push(`hit:${e.key}`))
    cache.on('miss', (e) => events.push(`miss:${e.key}`))
    cache.on('set', (e) => events.push(`set:${e.key}`))
    cache.on('delete', (e) => events.push(`delete:${e.key}`))
    try {
      await cache.get('a')
      await cache.set('a', 1)
      await cache.get('a')
      await cache.delete('a')
      expect(events).toEqual(['miss:a', 'set:a', 'hit:a', 'delete:a'])
      expect(cache.stats).toMatchObject({ hits: 1, misses: 1, sets: 1, deletes: 1, errors: 0 })
      // Four operations, each with the generation read sent alongside it, plus creating the new
      // namespace's generation.
      expect(cache.stats.operations).toBe(9)
      expect(cache.stats.totalLatencyMs).toBeGreaterThan(0)
    } finally {
      await cache.close()
    }
  })
})

describe('answers read from the socket', () => {
  // A read that holds only whole answers is parsed in place; one that ends inside an answer keeps
  // that part, and the next reads are added after it.
  it('reads large answers that span many reads, with small ones in the same reads', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'split-reads', timeout: '5s' })
    try {
      const big = (c: string) => c.repeat(700_000)
      await cache.setMany([
        { key: 'big-a', value: big('a') },
        { key: 'big-b', value: big('b') },
        { key: 'small', value: 'tiny' },
      ])
      for (let round = 0; round < 3; round++) {
        const [a, small, b, many, again] = await Promise.all([
          cache.get('big-a'),
          cache.get('small'),
          cache.get('big-b'),
          cache.getMany(['small', 'big-a', 'absent']),
          cache.get('small'),
        ])
        expect(a).toBe(big('a'))
        expect(small).toBe('tiny')
        expect(b).toBe(big('b'))
        expect(many).toEqual(['tiny', big('a'), undefined])
        expect(again).toBe('tiny')
        expect(await cache.get('small')).toBe('tiny')
      }
    } finally {
      await cache.close()
    }
  })
})

describe('latency', () => {
  // The requests (and answers) of one tick share one clock read: a request is still timed from
  // its own tick to its answer's, never from an earlier tick's reading nor as zero.
  it('times each request from its call to its answer', async () => {
    const paused = await startMemcached({ spawn: true })
    const cache = memcachedBackend(paused.server, { namespace: 'latency', timeout: '3s' })
    try {
      await cache.set('k', 1)
      await new Promise((resolve) => setTimeout(resolve, 300))
      await cache.get('k')
      // Nothing here waited 300 ms for its answer: the idle pause is no request's time.
      expect(cache.stats.maxLatencyMs).toBeLessThan(250)
      expect(cache.stats.totalLatencyMs).toBeGreaterThan(0)
      await paused.process!.freeze() // every thread stopped: the get below cannot be answered first
      const read = cache.get('k')
      await new Promise((resolve) => setTimeout(resolve, 400))
      process.kill(paused.process!.pid!, 'SIGCONT')
      expect(await read).toBe(1)
      expect(cache.stats.maxLatencyMs).toBeGreaterThanOrEqual(350)
    } finally {
      if (paused.process?.running) process.kill(paused.process.pid!, 'SIGCONT')
      await cache.close()
      await paused.stop()
    }
  })
})

describe('what runs when an answer arrives', () => {
  // get, getEntry, has, set and delete finish in the connection's data handler (no promise in
  // between): whatever throws there must reject that call only, never escape into the socket.
  it('a listener that throws on hit, miss, set or delete rejects that call, and the backend keeps serving', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'throwing' })
    const boom = (name: string) => () => {
      throw new Error(`${name} listener`)
    }
    try {
      await cache.set('k', 1)
      for (const name of ['hit', 'miss', 'set', 'delete'] as const) cache.on(name, boom(name))
      await expect(cache.get('absent')).rejects.toThrow('miss listener')
      await expect(cache.get('k')).rejects.toThrow('hit listener')
      await expect(cache.getEntry('k')).rejects.toThrow('hit listener')
      await expect(cache.set('k', 2)).rejects.toThrow('set listener')
      await expect(cache.delete('k')).rejects.toThrow('delete listener')
      // The set and the delete were applied: only the listener failed.
      expect(await cache.has('k')).toBe(false)
      expect(await cache.has('absent')).toBe(false)
    } finally {
      await cache.close()
    }
  })

  it('a stored value that cannot be decoded rejects that get, and the next get is served', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'undecodable' })
    const client = memjs.Client.create(server.server)
    try {
      await cache.set('good', { a: 1 })
      await cache.set('bad', 'placeholder')
      // Overwrite the stored bytes under the backend's own key with text that is not JSON.
      const keys = (await serverKeys(server.port)).filter((key) => key.startsWith('undecodable#'))
      const bad = keys.find((key) => key.endsWith(':bad'))!
      await client.set(bad, '{not json', {})
      const [first, second] = await Promise.allSettled([cache.get('bad'), cache.get('good')])
      expect(first).toMatchObject({ status: 'rejected', reason: { name: 'CacheSerializationError' } })
      expect(second).toEqual({ status: 'fulfilled', value: { a: 1 } })
      expect(await cache.get('good')).toEqual({ a: 1 })
    } finally {
      client.close()
      await cache.close()
    }
  })

  it('counts no hit for a read that rejects because its value cannot be decoded', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'undecodable-stats' })
    const client = memjs.Client.create(server.server)
    const hits: string[] = []
    cache.on('hit', (event) => hits.push(event.key!))
    try {
      await cache.set('good', { a: 1 })
      await cache.set('bad', 'placeholder')
      const keys = (await serverKeys(server.port)).filter((key) => key.startsWith('undecodable-stats#'))
      await client.set(keys.find((key) => key.endsWith(':bad'))!, '{not json', {})
      await expect(cache.get('bad')).rejects.toMatchObject({ name: 'CacheSerializationError' })
      await expect(cache.getEntry('bad')).rejects.toMatchObject({ name: 'CacheSerializationError' })
      expect(cache.stats.hits).toBe(0)
      expect(cache.stats.misses).toBe(0)
      // A getMany rejects for the key it cannot decode, which counts no hit; the other keys count
      // as the server answered them (as when another server of the pool is down).
      await expect(cache.getMany(['good', 'bad', 'absent'])).rejects.toMatchObject({
        name: 'CacheSerializationError',
      })
      expect(cache.stats).toMatchObject({ hits: 1, misses: 1 })
      expect(hits).toEqual(['good'])
      expect(await cache.getMany(['good', 'absent'])).toEqual([{ a: 1 }, undefined])
      expect(cache.stats).toMatchObject({ hits: 2, misses: 2 })
    } finally {
      client.close()
      await cache.close()
    }
  })
})

describe('lifecycle', () => {
  it('rejects operations after close() with CacheClosedError', async () => {
    const cache = memcachedBackend(server.server)
    await cache.close()
    await expect(cache.get('k')).rejects.toMatchObject({ code: 'CACHE_CLOSED' })
    await expect(cache.clear()).rejects.toMatchObject({ code: 'CACHE_CLOSED' })
  })

  it('lets the calls issued before close() settle with their real result, and refuses only what it did not send', async () => {
    const namespace = `closing${Date.now()}`
    const logged: string[] = []
    const logger = { warn: (m: string) => logged.push(m), error: (m: string) => logged.push(m) }
    const cache = memcachedBackend(server.server, { namespace, logger })
    const events: unknown[] = []
    cache.on('error', (event) => events.push(event))
    await cache.set('count', 10)
    await cache.set('down', 5)
    const slow = async (current: number | undefined) => {
      await new Promise((resolve) => setTimeout(resolve, 20))
      return (current ?? 0) + 1
    }
    const calls = [
      cache.set('written', 'x'),
      cache.incr('count', 1),
      cache.incr('down', -2),
      cache.atomicUpdate('updated', slow),
    ]
    const settled = Promise.allSettled(calls)
    await cache.close()
    const [set, incr, down, update] = (await settled) as PromiseSettledResult<number | undefined>[]
    const after = memcachedBackend(server.server, { namespace })
    try {
      // Sent before close(): answered as the server answered.
      expect(set).toEqual({ status: 'fulfilled', value: undefined })
      expect(await after.get('written')).toBe('x')
      // A second round trip (an incr's write after its read) that close() came before is
      // refused, and nothing of it is applied.
      for (const [result, key, before] of [
        [incr, 'count', 10],
        [down, 'down', 5],
      ] as [PromiseSettledResult<number | undefined>, string, number][]) {
        if (result.status === 'fulfilled') expect(await after.get(key)).toBe(result.value)
        else {
          expect(result.reason).toMatchObject({ code: 'CACHE_CLOSED' })
          expect(await after.get(key)).toBe(before)
        }
      }
      expect(update).toMatchObject({ status: 'rejected', reason: { code: 'CACHE_CLOSED' } })
      expect(await after.get('updated')).toBeUndefined()
      // A refusal after close() is the caller's: no failure counted, evented or logged.
      expect(cache.stats.errors).toBe(0)
      expect(events).toEqual([])
      expect(logged).toEqual([])
    } finally {
      await after.close()
    }
  })

  it('uses a memjs client passed in and leaves it open', async () => {
    const client = memjs.Client.create(server.server, { logger: { log() {} } })
    const cache = memcachedBackend(undefined, { client, namespace: 'mine' })
    await cache.set('k', 'v')
    await cache.close()
    await client.set('plain', 'still open', {})
    expect((await client.get('plain')).value?.toString()).toBe('still open')
    client.close()
  })

  it('validates options with clear errors', () => {
    expect(() => memcachedBackend('not a server')).toThrow(/servers: "not a server" is not host:port/)
    expect(() => memcachedBackend(server.server, { timeout: 0 })).toThrow(CacheConfigError)
    expect(() => memcachedBackend(server.server, { maxAttempts: 0 })).toThrow(CacheConfigError)
    expect(() => memcachedBackend(server.server, { maxValueSize: 'lots' })).toThrow(CacheConfigError)
  })

  it('clear({ flush: true }) flushes the whole server, other namespaces too', async () => {
    const mine = memcachedBackend(server.server, { namespace: 'flushing' })
    const theirs = memcachedBackend(server.server, { namespace: 'bystander' })
    try {
      await mine.set('k', 1)
      await theirs.set('k', 2)
      await mine.clear({ flush: true })
      expect(await serverKeys(server.port)).toEqual([])
      expect(await theirs.get('k')).toBeUndefined()
      await mine.set('k', 3)
      expect(await mine.get('k')).toBe(3)
    } finally {
      await Promise.all([mine.close(), theirs.close()])
    }
  })
})
