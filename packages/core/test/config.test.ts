import { describe, expect, it } from 'vitest'
import {
  CacheConfigError,
  CacheMissingPackageError,
  configFromEnv,
  configureCache,
  createBackendFromConfig,
  getBackend,
  resetCache,
} from '../src/index.js'

describe('configFromEnv', () => {
  it('has the documented defaults', () => {
    const config = configFromEnv({})
    expect(config).toMatchObject({
      backends: ['memory'],
      maxKeys: 10_000,
      maxSize: 1024 ** 3,
      diskMaxSize: 10 * 1024 ** 3,
      redisUrl: 'redis://127.0.0.1:6379',
      memcachedServers: '127.0.0.1:11211',
    })
    expect(config.defaultTtl).toBe(300)
    expect(config.namespace).toBeUndefined()
  })

  it('reads every variable', () => {
    const config = configFromEnv({
      CACHE_BACKEND: 'memory-size, disk ,redis',
      CACHE_MAX_KEYS: '500',
      CACHE_MAX_SIZE: '64MB',
      CACHE_DISK_PATH: '/tmp/c',
      CACHE_DISK_MAX_SIZE: '2GB',
      REDIS_URL: 'rediss://user:pw@redis.internal:6380/2',
      MEMCACHED_SERVERS: 'a:11211,[::1]:11212',
      CACHE_DEFAULT_TTL: '5m',
      CACHE_NAMESPACE: 'shop',
    })
    expect(config).toEqual({
      backends: ['memory-size', 'disk', 'redis'],
      maxKeys: 500,
      maxSize: 64 * 1024 ** 2,
      diskPath: '/tmp/c',
      diskMaxSize: 2 * 1024 ** 3,
      redisUrl: 'rediss://user:pw@redis.internal:6380/2',
      memcachedServers: 'a:11211,[::1]:11212',
      defaultTtl: '5m',
      namespace: 'shop',
    })
    expect(configFromEnv({ CACHE_DEFAULT_TTL: '90' }).defaultTtl).toBe(90)
  })

  it.each([
    ['CACHE_BACKEND', 'mongo'],
    ['CACHE_BACKEND', 'memory,memory'],
    ['CACHE_BACKEND', ','],
    ['CACHE_MAX_KEYS', 'many'],
    ['CACHE_MAX_KEYS', '0'],
    ['CACHE_MAX_KEYS', '-5'],
    ['CACHE_MAX_KEYS', '1.5'],
    ['CACHE_MAX_SIZE', '1XB'],
    ['CACHE_DISK_MAX_SIZE', 'huge'],
    ['REDIS_URL', 'http://localhost'],
    ['REDIS_URL', 'localhost:6379'],
    ['MEMCACHED_SERVERS', 'localhost'],
    ['MEMCACHED_SERVERS', 'a:99999'],
    ['CACHE_DEFAULT_TTL', '0'],
    ['CACHE_DEFAULT_TTL', '5 parsecs'],
    ['CACHE_DEFAULT_TTL', '-1'],
    ['CACHE_NAMESPACE', 'a b'],
  ])('rejects %s=%j naming the variable', (name, value) => {
    let error: unknown
    try {
      configFromEnv({ [name]: value })
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(CacheConfigError)
    expect((error as CacheConfigError).setting).toBe(name)
    expect((error as Error).message).toMatch(new RegExp(`^${name}: `))
  })
})

describe('createBackendFromConfig', () => {
  it('says which package to install when a backend is missing', () => {
    const config = configFromEnv({ CACHE_BACKEND: 'redis' })
    expect(() => createBackendFromConfig(config, () => undefined)).toThrow(CacheMissingPackageError)
    expect(() => createBackendFromConfig(config, () => undefined)).toThrow(
      'install @cache/redis to use "redis"',
    )
    const chain = configFromEnv({ CACHE_BACKEND: 'memory,redis' })
    const onlyBackends = (name: string) =>
      name === '@cache/multi-level' ? undefined : { memoryBackend: fakeFactory, redisBackend: fakeFactory }
    expect(() => createBackendFromConfig(chain, onlyBackends)).toThrow(
      'install @cache/multi-level to use "memory,redis"',
    )
  })

  it('passes the settings to each package factory', () => {
    const calls: unknown[][] = []
    const record =
      (name: string) =>
      (...args: unknown[]) => {
        calls.push([name, ...args])
        return fakeFactory()
      }
    const loader = () => ({
      memoryBackend: record('memory'),
      diskBackend: record('disk'),
      redisBackend: record('redis'),
      memcachedBackend: record('memcached'),
      multiLevel: record('multi'),
    })
    const config = configFromEnv({
      CACHE_BACKEND: 'memory,disk,redis',
      CACHE_NAMESPACE: 'app',
      CACHE_DEFAULT_TTL: '1m',
      CACHE_MAX_KEYS: '7',
      CACHE_DISK_PATH: '/d',
    })
    createBackendFromConfig(config, loader)
    expect(calls[0]).toEqual(['memory', { namespace: 'app', defaultTtl: '1m', maxKeys: 7 }])
    expect(calls[1]).toEqual([
      'disk',
      { namespace: 'app', defaultTtl: '1m', path: '/d', maxSize: 10 * 1024 ** 3 },
    ])
    expect(calls[2]).toEqual(['redis', 'redis://127.0.0.1:6379', { namespace: 'app', defaultTtl: '1m' }])
    expect(calls[3]?.[0]).toBe('multi')
    expect(calls[3]).toHaveLength(4)
  })
})

describe('configureCache', () => {
  it('takes a backend instance, and getBackend returns it', async () => {
    const configured = configureCache(fakeFactory())
    expect(getBackend()).toBe(configured)
    expect(await configured.add('k', 1)).toBe(true)
    expect(await getBackend().get('k')).toBe(1)
    await resetCache()
  })

  it('completes a minimal backend', async () => {
    const map = new Map<string, unknown>()
    const backend = configureCache({
      get: async (k: string) => map.get(k) as never,
      set: async (k: string, v: unknown) => void map.set(k, v),
      delete: async (k: string) => map.delete(k),
      clear: async () => map.clear(),
    })
    expect(typeof backend.incr).toBe('function')
    expect(await backend.incr('n')).toBe(1)
    await resetCache()
  })

  it('rejects an unknown backend name, naming where it came from', () => {
    expect(() => configureCache('memory,mongo')).toThrow('configureCache: unknown backend "mongo"')
    expect(() => configureCache({ backend: 'nope' })).toThrow(/^backend: unknown backend/)
  })
})

function fakeFactory() {
  const map = new Map<string, unknown>()
  return {
    name: 'fake',
    get: async (k: string) => map.get(k) as never,
    set: async (k: string, v: unknown) => void map.set(k, v),
    delete: async (k: string) => map.delete(k),
    clear: async () => map.clear(),
  } as never
}

describe('errors from a backend package', () => {
  it('name the environment variable that held the bad option', () => {
    const loader = () => ({
      diskBackend: () => {
        throw new CacheConfigError('path', 'cannot open a disk cache at /sys/x')
      },
      memoryBackend: fakeFactory,
      multiLevel: fakeFactory,
    })
    const config = configFromEnv({ CACHE_BACKEND: 'memory,disk', CACHE_DISK_PATH: '/sys/x' })
    expect(() => createBackendFromConfig(config, loader)).toThrow(
      'CACHE_DISK_PATH: cannot open a disk cache at /sys/x',
    )
    const error = (() => {
      try {
        createBackendFromConfig(config, loader)
      } catch (e) {
        return e as CacheConfigError
      }
    })()
    expect(error?.setting).toBe('CACHE_DISK_PATH')
    expect((error!.cause as CacheConfigError).setting).toBe('path')
  })
})
