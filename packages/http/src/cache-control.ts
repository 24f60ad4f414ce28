import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import { receivedAge, setsCookie } from './stored-response.js'

/**
 * The directives of a `Cache-Control` header (one value, or several header lines), by lower-case
 * name, each with every value it was given in order: `''` for a directive without a value, quotes
 * removed (RFC 9111 §5.2: names are case-insensitive, values may be quoted strings). A name is a
 * run of token characters wherever it stands: stray separators (`public;max-age=5`, `"private"`)
 * are read as separators, as `unstorableReason` reads them.
 */
export function parseCacheControl(header: unknown): Map<string, string[]> {
  const directives = new Map<string, string[]>()
  if (header === undefined || header === null) return directives
  const text = Array.isArray(header) ? header.join(',') : String(header)
  // name[=token | ="quoted, string"]; whatever is between two of them is skipped.
  const pattern = /([!#$%&'*+\-.^_`|~0-9A-Za-z]+)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*)))?/g
  for (const match of text.matchAll(pattern)) {
    const name = match[1]!.toLowerCase()
    const value = match[2] !== undefined ? match[2].replace(/\\(.)/g, '$1') : (match[3] ?? '')
    const values = directives.get(name)
    if (values === undefined) directives.set(name, [value])
    else values.push(value)
  }
  return directives
}

/** How the TTL of a stored response is decided when it comes from the response. */
export interface TtlFromResponse {
  /** ms used when the response gives neither `s-maxage` nor `max-age`; `undefined`: not stored. */
  defaultMs: number | undefined
  /** Upper bound in ms. */
  maxMs: number
}

/**
 * The freshness lifetime a response gives itself, for a shared cache: `s-maxage`, else `max-age`
 * (RFC 9111 §4.2.1) less the response's `Age`, in ms, capped at `maxMs`. A directive given twice with two values makes the
 * response stale (`'cache-control'`: not stored), as §4.2.1 allows; none at all gives `defaultMs`,
 * or `'no-ttl'` without one. `max-age=0` and `no-store` are refused before this is asked.
 */
export function ttlFromResponse(
  headers: OutgoingHttpHeaders,
  rule: TtlFromResponse,
): number | 'no-ttl' | 'cache-control' {
  const directives = parseCacheControl(headers['cache-control'])
  const values = directives.get('s-maxage') ?? directives.get('max-age')
  if (values === undefined)
    return rule.defaultMs === undefined ? 'no-ttl' : Math.min(rule.defaultMs, rule.maxMs)
  if (values.some((v) => v !== values[0]) || !/^[0-9]+$/.test(values[0]!)) return 'cache-control'
  // Freshness left: the lifetime minus the age the response already has (RFC 9111 §4.2.3), as
  // when a handler relays an upstream response with its `Age`.
  const seconds = Number(values[0]) - receivedAge(headers.age)
  if (seconds <= 0) return 'cache-control'
  return Math.min(seconds * 1000, rule.maxMs)
}

/** The `cacheControl` option, resolved: seconds, or `'ttl'`/`'swr'` for the cache's own values. */
export interface CacheControlRule {
  public: boolean
  maxAge: number | 'ttl'
  sMaxAge: number | undefined
  staleWhileRevalidate: number | 'swr' | undefined
}

/**
 * The `Cache-Control` the cache gives a response it stores. `ttlMs` is the entry's own freshness,
 * `swrMs` the stale window. `shared` is false when the key holds request data that a downstream
 * cache cannot see (the `vary` option, a custom `key`, an allowed `Authorization` or `Cookie`):
 * the response is then `private`, for the client's own cache only. `receivedAge` is the `Age` (in
 * seconds) the response came with (a relayed upstream response): the replays send it plus the
 * time since storing, and a downstream cache's freshness is `max-age − Age` (RFC 9111 §4.2.3),
 * so it is added to `max-age` and `s-maxage`, which thus count from when this cache stored the
 * response, as they do for a response without an `Age`.
 */
export function cacheControlValue(
  rule: CacheControlRule,
  ttlMs: number,
  swrMs: number | undefined,
  shared: boolean,
  receivedAge = 0,
): string {
  const parts: string[] = []
  if (!shared) parts.push('private')
  else if (rule.public) parts.push('public')
  const maxAge = rule.maxAge === 'ttl' ? Math.floor(ttlMs / 1000) : rule.maxAge
  parts.push(`max-age=${lifetime(maxAge, receivedAge)}`)
  if (shared && rule.sMaxAge !== undefined) parts.push(`s-maxage=${lifetime(rule.sMaxAge, receivedAge)}`)
  const swr =
    rule.staleWhileRevalidate === 'swr'
      ? swrMs === undefined
        ? undefined
        : Math.floor(swrMs / 1000)
      : rule.staleWhileRevalidate
  if (swr !== undefined && swr > 0) parts.push(`stale-while-revalidate=${swr}`)
  return parts.join(', ')
}

/**
 * A freshness lifetime counted from when this cache stored a response that came with an `Age`:
 * capped at 2^31 seconds, the largest value RFC 9111 §1.2.2 asks recipients to read.
 */
function lifetime(seconds: number, receivedAge: number): number {
  return Math.min(seconds + receivedAge, 2 ** 31)
}

/**
 * Sets the cache's `Cache-Control` on a response about to be sent, unless one is there already
 * (the handler's, or middleware's: never replaced) or the response may not be kept by a shared
 * cache (`Set-Cookie`, `Vary: *`). Until the headers leave, a `Set-Cookie` or `Vary: *` that a
 * hook adds as they go out (a session layer before the cache) withdraws it again. `true` when set.
 */
export function offerCacheControl(res: ServerResponse, value: string): boolean {
  if (res.headersSent || res.getHeader('cache-control') !== undefined || !sharable(res.getHeaders()))
    return false
  const mine = value
  res.setHeader('cache-control', mine)
  const own = res as ServerResponse & { setHeader: ServerResponse['setHeader']; appendHeader?: Function }
  const original = { setHeader: own.setHeader, appendHeader: own.appendHeader }
  const restore = () => {
    own.setHeader = original.setHeader
    if (original.appendHeader !== undefined) own.appendHeader = original.appendHeader
  }
  const watch = (name: string, given: unknown) => {
    const lower = name.toLowerCase()
    if (lower === 'cache-control') {
      // Someone else's replaces ours, as it would without the cache.
      restore()
    } else if (
      (lower === 'set-cookie' && setsCookie(given)) ||
      (lower === 'vary' && String(given).includes('*'))
    ) {
      restore()
      if (res.getHeader('cache-control') === mine) res.removeHeader('cache-control')
    }
  }
  own.setHeader = function (this: ServerResponse, name: string, value: number | string | readonly string[]) {
    watch(name, value)
    return original.setHeader.call(this, name, value)
  } as ServerResponse['setHeader']
  if (original.appendHeader !== undefined) {
    own.appendHeader = function (this: ServerResponse, name: string, value: unknown) {
      watch(name, value)
      return original.appendHeader!.call(this, name, value)
    }
  }
  return true
}

function sharable(headers: OutgoingHttpHeaders): boolean {
  if (setsCookie(headers['set-cookie'])) return false
  const vary = headers.vary
  return vary === undefined || !String(vary).includes('*')
}
