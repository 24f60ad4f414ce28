import { CacheValueTooLargeError } from '@cache/core'
import { startMemcached } from '@cache/test-servers'
import { afterAll, describe, expect, it } from 'vitest'
import { type MemcachedBackend, memcachedBackend } from '../src/index.js'

// A server with a smaller item limit than the default maxValueSize lets through: memcached
// unlinks a key's item when it refuses a SET of it for size (CAS or not), so a value it would
// refuse must never be sent.
const small = await startMemcached({ spawn: true, maxItemSize: '512k' })
afterAll(() => small.stop())

const BIG = 'x'.repeat(600_000)

let namespaces = 0
function pair(server = small.server): [MemcachedBackend, MemcachedBackend] {
  const namespace = `limit${++namespaces}-${Date.now()}`
  return [
    memcachedBackend(server, { namespace, logger: false }),
    memcachedBackend(server, { namespace, logger: false }),
  ]
}

/** Counts the `stats` requests a backend writes to its server. */
function countStats(cache: MemcachedBackend): () => number {
  const server = cache.client.servers[0] as unknown as { write(blob: Buffer): void }
  const write = server.write
  let stats = 0
  server.write = function (this: unknown, blob: Buffer) {
    for (let at = 0; at + 24 <= blob.length; at += 24 + blob.readUInt32BE(at + 8)) {
      if (blob[at] === 0x80 && blob[at + 1] === 0x10) stats++
    }
    return write.call(this, blob)
  }
  return () => stats
}

describe("a value over the server's item size limit (-I)", () => {
  it('fails an atomicUpdate and keeps the value it was updating', async () => {
    const [a, b] = pair()
    const errors: unknown[] = []
    a.on('error', (event) => errors.push(event.error))
    try {
      await a.set('cart', ['sku-1', 'sku-2'])
      const error = await a.atomicUpdate<string[]>('cart', (items = []) => [...items, BIG]).catch((e) => e)
      expect(error).toBeInstanceOf(CacheValueTooLargeError)
      expect(error).toMatchObject({ key: 'cart', size: 600_020 })
      expect(error.limit).toBeLessThan(512 * 1024)
      expect(error.message).toMatch(/item_size_max 524288/)
      expect(await b.get('cart')).toEqual(['sku-1', 'sku-2'])
      expect(errors).toHaveLength(1)
      expect(a.stats.errors).toBe(1)
      expect(a.serverStats()[0]!.state).toBe('up')
    } finally {
      await a.close()
      await b.close()
    }
  })

  it("leaves another process's write made while fn ran (the refused write also conflicts)", async () => {
    const [a, b] = pair()
    try {
      await a.set('doc', 'v1')
      const error = await a
        .atomicUpdate<string>('doc', async (v) => {
          if (v === 'v1') await b.set('doc', 'written-by-B')
          return `${v}${BIG}`
        })
        .catch((e) => e)
      expect(error).toBeInstanceOf(CacheValueTooLargeError)
      expect(await b.get('doc')).toBe('written-by-B')
      expect(await a.get('doc')).toBe('written-by-B')
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('fails set and add and keeps the stored value', async () => {
    const [a, b] = pair()
    try {
      await a.set('k', 'old')
      await expect(a.set('k', BIG)).rejects.toBeInstanceOf(CacheValueTooLargeError)
      expect(await b.get('k')).toBe('old')
      await a.set('gone', 'old', 1)
      await expect(a.add('absent', BIG)).rejects.toBeInstanceOf(CacheValueTooLargeError)
      expect(await b.has('absent')).toBe(false)
      // Just under the limit is sent and stored.
      const fits = 'y'.repeat(512 * 1024 - 200)
      await a.set('k', fits)
      expect(await b.get('k')).toBe(fits)
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('fails the too-large keys of a setMany only, keeping their stored values', async () => {
    const [a, b] = pair()
    const errors: unknown[] = []
    a.on('error', (event) => errors.push(event.error))
    try {
      await a.setMany([
        { key: 'p', value: 'old-p' },
        { key: 'q', value: 'old-q' },
      ])
      const error = await a
        .setMany([
          { key: 'p', value: BIG },
          { key: 'q', value: 'new-q' },
          { key: 'r', value: 'new-r' },
        ])
        .catch((e) => e)
      expect(error).toBeInstanceOf(CacheValueTooLargeError)
      expect(error.key).toBe('p')
      expect(await b.getMany(['p', 'q', 'r'])).toEqual(['old-p', 'new-q', 'new-r'])
      expect(errors).toHaveLength(1)
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('is refused before the limit was read: the first call of a new backend waits for it', async () => {
    const [a, b] = pair()
    try {
      await b.set('k', 'old')
      // Called in the tick the backend is made, before the server could answer `stats settings`.
      const fresh = memcachedBackend(small.server, { namespace: a.namespace, logger: false })
      const results = await Promise.allSettled([fresh.set('k', BIG), fresh.get('k')])
      expect(results[0]).toMatchObject({ status: 'rejected', reason: expect.any(CacheValueTooLargeError) })
      // The get called after the set waited behind it: calls go out in order.
      expect(results[1]).toEqual({ status: 'fulfilled', value: 'old' })
      expect(await b.get('k')).toBe('old')
      await fresh.close()
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('reads the limit once per connection, not per call', async () => {
    const [a] = pair()
    const stats = countStats(a)
    try {
      await a.set('warm', 1)
      const value = 'z'.repeat(100_000)
      for (let i = 0; i < 20; i++) await a.set(`v${i}`, value)
      await Promise.all(Array.from({ length: 20 }, (_, i) => a.set(`w${i}`, value)))
      await a.setMany(Array.from({ length: 5 }, (_, i) => ({ key: `m${i}`, value })))
      await expect(a.set('big', BIG)).rejects.toBeInstanceOf(CacheValueTooLargeError)
      // Read when the backend was made (before countStats), never again on the same connection.
      expect(stats()).toBe(0)
    } finally {
      await a.close()
    }
  })

  it('holds each server of a ring to its own limit', async () => {
    const large = await startMemcached({ spawn: true, maxItemSize: '2m' })
    const cache = memcachedBackend([small.server, large.server], {
      namespace: `ring${Date.now()}`,
      logger: false,
      maxValueSize: '4MB',
    })
    const value = 'r'.repeat(700_000)
    try {
      const keys = Array.from({ length: 12 }, (_, i) => `k${i}`)
      await cache.setMany(keys.map((key) => ({ key, value: 'old' })))
      const results = await Promise.allSettled(keys.map((key) => cache.set(key, value)))
      for (const [i, key] of keys.entries()) {
        const onSmall = cache.serverFor(key) === small.server
        if (onSmall) {
          expect(results[i]).toMatchObject({
            status: 'rejected',
            reason: expect.any(CacheValueTooLargeError),
          })
          expect((results[i] as PromiseRejectedResult).reason.message).toContain(small.server)
        } else expect(results[i]!.status).toBe('fulfilled')
        expect(await cache.get(key)).toBe(onSmall ? 'old' : value)
      }
      expect(new Set(keys.map((key) => cache.serverFor(key))).size).toBe(2)
    } finally {
      await cache.close()
      await large.stop()
    }
  })

  it('reads it again after the server restarts with another -I', async () => {
    const server = await startMemcached({ spawn: true, maxItemSize: '512k' })
    let restarted = server
    const cache = memcachedBackend(server.server, {
      namespace: 'restart',
      logger: false,
      maxValueSize: '4MB',
      eject: { retryAfter: 0.02 },
    })
    const stats = countStats(cache)
    const value = 'r'.repeat(700_000)
    try {
      await cache.set('k', 'old')
      await expect(cache.set('k', value)).rejects.toBeInstanceOf(CacheValueTooLargeError)
      expect(await cache.get('k')).toBe('old')
      await server.stop()
      restarted = await startMemcached({ spawn: true, maxItemSize: '2m', port: server.port })
      await expect
        .poll(
          () =>
            cache.get('k').then(
              () => 'up',
              () => 'down',
            ),
          { timeout: 5000 },
        )
        .toBe('up')
      await cache.set('k', value)
      expect(await cache.get('k')).toBe(value)
      expect(stats()).toBe(1)
      await restarted.stop()
      restarted = await startMemcached({ spawn: true, maxItemSize: '512k', port: server.port })
      await expect
        .poll(
          () =>
            cache.get('k').then(
              () => 'up',
              () => 'down',
            ),
          { timeout: 5000 },
        )
        .toBe('up')
      await cache.set('k', 'old again')
      const error = await cache.set('k', value).catch((e) => e)
      expect(error).toBeInstanceOf(CacheValueTooLargeError)
      expect(error.message).toMatch(/item_size_max 524288/)
      expect(await cache.get('k')).toBe('old again')
      expect(stats()).toBe(2)
    } finally {
      await cache.close()
      await restarted.stop()
    }
  })
})
