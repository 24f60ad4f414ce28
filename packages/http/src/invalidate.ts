import type { IncomingHttpHeaders } from 'node:http'
import type { CacheBackend, MinimalBackend } from '@cache/core'
import {
  assertKnownOptions,
  onInvalidationTargets,
  optionNames,
  renewGenerations,
  toBackend,
} from '@cache/core/backend'
import { Flight } from './flight.js'
import { prefixVersionKey, urlVersionKey, varyNames } from './options.js'
import { keyWithExtra, siteKey, urlKeys } from './request-key.js'
import { seenKeyExtras, seenSites } from './sites.js'

/** Where and under which prefix to invalidate, for the functions that work without a cache instance. */
export interface InvalidateOptions {
  /**
   * Default: the default cache and every backend a response cache of this process was given
   * (`cacheResponse({ backend })`), each once.
   */
  backend?: CacheBackend | MinimalBackend
  /**
   * The `keyPrefix` whose entries of the URL are deleted (to free their space). A URL's
   * generations are not a prefix's: its entries under every other `keyPrefix`, in every process,
   * stop being served too, and leave the store with their TTL. Default: `'http'`.
   */
  keyPrefix?: string
}

/** Options of {@link invalidateResponse}. */
type InvalidateResponseOptions = InvalidateOptions & {
  host?: string
  headers?: IncomingHttpHeaders
  vary?: readonly string[]
}

const INVALIDATE_RESPONSE_NAMES = optionNames<InvalidateResponseOptions>({
  backend: true,
  keyPrefix: true,
  host: true,
  headers: true,
  vary: true,
})
const INVALIDATE_PREFIX_NAMES = optionNames<{ backend?: CacheBackend }>({ backend: true })

/**
 * Removes the stored response for a URL (`https://example.com/a?b=1`, or a path with `host`),
 * with every variant its responses made with `Vary`, as requested over http and over https (the
 * app may see either behind a proxy). Every value of the headers of a cache's `vary` option is
 * reached; `headers` and `vary` name the entry to delete at once to free its space (the others stop
 * being served and leave with their TTL).
 * Entries of the URL under every `keyPrefix` stop being served; `true` if an entry under
 * `keyPrefix` was deleted.
 */
export async function invalidateResponse(
  url: string,
  options: InvalidateResponseOptions = {},
): Promise<boolean> {
  // A misspelt `keyPrefix` would invalidate under `http` and leave the entries served.
  assertKnownOptions(options, INVALIDATE_RESPONSE_NAMES, 'invalidateResponse()')
  const { keys, scopes } = urlKeys(url, options.keyPrefix ?? 'http', {
    host: options.host,
    headers: options.headers,
    vary: varyNames(options.vary),
  })
  const generations = scopes.map(urlVersionKey)
  // Before anything is awaited: a response in flight in this process is neither stored nor shared.
  Flight.invalidate({ keys: generations })
  let removed = false
  await onInvalidationTargets(backendOf(options), async (backend) => {
    if (await removeResponses(backend, withSeenExtras(keys), generations)) removed = true
  })
  return removed
}

/**
 * Renews the generations of a URL's scope (so no process serves what it stored under any spelling
 * of it, at any site, whatever copies its levels still hold), then deletes the entries of `keys`
 * at every site this process has seen, to free their space. Resolves once the backend took both;
 * `true` if an entry was there.
 */
export async function removeResponses(
  backend: CacheBackend,
  keys: readonly string[],
  generations: readonly string[],
): Promise<boolean> {
  await renewGenerations(backend, [...generations])
  const sites = ['', ...seenSites()]
  return (await backend.deleteMany(keys.flatMap((key) => sites.map((site) => siteKey(key, site))))) > 0
}

/**
 * A URL's keys, and the same keys with each key extra this process keyed entries with (the `Host`
 * sent behind a trusted proxy): the entries of the URL as requests through the proxy made them.
 */
export function withSeenExtras(keys: readonly string[]): string[] {
  const extras = seenKeyExtras()
  if (extras.length === 0) return [...keys]
  return keys.flatMap((key) => [key, ...extras.map((extra) => keyWithExtra(key, extra))])
}

/**
 * Invalidates every response cached under `prefix` or under a longer prefix that starts with its
 * segments (`api` reaches `api` and `api:users`, not `apiv2`). One write (a new generation),
 * whatever the number of entries; works across processes sharing the backend.
 */
export async function invalidateResponsePrefix(prefix: string, options: { backend?: CacheBackend } = {}) {
  if (typeof prefix !== 'string' || prefix === '')
    throw new TypeError('invalidateResponsePrefix: expected a prefix')
  assertKnownOptions(options, INVALIDATE_PREFIX_NAMES, 'invalidateResponsePrefix()')
  Flight.invalidate({ prefix })
  await onInvalidationTargets(backendOf(options), (backend) =>
    renewGenerations(backend, [prefixVersionKey(prefix)]),
  )
}

/** The backend named by the options; `undefined`: every target ({@link onInvalidationTargets}). */
function backendOf(options: { backend?: CacheBackend | MinimalBackend }): CacheBackend | undefined {
  return options.backend === undefined ? undefined : toBackend(options.backend)
}
