import {
  type BaseBackendOptions,
  type CodecOptions,
  assertNamespace,
  parseSize,
  type Size,
  ttlToMs,
} from '@cache/core'
import { resolve } from 'node:path'
import { defaultCachePath } from './paths.js'

/** Options of {@link diskBackend}. Durations in ms are named `…Ms`; TTLs are seconds or strings. */
export interface DiskBackendOptions extends BaseBackendOptions, CodecOptions {
  /**
   * Directory of the cache, created private (0700) if missing. Several processes (and several
   * namespaces) may share it. Must be on a local filesystem. Default: `CACHE_DISK_PATH`, else
   * `~/.cache/<app>` (`$XDG_CACHE_HOME/<app>` when set), `<app>` being the nearest package.json name.
   */
  path?: string
  /**
   * Byte limit of the whole directory (every namespace): value bytes plus key lengths. Past it the
   * least recently used entries are evicted, expired ones first. Default: `CACHE_DISK_MAX_SIZE`, else `'10GB'`.
   */
  maxSize?: Size
  /** Values up to this many bytes (after serialization) live in the database; larger ones in files. Default: `'32KB'`. */
  inlineThreshold?: Size
  /**
   * How long one SQLite call may wait, blocking the event loop, for another process's write lock
   * before the backend yields and retries asynchronously. Default: 10 ms.
   */
  busyTimeoutMs?: number
  /** Total time an operation waits for the write lock before failing with `CacheTimeoutError`. Default: 2000 ms. */
  lockTimeoutMs?: number
  /**
   * A read records its access time (for LRU eviction) only when the stored one is older than this,
   * so reads rarely write. Default: 60 000 ms.
   */
  accessResolutionMs?: number
  /** How often expired entries are deleted in the background (an unref'd timer); `false` to never. Default: 60 000 ms. */
  pruneIntervalMs?: number | false
  /** `atomicUpdate` attempts before `CacheConflictError` when other processes keep writing the key. Default: 100. */
  maxAttempts?: number
  /** Clock in epoch ms, for tests. Default: `Date.now`. */
  now?: () => number
}

/** The options, checked and with defaults applied. */
export interface DiskSettings {
  path: string
  defaultTtlMs: number | undefined
  maxSize: number
  inlineThreshold: number
  busyTimeoutMs: number
  lockTimeoutMs: number
  accessResolutionMs: number
  pruneIntervalMs: number | false
  maxAttempts: number
  now: () => number
}

/** Checks every option (a bad one throws a `RangeError` naming it) and applies the defaults. */
export function resolveOptions(options: DiskBackendOptions): DiskSettings {
  if (options.namespace !== undefined) assertNamespace(options.namespace)
  const envMax = process.env.CACHE_DISK_MAX_SIZE?.trim()
  const maxSize =
    options.maxSize !== undefined
      ? parseSize(options.maxSize, 'maxSize')
      : parseSize(envMax || '10GB', envMax ? 'CACHE_DISK_MAX_SIZE' : 'maxSize')
  return {
    path: resolve(options.path ?? defaultCachePath()),
    defaultTtlMs: ttlToMs(options.defaultTtl, 'defaultTtl'),
    maxSize,
    inlineThreshold: parseSize(options.inlineThreshold ?? '32KB', 'inlineThreshold'),
    busyTimeoutMs: wholeNumber(options.busyTimeoutMs, 10, 'busyTimeoutMs'),
    lockTimeoutMs: wholeNumber(options.lockTimeoutMs, 2000, 'lockTimeoutMs'),
    accessResolutionMs: wholeNumber(options.accessResolutionMs, 60_000, 'accessResolutionMs'),
    pruneIntervalMs:
      options.pruneIntervalMs === false
        ? false
        : Math.max(1, wholeNumber(options.pruneIntervalMs, 60_000, 'pruneIntervalMs')),
    maxAttempts: Math.max(1, wholeNumber(options.maxAttempts, 100, 'maxAttempts', 'attempts')),
    now: options.now ?? Date.now,
  }
}

function wholeNumber(
  value: number | undefined,
  fallback: number,
  what: string,
  unit = 'milliseconds',
): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${what}: ${String(value)} is not a whole number of ${unit} >= 0`)
  }
  return value
}
