import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { type CacheEvent, CacheConfigError, CacheUnavailableError } from '@cache/core'
import {
  type RedisServer,
  type RedisSentinelGroup,
  recorder,
  requireBinary,
  startFaultProxy,
  startRedis,
  startRedisSentinelGroup,
} from '@cache/test-servers'
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
    await server.process!.freeze()
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

describe('nearCache: keys that are not plain text', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis({ spawn: true })
  })
  afterAll(() => server?.stop())

  it('drops the copy of a key with a lone surrogate when another client changes it', async () => {
    const reader = redisBackend(server.url, { namespace: 'near', nearCache: true })
    const writer = redisBackend(server.url, { namespace: 'near' })
    try {
      await reader.ready()
      for (const key of ['x\uD800', 'a\uDC00b', 'é\uDBFF']) {
        await writer.set(key, 'v1')
        expect(await reader.get(key)).toBe('v1')
        await writer.set(key, 'v2')
        await until(reader, key, 'v2')
      }
    } finally {
      await Promise.all([reader.close(), writer.close()])
    }
  })
})

/** Reads `key` every 10 ms until `stop()`: what each read returned (or threw), and when. */
function readLoop(cache: RedisBackend, key: string) {
  const reads: { at: number; value?: unknown; error?: unknown }[] = []
  let running = true
  const done = (async () => {
    while (running) {
      try {
        reads.push({ at: performance.now(), value: await cache.get(key) })
      } catch (error) {
        reads.push({ at: performance.now(), error })
      }
      await new Promise((r) => setTimeout(r, 10))
    }
  })()
  return {
    reads,
    stop: async () => {
      running = false
      await done
    },
  }
}

describe('nearCache: a link that goes silent', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis({ spawn: true })
  })
  afterAll(() => server?.stop())

  it('stops serving copies within 2 × heartbeat when the invalidation link is black-holed, and recovers', async () => {
    const proxy = await startFaultProxy(server)
    const reader = redisBackend(`redis://127.0.0.1:${proxy.port}`, {
      namespace: 'near',
      nearCache: { heartbeat: '200ms' },
      timeout: '200ms',
    })
    const writer = redisBackend(server.url, { namespace: 'near' })
    const admin = new Redis(server.port, server.host)
    try {
      await reader.ready()
      await writer.set('k', 'v1')
      expect(await reader.get('k')).toBe('v1')
      // The subscriber's link (as Redis sees it) goes silent; the data link still passes.
      const clients = (await admin.client('LIST')) as string
      const line = clients.split('\n').find((l) => l.includes('name=cache-near-invalidations'))!
      const port = Number(/addr=[^ ]*:(\d+) /.exec(line)![1])
      proxy.setMode('blackhole', { serverSidePort: port })
      await writer.set('k', 'v2')
      const changedAt = performance.now()
      const loop = readLoop(reader, 'k')
      await new Promise((r) => setTimeout(r, 1500))
      await loop.stop()
      const stale = loop.reads.filter((r) => r.value === 'v1')
      const lastStale = Math.max(0, ...stale.map((r) => r.at - changedAt))
      // Served from memory at most 2 × heartbeat (400 ms) after the change, with a margin for a busy machine.
      expect(lastStale).toBeLessThan(400 + 250)
      expect(loop.reads.at(-1)).toMatchObject({ value: 'v2' })
      // A fresh subscriber connection took over: copies are served again and evicted again.
      expect(await reader.get('k')).toBe('v2')
      await writer.set('k', 'v3')
      await until(reader, 'k', 'v3')
    } finally {
      admin.disconnect()
      await Promise.all([reader.close(), writer.close()])
      await proxy.close()
    }
  })
})

describe('nearCache: a subscriber that cannot set up', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis({ spawn: true })
  })
  afterAll(() => server?.stop())

  // A client passed in without `commandTimeout` gets the backend's deadline on the set-up too;
  // one with it hands its own to the invalidation connection.
  it.each([
    ['built from a URL', undefined],
    ['passed in', {}],
    ['passed in with its own commandTimeout', { commandTimeout: 200 }],
  ])(
    'reads from Redis, reports once, and serves copies again when the invalidation connection stops answering while it subscribes (client %s)',
    async (_, passed: { commandTimeout?: number } | undefined) => {
      const proxy = await startFaultProxy(server)
      const log = recorder()
      const own = passed
        ? new Redis(proxy.port, proxy.host, {
            connectionName: 'reader',
            enableOfflineQueue: false,
            maxRetriesPerRequest: 0,
            retryStrategy: () => 100,
            ...passed,
          })
        : undefined
      const reader = redisBackend(own ?? `redis://127.0.0.1:${proxy.port}?connectionName=reader`, {
        namespace: 'near',
        nearCache: { heartbeat: '200ms' },
        timeout: '200ms',
        maxReconnectDelay: '200ms',
        logger: log,
      })
      const errors: CacheEvent[] = []
      reader.on('error', (event) => errors.push(event))
      const writer = redisBackend(server.url, { namespace: 'near' })
      const admin = new Redis(server.port, server.host)
      try {
        await reader.ready()
        await writer.set('k', 'v1')
        expect(await reader.get('k')).toBe('v1')
        const clients = ((await admin.client('LIST')) as string).split('\n')
        const reading = clients.find((l) => l.includes(' name=reader '))!
        const subscriber = clients.find((l) => l.includes(' name=cache-near-invalidations '))!
        // Every new connection through the proxy goes silent (Redis stops answering it); the
        // reading connection still passes. The subscriber is cut, and reconnects into the silence.
        proxy.setMode('blackhole')
        proxy.setMode('pass', { serverSidePort: Number(/addr=[^ ]*:(\d+) /.exec(reading)![1]) })
        await admin.client('KILL', 'ID', /^id=(\d+) /.exec(subscriber)![1]!)
        await writer.set('k', 'v2')
        const changedAt = performance.now()
        const loop = readLoop(reader, 'k')
        await new Promise((r) => setTimeout(r, 1500))
        await loop.stop()
        // The old value at most until the cut is seen (bounded by 2 × heartbeat, 400 ms, with a
        // margin for a busy machine); then every read goes to Redis, and none fails.
        const stale = loop.reads.filter((r) => r.value === 'v1').map((r) => r.at - changedAt)
        expect(Math.max(0, ...stale)).toBeLessThan(400 + 250)
        expect(loop.reads.filter((r) => r.value !== 'v1' && r.value !== 'v2')).toEqual([])
        expect(loop.reads.at(-1)).toMatchObject({ value: 'v2' })
        // Reported once (counted, evented, logged), however many times the set-up was retried.
        expect(errors).toHaveLength(1)
        expect(errors[0]!.error).toBeInstanceOf(CacheUnavailableError)
        expect(String((errors[0]!.error as Error).message)).toMatch(/nearCache/)
        expect(reader.stats.errors).toBe(1)
        expect(log.lines.filter((l) => l.startsWith('error'))).toHaveLength(1)
        // The link answers again: tracking is back on, copies are served and evicted again.
        proxy.setMode('pass')
        await reader.ready('3s')
        expect(await reader.get('k')).toBe('v2')
        await writer.set('k', 'v3')
        await until(reader, 'k', 'v3')
      } finally {
        admin.disconnect()
        await Promise.all([reader.close(), writer.close()])
        own?.disconnect()
        await proxy.close()
      }
    },
    15_000,
  )
})

describe('nearCache on Sentinel: a switch-over', () => {
  let group: RedisSentinelGroup
  beforeAll(async () => {
    group = await startRedisSentinelGroup()
  }, 30_000)
  afterAll(() => group?.stop())

  it('serves no copy from the old master once the sentinels promote the replica', async () => {
    const reader = redisBackend(group.url, { namespace: 'near', nearCache: true })
    try {
      await reader.ready()
      await reader.set('k', 'v1')
      expect(await reader.get('k')).toBe('v1')
      const loop = readLoop(reader, 'k')
      await group.sentinel('failover', group.name)
      const promoted = new Redis(group.replicas[0]!.port, '127.0.0.1')
      try {
        while (!String((await promoted.role())[0]).startsWith('master'))
          await new Promise((r) => setTimeout(r, 5))
        // Another client writes the new master as soon as it is one.
        await promoted.set('near:k', '"v2"')
      } finally {
        promoted.disconnect()
      }
      const writtenAt = performance.now()
      await new Promise((r) => setTimeout(r, 1500))
      await loop.stop()
      const after = loop.reads.filter((r) => r.at > writtenAt)
      expect(after.filter((r) => r.value === 'v1')).toEqual([])
      for (const read of after.filter((r) => r.error !== undefined))
        expect(read.error).toBeInstanceOf(CacheUnavailableError)
      expect(after.at(-1)).toMatchObject({ value: 'v2' })
    } finally {
      await reader.close()
    }
  }, 20_000)
})

describe('nearCache options', () => {
  it('is refused on a Redis Cluster and for a bad maxKeys, naming the option', () => {
    expect(() => redisBackend('redis+cluster://127.0.0.1:1', { nearCache: true })).toThrow(CacheConfigError)
    expect(() => redisBackend('redis://127.0.0.1:1', { nearCache: { maxKeys: 0 } })).toThrow(/nearCache/)
    expect(() => redisBackend('redis://127.0.0.1:1', { nearCache: { heartbeat: 0 } })).toThrow(/heartbeat/)
  })
})
