import { CacheClosedError, CacheConfigError, CacheUnavailableError } from '@cache/core'
import { type RedisServer, startRedis, startRedisSentinel } from '@cache/test-servers'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { failFastOptions, redisBackend } from '../src/index.js'

describe('AUTH through the URL', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis({ spawn: true, password: 'p@ss:w/rd' })
  })
  afterAll(() => server?.stop())

  it('connects with the percent-encoded password of the URL', async () => {
    expect(server.url).toContain('p%40ss%3Aw%2Frd@')
    const cache = redisBackend(server.url, { namespace: 'auth' })
    try {
      await cache.set('k', 'secret-protected')
      expect(await cache.get('k')).toBe('secret-protected')
    } finally {
      await cache.close()
    }
  })

  it('fails with CacheUnavailableError, not a hang, when the password is wrong', async () => {
    const cache = redisBackend(`redis://:wrong@127.0.0.1:${server.port}`, {
      namespace: 'auth',
      timeout: '200ms',
    })
    try {
      await expect(cache.get('k')).rejects.toBeInstanceOf(CacheUnavailableError)
    } finally {
      await cache.close()
    }
  })
})

describe('TLS through rediss://', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis({ spawn: true, tls: true })
  })
  afterAll(() => server?.stop())

  it('connects over TLS, trusting the server certificate given as ca', async () => {
    expect(server.url).toMatch(/^rediss:\/\//)
    const cache = redisBackend(server.url, { namespace: 'tls', tls: { ca: server.tls!.ca } })
    try {
      await cache.set('k', { over: 'tls' })
      expect(await cache.get('k')).toEqual({ over: 'tls' })
      expect(cache.client.isCluster).toBe(false)
      expect((cache.client as Redis).stream.constructor.name).toBe('TLSSocket')
    } finally {
      await cache.close()
    }
  })

  it('refuses a certificate it does not trust', async () => {
    const cache = redisBackend(server.url, { namespace: 'tls', timeout: '300ms' })
    try {
      await expect(cache.get('k')).rejects.toBeInstanceOf(CacheUnavailableError)
    } finally {
      await cache.close()
    }
  })
})

describe('a client passed in', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis()
  })
  afterAll(() => server?.stop())

  it('is used as is and left open by close()', async () => {
    const client = new Redis(server.url)
    try {
      const cache = redisBackend(client, { namespace: 'mine' })
      expect(cache.client).toBe(client)
      await cache.set('k', 1)
      expect(await client.get('mine:k')).toBe('1')
      const listeners = client.listenerCount('error')
      await cache.close()
      await cache.close()
      expect(client.status).toBe('ready')
      expect(client.listenerCount('error')).toBe(listeners - 1)
      expect(await client.get('mine:k')).toBe('1')
      await expect(cache.get('k')).rejects.toBeInstanceOf(CacheClosedError)
    } finally {
      client.disconnect()
    }
  })

  it('is bounded by the backend timeout when the client has no commandTimeout', async () => {
    const client = new Redis(server.url)
    const cache = redisBackend(client, { namespace: 'mine', timeout: '150ms' })
    try {
      await cache.set('k', 1)
      const pid = server.process!.pid!
      await server.process!.freeze()
      const start = performance.now()
      try {
        await expect(cache.get('k')).rejects.toMatchObject({ code: 'CACHE_TIMEOUT', timeoutMs: 150 })
      } finally {
        process.kill(pid, 'SIGCONT')
      }
      expect(performance.now() - start).toBeLessThan(400)
    } finally {
      await cache.close()
      client.disconnect()
    }
  })

  it('takes its timeout from a client built with failFastOptions()', async () => {
    const client = new Redis(server.url, failFastOptions({ timeout: '150ms' }))
    const cache = redisBackend(client, { namespace: 'mine', timeout: '5s' })
    try {
      expect(cache.timeoutMs).toBe(150)
      await cache.set('k', 2)
      expect(await cache.get('k')).toBe(2)
    } finally {
      await cache.close()
      client.disconnect()
    }
  })

  it('closes the client it created itself', async () => {
    const cache = redisBackend(server.url)
    await cache.set('k', 1)
    await cache.close()
    expect(cache.client.status).toBe('end')
    await expect(cache.close()).resolves.toBeUndefined()
  })
})

describe('namespaces and clear()', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis()
  })
  afterAll(() => server?.stop())

  it('prefixes keys with the default namespace "cache"', async () => {
    const cache = redisBackend(server.url)
    const raw = new Redis(server.url)
    try {
      await cache.set('plain', 'v')
      expect(await raw.get('cache:plain')).toBe('"v"')
      await cache.incr('counter', 5)
      expect(await raw.get('cache:counter')).toBe('5')
    } finally {
      await cache.close()
      raw.disconnect()
    }
  })

  it('matches a namespace with glob characters literally', async () => {
    const star = redisBackend(server.url, { namespace: 'a*[b]?' })
    const victim = redisBackend(server.url, { namespace: 'aX[b]Y' })
    const victim2 = redisBackend(server.url, { namespace: 'axbq' })
    try {
      await Promise.all([star.set('k', 1), victim.set('k', 2), victim2.set('k', 3)])
      await star.clear()
      expect(await star.get('k')).toBeUndefined()
      expect(await victim.get('k')).toBe(2)
      expect(await victim2.get('k')).toBe(3)
    } finally {
      await Promise.all([star.close(), victim.close(), victim2.close()])
    }
  })

  it('clears namespaces of many keys in SCAN batches', async () => {
    const cache = redisBackend(server.url, { namespace: 'bulk', scanCount: 50 })
    try {
      await cache.setMany(Array.from({ length: 1200 }, (_, i) => ({ key: `k${i}`, value: i })))
      expect(await cache.get('k1199')).toBe(1199)
      await cache.clear()
      expect(await cache.getMany(['k0', 'k600', 'k1199'])).toEqual([undefined, undefined, undefined])
    } finally {
      await cache.close()
    }
  })

  it('without a namespace stores keys as given and refuses clear()', async () => {
    const cache = redisBackend(server.url, { namespace: '' })
    const raw = new Redis(server.url)
    try {
      await cache.set('bare', 1)
      expect(await raw.get('bare')).toBe('1')
      await expect(cache.clear()).rejects.toBeInstanceOf(CacheConfigError)
      expect(await raw.get('bare')).toBe('1')
    } finally {
      await cache.close()
      raw.disconnect()
    }
  })
})

describe('Sentinel', () => {
  it('finds the master through redis+sentinel://', async () => {
    const master = await startRedis({ spawn: true })
    const sentinel = await startRedisSentinel(master, 'cachemaster')
    const cache = redisBackend(sentinel.url, { namespace: 'sentinel', timeout: '1s' })
    const raw = new Redis(master.url)
    try {
      expect(sentinel.url).toMatch(/^redis\+sentinel:\/\/127\.0\.0\.1:\d+\/cachemaster$/)
      await cache.set('k', 'via sentinel')
      expect(await raw.get('sentinel:k')).toBe('"via sentinel"')
      expect(await cache.incr('n', 2, 60)).toBe(2)
    } finally {
      await cache.close()
      raw.disconnect()
      await sentinel.stop()
      await master.stop()
    }
  })
})
