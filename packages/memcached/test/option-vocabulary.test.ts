import { CacheConfigError, setCacheLogger } from '@cache/core'
import { recorder } from '@cache/test-servers'
import { afterEach, describe, expect, it } from 'vitest'
import { type MemcachedBackend, type MemcachedBackendOptions, memcachedBackend } from '../src/index.js'

/**
 * The option vocabulary shared by every @cache package: a duration is a Duration (1 is one second,
 * `'250ms'` works), retries are `maxAttempts`, a bad option throws CacheConfigError naming it.
 * Nothing here connects (the server is never asked).
 */

const SERVER = '127.0.0.1:1'
const made: MemcachedBackend[] = []
function backend(options: MemcachedBackendOptions): MemcachedBackend {
  const b = memcachedBackend(SERVER, { logger: false, ...options })
  made.push(b)
  return b
}
type Inside = {
  timeoutMs: number
  maxAttempts: number
  generations: { ttlMs: number }
  pool: { baseDelayMs: number; maxDelayMs: number }
}
const inside = (b: MemcachedBackend) => b as unknown as Inside
afterEach(async () => {
  setCacheLogger(undefined)
  await Promise.all(made.splice(0).map((b) => b.close()))
})

const durations: [
  string,
  (o: MemcachedBackendOptions['timeout']) => MemcachedBackendOptions,
  (b: Inside) => number,
][] = [
  ['timeout', (v) => ({ timeout: v }), (b) => b.timeoutMs],
  ['generationTtl', (v) => ({ generationTtl: v }), (b) => b.generations.ttlMs],
  ['eject.retryAfter', (v) => ({ eject: { retryAfter: v } }), (b) => b.pool.baseDelayMs],
  [
    'eject.maxRetryAfter',
    (v) => ({ eject: { maxRetryAfter: v, retryAfter: '1ms' } }),
    (b) => b.pool.maxDelayMs,
  ],
]

describe('memcached options speak the one vocabulary', () => {
  it.each(durations)('%s: 1 is one second and "250ms" is 250 ms', (_, options, shown) => {
    expect(shown(inside(backend(options(1))))).toBe(1000)
    expect(shown(inside(backend(options('250ms'))))).toBe(250)
  })

  it.each(durations)('%s: a bad value throws CacheConfigError naming it', (option, options) => {
    expect(() => backend(options('soon'))).toThrow(CacheConfigError)
    expect(() => backend(options('soon'))).toThrow(expect.objectContaining({ setting: option }) as never)
  })

  it.each(['maxAttempts', 'maxValueSize', 'defaultTtl', 'namespace'])(
    '%s: a bad value throws CacheConfigError naming it',
    (option) => {
      const bad = option === 'namespace' ? 'has space' : -1
      expect(() => backend({ [option]: bad })).toThrow(expect.objectContaining({ setting: option }) as never)
      expect(() => backend({ [option]: bad })).toThrow(CacheConfigError)
    },
  )

  it('retries are maxAttempts; casAttempts still works, with one warning naming maxAttempts', () => {
    expect(inside(backend({ maxAttempts: 7 })).maxAttempts).toBe(7)
    const logger = recorder({ levels: false })
    setCacheLogger(logger)
    expect(inside(backend({ casAttempts: 5 })).maxAttempts).toBe(5)
    expect(inside(backend({ casAttempts: 5 })).maxAttempts).toBe(5)
    expect(logger.lines).toHaveLength(1)
    expect(logger.lines[0]).toContain('casAttempts is deprecated: use maxAttempts')
    expect(() => backend({ casAttempts: 0 })).toThrow(
      expect.objectContaining({ setting: 'casAttempts' }) as never,
    )
  })
})
