import { afterEach, describe, expect, it } from 'vitest'
import {
  type CacheBackend,
  CacheConfigError,
  type Duration,
  cacheAtomicUpdate,
  cacheIncr,
  cacheSet,
  cached,
  configFromEnv,
  configureCache,
  createBackendFromConfig,
  ENV_DEFAULTS,
  resetCache,
  ttlToMs,
} from '../src/index.js'
import type { PackageLoader } from '../src/kit.js'

/**
 * A store outside the process (no sync access) with a default TTL, as the configured default
 * cache has: records the TTL each key was written with.
 */
class MapBackend {
  readonly name = 'map'
  readonly rows = new Map<string, { value: unknown; until?: number }>()
  readonly ttls = new Map<string, number | undefined>()
  private readonly defaultMs: number | undefined
  constructor(options: { defaultTtl?: number } = {}) {
    this.defaultMs = ttlToMs(options.defaultTtl)
  }
  async get(key: string) {
    return (await this.getEntry(key))?.value
  }
  async getEntry(key: string) {
    const row = this.rows.get(key)
    if (row === undefined || (row.until !== undefined && row.until <= Date.now())) return undefined
    return row.until === undefined ? { value: row.value } : { value: row.value, expiresAt: row.until }
  }
  async set(key: string, value: unknown, ttl?: Duration) {
    const ms = ttl === undefined ? this.defaultMs : ttlToMs(ttl)
    this.ttls.set(key, ms)
    this.rows.set(key, ms === undefined ? { value } : { value, until: Date.now() + ms })
  }
  async add(key: string, value: unknown, ttl?: Duration) {
    if ((await this.getEntry(key)) !== undefined) return false
    await this.set(key, value, ttl)
    return true
  }
  async delete(key: string) {
    return this.rows.delete(key)
  }
  async clear() {
    this.rows.clear()
  }
  async close() {}
}

/** A loader whose packages build recording backends: what each factory was given. */
function recordingLoader(): { loader: PackageLoader; options: Record<string, unknown>[] } {
  const options: Record<string, unknown>[] = []
  const factory = (...args: unknown[]) => {
    options.push(args.find((a) => typeof a === 'object' && a !== null) as Record<string, unknown>)
    return new MapBackend() as unknown as CacheBackend
  }
  const loader: PackageLoader = () => ({
    memoryBackend: factory,
    diskBackend: factory,
    redisBackend: factory,
    memcachedBackend: factory,
    multiLevel: factory,
  })
  return { loader, options }
}

afterEach(async () => {
  delete process.env.CACHE_DEFAULT_TTL
  await resetCache()
})

describe('the default TTL of the configured default cache', () => {
  it('is 300 s when nothing says otherwise', () => {
    expect(ENV_DEFAULTS.CACHE_DEFAULT_TTL).toBe('300')
    expect(configFromEnv({}).defaultTtl).toBe(300)
    const { loader, options } = recordingLoader()
    configureCache({ backend: 'memory', loader })
    expect(options[0]).toMatchObject({ defaultTtl: 300 })
  })

  it.each(['none', 'NONE', ' none '])('is none with CACHE_DEFAULT_TTL=%j', (value) => {
    expect(configFromEnv({ CACHE_DEFAULT_TTL: value }).defaultTtl).toBeNull()
    process.env.CACHE_DEFAULT_TTL = value
    const { loader, options } = recordingLoader()
    configureCache({ backend: 'memory', loader })
    expect(options[0]).not.toHaveProperty('defaultTtl')
  })

  it('is none with defaultTtl: null in code', () => {
    const { loader, options } = recordingLoader()
    configureCache({ backend: 'memory,redis', defaultTtl: null, loader })
    expect(options.slice(0, 2)).toEqual([{ maxKeys: 10_000 }, {}])
  })

  it('takes the forms people write: CACHE_DEFAULT_TTL=90, 1m30s, 2 hours', () => {
    expect(configFromEnv({ CACHE_DEFAULT_TTL: '90' }).defaultTtl).toBe(90)
    expect(configFromEnv({ CACHE_DEFAULT_TTL: '1m30s' }).defaultTtl).toBe('1m30s')
    expect(configFromEnv({ CACHE_DEFAULT_TTL: '2 hours' }).defaultTtl).toBe('2 hours')
    expect(() => configFromEnv({ CACHE_DEFAULT_TTL: 'never' })).toThrow(CacheConfigError)
    expect(() => configFromEnv({ CACHE_DEFAULT_TTL: 'never' })).toThrow(/^CACHE_DEFAULT_TTL: "never"/)
  })

  it('cacheSet refuses a fourth argument ({ tags }) rather than drop it: the entry would outlive invalidateTags()', async () => {
    const backend = new MapBackend()
    configureCache(backend as never)
    // Before: stored without tags, and served after invalidateTags(['product:1']) resolved.
    const withTags = () =>
      (cacheSet as (...args: unknown[]) => Promise<void>)('p', 1, 60, { tags: ['product:1'] })
    expect(withTags).toThrow(TypeError)
    expect(withTags).toThrow(/takes 3 arguments.*getOrSet/)
    expect(backend.rows.has('p')).toBe(false)
  })

  it('cacheIncr and cacheAtomicUpdate refuse an argument past the TTL rather than drop it', async () => {
    const backend = new MapBackend()
    configureCache(backend as never)
    // Before: counted (or written) without the tags, which invalidateTags() then never reached.
    const incr = () => (cacheIncr as (...args: unknown[]) => Promise<number>)('n', 1, 60, { tags: ['t'] })
    const update = () =>
      (cacheAtomicUpdate as (...args: unknown[]) => Promise<unknown>)('u', () => 1, 60, { tags: ['t'] })
    expect(incr).toThrow(TypeError)
    expect(incr).toThrow(/cacheIncr\(key, by, ttl\) takes 3 arguments, got 4/)
    expect(update).toThrow(/cacheAtomicUpdate\(key, fn, ttl\) takes 3 arguments, got 4/)
    expect(backend.rows.has('n')).toBe(false)
    expect(backend.rows.has('u')).toBe(false)
  })

  it('does not touch a backend given as an instance: it keeps its own default', async () => {
    const backend = new MapBackend()
    configureCache(backend as never)
    await cacheSet('k', 1)
    expect(backend.ttls.get('k')).toBeUndefined()
  })

  it('leaves @cache invalidation state without expiry: a memoized result outlives the default TTL when its own ttl says so', async () => {
    const backend = new MapBackend({ defaultTtl: 0.05 })
    configureCache(backend as never)
    let calls = 0
    const slow = cached(
      async (n: number) => {
        calls++
        return n
      },
      { name: 'default-ttl-outlived', ttl: '1h', tags: ['t'] },
    )
    await slow(1)
    await new Promise((resolve) => setTimeout(resolve, 120))
    await slow(1)
    expect(calls).toBe(1)
    // The result itself was written with its own TTL, the invalidation state without expiry.
    expect([...backend.ttls.values()].sort()).toEqual([3_600_000, 3_600_000, undefined, undefined])
  })
})

describe('createBackendFromConfig with a config built in code', () => {
  it('adds no default TTL that the config does not hold', () => {
    const { loader, options } = recordingLoader()
    createBackendFromConfig({ ...configFromEnv({}), defaultTtl: undefined }, loader)
    expect(options[0]).toEqual({ maxKeys: 10_000 })
  })
})
