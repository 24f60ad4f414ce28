import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { CacheConfigError } from '@cache/core'
import { type RedisServer, requireBinary, startRedis } from '@cache/test-servers'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RedisBackend, redisBackend } from '../src/index.js'

const run = promisify(execFile)

/** `redis-cli` on the server: a client that knows nothing about this backend. */
async function cli(server: RedisServer, ...command: string[]): Promise<string> {
  const { stdout } = await run(requireBinary('redis-cli'), ['-p', String(server.port), ...command])
  return stdout.trim()
}

/** Polls `get` until it returns `expected`: the ms it took, or throws after `maxMs`. */
async function until(cache: RedisBackend, key: string, expected: unknown, maxMs = 2000): Promise<number> {
  const start = performance.now()
  for (;;) {
    if ((await cache.get(key)) === expected) return performance.now() - start
    if (performance.now() - start > maxMs)
      throw new Error(`${key} still not ${String(expected)} after ${maxMs} ms`)
    await new Promise((r) => setImmediate(r))
  }
}

describe('nearCache: copies of what was read, evicted by Redis when any client changes the key', () => {
  let server: RedisServer
  let cache: RedisBackend
  beforeAll(async () => {
    server = await startRedis({ spawn: true })
    cache = redisBackend(server.url, { namespace: 'near', nearCache: { maxKeys: 100 } })
    await cache.ready()
  })
  afterAll(async () => {
    await cache?.close()
    await server?.stop()
  })

  it('answers a value it read from the process, and drops it when redis-cli changes the key', async () => {
    await cache.set('k', 'one')
    expect(await cache.get('k')).toBe('one')
    // Served without Redis: the server is frozen and the read still answers at once.
    const pid = server.process!.pid!
    process.kill(pid, 'SIGSTOP')
    try {
      expect(await cache.get('k')).toBe('one')
      expect(await cache.getEntry('k')).toEqual({ value: 'one' })
    } finally {
      process.kill(pid, 'SIGCONT')
    }
    await cli(server, 'SET', 'near:k', '"two"')
    await until(cache, 'k', 'two')
    await cli(server, 'DEL', 'near:k')
    await until(cache, 'k', undefined)
  })

  it('never keeps a copy that a write from another client overtook', async () => {
    const writer = new Redis(server.port, server.host)
    try {
      for (let round = 0; round < 5; round++) {
        const key = `race${round}`
        let last = 0
        let writing = true
        const writes = (async () => {
          for (let i = 1; i <= 300; i++) {
            await writer.set(`near:${key}`, String(i))
            last = i
          }
          writing = false
        })()
        // Reads interleave with the writes; any copy kept from before a write would stay stale.
        while (writing) {
          await cache.get(key)
          await new Promise((r) => setImmediate(r))
        }
        await writes
        await until(cache, key, last, 1000)
      }
    } finally {
      writer.disconnect()
    }
  })

  it("keeps a copy no longer than the key's TTL", async () => {
    await cache.set('short', 'brief', 0.2)
    expect(await cache.getEntry('short')).toMatchObject({ value: 'brief', expiresAt: expect.any(Number) })
    await new Promise((r) => setTimeout(r, 250))
    expect(await cache.get('short')).toBeUndefined()
  })

  it('reads its own writes at once', async () => {
    for (let i = 0; i < 50; i++) {
      await cache.set('mine', i)
      expect(await cache.get('mine')).toBe(i)
    }
    await cache.incr('count')
    expect(await cache.get('count')).toBe(1)
    await cache.incr('count')
    expect(await cache.get('count')).toBe(2)
    await cache.delete('mine')
    expect(await cache.get('mine')).toBeUndefined()
  })

  it('drops every copy when the server goes away, and serves none from before it came back', async () => {
    await cache.set('kept', 'before')
    expect(await cache.get('kept')).toBe('before')
    await server.process!.kill()
    await server.process!.start()
    // The restarted server has no data (no persistence): a copy from before would be a lie.
    await cache.ready()
    expect(await cache.get('kept')).toBeUndefined()
    await cli(server, 'SET', 'near:kept', '"after"')
    expect(await cache.get('kept')).toBe('after')
    await cli(server, 'SET', 'near:kept', '"later"')
    await until(cache, 'kept', 'later')
  })
})

describe('nearCache options', () => {
  it('is refused on a Redis Cluster and for a bad maxKeys, naming the option', () => {
    expect(() => redisBackend('redis+cluster://127.0.0.1:1', { nearCache: true })).toThrow(CacheConfigError)
    expect(() => redisBackend('redis://127.0.0.1:1', { nearCache: { maxKeys: 0 } })).toThrow(/nearCache/)
  })
})
