import {
  type CacheBackend,
  type Duration,
  CacheConfigError,
  type MinimalBackend,
  parseDuration,
  parseSize,
  type Size,
} from '@cache/core'
import {
  booleanOption,
  assertKnownOptions,
  readOptions,
  generationKey,
  type OptionNames,
  optionNames,
  prepareDefaultCache,
  toBackend,
  checkOption,
  durationOption,
  tagList,
} from '@cache/core/backend'
import type { CacheControlRule, TtlFromResponse } from './cache-control.js'
import { responseCachingFromEnv } from './switch.js'

/**
 * Options of an HTTP response cache ({@link HttpCache}), the same for every adapter. Every option
 * is optional; the defaults are safe. `Req` is the framework's request, which the `key`, `tags`
 * and `bypass` functions receive.
 */
export interface HttpCacheOptions<Req = any> {
  /**
   * How long a stored response is fresh: seconds or a duration string (`'5m'`). Or
   * `'from-response'`: the handler's own `Cache-Control: s-maxage`, else `max-age`; a response
   * with neither is not stored. `{ fromResponse: true, default, max }` adds a TTL for responses
   * with neither (`default`) and a cap (`max`, default `'1d'`). Default: 60 s.
   */
  ttl?: Duration | 'from-response' | { fromResponse: true; default?: Duration; max?: Duration }
  /**
   * Where responses are stored. Default: the configured default cache (`getBackend()` from
   * @cache/core), resolved on each request so `configureCache()` may run after the app is built.
   */
  backend?: CacheBackend | MinimalBackend
  /**
   * First segment of every key, and the unit of {@link invalidateResponsePrefix}: segments are
   * separated by `:`, so invalidating `api` also invalidates `api:users`. Default: `'http'`.
   */
  keyPrefix?: string
  /**
   * Request header names whose values become part of the key (e.g. `['accept-language']`).
   * A response's own `Vary` header is honoured as well, without listing it here. Default: none.
   */
  vary?: readonly string[]
  /**
   * Builds the key (after `keyPrefix`) from the request, replacing host + path + sorted query +
   * `vary` headers. Default: that built-in key.
   */
  key?: (req: Req) => string
  /**
   * Statuses that may be stored: a list or a predicate. 1xx, 206 (a part of a body), 304 (no body)
   * and 5xx responses are never stored; listing one is a `CacheConfigError`.
   * Default: 2xx except 204 and 206.
   */
  statuses?: readonly number[] | ((status: number) => boolean)
  /** Largest body stored, in bytes or a size string (`'512KB'`); larger ones pass through. Default: 1 MB. */
  maxBodySize?: Size
  /**
   * Cache requests that carry `Authorization`. Only safe when the response does not depend on
   * who asks (add `'authorization'` to `vary` otherwise). Default: false (such requests bypass).
   */
  allowAuthorized?: boolean
  /**
   * Cache requests that carry `Cookie`. Only safe when the response does not depend on the
   * cookies (add `'cookie'` to `vary` otherwise). Default: false (such requests bypass).
   */
  allowCookies?: boolean
  /**
   * After `ttl`, keep serving the stale response for this long (seconds or a duration string)
   * while one background request refreshes it. Default: off.
   */
  staleWhileRevalidate?: Duration
  /**
   * How long a background refresh may take (seconds or a duration string) before it is abandoned,
   * counted as an error, and the stale entry kept. Default: `'30s'`.
   */
  revalidateTimeout?: Duration
  /**
   * How long a request waits for a concurrent request for the same key (single-flight) to share
   * its response, in seconds or a duration string; after that it runs the handler itself. A
   * waiting request is also released at once when that response cannot be stored (an error, a
   * body over `maxBodySize`, a closed connection). Default: `'5s'`.
   */
  collapseTimeout?: Duration
  /** Tags for invalidation (`invalidateTags` from @cache/core): a list, or a function of the request. */
  tags?: readonly string[] | ((req: Req) => readonly string[])
  /**
   * The header that reports hits and misses: `'cache-status'` (RFC 9211, e.g. `@cache; hit; ttl=42`),
   * `'x-cache'` (`HIT` / `MISS` / `BYPASS`), or `false` for none. Default: `'cache-status'`.
   */
  statusHeader?: 'cache-status' | 'x-cache' | false
  /** The cache's name in `Cache-Status`. Default: `'@cache'`. */
  cacheName?: string
  /** Add a strong `ETag` (hash of the body) to stored responses that have none. Default: true. */
  etag?: boolean
  /** Clock in epoch ms, for tests. Default: `Date.now`. */
  now?: () => number
  /**
   * Per-request opt-out: `true` sends the request straight to the handler, nothing read nor
   * stored (`Cache-Status: …; fwd=bypass; detail=bypass`). A `bypass` that throws counts as `true`:
   * the error is counted in `stats.errors`, emitted as an `error` event (operation `bypass`) and
   * logged once. Default: none.
   */
  bypass?: (req: Req) => boolean
  /**
   * `Cache-Control` for browsers and CDNs on the responses the cache stores and replays, unless
   * the handler (or middleware) set one. `true`: `public, max-age=<ttl>` and
   * `stale-while-revalidate=<staleWhileRevalidate>` when set. An object gives each directive
   * (durations in seconds or strings; `maxAge` defaults to the ttl, `public` to true). Responses
   * whose key holds what a downstream cache cannot see (the `vary` option, a custom `key`, an
   * allowed `Authorization` or `Cookie`) get `private, max-age=…` instead. Default: off.
   */
  cacheControl?:
    | true
    | { maxAge?: Duration; sMaxAge?: Duration; staleWhileRevalidate?: Duration; public?: boolean }
}

/** Every name of {@link HttpCacheOptions}: an adapter adds its own to make its {@link KnownOptions}. */
export const HTTP_CACHE_OPTION_NAMES: OptionNames<HttpCacheOptions> = {
  ttl: true,
  backend: true,
  keyPrefix: true,
  vary: true,
  key: true,
  statuses: true,
  maxBodySize: true,
  allowAuthorized: true,
  allowCookies: true,
  staleWhileRevalidate: true,
  revalidateTimeout: true,
  collapseTimeout: true,
  tags: true,
  statusHeader: true,
  cacheName: true,
  etag: true,
  now: true,
  bypass: true,
  cacheControl: true,
}

/**
 * The option names an adapter's options may have, and what they are given to (`cacheResponse()`),
 * for the error that names one that is not an option.
 */
export interface KnownOptions {
  readonly names: ReadonlySet<string>
  readonly where: string
}

/** The options of `new HttpCache()`. */
const HTTP_CACHE_OPTIONS: KnownOptions = {
  names: optionNames<HttpCacheOptions>(HTTP_CACHE_OPTION_NAMES),
  where: 'HttpCache',
}

const TTL_FROM_RESPONSE_NAMES = optionNames<Extract<HttpCacheOptions['ttl'], { fromResponse: true }>>({
  fromResponse: true,
  default: true,
  max: true,
})

const CACHE_CONTROL_NAMES = optionNames<Exclude<HttpCacheOptions['cacheControl'], true | undefined>>({
  maxAge: true,
  sMaxAge: true,
  staleWhileRevalidate: true,
  public: true,
})

/** The option of adapters whose middleware runs in a chain (Express, Hono). */
export interface SkippedMiddlewareOptions {
  /**
   * Functions registered **after** the cache that a hit may skip, by identity (the same instance
   * given to the framework): their effect is in the stored response, such as a compression
   * middleware after a global cache, or one that sets a header on every response. By default a
   * response is stored only when the function that answered it is the only one that ran after the
   * cache: any other (a guard, middleware after the cache, a sub-app's middleware) would be
   * skipped by a hit (`detail=middleware-after-cache`). Default: none.
   */
  middlewareSkippedOnHits?: readonly Function[]
}

/** Every name of {@link SkippedMiddlewareOptions}. */
export const SKIPPED_MIDDLEWARE_OPTION_NAMES: OptionNames<SkippedMiddlewareOptions> = {
  middlewareSkippedOnHits: true,
}

/**
 * The `middlewareSkippedOnHits` option (of options, or of a TTL given alone: none), checked once
 * when the cache is built: anything but a list of functions is a `CacheConfigError` naming it.
 */
export function resolveSkippedOnHits(
  options: SkippedMiddlewareOptions | Duration = {},
): ReadonlySet<Function> {
  const listed = (typeof options === 'object' ? options.middlewareSkippedOnHits : undefined) ?? []
  if (!Array.isArray(listed) || listed.some((fn) => typeof fn !== 'function'))
    throw new CacheConfigError('middlewareSkippedOnHits', 'expected a list of middleware functions')
  return new Set(listed)
}

/** {@link HttpCacheOptions} resolved once, when the cache is built (durations in ms). */
export interface HttpCacheSettings {
  ttlMs: number
  swrMs: number | undefined
  revalidateTimeoutMs: number
  collapseTimeoutMs: number
  /** Entries are marked `front: true` (an adapter may replay them before the application runs). */
  frontSkipsAllMiddleware: boolean
  backend: CacheBackend | undefined
  keyPrefix: string
  /** Version keys of the prefix generations, outermost first. */
  prefixVersionKeys: string[]
  vary: string[]
  key: ((req: any) => string) | undefined
  storable: (status: number) => boolean
  maxBodySize: number
  allowAuthorized: boolean
  allowCookies: boolean
  tags: ((req: any) => readonly string[]) | undefined
  statusHeader: 'cache-status' | 'x-cache' | false
  cacheName: string
  etag: boolean
  now: () => number
  bypass: ((req: any) => boolean) | undefined
  /** Caching was on (`CACHE_HTTP`) when the cache was built; `setResponseCaching` overrides it. */
  enabledFromEnv: boolean
  cacheControl: CacheControlRule | undefined
  /**
   * The adapter chooses which response a URL gets by request data that no `Vary` names (a Fastify
   * route constraint on `Accept-Version` or a custom strategy's header): a downstream cache keying
   * on the URL cannot tell the responses apart, so `cacheControl` makes them `private`. Set by
   * adapters, never an option. Default: false.
   */
  hiddenSelection: boolean
  /** Set for `ttl: 'from-response'`; `ttlMs` is then its `maxMs`. */
  ttlFromResponse: TtlFromResponse | undefined
}

const DEFAULT_MAX_BODY = 1024 * 1024

/**
 * Checks and resolves options (or a TTL alone) once, when a cache is built: a bad option is a
 * `CacheConfigError` naming it; a bad `CACHE_HTTP` or `CACHE_*` variable too. A name that is not
 * in `known` (a misspelt `varyy`, `privte`: a safety option dropped) is refused the same way.
 *
 * @param known the adapter's option names (those of {@link HttpCacheOptions} and its own); default:
 *   those of {@link HttpCacheOptions}
 */
export function resolveHttpCacheOptions(
  options: HttpCacheOptions | Duration = {},
  known: KnownOptions = HTTP_CACHE_OPTIONS,
): HttpCacheSettings {
  // Read by name (getters, inherited and non-enumerable values), function options bound to the
  // object that holds them: a settings class's `key(req)` keeps its `this`.
  const opts: HttpCacheOptions =
    typeof options === 'object' ? readOptions(options, known.names, known.where) : { ttl: options }
  const keyPrefix = opts.keyPrefix ?? 'http'
  if (typeof keyPrefix !== 'string' || keyPrefix.length === 0) {
    throw new CacheConfigError('keyPrefix', `expected a non-empty string, got ${JSON.stringify(keyPrefix)}`)
  }
  const statusHeader = opts.statusHeader ?? 'cache-status'
  if (statusHeader !== false && statusHeader !== 'cache-status' && statusHeader !== 'x-cache') {
    throw new CacheConfigError(
      'statusHeader',
      `expected 'cache-status', 'x-cache' or false, got ${String(statusHeader)}`,
    )
  }
  const tags = opts.tags
  if (opts.bypass !== undefined && typeof opts.bypass !== 'function')
    throw new CacheConfigError('bypass', 'expected a function (req) => boolean')
  const enabledFromEnv = responseCachingFromEnv()
  // A bad CACHE_* variable stops the application now, while it sets up its routes.
  if (opts.backend === undefined) prepareDefaultCache()
  const ttlFromResponse = resolveTtlFromResponse(opts.ttl)
  return {
    ttlMs: ttlFromResponse?.maxMs ?? durationOption(opts.ttl, 'ttl', 60),
    swrMs:
      opts.staleWhileRevalidate === undefined
        ? undefined
        : durationOption(opts.staleWhileRevalidate, 'staleWhileRevalidate', 0),
    revalidateTimeoutMs: durationOption(opts.revalidateTimeout, 'revalidateTimeout', '30s', { timer: true }),
    collapseTimeoutMs: durationOption(opts.collapseTimeout, 'collapseTimeout', '5s', { timer: true }),
    frontSkipsAllMiddleware: false,
    backend: opts.backend === undefined ? undefined : toBackend(opts.backend),
    keyPrefix,
    prefixVersionKeys: prefixVersionKeys(keyPrefix),
    vary: varyNames(opts.vary),
    key: opts.key,
    storable: storablePredicate(opts.statuses),
    maxBodySize:
      opts.maxBodySize === undefined
        ? DEFAULT_MAX_BODY
        : checkOption('maxBodySize', () => parseSize(opts.maxBodySize as Size, 'maxBodySize')),
    allowAuthorized: booleanOption(opts.allowAuthorized, 'allowAuthorized', false),
    allowCookies: booleanOption(opts.allowCookies, 'allowCookies', false),
    tags: tagsOption(tags),
    statusHeader,
    cacheName: opts.cacheName ?? '@cache',
    etag: booleanOption(opts.etag, 'etag', true),
    now: opts.now ?? Date.now,
    bypass: opts.bypass,
    enabledFromEnv,
    cacheControl: resolveCacheControl(opts.cacheControl),
    hiddenSelection: false,
    ttlFromResponse,
  }
}

/**
 * The `tags` option as a function of the request: a list is checked now, what a function answers
 * on each request (a string, read letter by letter, would tag `p`, `r`… and never be invalidated).
 */
function tagsOption(tags: HttpCacheOptions['tags']): HttpCacheSettings['tags'] {
  if (tags === undefined) return undefined
  if (typeof tags === 'function') return (req) => tagList(tags(req))
  const list = tagList(tags)
  return () => list
}

const DEFAULT_MAX_FROM_RESPONSE = '1d'

function resolveTtlFromResponse(ttl: HttpCacheOptions['ttl']): TtlFromResponse | undefined {
  if (ttl === 'from-response')
    return { defaultMs: undefined, maxMs: parseDuration(DEFAULT_MAX_FROM_RESPONSE) }
  if (typeof ttl !== 'object' || ttl === null) return undefined
  assertKnownOptions(ttl, TTL_FROM_RESPONSE_NAMES, '`ttl`')
  if (ttl.fromResponse !== true)
    throw new CacheConfigError(
      'ttl',
      "expected a duration, 'from-response' or { fromResponse: true, default?, max? }",
    )
  return {
    defaultMs: ttl.default === undefined ? undefined : durationOption(ttl.default, 'ttl.default', 0),
    maxMs: durationOption(ttl.max, 'ttl.max', DEFAULT_MAX_FROM_RESPONSE),
  }
}

/** Whole seconds of a duration option, as a header carries them (rounded down; at least 0). */
function headerSeconds(value: Duration, what: string): number {
  return Math.floor(durationOption(value, what, 0) / 1000)
}

function resolveCacheControl(option: HttpCacheOptions['cacheControl']): CacheControlRule | undefined {
  if (option === undefined || (option as unknown) === false) return undefined
  if (option === true) return { public: true, maxAge: 'ttl', sMaxAge: undefined, staleWhileRevalidate: 'swr' }
  if (typeof option !== 'object' || option === null)
    throw new CacheConfigError('cacheControl', `expected true or an object, got ${JSON.stringify(option)}`)
  assertKnownOptions(option, CACHE_CONTROL_NAMES, '`cacheControl`')
  if (option.public !== undefined && typeof option.public !== 'boolean')
    throw new CacheConfigError(
      'cacheControl.public',
      `expected a boolean, got ${JSON.stringify(option.public)}`,
    )
  return {
    public: option.public ?? true,
    maxAge: option.maxAge === undefined ? 'ttl' : headerSeconds(option.maxAge, 'cacheControl.maxAge'),
    sMaxAge: option.sMaxAge === undefined ? undefined : headerSeconds(option.sMaxAge, 'cacheControl.sMaxAge'),
    staleWhileRevalidate:
      option.staleWhileRevalidate === undefined
        ? 'swr'
        : headerSeconds(option.staleWhileRevalidate, 'cacheControl.staleWhileRevalidate'),
  }
}

/** `api:users` has the generations of `api` and `api:users`: invalidating either reaches it. */
/** A header name (an RFC 9110 token). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/**
 * The `vary` option as the sorted, lower-case header names it lists: each entry may be a list
 * written as a `Vary` header (`'accept-language, cookie'`), spaces around a name do not count.
 * What is not a header name (an empty name, `*`, a space or `;` inside) is a `CacheConfigError`:
 * ignored, it would key nothing, and one user's page would be served to everyone.
 */
export function varyNames(vary: unknown): string[] {
  if (vary === undefined) return []
  if (!Array.isArray(vary))
    throw new CacheConfigError(
      'vary',
      `expected an array of request header names, got ${JSON.stringify(vary)}`,
    )
  const names = new Set<string>()
  for (const entry of vary) {
    if (typeof entry !== 'string')
      throw new CacheConfigError('vary', `expected request header names, got ${JSON.stringify(entry)}`)
    for (const part of entry.split(',')) {
      const name = part.trim()
      if (!TOKEN.test(name) || name === '*')
        throw new CacheConfigError(
          'vary',
          `${JSON.stringify(entry)} is not a list of request header names (${JSON.stringify(name)} is not a header name)`,
        )
      names.add(name.toLowerCase())
    }
  }
  return [...names].sort()
}

export function prefixVersionKeys(keyPrefix: string): string[] {
  const segments = keyPrefix.split(':')
  return segments.map((_, i) => prefixVersionKey(segments.slice(0, i + 1).join(':')))
}

/** The generation of every response cached under `prefix` (see core's invalidation state). */
export function prefixVersionKey(prefix: string): string {
  return generationKey('http', prefix)
}

/**
 * The generation of the responses stored under one request key (every variant): renewing it is
 * how `invalidate(url)` reaches every process, whatever copies their levels still hold.
 */
export function urlVersionKey(key: string): string {
  return generationKey('http-url', key)
}

const URL_VERSION_PREFIX = `${generationKey('http-url')}:`

/** Whether a generation key is a URL scope's (see {@link urlVersionKey}). */
export function isUrlVersionKey(key: string): boolean {
  return key.startsWith(URL_VERSION_PREFIX)
}

/** Statuses whose response is never a whole, replayable answer for everyone. */
function neverStored(status: number): boolean {
  return status < 200 || status === 206 || status === 304 || status >= 500
}

function storablePredicate(statuses: HttpCacheOptions['statuses']): (status: number) => boolean {
  if (statuses === undefined) return (s) => s >= 200 && s < 300 && s !== 204 && s !== 206
  if (typeof statuses === 'function') return (s) => !neverStored(s) && statuses(s)
  if (!Array.isArray(statuses) || statuses.some((s) => !Number.isInteger(s) || s < 100 || s > 599)) {
    throw new CacheConfigError(
      'statuses',
      `expected a list of HTTP status codes, got ${JSON.stringify(statuses)}`,
    )
  }
  const refused = statuses.filter(neverStored)
  if (refused.length > 0) {
    throw new CacheConfigError(
      'statuses',
      `${refused.join(', ')} can never be stored (1xx, 206, 304 and 5xx are not whole answers)`,
    )
  }
  const allowed = new Set(statuses)
  return (s) => allowed.has(s)
}
