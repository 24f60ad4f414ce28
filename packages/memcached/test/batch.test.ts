import { CacheTimeoutError, CacheUnavailableError, CacheValueTooLargeError } from '@cache/core'
import { type FaultProxy, type MemcachedServer, startFaultProxy, startMemcached } from '@cache/test-servers'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type MemcachedBackend, memcachedBackend } from '../src/index.js'

const TIMEOUT_MS = 300
/** A failure that did not wait for a timeout hanging forever: the timeout plus a loaded machine's slack. */
const BOUND_MS = TIMEOUT_MS + 700

let servers: MemcachedServer[]
let names: string[]
beforeAll(async () => {
  servers = await Promise.all([0, 1, 2].map(() => startMemcached({ spawn: true })))
  names = servers.map((server) => server.server)
})

function thaw(): void {
  for (const server of servers) if (server.process?.running) process.kill(server.process.pid!, 'SIGCONT')
}

afterAll(async () => {
  thaw()
  await Promise.all(servers.map((server) => server.stop()))
})

const open: MemcachedBackend[] = []
afterEach(async () => {
  thaw()
  await Promise.all(open.splice(0).map((cache) => cache.close()))
  await Promise.all(servers.map((server) => server.process!.start()))
})

function pool(list: string[], namespace: string, options: Parameters<typeof memcachedBackend>[1] = {}) {
  const cache = memcachedBackend(list, {
    namespace,
    timeout: `${TIMEOUT_MS}ms`,
    eject: { retryAfter: '200ms', maxRetryAfter: '800ms' },
    ...options,
  })
  open.push(cache)
  return cache
}

/** `count` keys that live on `server` for this cache. */
function keysOn(cache: MemcachedBackend, server: string, count: number, prefix = 'k'): string[] {
  const keys: string[] = []
  for (let i = 0; keys.length < count; i++)
    if (cache.serverFor(`${prefix}${i}`) === server) keys.push(`${prefix}${i}`)
  return keys
}

/**
 * Bytes the server answered to this cache's connection to server `index` during `work`. Counted on
 * the client's own socket, not the server's totals: a loaded machine can have the server still
 * answering another test's connections meanwhile.
 */
async function bytesAnswered(
  cache: MemcachedBackend,
  index: number,
  work: () => Promise<unknown>,
): Promise<number> {
  const socketOf = () =>
    (cache.client.servers[index] as unknown as { _socket?: import('node:net').Socket })._socket
  const socket = socketOf()
  if (socket === undefined) throw new Error('no connection yet: write something first')
  const before = socket.bytesRead
  await work()
  expect(socketOf()).toBe(socket)
  return socket.bytesRead - before
}

async function settle<T>(work: Promise<T>): Promise<{ value?: T; error?: unknown; ms: number }> {
  const start = performance.now()
  return work.then(
    (value) => ({ value, ms: performance.now() - start }),
    (error: unknown) => ({ error, ms: performance.now() - start }),
  )
}

const keys = Array.from({ length: 120 }, (_, i) => `user:${i}`)

describe('getMany and setMany', () => {
  it('read and write keys spread over three servers, in the order asked, misses as undefined', async () => {
    const cache = pool(names, 'spread')
    await cache.setMany(keys.map((key, i) => ({ key, value: { i, key } })))
    const asked = ['absent', ...keys.slice(0, 50).reverse(), 'user:7', 'also absent', 'user:7']
    const before = { ...cache.stats }
    const values = await cache.getMany<{ i: number }>(asked)
    // Strictly: a miss is an undefined element, not a hole that filter() or forEach() would skip.
    expect(values).toStrictEqual(
      asked.map((key) => (key.includes('absent') ? undefined : { i: Number(key.slice(5)), key })),
    )
    expect(cache.stats.hits - before.hits).toBe(52)
    expect(cache.stats.misses - before.misses).toBe(2)
    // Each server holds its share: a fresh process reads every key one by one.
    const reader = pool(names, 'spread')
    for (const key of keys) expect(await reader.get(key)).toEqual({ i: Number(key.slice(5)), key })
    expect(await cache.getMany([])).toEqual([])
  })

  it('stores null, undefined, empty strings, long and unsafe keys, with their TTL', async () => {
    const cache = pool(names, 'odd')
    const long = 'l'.repeat(400)
    const items = [
      { key: 'null', value: null },
      { key: 'empty', value: '' },
      { key: 'zero', value: '0' },
      { key: long, value: 'long' },
      { key: 'with space ü', value: 'unsafe' },
      { key: 'short-lived', value: 1, ttl: '1s' },
    ]
    await cache.setMany(items)
    expect(await cache.getMany(items.map((item) => item.key))).toEqual(items.map((item) => item.value))
    const entry = await cache.getEntry('short-lived')
    expect(entry?.expiresAt).toBeGreaterThan(Date.now())
    expect(entry?.expiresAt).toBeLessThanOrEqual(Date.now() + 2000)
    expect(await cache.get(long)).toBe('long')
  })

  it('in a setMany of the same key twice, the last value wins', async () => {
    const cache = pool(names, 'twice')
    await cache.setMany([
      { key: 'k', value: 'first' },
      { key: 'other', value: 1 },
      { key: 'k', value: 'last' },
    ])
    expect(await cache.get('k')).toBe('last')
  })

  it('a getMany issued right after a set, in the same tick, reads the value set', async () => {
    const cache = pool(names, 'tick')
    await cache.set('warm', 1)
    const set = cache.set('user:1', 'new')
    const read = cache.getMany(['user:1', 'user:2'])
    await set
    expect(await read).toEqual(['new', undefined])
  })

  it('set, getMany, delete, getMany, setMany, getMany issued in one tick apply in that order', async () => {
    const cache = pool(names, 'order')
    const first = await cache.getMany(['a'])
    expect(first).toEqual([undefined])
    const steps = [
      cache.set('a', 1),
      cache.getMany(['a', 'b']),
      cache.delete('a'),
      cache.getMany(['a', 'b']),
      cache.setMany([
        { key: 'a', value: 2 },
        { key: 'b', value: 3 },
      ]),
      cache.getMany(['a', 'b']),
      cache.deleteMany(['b']),
      cache.getMany(['a', 'b']),
    ]
    const results = await Promise.all(steps)
    expect(results[1]).toEqual([1, undefined])
    expect(results[3]).toEqual([undefined, undefined])
    expect(results[5]).toEqual([2, 3])
    expect(results[7]).toEqual([2, undefined])
  })

  it("sees another process's clear() at once", async () => {
    const cache = pool(names, 'cleared')
    const other = pool(names, 'cleared')
    await cache.setMany(keys.slice(0, 30).map((key) => ({ key, value: key })))
    expect((await cache.getMany(keys.slice(0, 30))).every((v) => v !== undefined)).toBe(true)
    await other.clear()
    expect(await cache.getMany(keys.slice(0, 30))).toEqual(keys.slice(0, 30).map(() => undefined))
    await other.setMany([{ key: keys[0]!, value: 'after' }])
    expect((await cache.getMany(keys.slice(0, 2)))[0]).toBe('after')
  })

  it("a setMany the server refuses for one key fails that key's write only, with its error", async () => {
    {
      // The server keeps memcached's default 1 MB item limit; the client lets bigger values through.
      const cache = pool(names, 'refused', { maxValueSize: '2MB' })
      const errors: unknown[] = []
      cache.on('error', (event) => errors.push(event))
      const error = await cache
        .setMany([
          { key: 'ok:1', value: 'small' },
          { key: 'big', value: 'x'.repeat(1.5 * 1024 * 1024) },
          { key: 'ok:2', value: 'small too' },
        ])
        .catch((e: unknown) => e)
      expect(error).toBeInstanceOf(CacheValueTooLargeError)
      expect(error).toMatchObject({ key: 'big' })
      expect(errors).toEqual([expect.objectContaining({ operation: 'set', key: 'big' })])
      expect(await cache.getMany(['ok:1', 'big', 'ok:2'])).toEqual(['small', undefined, 'small too'])
      expect(cache.serverStats().every((r) => r.state === 'up')).toBe(true)
    }
  })

  it('with one server down, fails with its error (partial, naming it) and the other servers still serve', async () => {
    const cache = pool(names, 'down')
    const onDown = keysOn(cache, names[1]!, 5)
    const onUp = [...keysOn(cache, names[0]!, 5), ...keysOn(cache, names[2]!, 5)]
    await cache.setMany([...onDown, ...onUp].map((key) => ({ key, value: key })))
    await servers[1]!.process!.kill()
    const read = await settle(cache.getMany([...onUp, ...onDown]))
    expect(read.error).toBeInstanceOf(CacheUnavailableError)
    expect(read.error).toMatchObject({ server: names[1], partial: true })
    expect(read.ms).toBeLessThan(BOUND_MS)
    const written = await settle(cache.setMany([...onUp, ...onDown].map((key) => ({ key, value: 'v2' }))))
    expect(written.error).toBeInstanceOf(CacheUnavailableError)
    expect(written.error).toMatchObject({ server: names[1] })
    // The writes to the servers that are up were applied.
    expect(await cache.getMany(onUp)).toEqual(onUp.map(() => 'v2'))
    expect(cache.serverStats().map((r) => r.state)).toEqual(['up', 'down', 'up'])
  })

  it('with one of two servers down, counts the hits and misses of the server that answered', async () => {
    const list = [names[0]!, names[1]!]
    const cache = pool(list, 'down-stats')
    const [hitA, hitB, missA] = keysOn(cache, names[0]!, 3)
    const onDown = keysOn(cache, names[1]!, 2)
    await cache.setMany([hitA!, hitB!, ...onDown].map((key) => ({ key, value: key })))
    const before = { ...cache.stats }
    await servers[1]!.process!.kill()
    const read = await settle(cache.getMany([hitA!, ...onDown, missA!, hitB!]))
    expect(read.error).toMatchObject({ server: names[1], partial: true })
    // The healthy server's answer: two hits and a miss. The down server's keys are errors.
    expect(cache.stats.hits - before.hits).toBe(2)
    expect(cache.stats.misses - before.misses).toBe(1)
    expect(cache.stats.errors - before.errors).toBe(onDown.length)
  })

  it('counts a failed read of several keys against the server as that many failed reads (it is ejected)', async () => {
    const cache = pool(names, 'eject')
    const frozen = keysOn(cache, names[2]!, 4)
    await cache.setMany(frozen.map((key) => ({ key, value: 1 })))
    await servers[2]!.process!.freeze()
    const read = await settle(cache.getMany(frozen))
    expect(read.error).toBeInstanceOf(CacheTimeoutError)
    expect(read.ms).toBeLessThan(BOUND_MS)
    expect(cache.serverStats()[2]!.state).toBe('down')
    expect(cache.stats.errors).toBeGreaterThanOrEqual(frozen.length)
  })

  it('never lets another process read a setMany that timed out on a frozen server, once it resumes', async () => {
    const writer = pool(names, 'late')
    const reader = pool(names, 'late', { generationTtl: '10s' })
    const frozen = keysOn(writer, names[1]!, 5)
    await writer.setMany(frozen.map((key) => ({ key, value: 'before' })))
    expect(await reader.getMany(frozen)).toEqual(frozen.map(() => 'before'))
    await servers[1]!.process!.freeze()
    const written = await settle(writer.setMany(frozen.map((key) => ({ key, value: 'reported failed' }))))
    expect(written.error).toBeInstanceOf(CacheTimeoutError)
    servers[1]!.process!.thaw()
    await new Promise((resolve) => setTimeout(resolve, 300))
    for (const value of await reader.getMany(frozen)) expect(value).not.toBe('reported failed')
  })

  it('fails, without hanging or answering wrong values, when the link drops after the server answered', async () => {
    const proxy: FaultProxy = await startFaultProxy({ port: servers[0]!.port })
    try {
      const cache = pool([`127.0.0.1:${proxy.port}`], 'drop')
      await cache.setMany(keys.slice(0, 20).map((key) => ({ key, value: key })))
      const dropped = proxy.dropAfterNextReply()
      const read = await settle(cache.getMany(keys.slice(0, 20)))
      await dropped
      if (read.error === undefined) expect(read.value).toEqual(keys.slice(0, 20))
      else expect(read.error).toBeInstanceOf(CacheUnavailableError)
      expect(read.ms).toBeLessThan(BOUND_MS)
      const write = proxy.dropAfterNextReply()
      const written = await settle(cache.setMany(keys.slice(0, 20).map((key) => ({ key, value: 'w' }))))
      await write
      if (written.error !== undefined) expect(written.error).toBeInstanceOf(CacheUnavailableError)
      expect(written.ms).toBeLessThan(BOUND_MS)
      // Once the server is back in use, every key reads as written, or as a miss: never a mix-up.
      const after = await settle(
        (async () => {
          for (let i = 0; i < 50; i++) {
            const values = await cache.getMany(keys.slice(0, 20)).catch(() => undefined)
            if (values !== undefined) return values
            await new Promise((resolve) => setTimeout(resolve, 50))
          }
          throw new Error('never served again')
        })(),
      )
      for (const value of after.value ?? []) expect([undefined, 'w']).toContain(value)
    } finally {
      await proxy.close()
    }
  })

  it('settles a getMany and a setMany pending when close() is called, without hanging', async () => {
    const cache = pool(names, 'closing')
    await cache.set('warm', 1)
    const pending = [
      settle(cache.getMany(keys.slice(0, 30))),
      settle(cache.setMany(keys.slice(0, 30).map((key) => ({ key, value: key })))),
    ]
    await cache.close()
    for (const outcome of await Promise.all(pending)) {
      expect(outcome.ms).toBeLessThan(BOUND_MS)
      if (outcome.error !== undefined) expect(outcome.error).toBeInstanceOf(Error)
    }
    await expect(cache.getMany(['a'])).rejects.toMatchObject({ name: 'CacheClosedError' })
    await expect(cache.setMany([{ key: 'a', value: 1 }])).rejects.toMatchObject({ name: 'CacheClosedError' })
  })
})

describe('one round trip per server', () => {
  it('a getMany of absent keys is answered once per server, not once per key', async () => {
    const cache = pool([names[0]!], 'quiet-get')
    await cache.set('warm', 1)
    const answered = await bytesAnswered(cache, 0, async () =>
      expect(await cache.getMany(keys)).toEqual(keys.map(() => undefined)),
    )
    // One miss answered alone costs a 24-byte header and "Not found"; quietly, nothing.
    expect(answered).toBeLessThan(24 * 10)
  })

  it('a setMany that succeeds is answered once per server, not once per key', async () => {
    const cache = pool([names[0]!], 'quiet-set')
    await cache.set('warm', 1)
    const answered = await bytesAnswered(cache, 0, () =>
      cache.setMany(keys.map((key) => ({ key, value: 1 }))),
    )
    expect(answered).toBeLessThan(24 * 10)
    expect(await cache.getMany(keys)).toEqual(keys.map(() => 1))
  })
})

describe('request numbers', () => {
  it('keep working past 2^31 requests on one client', async () => {
    const cache = pool([names[0]!], 'wrap')
    await cache.set('k', 'before')
    ;(cache.client as unknown as { seq: number }).seq = 2 ** 31 - 3
    for (let i = 0; i < 4; i++) {
      await cache.set('k', i)
      expect(await cache.get('k')).toBe(i)
    }
    await cache.setMany([{ key: 'k', value: 'many' }])
    expect(await cache.getMany(['k'])).toEqual(['many'])
    ;(cache.client as unknown as { seq: number }).seq = 0xffffffff - 2
    for (let i = 0; i < 4; i++) expect(await cache.getMany(['k', 'absent'])).toEqual(['many', undefined])
  })
})
