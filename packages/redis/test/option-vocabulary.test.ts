import { CacheConfigError, setCacheLogger } from '@cache/core'
import type { Redis } from 'ioredis'
import { recorder } from '@cache/test-servers'
import { afterEach, describe, expect, it } from 'vitest'
import { failFastOptions, type RedisBackend, type RedisBackendOptions, redisBackend } from '../src/index.js'

/**
 * The option vocabulary shared by every @cache package: a duration is a Duration (1 is one second,
 * `'250ms'` works), a bad option throws CacheConfigError naming it. No server is needed: nothing
 * here connects (port 1, closed at once).
 */

const URL = 'redis://127.0.0.1:1'
const made: RedisBackend[] = []
function backend(options: RedisBackendOptions): RedisBackend {
  const b = redisBackend(URL, { logger: false, ...options })
  made.push(b)
  return b
}
afterEach(async () => {
  setCacheLogger(undefined)
  await Promise.all(made.splice(0).map((b) => b.close()))
})

/** Each duration option, and where its value (ms) shows. */
const durations: [keyof RedisBackendOptions, (b: RedisBackend) => number][] = [
  ['timeout', (b) => b.timeoutMs],
  ['connectTimeout', (b) => (b.client as Redis).options.connectTimeout as number],
  // ioredis asks the retry strategy for the pause before attempt n: jittered, capped by
  // maxReconnectDelay; the largest of many late pauses, rounded up to 50 ms, is the cap.
  [
    'maxReconnectDelay',
    (b) => {
      const pauses = Array.from(
        { length: 200 },
        () => (b.client as Redis).options.retryStrategy!(1000) as number,
      )
      return Math.ceil(Math.max(...pauses) / 50) * 50
    },
  ],
  ['exactlyOnceWindow', (b) => (b as unknown as { once: { windowMs: number } }).once.windowMs],
]

describe('redis options speak the one vocabulary', () => {
  it.each(durations)('%s: 1 is one second and "250ms" is 250 ms', (option, shown) => {
    expect(shown(backend({ [option]: 1 }))).toBe(1000)
    expect(shown(backend({ [option]: '250ms' }))).toBe(250)
  })

  it.each([
    ...durations.map(([o]) => o),
    'maxAttempts',
    'scanCount',
    'defaultTtl',
    'namespace',
    'serializer',
  ])('%s: a bad value throws CacheConfigError naming it', (option) => {
    const bad = option === 'namespace' ? '\ud800' : option === 'serializer' ? 'yaml' : -1
    expect(() => redisBackend(URL, { [option]: bad })).toThrow(CacheConfigError)
    expect(() => redisBackend(URL, { [option]: bad })).toThrow(
      expect.objectContaining({ setting: option }) as never,
    )
  })

  it('nearCache settings name themselves', () => {
    expect(() => redisBackend(URL, { nearCache: { heartbeat: 'soon' } })).toThrow(
      expect.objectContaining({ name: 'CacheConfigError', setting: 'nearCache.heartbeat' }) as never,
    )
  })

  it('warns once that timeout: 300 is now 5 minutes, naming the option', () => {
    const logger = recorder({ levels: false })
    setCacheLogger(logger)
    expect(backend({ timeout: 300 }).timeoutMs).toBe(300_000)
    backend({ timeout: 300 })
    expect(logger.lines).toEqual([
      "[@cache] timeout: 300 is read as seconds (5m). If you meant milliseconds, write 0.3 or '0.3s'; to keep 5m, write '5m' and this warning goes away.",
    ])
    backend({ timeout: '5m', connectTimeout: 2 })
    expect(logger.lines).toHaveLength(1)
  })

  it('failFastOptions takes Durations, and its old …Ms names still work and warn once', () => {
    expect(failFastOptions({ timeout: 1 }).commandTimeout).toBe(1000)
    expect(failFastOptions({ timeout: '250ms' }).commandTimeout).toBe(250)
    const logger = recorder({ levels: false })
    setCacheLogger(logger)
    expect(failFastOptions({ timeoutMs: 150 }).commandTimeout).toBe(150)
    expect(failFastOptions({ timeoutMs: 150 }).commandTimeout).toBe(150)
    expect(logger.lines).toHaveLength(1)
    expect(logger.lines[0]).toMatch(/timeoutMs is deprecated: use timeout/)
  })
})
