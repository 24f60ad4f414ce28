import { type Duration, parseSize, type Size } from '@cache/core'
import {
  type BaseBackendOptions,
  type CodecOptions,
  assertKnownOptions,
  assertNamespace,
  checkOption,
  countOption,
  durationOption,
  fromMilliseconds,
  optionNames,
  renamedOption,
  ttlOption,
} from '@cache/core/backend'
import { resolve } from 'node:path'
import { defaultCachePath } from './paths.js'

/**
 * Options of {@link diskBackend}. Every duration is a `Duration`: a number of **seconds**, or a
 * string with a unit (`'10ms'`, `'1 minute'`). A bad option throws `CacheConfigError` naming it.
 */
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
   * before the backend yields and retries asynchronously. Seconds, or `'10ms'`; `0` never blocks.
   * Default: `'10ms'`.
   */
  busyTimeout?: Duration
  /**
   * Total time an operation waits for the write lock before failing with `CacheTimeoutError`.
   * Seconds, or `'2s'`. Default: `'2s'`.
   */
  lockTimeout?: Duration
  /**
   * A read records its access time (for LRU eviction) only when the stored one is older than this,
   * so reads rarely write. Seconds, or `'1 minute'`; `0` records every read. Default: `'1m'`.
   */
  accessResolution?: Duration
  /**
   * How often expired entries are deleted in the background (an unref'd timer); `false` to never.
   * Seconds, or `'1 minute'`. Default: `'1m'`.
   */
  pruneInterval?: Duration | false
  /** @deprecated Use `busyTimeout` (seconds, or `'10ms'`); accepted until the next minor version. */
  busyTimeoutMs?: number
  /** @deprecated Use `lockTimeout` (seconds, or `'2s'`); accepted until the next minor version. */
  lockTimeoutMs?: number
  /** @deprecated Use `accessResolution` (seconds, or `'1m'`); accepted until the next minor version. */
  accessResolutionMs?: number
  /** @deprecated Use `pruneInterval` (seconds, `'1m'` or `false`); accepted until the next minor version. */
  pruneIntervalMs?: number | false
  /** `atomicUpdate` attempts before `CacheConflictError` when other processes keep writing the key. Default: 100. */
  maxAttempts?: number
  /** Clock in epoch ms, for tests. Default: `Date.now`. */
  now?: () => number
}

/** Every name of {@link DiskBackendOptions}: any other is refused, not dropped in silence. */
const OPTION_NAMES = optionNames<DiskBackendOptions>({
  namespace: true,
  defaultTtl: true,
  logger: true,
  serializer: true,
  compressThreshold: true,
  path: true,
  maxSize: true,
  inlineThreshold: true,
  busyTimeout: true,
  lockTimeout: true,
  accessResolution: true,
  pruneInterval: true,
  busyTimeoutMs: true,
  lockTimeoutMs: true,
  accessResolutionMs: true,
  pruneIntervalMs: true,
  maxAttempts: true,
  now: true,
})

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

/** Checks every option (a bad one throws a `CacheConfigError` naming it) and applies the defaults. */
export function resolveOptions(options: DiskBackendOptions): DiskSettings {
  assertKnownOptions(options, OPTION_NAMES, 'diskBackend()')
  if (options.namespace !== undefined) checkOption('namespace', () => assertNamespace(options.namespace))
  const envMax = process.env.CACHE_DISK_MAX_SIZE?.trim()
  const maxSize =
    options.maxSize !== undefined
      ? checkOption('maxSize', () => parseSize(options.maxSize as Size, 'maxSize'))
      : checkOption(envMax ? 'CACHE_DISK_MAX_SIZE' : 'maxSize', () =>
          parseSize(envMax || '10GB', envMax ? 'CACHE_DISK_MAX_SIZE' : 'maxSize'),
        )
  const pruneInterval = renamed(options, 'pruneInterval', 'pruneIntervalMs', { false: true })
  return {
    path: resolve(options.path ?? defaultCachePath()),
    defaultTtlMs: ttlOption(options.defaultTtl, 'defaultTtl'),
    maxSize,
    inlineThreshold: checkOption('inlineThreshold', () =>
      parseSize(options.inlineThreshold ?? '32KB', 'inlineThreshold'),
    ),
    busyTimeoutMs: durationOption(renamed(options, 'busyTimeout', 'busyTimeoutMs'), 'busyTimeout', '10ms', {
      zero: true,
    }),
    lockTimeoutMs: durationOption(renamed(options, 'lockTimeout', 'lockTimeoutMs'), 'lockTimeout', '2s', {
      zero: true,
    }),
    accessResolutionMs: durationOption(
      renamed(options, 'accessResolution', 'accessResolutionMs'),
      'accessResolution',
      '1m',
      { zero: true },
    ),
    pruneIntervalMs: pruneInterval === false ? false : durationOption(pruneInterval, 'pruneInterval', '1m'),
    maxAttempts: countOption(options.maxAttempts, 'maxAttempts', 100),
    now: options.now ?? Date.now,
  }
}

/** A duration option, or its deprecated `…Ms` name converted (warned about once). */
function renamed(
  options: DiskBackendOptions,
  name: 'busyTimeout' | 'lockTimeout' | 'accessResolution' | 'pruneInterval',
  oldName: `${typeof name}Ms`,
  allow: { zero?: boolean; false?: boolean } = { zero: true },
): Duration | false | undefined {
  return renamedOption<DiskBackendOptions, Duration | false>(
    options,
    name,
    oldName,
    fromMilliseconds(oldName, allow),
    " (a Duration: seconds, or e.g. '250ms')",
  )
}
