import type { IncomingMessage } from 'node:http'
import { booleanOption, optionNames } from '@cache/core/backend'
import {
  HTTP_CACHE_OPTION_NAMES,
  type HttpCacheOptions,
  type HttpCacheSettings,
  resolveHttpCacheOptions,
  type KnownOptions,
  resolveSkippedOnHits,
  SKIPPED_MIDDLEWARE_OPTION_NAMES,
  type SkippedMiddlewareOptions,
} from '@cache/http'

/**
 * Options of {@link cacheResponse}: every option of the framework-neutral cache of @cache/http
 * (`ttl`, `backend`, `keyPrefix`, `vary`, `key`, `statuses`, `maxBodySize`, `allowAuthorized`,
 * `allowCookies`, `staleWhileRevalidate`, `revalidateTimeout`, `collapseTimeout`, `tags`,
 * `statusHeader`, `cacheName`, `etag`, `now`, `bypass`, `cacheControl`), and Express's own. Every
 * option is optional; the defaults are safe. `middlewareSkippedOnHits` (functions after the cache
 * that a hit may skip, such as a `compression()` instance registered after a global cache) is
 * documented in @cache/http.
 */
export interface CacheResponseOptions<Req extends IncomingMessage = any>
  extends HttpCacheOptions<Req>,
    SkippedMiddlewareOptions {
  /**
   * Makes the responses this middleware stores eligible for `cache.front(app)`, which replays
   * them before Express runs: **every middleware of the app is skipped for those hits** (app-level
   * and route-level: authentication, guards, rate limits, CORS, sessions, logging). Only for routes
   * whose stored response is the whole answer, the same for every client. Default: false (no
   * entry is ever replayed by `front`). Caches with a `bypass` are never answered by `front`.
   */
  frontSkipsAllMiddleware?: boolean
}

/** Options resolved once, when the middleware is built. */
export interface Settings extends HttpCacheSettings {
  skippedOnHits: ReadonlySet<Function>
}

const KNOWN: KnownOptions = {
  names: optionNames<CacheResponseOptions>({
    ...HTTP_CACHE_OPTION_NAMES,
    ...SKIPPED_MIDDLEWARE_OPTION_NAMES,
    frontSkipsAllMiddleware: true,
  }),
  where: 'cacheResponse()',
}

/** Resolves the options of one `cacheResponse()` (a TTL alone already made `{ ttl }`). */
export function resolveOptions(opts: CacheResponseOptions): Settings {
  const http = resolveHttpCacheOptions(opts, KNOWN)
  const skippedOnHits = resolveSkippedOnHits(opts)
  return {
    ...http,
    skippedOnHits,
    frontSkipsAllMiddleware: booleanOption(opts.frontSkipsAllMiddleware, 'frontSkipsAllMiddleware', false),
  }
}
