import { CacheConfigError } from '@cache/core'

/** Shared by every copy of @cache/http in the process (ESM and CJS builds), and so by every adapter. */
const SWITCH = Symbol.for('@cache/http:enabled')
const holder = globalThis as { [SWITCH]?: boolean }

/**
 * Turns response caching on or off for every response cache of the process (every adapter), at once and at run
 * time (a test suite that wants the handlers to run every time, an operator's kill switch). Off,
 * every request goes straight to the handler: nothing is read, nothing is stored, nothing is
 * removed, and `Cache-Status` says `fwd=bypass; detail=disabled`. `undefined` returns to what
 * `CACHE_HTTP` said when each cache was built (on unless `CACHE_HTTP=off`).
 */
export function setResponseCaching(enabled: boolean | undefined): void {
  if (enabled !== undefined && typeof enabled !== 'boolean')
    throw new TypeError(`setResponseCaching expects true, false or undefined, got ${JSON.stringify(enabled)}`)
  holder[SWITCH] = enabled
}

/** Whether caching is on now, for a cache built when `CACHE_HTTP` said `fromEnv`. */
export function responseCachingEnabled(fromEnv: boolean): boolean {
  return holder[SWITCH] ?? fromEnv
}

/**
 * `CACHE_HTTP`: `on` (default when unset or empty) or `off`, also `true`/`false`, `1`/`0`,
 * `yes`/`no`, in any case. Anything else is a {@link CacheConfigError} naming the variable.
 */
export function responseCachingFromEnv(env: Record<string, string | undefined> = process.env): boolean {
  const text = env.CACHE_HTTP?.trim().toLowerCase()
  if (text === undefined || text === '' || text === 'on' || text === 'true' || text === '1' || text === 'yes')
    return true
  if (text === 'off' || text === 'false' || text === '0' || text === 'no') return false
  throw new CacheConfigError('CACHE_HTTP', `${JSON.stringify(env.CACHE_HTTP)} is not "on" or "off"`)
}
