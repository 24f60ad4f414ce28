import { CacheConfigError, CacheTimeoutError } from '@cache/core'
import { type RedisServer, recorder, startRedis } from '@cache/test-servers'
import { Redis, type RedisOptions } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type RedisBackend, type RedisConnection, redisBackend } from '../src/index.js'

/**
 * `REDIS_URL=redis://host:port/99` on a server with 16 databases: the server refuses the SELECT.
 * ioredis emits the error and goes on, connected to DB 0; a backend that then sends its commands
 * writes the application's entries into DB 0, shared with whatever else uses it. The refusal is
 * a configuration error: nothing is sent on such a connection, ever.
 */
let redis: RedisServer
let db0: Redis
const opened: RedisBackend[] = []
beforeAll(async () => {
  redis = await startRedis()
  db0 = new Redis({ host: redis.host, port: redis.port, db: 0 })
})
afterEach(async () => {
  await Promise.all(opened.splice(0).map((backend) => backend.close().catch(() => {})))
})
afterAll(async () => {
  db0?.disconnect()
  await redis?.stop()
})

let seq = 0
const fresh = () => `refused${process.pid}x${seq++}`

const connections: [string, () => RedisConnection][] = [
  ['a URL with /99', () => `redis://${redis.host}:${redis.port}/99`],
  ['options with db: 99', () => ({ host: redis.host, port: redis.port, db: 99 })],
]

describe.each(connections)('a database the server refuses, given as %s', (_name, connection) => {
  it('makes ready() reject with a CacheConfigError that names the database', async () => {
    const cache = redisBackend(connection(), { namespace: fresh(), logger: false })
    opened.push(cache)
    const error = await cache.ready('2s').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CacheConfigError)
    expect((error as Error).message).toMatch(/99/)
    expect((error as Error).message).toMatch(/DB index is out of range/)
  })

  it('fails every operation, and never writes into DB 0, also once the client would have "recovered"', async () => {
    const namespace = fresh()
    const cache = redisBackend(connection(), { namespace, logger: false })
    opened.push(cache)
    await cache.ready('2s').catch(() => {})
    await new Promise((resolve) => setTimeout(resolve, 300)) // past any "answers again"
    const outcomes = await Promise.allSettled([
      cache.set('session:1', 'cached', 60),
      cache.add('lock', 'me', 60),
      cache.incr('hits'),
      cache.setMany([{ key: 'a', value: 1 }]),
      cache.atomicUpdate('u', () => 1),
      cache.get('session:1'),
      cache.getMany(['a']),
      cache.delete('session:1'),
      cache.clear(),
    ])
    for (const outcome of outcomes) {
      expect(outcome.status).toBe('rejected')
      expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(CacheConfigError)
    }
    expect(await db0.keys(`${namespace}*`)).toEqual([])
  })

  it('fails a write issued at once, before the connection is up, without writing into DB 0', async () => {
    const namespace = fresh()
    const cache = redisBackend(connection(), { namespace, logger: false })
    opened.push(cache)
    const written = await cache.set('session:1', 'cached', 60).catch((e: unknown) => e)
    expect(written).toBeInstanceOf(CacheConfigError)
    expect(await db0.keys(`${namespace}*`)).toEqual([])
  })

  it('logs it once as a configuration error, never as an outage that "answers again"', async () => {
    const logger = recorder()
    const cache = redisBackend(connection(), { namespace: fresh(), logger })
    opened.push(cache)
    await cache.ready('2s').catch(() => {})
    for (let i = 0; i < 3; i++) await cache.get('k').catch(() => {})
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(logger.lines).toHaveLength(1)
    expect(logger.lines[0]).toMatch(/^error \[@cache\] redis: .*99.*DB index is out of range/)
    expect(logger.lines.join('\n')).not.toMatch(/answers again|cannot reach/)
  })
})

/** A client of the test server on database `db`, as the backend accepts one passed in. */
function passedClient(db: number, options: RedisOptions = {}): Redis {
  return new Redis({
    host: redis.host,
    port: redis.port,
    db,
    autoResendUnfulfilledCommands: false,
    ...options,
  })
}

describe('a client passed in whose database the server refuses', () => {
  it('is refused too: the operations fail with CacheConfigError, nothing lands in DB 0, the client stays yours', async () => {
    const namespace = fresh()
    const client = passedClient(99)
    try {
      const cache = redisBackend(client, { namespace, logger: false })
      opened.push(cache)
      expect(await cache.ready('2s').catch((e: unknown) => e)).toBeInstanceOf(CacheConfigError)
      expect(await cache.set('k', 'v', 60).catch((e: unknown) => e)).toBeInstanceOf(CacheConfigError)
      expect(await db0.keys(`${namespace}*`)).toEqual([])
      await cache.close()
      expect(client.status).toBe('ready') // not closed under its owner
    } finally {
      client.disconnect()
    }
  })
})

describe('a client passed in with a database other than 0 and ioredis resending commands', () => {
  it('is refused when the backend is made: after a reconnect whose SELECT fails, the resent commands would run in DB 0', () => {
    const client = new Redis({ host: redis.host, port: redis.port, db: 5, lazyConnect: true })
    try {
      // Before: accepted; after a restart with fewer databases, in-flight writes landed in DB 0.
      expect(() => redisBackend(client, { namespace: fresh(), logger: false })).toThrow(CacheConfigError)
      expect(() => redisBackend(client, { namespace: fresh(), logger: false })).toThrow(
        /autoResendUnfulfilledCommands/,
      )
    } finally {
      client.disconnect()
    }
  })

  it('is refused too when the app chose the database with client.select() after connecting', async () => {
    const client = new Redis({ host: redis.host, port: redis.port })
    try {
      await client.select(3)
      // Before: accepted (its options say db 0); a resent write after a refused SELECT 3 ran in DB 0.
      expect(() => redisBackend(client, { namespace: fresh(), logger: false })).toThrow(/client\.select\(\)/)
      const quiet = new Redis({ host: redis.host, port: redis.port, autoResendUnfulfilledCommands: false })
      try {
        await quiet.select(3)
        // Before: accepted; after a restart with fewer databases the writes went to DB 0, unreported.
        expect(() => redisBackend(quiet, { namespace: fresh(), logger: false })).toThrow(CacheConfigError)
      } finally {
        quiet.disconnect()
      }
    } finally {
      client.disconnect()
    }
  })

  it('refuses a client the server has on another database than ioredis believes (RESET before hand-off)', async () => {
    const namespace = fresh()
    const client = passedClient(3)
    try {
      await client.ping()
      // RESET puts the connection back on DB 0; ioredis still records database 3.
      await client.call('RESET')
      const cache = redisBackend(client, { namespace, logger: false })
      opened.push(cache)
      // Before: resolved, and the entry landed in DB 0, unreported.
      await expect(cache.set('user:1', 'alice', 60)).rejects.toThrow(
        /database 0.*database 3|database 3.*database 0/,
      )
      await expect(cache.get('user:1')).rejects.toThrow(CacheConfigError)
      await expect(cache.ready()).rejects.toThrow(CacheConfigError)
      expect(await db0.keys(`${namespace}*`)).toEqual([])
    } finally {
      client.disconnect()
    }
  })

  it('refuses it too when the RESET waits in the offline queue of a client still connecting', async () => {
    for (const lazyConnect of [false, true]) {
      const namespace = fresh()
      const client = passedClient(3, { lazyConnect })
      try {
        // Sent after ioredis's SELECT 3 once it connects: the connection ends up on DB 0.
        // (A lazy client connects for this first command.)
        const reset = client.call('RESET')
        const cache = redisBackend(client, { namespace, logger: false })
        opened.push(cache)
        // Before: resolved, and the entry landed in DB 0.
        await expect(cache.set('user:1', 'alice', 60)).rejects.toThrow(CacheConfigError)
        await reset
        expect(await db0.keys(`${namespace}*`)).toEqual([])
      } finally {
        client.disconnect()
      }
    }
  })

  it('fails an operation within its timeout, not hangs, while the server does not say which database', async () => {
    const client = passedClient(3)
    try {
      await client.ping()
      await redis.process!.freeze()
      try {
        const cache = redisBackend(client, { namespace: fresh(), timeout: '200ms', logger: false })
        opened.push(cache)
        const started = Date.now()
        const outcome = await Promise.race([
          cache.set('k', 'v', 60).then(
            () => 'stored',
            (error: unknown) => error,
          ),
          new Promise((resolve) => setTimeout(resolve, 3000, 'still waiting')),
        ])
        // Before: still waiting (for as long as the server was stopped).
        expect(outcome).toBeInstanceOf(CacheTimeoutError)
        expect(Date.now() - started).toBeLessThan(2000)
      } finally {
        redis.process!.thaw()
      }
    } finally {
      client.disconnect()
    }
  })

  it('is accepted with autoResendUnfulfilledCommands: false, and writes into its database', async () => {
    const namespace = fresh()
    const client = passedClient(5)
    try {
      const cache = redisBackend(client, { namespace, logger: false })
      opened.push(cache)
      await cache.set('k', 'v', 60)
      expect(await db0.keys(`${namespace}*`)).toEqual([])
      expect((await client.keys(`${namespace}*`)).length).toBe(1)
    } finally {
      client.disconnect()
    }
  })
})

describe('a server restarted with fewer databases under a client passed in', () => {
  it('refuses every later operation, writes nothing into DB 0, and never logs that it "answers again"', async () => {
    const first = await startRedis({ spawn: true })
    const namespace = fresh()
    const client = new Redis({
      host: first.host,
      port: first.port,
      db: 5,
      autoResendUnfulfilledCommands: false,
      retryStrategy: () => 50,
    })
    const logger = recorder()
    const cache = redisBackend(client, { namespace, logger })
    let second: RedisServer | undefined
    try {
      await cache.set('before', 1, 60)
      await first.stop()
      second = await startRedis({ spawn: true, port: first.port, args: ['--databases', '2'] })
      const zero = new Redis({ host: second.host, port: second.port, db: 0 })
      try {
        let refused = false
        for (let i = 0; i < 100 && !refused; i++) {
          refused = (await cache.set(`k${i}`, i, 60).catch((e: unknown) => e)) instanceof CacheConfigError
          if (!refused) await new Promise((resolve) => setTimeout(resolve, 30))
        }
        expect(refused).toBe(true)
        expect(await cache.incr('n').catch((e: unknown) => e)).toBeInstanceOf(CacheConfigError)
        expect(await zero.keys(`${namespace}*`)).toEqual([])
        // Before: "answers again" followed the refusal in the log.
        expect(logger.lines.filter((line) => /answers again/.test(line))).toEqual([])
      } finally {
        zero.disconnect()
      }
    } finally {
      await cache.close()
      client.disconnect()
      await second?.stop()
    }
  }, 30_000)
})

describe('a database the server has', () => {
  it('is used as before: DB 15 holds the entries, DB 0 none', async () => {
    const namespace = fresh()
    const cache = redisBackend(`redis://${redis.host}:${redis.port}/15`, { namespace, logger: false })
    opened.push(cache)
    await cache.ready('2s')
    await cache.set('k', 'v', 60)
    expect(await cache.incr('n')).toBe(1)
    expect(await db0.keys(`${namespace}*`)).toEqual([])
    const db15 = new Redis({ host: redis.host, port: redis.port, db: 15 })
    try {
      expect((await db15.keys(`${namespace}*`)).length).toBeGreaterThan(0)
    } finally {
      db15.disconnect()
    }
  })
})
