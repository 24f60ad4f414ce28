import { createRequire } from 'node:module'
import { isAbsolute, join } from 'node:path'
import type { CacheBackend } from './backend.js'
import { type Duration, parseDuration } from './durations.js'
import { CacheConfigError, CacheMissingPackageError } from './errors.js'
import type { CacheLogger } from './logger.js'
import { parseSize, type Size } from './sizes.js'

/** Options every @cache backend accepts. */
export interface BaseBackendOptions {
  /**
   * Isolates this backend's keys from other applications sharing the store; `clear()` removes
   * only this namespace. Default: none (memory, disk) or as documented by the backend.
   */
  namespace?: string
  /**
   * TTL used when `set` is called without one. Seconds or a duration string; `null` (or leaving it
   * out) for none. Default: none, except on the default cache built from names or the
   * environment, where it is `CACHE_DEFAULT_TTL`, 300 s unless set.
   */
  defaultTtl?: Duration | null
  /**
   * Where this backend reports trouble (a server unreachable, back again): `console` by default
   * (the process-wide logger, see `setCacheLogger`), any object with `warn` and `error`, or
   * `false`. Default: the process-wide logger.
   */
  logger?: CacheLogger | false
}

/** The backend names understood by {@link configureCache} and `CACHE_BACKEND`. */
export const BACKEND_NAMES = ['memory', 'memory-size', 'disk', 'redis', 'memcached'] as const
export type BackendName = (typeof BACKEND_NAMES)[number]

/** Settings that build backends by name: what `CACHE_*` environment variables hold. */
export interface CacheConfig {
  /** One backend name or several (multi-level, fastest first). Default: `['memory']`. */
  backends: BackendName[]
  /** `memory`: LRU limit by count. Default: 10000. */
  maxKeys: number
  /** `memory-size`: limit in bytes. Default: `'1GB'`. */
  maxSize: number
  /** `disk`: directory. Default: chosen by @cache/disk (`~/.cache/<app>`). */
  diskPath?: string
  /** `disk`: limit in bytes. Default: `'10GB'`. */
  diskMaxSize: number
  /** `redis`: connection URL. Default: `redis://127.0.0.1:6379`. */
  redisUrl: string
  /** `memcached`: `host:port,host:port`. Default: `127.0.0.1:11211`. */
  memcachedServers: string
  /**
   * TTL of entries written without one: `CACHE_DEFAULT_TTL`, 300 s unless set; `null` for none
   * (`CACHE_DEFAULT_TTL=none`).
   */
  defaultTtl?: Duration | null
  namespace?: string
}

/** Environment variables read by {@link configFromEnv}, with their defaults. */
export const ENV_DEFAULTS = {
  CACHE_BACKEND: 'memory',
  CACHE_MAX_KEYS: '10000',
  CACHE_MAX_SIZE: '1GB',
  CACHE_DISK_MAX_SIZE: '10GB',
  REDIS_URL: 'redis://127.0.0.1:6379',
  MEMCACHED_SERVERS: '127.0.0.1:11211',
  CACHE_DEFAULT_TTL: '300',
} as const

const REDIS_URL = /^(redis|rediss)(\+sentinel|\+cluster)?:\/\/[^\s]+$/
const SERVER = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+):(\d{1,5})$/i

/**
 * Parses a `CACHE_BACKEND`-style list: `'memory,disk,redis'`. Errors name `setting`. An empty name
 * (`memory,,redis`, `memory,`) is refused rather than skipped: it is a typo or a variable that was
 * not filled in, and the list around it is not what was meant. So is an order whose last (shared)
 * level is in-process: see {@link assertLevelOrder}.
 */
export function parseBackendList(value: string, setting = 'CACHE_BACKEND'): BackendName[] {
  if (value.trim() === '') throw new CacheConfigError(setting, `no backend named in ${JSON.stringify(value)}`)
  const names = value.split(',').map((part) => part.trim().toLowerCase())
  const empty = names.indexOf('')
  if (empty !== -1)
    throw new CacheConfigError(
      setting,
      `name ${empty + 1} of ${JSON.stringify(value)} is empty (expected a comma list of ${BACKEND_NAMES.join(', ')}, fastest first, such as "memory,redis")`,
    )
  for (const name of names) {
    if (!(BACKEND_NAMES as readonly string[]).includes(name)) {
      throw new CacheConfigError(
        setting,
        `unknown backend ${JSON.stringify(name)} (expected a comma list of ${BACKEND_NAMES.join(', ')})`,
      )
    }
  }
  if (new Set(names).size !== names.length)
    throw new CacheConfigError(setting, `a backend is named twice in ${JSON.stringify(value)}`)
  assertLevelOrder(names as BackendName[], setting)
  return names as BackendName[]
}

/** Backends whose entries live in this process only. */
const IN_PROCESS: readonly BackendName[] = ['memory', 'memory-size']

/**
 * The last level of a chain is its shared level: invalidation state, `incr` and `atomicUpdate`
 * live there, for every process. A per-process level in that place (`redis,memory`) would let
 * one process miss another's invalidation and count apart, and one after a shared level
 * (`redis,memory,disk`) is read only after the shared level answered: in-process levels come
 * first. Errors name `setting`.
 */
export function assertLevelOrder(names: readonly BackendName[], setting = 'CACHE_BACKEND'): void {
  if (names.length < 2) return
  const inProcess = names.filter((name) => IN_PROCESS.includes(name))
  const shared = names.filter((name) => !IN_PROCESS.includes(name))
  const firstShared = names.findIndex((name) => !IN_PROCESS.includes(name))
  const misplaced = names.findIndex(
    (name, i) => IN_PROCESS.includes(name) && firstShared !== -1 && i > firstShared,
  )
  const list = JSON.stringify(names.join(','))
  // The order that works: this process's levels, then this machine's (disk), then the servers.
  const working = [
    ...inProcess,
    ...shared.filter((name) => name === 'disk'),
    ...shared.filter((name) => name !== 'disk'),
  ]
  // Disk is this machine's only: behind redis or memcached (shared by other machines), processes
  // on two machines would count, lock and invalidate apart.
  const lastServer = Math.max(names.lastIndexOf('redis'), names.lastIndexOf('memcached'))
  if (misplaced === -1 && lastServer !== -1 && names[names.length - 1] === 'disk')
    throw new CacheConfigError(
      setting,
      `${list}: "disk" is seen by this machine's processes only, and is last behind ${names[lastServer] === 'redis' ? '"redis"' : '"memcached"'}, which other machines share: the last level is where invalidations and counters live for every process, so processes on two machines would count apart. Write "${working.join(',')}"`,
    )
  if (shared.length > 0 && misplaced === -1) return
  const why =
    'the last level of a list is the shared one, where invalidations and counters live for every process, ' +
    `and ${inProcess.map((name) => `"${name}"`).join(' and ')} keep${inProcess.length === 1 ? 's' : ''} entries in this process only: ` +
    'in-process levels (memory, memory-size) come first, shared ones (disk, redis, memcached) last'
  const fix =
    shared.length === 0
      ? `; name one of them alone, or add a shared level after them ("${inProcess[0]},redis")`
      : `: write "${working.join(',')}"`
  throw new CacheConfigError(setting, `${list}: ${why}${fix}`)
}

/** Checks a `host:port,host:port` list. Errors name `setting`. */
export function parseServerList(value: string, setting = 'MEMCACHED_SERVERS'): string[] {
  const servers = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  if (servers.length === 0) throw new CacheConfigError(setting, 'expected host:port[,host:port…]')
  for (const server of servers) {
    const match = SERVER.exec(server)
    const port = match ? Number(match[2]) : 0
    if (!match || port < 1 || port > 65535) {
      throw new CacheConfigError(
        setting,
        `${JSON.stringify(server)} is not host:port (expected host:port[,host:port…])`,
      )
    }
  }
  return servers
}

/**
 * Reads and validates the `CACHE_*`, `REDIS_URL` and `MEMCACHED_SERVERS` variables. Every bad
 * value throws a {@link CacheConfigError} naming the variable, so a misconfigured app fails at
 * start-up instead of on its first request.
 */
export function configFromEnv(env: Record<string, string | undefined> = process.env): CacheConfig {
  const read = (name: keyof typeof ENV_DEFAULTS) => {
    const value = env[name]
    return value === undefined || value.trim() === '' ? ENV_DEFAULTS[name] : value.trim()
  }
  const named = <T>(name: string, parse: () => T): T => {
    try {
      return parse()
    } catch (error) {
      if (error instanceof CacheConfigError) throw error
      throw new CacheConfigError(name, (error as Error).message.replace(/^[A-Z_]+: /, ''), { cause: error })
    }
  }
  const maxKeysText = read('CACHE_MAX_KEYS')
  if (!/^\d+$/.test(maxKeysText) || Number(maxKeysText) < 1 || !Number.isSafeInteger(Number(maxKeysText))) {
    throw new CacheConfigError(
      'CACHE_MAX_KEYS',
      `${JSON.stringify(maxKeysText)} is not a positive whole number`,
    )
  }
  const redisUrl = read('REDIS_URL')
  if (!REDIS_URL.test(redisUrl)) {
    throw new CacheConfigError(
      'REDIS_URL',
      `${JSON.stringify(redisUrl)} is not a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL`,
    )
  }
  const memcachedServers = read('MEMCACHED_SERVERS')
  parseServerList(memcachedServers)
  const diskPath = env.CACHE_DISK_PATH?.trim()
  const namespace = env.CACHE_NAMESPACE?.trim()
  if (namespace !== undefined && namespace !== '' && /[\s\x00-\x1f]/.test(namespace)) {
    throw new CacheConfigError(
      'CACHE_NAMESPACE',
      `${JSON.stringify(namespace)} contains whitespace or control characters`,
    )
  }
  const ttlText = read('CACHE_DEFAULT_TTL')
  const defaultTtl =
    ttlText.toLowerCase() === 'none'
      ? null
      : named('CACHE_DEFAULT_TTL', () => durationFromText(ttlText, 'CACHE_DEFAULT_TTL'))
  return {
    backends: parseBackendList(read('CACHE_BACKEND')),
    maxKeys: Number(maxKeysText),
    maxSize: named('CACHE_MAX_SIZE', () => parseSize(read('CACHE_MAX_SIZE'), 'CACHE_MAX_SIZE')),
    diskPath: diskPath ? diskPath : undefined,
    diskMaxSize: named('CACHE_DISK_MAX_SIZE', () =>
      parseSize(read('CACHE_DISK_MAX_SIZE'), 'CACHE_DISK_MAX_SIZE'),
    ),
    redisUrl,
    memcachedServers,
    defaultTtl,
    namespace: namespace ? namespace : undefined,
  }
}

/** `'60'` is 60 seconds; `'5m'` is five minutes; `'none'` is read before. Validated, returned as given. */
function durationFromText(text: string, what: string): Duration {
  const value: Duration = /^\d+(\.\d+)?$/.test(text) ? Number(text) : text
  parseDuration(value, what)
  return value
}

/** Where each backend name comes from. */
const PACKAGES: Record<BackendName, string> = {
  memory: '@cache/memory',
  'memory-size': '@cache/memory',
  disk: '@cache/disk',
  redis: '@cache/redis',
  memcached: '@cache/memcached',
}

/**
 * Loads an installed @cache package by name, resolving from the application (the working
 * directory, then its entry script) first, then from @cache/core itself. A missing package gives
 * `install @cache/redis to use "redis"`.
 */
export type PackageLoader = (packageName: string) => Record<string, unknown> | undefined

export const loadInstalledPackage: PackageLoader = (packageName) => {
  // The application's own files (its entry script) find its dependencies even when it was started
  // from another directory.
  const entry = process.argv[1]
  const bases = [
    join(process.cwd(), 'package.json'),
    ...(entry && isAbsolute(entry) ? [entry] : []),
    import.meta.url,
  ]
  for (const base of bases) {
    try {
      return createRequire(base)(packageName) as Record<string, unknown>
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw error
      // A missing dependency *inside* the package is a real error, not "not installed".
      if (!String((error as Error).message).includes(`'${packageName}'`)) throw error
    }
  }
  return undefined
}

function load(
  packageName: string,
  backendName: string,
  exportName: string,
  loader: PackageLoader,
  setting: string,
): (...args: any[]) => CacheBackend {
  const module = loader(packageName)
  if (module === undefined) throw new CacheMissingPackageError(setting, backendName, packageName)
  const factory = module[exportName]
  if (typeof factory !== 'function')
    throw new CacheConfigError(setting, `${packageName} does not export ${exportName}()`)
  return factory as (...args: any[]) => CacheBackend
}

/**
 * Builds the backend (or multi-level chain) a {@link CacheConfig} describes, loading each
 * backend package by name.
 */
export function createBackendFromConfig(
  config: CacheConfig,
  loader: PackageLoader = loadInstalledPackage,
  setting = 'CACHE_BACKEND',
): CacheBackend {
  assertLevelOrder(config.backends, setting)
  const base: BaseBackendOptions = {}
  if (config.namespace !== undefined) base.namespace = config.namespace
  if (config.defaultTtl !== undefined && config.defaultTtl !== null) base.defaultTtl = config.defaultTtl
  const levels = config.backends.map((name) => withSettingNames(name, setting, () => createLevel(name)))
  if (levels.length === 1) return levels[0]!
  return load('@cache/multi-level', config.backends.join(','), 'multiLevel', loader, setting)(...levels)

  function createLevel(name: BackendName): CacheBackend {
    const packageName = PACKAGES[name]
    switch (name) {
      case 'memory':
        return load(packageName, name, 'memoryBackend', loader, setting)({ ...base, maxKeys: config.maxKeys })
      case 'memory-size':
        return load(packageName, name, 'memoryBackend', loader, setting)({ ...base, maxSize: config.maxSize })
      case 'disk':
        return load(
          packageName,
          name,
          'diskBackend',
          loader,
          setting,
        )({ ...base, path: config.diskPath, maxSize: config.diskMaxSize })
      case 'redis':
        return load(packageName, name, 'redisBackend', loader, setting)(config.redisUrl, base)
      case 'memcached':
        return load(packageName, name, 'memcachedBackend', loader, setting)(config.memcachedServers, base)
      default:
        throw new CacheConfigError(setting, `unknown backend ${JSON.stringify(name)}`)
    }
  }
}

/** The environment variable behind each backend option that {@link configFromEnv} fills in. */
const ENV_OF_OPTION: Record<string, Record<string, string>> = {
  memory: { maxKeys: 'CACHE_MAX_KEYS' },
  'memory-size': { maxSize: 'CACHE_MAX_SIZE' },
  disk: { path: 'CACHE_DISK_PATH', maxSize: 'CACHE_DISK_MAX_SIZE' },
  redis: { url: 'REDIS_URL' },
  memcached: { servers: 'MEMCACHED_SERVERS' },
}

/**
 * A backend that rejects an option while being built from configuration names the option
 * (`path: cannot open …`); say which configuration value that was (`CACHE_DISK_PATH`) instead.
 */
function withSettingNames(name: BackendName, setting: string, create: () => CacheBackend): CacheBackend {
  try {
    return create()
  } catch (error) {
    if (!(error instanceof CacheConfigError)) throw error
    const option = error.setting
    const fromEnv =
      ENV_OF_OPTION[name]?.[option] ??
      (option === 'namespace' ? 'CACHE_NAMESPACE' : option === 'defaultTtl' ? 'CACHE_DEFAULT_TTL' : undefined)
    // Options given in code (configureCache({ diskPath })) keep the option's own name.
    if (fromEnv === undefined || setting === 'backend') throw error
    throw new CacheConfigError(fromEnv, error.message.slice(option.length + 2), { cause: error })
  }
}

/** The default settings, overridden by `overrides`. */
export function defaultConfig(overrides: Partial<CacheConfig> = {}): CacheConfig {
  return { ...configFromEnv({}), ...overrides }
}

export type { Size }
