import type { CacheBackend } from './backend.js'
import { type MinimalBackend, isMinimalBackend, toBackend } from './define-backend.js'
import {
  type CacheConfig,
  configFromEnv,
  createBackendFromConfig,
  loadInstalledPackage,
  type PackageLoader,
  parseBackendList,
} from './config.js'
import { type Duration, ttlToMs } from './durations.js'
import { CacheConfigError, CacheMissingPackageError } from './errors.js'
import { type CacheLogger, setCacheLogger } from './logger.js'
import {
  type OptionNames,
  isOptionsObject,
  notAnOptionsObject,
  optionNames,
  readOptions,
} from './option-checks.js'

/**
 * The default cache, one per process: held on `globalThis`, so that every copy of this package an
 * application loads (its ESM and CommonJS builds side by side, two installed versions) configures
 * and uses the same one. `implicit`: it was built from the environment by @cache itself (not given
 * to configureCache), and is ours to close.
 */
interface DefaultCache {
  current: CacheBackend | undefined
  implicit: boolean
}
const DEFAULT_CACHE = Symbol.for('@cache/core:default-cache@1')
const state = ((globalThis as Record<symbol, unknown>)[DEFAULT_CACHE] ??= {
  current: undefined,
  implicit: false,
} satisfies DefaultCache) as DefaultCache

/** What {@link configureCache} accepts besides a backend or a backend list. */
export interface ConfigureOptions extends Partial<Omit<CacheConfig, 'backends'>> {
  /** A backend instance, or a list of backend names: `'memory,disk,redis'`. */
  backend?: CacheBackend | MinimalBackend | string
  /** How backend packages are loaded. Default: `require` from the working directory. */
  loader?: PackageLoader
  /**
   * Where @cache reports trouble in this whole process (a server unreachable and back, a level
   * skipped, a TTL that looks like milliseconds): any object with `warn` and `error` (pino,
   * winston), or `false`. Sets the process-wide logger (see `setCacheLogger`). Default: `console`.
   */
  logger?: CacheLogger | false
}

/** Every name of {@link ConfigureOptions}, for `configureCache()` and the options that pass through to it. */
export const CONFIGURE_OPTION_NAMES: OptionNames<ConfigureOptions> = {
  backend: true,
  loader: true,
  logger: true,
  maxKeys: true,
  maxSize: true,
  diskPath: true,
  diskMaxSize: true,
  redisUrl: true,
  memcachedServers: true,
  defaultTtl: true,
  namespace: true,
}
const KNOWN_CONFIGURE_OPTIONS = optionNames<ConfigureOptions>(CONFIGURE_OPTION_NAMES)
/** `backends` (the name in `CacheConfig`) given to `configureCache()`. */
export const CONFIGURE_OPTION_HINTS = { backends: '; did you mean `backend`?' }

/**
 * Sets the default cache used by the `cache` decorator, `cached()` and the `cache*` functions.
 *
 * - a backend instance: `configureCache(multiLevel(memoryBackend(), redisBackend(url)))`
 * - a list of names: `configureCache('memory,disk,redis')`, loading the installed packages and
 *   reading their settings from the environment (`REDIS_URL`, `CACHE_DISK_PATH`, …)
 * - options: `configureCache({ backend: 'memory,redis', redisUrl, namespace: 'app' })`
 * - nothing: build from `CACHE_BACKEND` and friends (default `memory`)
 *
 * A backend built from names or the environment gets a default TTL of 300 s
 * (`CACHE_DEFAULT_TTL`; `'none'`/`defaultTtl: null` for no expiry); a backend instance keeps its
 * own. The previous default backend is not closed when it was given to this function (it may be
 * in use elsewhere); one that @cache built from the environment because nothing was configured
 * yet is closed.
 */
export function configureCache(
  input?: CacheBackend | MinimalBackend | string | ConfigureOptions,
): CacheBackend {
  if (input !== undefined && typeof input !== 'string' && !isOptionsObject(input))
    throw notAnOptionsObject(input, 'configureCache()')
  let given = input
  if (isOptions(given)) {
    given = readOptions(given, KNOWN_CONFIGURE_OPTIONS, 'configureCache()', CONFIGURE_OPTION_HINTS)
    if (given.backend !== undefined && typeof given.backend !== 'string') assertNoBuildOptions(given)
    if (given.logger !== undefined) setCacheLogger(given.logger)
  }
  const next = build(given)
  const previous = state.implicit ? state.current : undefined
  state.current = next
  state.implicit = false
  if (previous !== undefined && previous !== next) previous.close().catch(() => {})
  return next
}

/**
 * A backend instance is used as it is: the options that say how @cache builds a backend
 * (`namespace`, `defaultTtl`, `redisUrl`, `maxKeys`…) would be dropped in silence beside it,
 * the instance writing under its own namespace with its own TTL.
 */
function assertNoBuildOptions(options: ConfigureOptions): void {
  for (const name in options) {
    if (name === 'backend' || name === 'logger') continue
    throw new CacheConfigError(
      name,
      `configureCache() applies it only when it builds the backend from names (\`backend: 'memory,redis'\`); beside a backend instance it would be ignored: give it to the factory that builds the instance instead (memoryBackend({ … }), redisBackend(url, { … }))`,
    )
  }
}

function isOptions(input: unknown): input is ConfigureOptions {
  return typeof input === 'object' && input !== null && !isMinimalBackend(input)
}

function build(input: CacheBackend | MinimalBackend | string | ConfigureOptions | undefined): CacheBackend {
  if (input === undefined) return createBackendFromConfig(configFromEnv())
  if (typeof input === 'string') {
    return createBackendFromConfig(
      { ...configFromEnv(), backends: parseBackendList(input, 'configureCache') },
      loadInstalledPackage,
      'configureCache',
    )
  }
  if (isMinimalBackend(input)) return toBackend(input)
  const { backend, loader = loadInstalledPackage, logger: _, ...overrides } = input
  if (backend !== undefined && typeof backend !== 'string') return toBackend(backend)
  const env = configFromEnv()
  const defined = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined))
  const backends = typeof backend === 'string' ? parseBackendList(backend, 'backend') : env.backends
  return createBackendFromConfig(
    { ...env, ...defined, backends },
    loader,
    typeof backend === 'string' ? 'backend' : 'CACHE_BACKEND',
  )
}

/** The default cache; built from the environment on first use if {@link configureCache} was not called. */
export function getBackend(): CacheBackend {
  if (state.current === undefined) {
    state.current = build(undefined)
    state.implicit = true
  }
  return state.current
}

/**
 * Builds the default cache from the environment now, unless it is configured already: called
 * where something that will use it is defined (a memoized function, a response cache without
 * `backend`), so that a bad `CACHE_*` variable stops the application while it starts, naming the
 * variable, instead of failing its requests, and a server that cannot be reached is reported at
 * start-up. A later {@link configureCache} replaces (and closes) what this built.
 *
 * With no `CACHE_BACKEND` and no `@cache/memory` installed there is nothing to build: the
 * application configures its cache in code, later.
 */
export function prepareDefaultCache(): void {
  if (state.current !== undefined) return
  try {
    getBackend()
  } catch (error) {
    if (error instanceof CacheMissingPackageError && !process.env.CACHE_BACKEND?.trim()) return
    throw error
  }
}

/** Closes the default cache and forgets it; the next use builds a new one. */
export async function resetCache(): Promise<void> {
  const previous = state.current
  state.current = undefined
  state.implicit = false
  await previous?.close()
}

/** `get` on the default cache. */
export function cacheGet<T = unknown>(key: string): Promise<T | undefined> {
  return getBackend().get<T>(key)
}

/** `set` on the default cache. `ttl` in seconds or a duration string. */
export function cacheSet(key: string, value: unknown, ttl?: Duration, ...extra: never[]): Promise<void> {
  refuseExtra('cacheSet(key, value, ttl)', extra)
  checkTtl(ttl)
  return getBackend().set(key, value, ttl)
}

/** `delete` on the default cache. */
export function cacheDelete(key: string): Promise<boolean> {
  return getBackend().delete(key)
}

/** `clear` on the default cache: its namespace only, never a whole shared server. */
export function cacheFlush(): Promise<void> {
  return getBackend().clear()
}

/** `incr` on the default cache: atomic across every process sharing it. */
export function cacheIncr(key: string, by?: number, ttl?: Duration, ...extra: never[]): Promise<number> {
  refuseExtra('cacheIncr(key, by, ttl)', extra)
  checkTtl(ttl)
  return getBackend().incr(key, by, ttl)
}

/** `atomicUpdate` on the default cache. `fn` may run more than once: keep it free of side effects. */
export function cacheAtomicUpdate<T>(
  key: string,
  fn: (current: T | undefined) => T | Promise<T>,
  ttl?: Duration,
  ...extra: never[]
): Promise<T> {
  refuseExtra('cacheAtomicUpdate(key, fn, ttl)', extra)
  checkTtl(ttl)
  return getBackend().atomicUpdate<T>(key, fn, ttl)
}

/**
 * Throws for arguments past the TTL: a fourth one (`{ tags }`) would be dropped, and the entry
 * would outlive an invalidateTags().
 */
function refuseExtra(signature: string, extra: readonly unknown[]): void {
  if (extra.length > 0)
    throw new TypeError(
      `${signature} takes 3 arguments, got ${3 + extra.length}: an entry with tags is written by getOrSet(backend, key, fn, { tags }) or a function memoized with cached(fn, { tags })`,
    )
}

/** A TTL given by the caller: one that looks like milliseconds is warned about (see `parseDuration`). */
function checkTtl(ttl: Duration | undefined): void {
  if (typeof ttl === 'number' && ttl >= 1000) ttlToMs(ttl, 'ttl')
}
