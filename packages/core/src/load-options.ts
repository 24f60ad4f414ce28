import { type Duration, parseDuration, ttlToMs } from './durations.js'
import { CacheConfigError } from './errors.js'
import {
  type OptionNames,
  assertKnownOptions,
  booleanOption,
  checkOption,
  isOptionsObject,
  optionNames,
} from './option-checks.js'
import { describeGiven } from './keys.js'

/*
 * The options `cached()`, `@cache` and `getOrSet()` share, and their checked form (`Policy`): what
 * the engine in loader.ts does with results.
 */

type AnyFunction = (...args: any[]) => any

/** What the engine does with results: the options `cached()`, `@cache` and `getOrSet()` share. */
export interface LoadOptions<A extends unknown[] = any[], R = any> {
  /**
   * How long a result is fresh: seconds or a duration string, or a function of the result (and
   * the arguments) returning one, e.g. an upstream's `expires_in`; a function returning `0` or
   * less means "do not store this result", `undefined` means `maxTtl`. Default: the backend's
   * default TTL (none unless configured).
   */
  ttl?: Duration | ((result: Awaited<R>, ...args: A) => Duration | undefined)
  /** With a `ttl` function: the longest a result is kept, whatever the function says. Default: `'1d'`. */
  maxTtl?: Duration
  /** Store a result only when this returns true. */
  condition?: (result: Awaited<R>, ...args: A) => boolean
  /** Do not store a result when this returns true. */
  unless?: (result: Awaited<R>, ...args: A) => boolean
  /**
   * After `ttl`, keep serving the stale result for this long while one caller refreshes it in
   * the background. Default: off.
   */
  staleWhileRevalidate?: Duration
  /**
   * After `ttl`, keep the result this much longer as a fallback: a call past the `ttl` runs the
   * function, and if it throws (or runs past `timeout`/`hardTimeout`) gets the kept result
   * instead. Never a result from before an invalidation. Default: off.
   */
  grace?: Duration
  /**
   * With `grace`: once the function failed, serve the kept result for this long without calling
   * the function again (in every process sharing the backend). Default: `'10s'`.
   */
  graceBackoff?: Duration
  /**
   * Soft timeout, with `grace`: a call that waits this long for the function gets the kept
   * result instead; the function goes on in the background and its result is stored when it
   * completes. Default: off.
   */
  timeout?: Duration
  /**
   * A call that waits this long for the function rejects with `CacheFunctionTimeoutError`
   * (or, with `grace`, gets the kept result); the function goes on in the background and its
   * result is stored when it completes. Default: off (wait as long as the function takes).
   */
  hardTimeout?: Duration
  /**
   * Refresh a result in the background when a call reads it in the last part of its `ttl`:
   * a duration (`'30s'`: the last 30 s) or a share of the ttl (`'20%'`), so hot keys never miss.
   * Default: off.
   */
  refreshAhead?: Duration | `${number}%`
  /**
   * Stampede protection across processes: on a miss, only the caller that wins a lock (`add` on
   * the backend) runs the function; the others poll for its result and take the lock over as
   * soon as it is released (the holder failed) or expired, or run the function themselves after
   * `wait` (default 5 s). The holder releases only its own lock (`compareAndDelete` of its
   * token). `true` uses the defaults. Default: off (single-flight is per process).
   */
  lock?: boolean | { ttl?: Duration; wait?: Duration; poll?: Duration }
  /** Rethrow backend failures instead of calling the function uncached. Default: false. */
  strict?: boolean
}

/** Every name of {@link LoadOptions}, for the option lists of `cached()`, `@cache` and `getOrSet()`. */
export const LOAD_OPTION_NAMES: OptionNames<LoadOptions> = {
  ttl: true,
  maxTtl: true,
  condition: true,
  unless: true,
  staleWhileRevalidate: true,
  grace: true,
  graceBackoff: true,
  timeout: true,
  hardTimeout: true,
  refreshAhead: true,
  lock: true,
  strict: true,
}

const LOCK_OPTION_NAMES = optionNames<Exclude<LoadOptions['lock'], boolean | undefined>>({
  ttl: true,
  wait: true,
  poll: true,
})

/** The options, checked and in ms. */
export interface Policy {
  readonly ttlMs: number | undefined
  readonly ttlOf: AnyFunction | undefined
  readonly maxTtlMs: number
  readonly swrMs: number | undefined
  readonly graceMs: number | undefined
  readonly backoffMs: number
  /** How long an entry is kept past its ttl: the longer of `staleWhileRevalidate` and `grace`. */
  readonly keptMs: number
  readonly timeoutMs: number | undefined
  readonly hardTimeoutMs: number | undefined
  readonly ahead: { ratio: number } | { ms: number } | undefined
  readonly lock: { ttlMs: number; waitMs: number; pollMs: number } | undefined
  readonly condition: AnyFunction | undefined
  readonly unless: AnyFunction | undefined
  readonly strict: boolean
  /** Freshness and backend TTL (seconds) of an entry when `ttl` is fixed. */
  readonly fixed: Lifetime
  /** Lifetime (seconds) of a generation created for one entry: as long as any entry written under it. */
  readonly generationTtl: number | undefined
  /** Options that wait asynchronously: a memoized sync function returns promises with them. */
  readonly async: boolean
}

export interface Lifetime {
  freshMs: number | undefined
  backendTtl: number | undefined
}

/** Checks the options; a bad one throws `CacheConfigError` naming it (`RangeError` for `ttl`, `staleWhileRevalidate`, `lock.*`). */
export function resolvePolicy(options: LoadOptions): Policy {
  const ttlOf = typeof options.ttl === 'function' ? (options.ttl as AnyFunction) : undefined
  const ttlMs = ttlOf === undefined ? ttlToMs(options.ttl as Duration | undefined, 'ttl') : undefined
  const hasTtl = ttlOf !== undefined || ttlMs !== undefined
  if (options.maxTtl !== undefined && ttlOf === undefined)
    throw new CacheConfigError('maxTtl', 'bounds a `ttl` function; with a fixed ttl, set `ttl` itself')
  const maxTtlMs = durationOption(options.maxTtl ?? '1d', 'maxTtl')
  const swrMs =
    options.staleWhileRevalidate === undefined
      ? undefined
      : parseDuration(options.staleWhileRevalidate, 'staleWhileRevalidate')
  const graceMs = optionalDuration(options.grace, 'grace')
  if (graceMs !== undefined && !hasTtl)
    throw new CacheConfigError(
      'grace',
      'needs a `ttl`: a result is kept for its grace period once its ttl has passed',
    )
  if (options.graceBackoff !== undefined && graceMs === undefined)
    throw new CacheConfigError('graceBackoff', 'applies with `grace` only')
  const backoffMs = durationOption(options.graceBackoff ?? '10s', 'graceBackoff')
  const timeoutMs = optionalDuration(options.timeout, 'timeout')
  if (timeoutMs !== undefined && graceMs === undefined)
    throw new CacheConfigError(
      'timeout',
      'serves the result kept by `grace` when the function is slow: set `grace` too (or use `hardTimeout` to fail)',
    )
  const hardTimeoutMs = optionalDuration(options.hardTimeout, 'hardTimeout')
  if (hardTimeoutMs !== undefined && timeoutMs !== undefined && hardTimeoutMs <= timeoutMs)
    throw new CacheConfigError(
      'hardTimeout',
      `must be longer than timeout (${timeoutMs} ms), got ${hardTimeoutMs} ms`,
    )
  const ahead = refreshAheadOption(options.refreshAhead, ttlMs, hasTtl)
  const keptMs = Math.max(swrMs ?? 0, graceMs ?? 0)
  const entryTtl = ttlMs === undefined ? undefined : (ttlMs + keptMs) / 1000
  return {
    ttlMs,
    ttlOf,
    maxTtlMs,
    swrMs,
    graceMs,
    backoffMs,
    keptMs,
    timeoutMs,
    hardTimeoutMs,
    ahead,
    lock: resolveLock(options.lock),
    condition: options.condition,
    unless: options.unless,
    strict: booleanOption(options.strict, 'strict', false),
    fixed: { freshMs: ttlMs, backendTtl: entryTtl },
    generationTtl: ttlOf === undefined ? entryTtl : (maxTtlMs + keptMs) / 1000,
    async: Boolean(options.lock) || graceMs !== undefined || hardTimeoutMs !== undefined,
  }
}

function optionalDuration(value: Duration | undefined, option: string): number | undefined {
  return value === undefined ? undefined : durationOption(value, option)
}

function durationOption(value: Duration, option: string): number {
  try {
    return parseDuration(value, option)
  } catch (error) {
    throw new CacheConfigError(option, (error as Error).message.replace(`${option}: `, ''), { cause: error })
  }
}

function refreshAheadOption(
  value: LoadOptions['refreshAhead'],
  ttlMs: number | undefined,
  hasTtl: boolean,
): Policy['ahead'] {
  if (value === undefined) return undefined
  if (!hasTtl) throw new CacheConfigError('refreshAhead', 'needs a `ttl` to refresh ahead of')
  if (typeof value === 'string' && value.trim().endsWith('%')) {
    const percent = Number(value.trim().slice(0, -1))
    if (!(percent > 0 && percent < 100))
      throw new CacheConfigError(
        'refreshAhead',
        `${JSON.stringify(value)} is not a share between 0% and 100%`,
      )
    return { ratio: percent / 100 }
  }
  const ms = durationOption(value, 'refreshAhead')
  if (ttlMs !== undefined && ms >= ttlMs)
    throw new CacheConfigError(
      'refreshAhead',
      `${ms} ms is not shorter than the ttl (${ttlMs} ms): every read would refresh`,
    )
  return { ms }
}

function resolveLock(lock: LoadOptions['lock']): Policy['lock'] {
  if (lock === undefined || lock === false) return undefined
  if (lock !== true && !isOptionsObject(lock))
    throw new CacheConfigError(
      'lock',
      `expected true, false or { ttl, wait, poll }, got ${describeGiven(lock)}`,
    )
  const settings = lock === true ? {} : lock
  assertKnownOptions(settings, LOCK_OPTION_NAMES, '`lock`')
  return {
    ttlMs: checkOption('lock.ttl', () => parseDuration(settings.ttl ?? 30, 'lock.ttl')),
    waitMs: checkOption('lock.wait', () => parseDuration(settings.wait ?? 5, 'lock.wait')),
    pollMs: checkOption('lock.poll', () => parseDuration(settings.poll ?? '50ms', 'lock.poll')),
  }
}
