import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import {
  type CacheBackend,
  CacheConfigError,
  cached,
  CacheMissingPackageError,
  configFromEnv,
  configureCache,
  createBackendFromConfig,
  getBackend,
  resetCache,
} from '@cache/core'
import { loadInstalledPackage, type PackageLoader } from '@cache/core/backend'
import { redisBackend } from '@cache/redis'
import { type MemcachedServer, type RedisServer, startMemcached, startRedis } from '@cache/test-servers'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'

/** A chain built by config is the installed (CJS) build: look at it through its public shape. */
interface Chain extends CacheBackend {
  levels: { name: string; backend: CacheBackend & { namespace?: string; path?: string } }[]
}

const VARS = [
  'CACHE_BACKEND',
  'CACHE_MAX_KEYS',
  'CACHE_MAX_SIZE',
  'CACHE_DISK_PATH',
  'CACHE_DISK_MAX_SIZE',
  'REDIS_URL',
  'MEMCACHED_SERVERS',
  'CACHE_DEFAULT_TTL',
  'CACHE_NAMESPACE',
]
const saved = Object.fromEntries(VARS.map((name) => [name, process.env[name]]))
let redis: RedisServer
let memcached: MemcachedServer
let dir: string
const opened: CacheBackend[] = []

beforeAll(async () => {
  ;[redis, memcached] = await Promise.all([startRedis(), startMemcached()])
  dir = mkdtempSync(join(tmpdir(), 'cache-config-'))
})
afterEach(async () => {
  for (const name of VARS) {
    if (saved[name] === undefined) delete process.env[name]
    else process.env[name] = saved[name]
  }
  await Promise.allSettled(opened.splice(0).map((backend) => backend.close()))
  await resetCache()
})
afterAll(async () => {
  await Promise.all([redis?.stop(), memcached?.stop()])
  rmSync(dir, { recursive: true, force: true })
})

function setEnv(vars: Record<string, string>) {
  for (const name of VARS) delete process.env[name]
  Object.assign(process.env, vars)
}

function track<T extends CacheBackend>(backend: T): T {
  opened.push(backend)
  return backend
}

describe('configureCache("memory,disk,redis") with the installed packages', () => {
  it('builds the chain with the settings of the environment', async () => {
    const namespace = `cfg${Date.now()}`
    setEnv({
      CACHE_MAX_KEYS: '3',
      CACHE_DISK_PATH: join(dir, 'disk-a'),
      CACHE_DISK_MAX_SIZE: '64KB',
      REDIS_URL: redis.url,
      CACHE_DEFAULT_TTL: '90',
      CACHE_NAMESPACE: namespace,
    })
    const chain = track(configureCache('memory,disk,redis')) as Chain
    expect(chain.name).toBe('multi-level')
    expect(chain.levels.map((level) => level.name)).toEqual(['memory', 'disk', 'redis'])
    expect(chain.levels.map((level) => level.backend.namespace)).toEqual([namespace, namespace, namespace])

    await chain.set('k', { n: 1 })
    // CACHE_DEFAULT_TTL reaches every level.
    const entry = await chain.getEntry('k')
    expect(entry!.expiresAt).toBeGreaterThan(Date.now() + 80_000)
    expect(entry!.expiresAt).toBeLessThanOrEqual(Date.now() + 90_000)
    // CACHE_DISK_PATH holds the disk level.
    expect(chain.levels[1]!.backend.path).toBe(join(dir, 'disk-a'))
    expect(readdirSync(join(dir, 'disk-a')).length).toBeGreaterThan(0)
    // REDIS_URL and CACHE_NAMESPACE: another process's client in that namespace sees the key.
    const other = redisBackend(redis.url, { namespace })
    expect(await other.get('k')).toEqual({ n: 1 })
    expect((await other.getEntry('k'))!.expiresAt).toBeGreaterThan(Date.now() + 80_000)
    await other.close()
    // CACHE_MAX_KEYS bounds the memory level.
    const memory = chain.levels[0]!.backend as CacheBackend & { size: number }
    for (let i = 0; i < 10; i++) await chain.set(`n${i}`, i)
    expect(memory.size).toBeLessThanOrEqual(3)
    expect(await chain.get('n0')).toBe(0) // evicted from L1, served by L2
  })

  it('bounds the disk level by CACHE_DISK_MAX_SIZE', async () => {
    setEnv({ CACHE_DISK_PATH: join(dir, 'disk-b'), CACHE_DISK_MAX_SIZE: '64KB', REDIS_URL: redis.url })
    const chain = track(configureCache('memory,disk,redis')) as Chain
    const disk = chain.levels[1]!.backend as CacheBackend & { usage(): Promise<{ bytes: number }> }
    for (let i = 0; i < 40; i++) await chain.set(`big${i}`, 'x'.repeat(8 * 1024))
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect((await disk.usage()).bytes).toBeLessThanOrEqual(64 * 1024 + 8 * 1024)
  })

  it('limits a memory-size level by CACHE_MAX_SIZE', async () => {
    setEnv({ CACHE_MAX_SIZE: '1KB', REDIS_URL: redis.url, CACHE_NAMESPACE: `size${Date.now()}` })
    const chain = track(configureCache('memory-size,redis')) as Chain
    const big = 'y'.repeat(4096)
    await chain.set('big', big)
    expect(await chain.levels[0]!.backend.has('big')).toBe(false) // over the limit for L1 …
    expect(await chain.get('big')).toBe(big) // … kept by Redis
    await chain.set('small', 'ok')
    expect(await chain.levels[0]!.backend.has('small')).toBe(true)
  })

  it('passes MEMCACHED_SERVERS to the memcached level', async () => {
    // @cache/memcached is not a dependency of this package: load its build from the workspace.
    const fromWorkspace = createRequire(import.meta.url)
    const loader: PackageLoader = (name) =>
      name === '@cache/memcached'
        ? fromWorkspace(join(__dirname, '../../memcached/dist/index.cjs'))
        : loadInstalledPackage(name)
    setEnv({ MEMCACHED_SERVERS: memcached.server, CACHE_NAMESPACE: `mc${Date.now()}` })
    const chain = track(configureCache({ backend: 'memory,memcached', loader })) as Chain
    expect(chain.levels.map((level) => level.name)).toEqual(['memory', 'memcached'])
    await chain.set('k', 'via memcached')
    await chain.levels[0]!.backend.clear()
    expect(await chain.get('k')).toBe('via memcached')
  })
})

describe('CACHE_BACKEND=memory,disk,redis through configFromEnv and createBackendFromConfig', () => {
  it('builds the same chain from the environment alone', async () => {
    const namespace = `env${Date.now()}`
    const config = configFromEnv({
      CACHE_BACKEND: 'memory,disk,redis',
      CACHE_DISK_PATH: join(dir, 'disk-c'),
      REDIS_URL: redis.url,
      CACHE_NAMESPACE: namespace,
      CACHE_DEFAULT_TTL: '5m',
    })
    expect(config.backends).toEqual(['memory', 'disk', 'redis'])
    const chain = track(createBackendFromConfig(config)) as Chain
    expect(chain.levels.map((level) => level.name)).toEqual(['memory', 'disk', 'redis'])
    await chain.set('k', 1)
    expect((await chain.getEntry('k'))!.expiresAt).toBeGreaterThan(Date.now() + 4 * 60_000)
    expect(existsSync(join(dir, 'disk-c'))).toBe(true)
  })

  it('is what configureCache() builds when given nothing', async () => {
    setEnv({ CACHE_BACKEND: 'memory,redis', REDIS_URL: redis.url })
    const chain = track(configureCache()) as Chain
    expect(chain.levels.map((level) => level.name)).toEqual(['memory', 'redis'])
  })

  it('names the variable when a value is bad', () => {
    expect(() => configFromEnv({ CACHE_BACKEND: 'memory,tape' })).toThrow(/CACHE_BACKEND/)
    expect(() => configFromEnv({ REDIS_URL: 'http://x' })).toThrow(CacheConfigError)
    expect(() => configFromEnv({ MEMCACHED_SERVERS: 'nohost' })).toThrow(/MEMCACHED_SERVERS/)
    expect(() => configFromEnv({ CACHE_DISK_MAX_SIZE: 'lots' })).toThrow(/CACHE_DISK_MAX_SIZE/)
  })
})

describe('CACHE_BACKEND=memory,disk and a sync memoized function', () => {
  it('refuses the function with CacheConfigError instead of turning its number into a promise', async () => {
    setEnv({ CACHE_BACKEND: 'memory,disk', CACHE_DISK_PATH: join(dir, 'disk-sync') })
    let runs = 0
    const square = cached(function square(n: number): number {
      runs++
      return n * n
    })
    // The chain has no sync access. The first call's lookup is under way before the function
    // shows it is sync: that one call returns a promise, which rejects with the error...
    const first: unknown = square(4)
    expect(first).toBeInstanceOf(Promise)
    await expect(first).rejects.toThrow(/square\d*\(\) is a sync function.*"multi-level".*async/s)
    // ...and every later call throws at once instead of giving "[object Promise]1".
    expect(() => square(4) + 1).toThrow(CacheConfigError)
    expect(() => square(5) + 1).toThrow(CacheConfigError)
    expect(runs).toBe(1)
    const chain = getBackend() as Chain
    expect(chain.sync).toBeUndefined()
    expect(await chain.has(square.keyFor(4))).toBe(false)
  })
})

describe('a backend package that is not installed', () => {
  it('fails with install @cache/… to use "…" (loader option)', () => {
    const loader: PackageLoader = (name) => (name === '@cache/redis' ? undefined : loadInstalledPackage(name))
    setEnv({ CACHE_DISK_PATH: join(dir, 'disk-d') })
    const error = (() => {
      try {
        configureCache({ backend: 'memory,disk,redis', loader })
      } catch (e) {
        return e
      }
    })()
    expect(error).toBeInstanceOf(CacheMissingPackageError)
    expect((error as Error).message).toBe('backend: install @cache/redis to use "redis"')
  })

  it('fails with the message when the working directory lacks the package', () => {
    // A fresh process (pnpm's NODE_PATH, which reaches every workspace package, removed) whose
    // working directory has @cache/memory and @cache/multi-level but not @cache/memcached (the
    // nestjs package's), then one with neither.
    const core = pathToFileURL(join(__dirname, '../../core/dist/index.js')).href
    const script = `import(${JSON.stringify(core)}).then((core) => {
      try { core.configureCache(process.argv[1]); console.log('built') } catch (e) { console.log(e.message) }
    })`
    const run = (cwd: string, backends: string) => {
      const { NODE_PATH: _, ...env } = process.env
      return execFileSync(process.execPath, ['-e', script, backends], { cwd, env }).toString().trim()
    }
    const withoutMemcached = join(__dirname, '../../nestjs')
    expect(run(withoutMemcached, 'memory,memcached')).toBe(
      'configureCache: install @cache/memcached to use "memcached"',
    )
    expect(run(dir, 'memory')).toBe('configureCache: install @cache/memory to use "memory"')
    expect(run(withoutMemcached, 'memory')).toBe('built')
  })

  it('names @cache/multi-level when the chain package itself is missing', () => {
    const loader: PackageLoader = (name) =>
      name === '@cache/multi-level' ? undefined : loadInstalledPackage(name)
    setEnv({ REDIS_URL: redis.url })
    expect(() => configureCache({ backend: 'memory,redis', loader })).toThrow(
      'install @cache/multi-level to use "memory,redis"',
    )
  })
})
