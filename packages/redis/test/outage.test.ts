import { CacheTimeoutError, CacheUnavailableError } from '@cache/core'
import { freePort, type RedisServer, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RedisBackend, redisBackend } from '../src/index.js'

const TIMEOUT_MS = 200
/** What an operation may take beyond its timeout before we call it a hang. */
const MARGIN_MS = 150

/** Runs `op` and reports how it settled and how long it took. */
async function timedSettle<T>(op: () => Promise<T>): Promise<{ ms: number; value?: T; error?: unknown }> {
  const start = performance.now()
  try {
    const value = await op()
    return { ms: performance.now() - start, value }
  } catch (error) {
    return { ms: performance.now() - start, error }
  }
}

/** Retries `op` every 50 ms until it resolves, for at most `ms`. */
async function eventually<T>(op: () => Promise<T>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    try {
      return await op()
    } catch (error) {
      if (Date.now() > deadline) throw error
      await new Promise((r) => setTimeout(r, 50))
    }
  }
}

describe('a redis server that goes away', () => {
  let server: RedisServer
  let cache: RedisBackend

  beforeAll(async () => {
    server = await startRedis({ spawn: true })
    cache = redisBackend(server.url, { namespace: 'outage', timeout: `${TIMEOUT_MS}ms` })
  })
  afterAll(async () => {
    await cache?.close()
    await server?.stop()
  })

  it('rejects every kind of operation with CacheUnavailableError within the timeout, then recovers on restart', async () => {
    await cache.set('kept', 'before')
    expect(await cache.get('kept')).toBe('before')

    // Load in flight when the server dies: every call settles, none hangs.
    const inFlight = Array.from({ length: 200 }, (_, i) => timedSettle(() => cache.set(`load:${i}`, i)))
    await server.process!.kill()
    for (const result of await Promise.all(inFlight)) {
      expect(result.ms).toBeLessThan(TIMEOUT_MS + MARGIN_MS + 1000)
      if (result.error !== undefined) expect(result.error).toBeInstanceOf(CacheUnavailableError)
    }

    const operations: [string, () => Promise<unknown>][] = [
      ['get', () => cache.get('kept')],
      ['getEntry', () => cache.getEntry('kept')],
      ['set', () => cache.set('k', 1)],
      ['add', () => cache.add('k', 1)],
      ['delete', () => cache.delete('k')],
      ['has', () => cache.has('k')],
      ['incr', () => cache.incr('n')],
      ['atomicUpdate', () => cache.atomicUpdate<number>('u', (v) => (v ?? 0) + 1)],
      ['getMany', () => cache.getMany(['a', 'b'])],
      ['setMany', () => cache.setMany([{ key: 'a', value: 1 }])],
      ['deleteMany', () => cache.deleteMany(['a', 'b'])],
      ['clear', () => cache.clear()],
    ]
    for (const [name, op] of operations) {
      const result = await timedSettle(op)
      expect(result.error, name).toBeInstanceOf(CacheUnavailableError)
      expect((result.error as Error).message, name).toMatch(new RegExp(`redis: ${name}`))
      expect(result.ms, name).toBeLessThan(TIMEOUT_MS + MARGIN_MS)
    }
    expect(cache.stats.errors).toBeGreaterThanOrEqual(operations.length)

    await server.process!.start()
    // Same backend object: it reconnects by itself (the data is gone: no persistence).
    await eventually(() => cache.set('after', 'restart'))
    expect(await cache.get('after')).toBe('restart')
    expect(await cache.incr('n')).toBe(1)
    expect(await cache.getEntry('after')).toEqual({ value: 'restart' })
  })

  it('times out with CacheTimeoutError when the server stops answering', async () => {
    await eventually(() => cache.set('frozen', 1))
    const pid = server.process!.pid!
    await server.process!.freeze()
    try {
      const result = await timedSettle(() => cache.get('frozen'))
      expect(result.error).toBeInstanceOf(CacheTimeoutError)
      expect((result.error as CacheTimeoutError).timeoutMs).toBe(TIMEOUT_MS)
      expect(result.ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 5)
      expect(result.ms).toBeLessThan(TIMEOUT_MS + MARGIN_MS)
      expect(cache.stats.timeouts).toBeGreaterThan(0)
    } finally {
      process.kill(pid, 'SIGCONT')
    }
    expect(await eventually(() => cache.get('frozen'))).toBe(1)
  })
})

describe('a backend created while redis is down', () => {
  it('fails fast, then works once the server comes up on that port', async () => {
    const port = await freePort()
    const cache = redisBackend(`redis://127.0.0.1:${port}`, { namespace: 'late', timeout: `${TIMEOUT_MS}ms` })
    const errors: unknown[] = []
    cache.on('error', (event) => errors.push(event.error))
    try {
      const result = await timedSettle(() => cache.get('x'))
      expect(result.error).toBeInstanceOf(CacheUnavailableError)
      expect(result.ms).toBeLessThan(TIMEOUT_MS + MARGIN_MS)
      expect(errors.length).toBeGreaterThan(0)
      const server = await startRedis({ spawn: true, port })
      try {
        await eventually(() => cache.set('x', 'up'))
        expect(await cache.get('x')).toBe('up')
      } finally {
        await server.stop()
      }
    } finally {
      await cache.close()
    }
  })
})

describe('a master that refuses writes', () => {
  it('turns NOREPLICAS (min-replicas-to-write with no replica) into CacheUnavailableError, applying nothing', async () => {
    const server = await startRedis({ spawn: true, args: ['--min-replicas-to-write', '1'] })
    const cache = redisBackend(server.url, { namespace: 'guarded', timeout: `${TIMEOUT_MS}ms` })
    try {
      const writes: (() => Promise<unknown>)[] = [
        () => cache.set('k', 1),
        () => cache.incr('n'),
        () => cache.atomicUpdate('u', () => 1),
      ]
      for (const op of writes) {
        const result = await timedSettle(op)
        expect(result.error).toBeInstanceOf(CacheUnavailableError)
        expect((result.error as Error).message).toMatch(/NOREPLICAS/)
      }
      expect(await cache.getMany(['k', 'n', 'u'])).toEqual([undefined, undefined, undefined])
    } finally {
      await cache.close()
      await server.stop()
    }
  })
})
