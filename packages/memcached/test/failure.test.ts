import { CacheTimeoutError, CacheUnavailableError, isUnavailable } from '@cache/core'
import { freePort, type MemcachedServer, startMemcached } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { memcachedBackend } from '../src/index.js'
import { serverKeys } from './raw.js'

/** How long a failing operation may take: the timeout plus scheduling slack, far below a hang. */
const TIMEOUT_S = 0.3
const BOUND_MS = TIMEOUT_S * 1000 + 700

async function timed<T>(work: Promise<T>): Promise<{ error: unknown; ms: number }> {
  const start = performance.now()
  const error = await work.then(
    () => undefined,
    (e) => e,
  )
  return { error, ms: performance.now() - start }
}

describe('a server that is down', () => {
  it('fails every operation fast with CacheUnavailableError, and counts it', async () => {
    const cache = memcachedBackend(`127.0.0.1:${await freePort()}`, { timeout: TIMEOUT_S })
    const errors: unknown[] = []
    cache.on('error', (event) => errors.push(event.error))
    try {
      const operations = [
        () => cache.get('k'),
        () => cache.set('k', 1),
        () => cache.add('k', 1),
        () => cache.delete('k'),
        () => cache.incr('k'),
        () => cache.atomicUpdate('k', () => 1),
        () => cache.clear(),
      ]
      for (const operation of operations) {
        const { error, ms } = await timed(operation())
        expect(error).toBeInstanceOf(CacheUnavailableError)
        expect(ms).toBeLessThan(BOUND_MS)
      }
      expect(cache.stats.errors).toBeGreaterThanOrEqual(operations.length)
      expect(errors.every(isUnavailable)).toBe(true)
    } finally {
      await cache.close()
    }
  })

  it('fails with CacheTimeoutError within the timeout when the server hangs (SIGSTOP)', async () => {
    const server = await startMemcached({ spawn: true })
    const cache = memcachedBackend(server.server, { timeout: TIMEOUT_S })
    try {
      await cache.set('k', 'v')
      process.kill(server.process!.pid!, 'SIGSTOP')
      await new Promise((resolve) => setTimeout(resolve, 100))
      const { error, ms } = await timed(cache.get('k'))
      expect(error).toBeInstanceOf(CacheTimeoutError)
      expect(ms).toBeLessThan(BOUND_MS)
      expect(cache.stats.timeouts).toBe(1)
      // A second operation on the hung server also gives up in time.
      const again = await timed(cache.incr('n'))
      expect(again.error).toBeInstanceOf(CacheUnavailableError)
      expect(again.ms).toBeLessThan(BOUND_MS)
      // The failed write ejected the server; it comes back after its retry, cleared: `k` was
      // written before the freeze and the increment may or may not have been applied.
      const back = new Promise((resolve) => cache.on('server-up', resolve))
      process.kill(server.process!.pid!, 'SIGCONT')
      await back
      expect(await cache.get('k')).toBeUndefined()
      await cache.set('k', 'after')
      expect(await cache.get('k')).toBe('after')
    } finally {
      process.kill(server.process!.pid!, 'SIGCONT')
      await cache.close()
      await server.stop()
    }
  })

  it('recovers when a killed server comes back (empty, as memcached restarts are)', async () => {
    const server = await startMemcached({ spawn: true })
    const cache = memcachedBackend(server.server, { timeout: TIMEOUT_S })
    try {
      await cache.set('k', 'v')
      await server.process!.kill()
      await expect(cache.get('k')).rejects.toBeInstanceOf(CacheUnavailableError)
      await server.process!.start()
      expect(await cache.get('k')).toBeUndefined()
      await cache.set('k', 'again')
      expect(await cache.get('k')).toBe('again')
    } finally {
      await cache.close()
      await server.stop()
    }
  })
})

describe('two servers', () => {
  let a: MemcachedServer
  let b: MemcachedServer
  beforeAll(async () => {
    a = await startMemcached({ spawn: true })
    b = await startMemcached({ spawn: true })
  })
  afterAll(async () => {
    await Promise.all([a.stop(), b.stop()])
  })

  it('spreads keys across both, and with one stopped only its keys fail, fast', async () => {
    const cache = memcachedBackend(`${a.server},${b.server}`, { namespace: 'spread', timeout: TIMEOUT_S })
    try {
      const keys = Array.from({ length: 200 }, (_, i) => `key:${i}`)
      await cache.setMany(keys.map((key) => ({ key, value: key })))
      const onA = new Set(
        (await serverKeys(a.port))
          .filter((k) => !k.endsWith('#g'))
          .map((k) => k.split(':').slice(1).join(':')),
      )
      const onB = new Set(
        (await serverKeys(b.port))
          .filter((k) => !k.endsWith('#g'))
          .map((k) => k.split(':').slice(1).join(':')),
      )
      expect(onA.size + onB.size).toBe(200)
      expect(onA.size).toBeGreaterThan(40)
      expect(onB.size).toBeGreaterThan(40)

      await b.process!.kill()
      for (const key of keys.slice(0, 40)) {
        const { error, ms } = await timed(cache.get(key))
        if (onA.has(key)) {
          expect(error).toBeUndefined()
          expect(await cache.get(key)).toBe(key)
          await cache.set(key, 'updated')
          expect(await cache.incr(`${key}:n`).catch(() => 'down')).not.toBe(undefined)
        } else {
          expect(error).toBeInstanceOf(CacheUnavailableError)
          expect(ms).toBeLessThan(BOUND_MS)
        }
      }
      // clear() reports the server it could not reach, after clearing the other one.
      await expect(cache.clear()).rejects.toBeInstanceOf(CacheUnavailableError)
      const survivor = keys.find((key) => onA.has(key))!
      expect(await cache.get(survivor)).toBeUndefined()
    } finally {
      await cache.close()
      await b.process!.start()
    }
  })

  it('gives each user exactly one server per key: the same key always lands on the same server', async () => {
    const first = memcachedBackend(`${a.server},${b.server}`, { namespace: 'stable' })
    const second = memcachedBackend(`${a.server},${b.server}`, { namespace: 'stable' })
    try {
      for (let i = 0; i < 50; i++) await first.set(`k${i}`, i)
      for (let i = 0; i < 50; i++) expect(await second.get(`k${i}`)).toBe(i)
    } finally {
      await Promise.all([first.close(), second.close()])
    }
  })
})
