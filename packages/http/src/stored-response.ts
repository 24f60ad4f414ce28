import { createHash } from 'node:crypto'
import type { OutgoingHttpHeaders } from 'node:http'

/**
 * A response as stored: plain data (a Buffer body, headers as a flat `[name, value, …]` list) so
 * that it round-trips through the core serializer of remote backends and replays with one
 * `writeHead` and one `end`.
 */
export interface StoredResponse {
  status: number
  /**
   * `[name, value, name, value, …]`, lower-case names, without hop-by-hop headers, `Date`,
   * `Content-Length` and `ETag` (replay sets those).
   */
  headers: (string | string[])[]
  body: Buffer
  /** Epoch ms. */
  storedAt: number
  /** The strong or weak entity tag, quotes included; `''` when there is none. */
  etag: string
  /** The prefix and tag generations the entry was written under. */
  versions: number[]
  /** Epoch ms after which the entry is stale (served only under stale-while-revalidate). */
  staleAt: number
  /** Stored with `frontSkipsAllMiddleware`: `cache.front(app)` may replay it before any middleware. */
  front?: boolean
  /** The keys of `versions`, in order: lets `responseIndex()` tell a live entry from an invalidated one. */
  versionKeys?: string[]
  /** The URL of the request that made it (`protocol://host/path?query`), for `responseIndex()`. */
  url?: string
  /** Its tags (the `tags` option), for `responseIndex()`. */
  tags?: string[]
  /**
   * Seconds the response was already old when it was stored: the `Age` it came with (a handler
   * relaying an upstream response). Replays add it to their own `Age` (RFC 9111 §4.2.3).
   */
  initialAge?: number
  /**
   * Headers a layer before the cache set and the handler removed (lower-case names): that layer
   * sets them again on every hit, and a replay removes them.
   */
  removed?: string[]
}

/** The `Age` a response carries (RFC 9111 §5.1: a non-negative integer; anything else counts as 0). */
export function receivedAge(value: unknown): number {
  const text = Array.isArray(value) ? value[0] : value
  if (typeof text === 'number') return Number.isSafeInteger(text) && text > 0 ? text : 0
  if (typeof text !== 'string' || !/^[0-9]+$/.test(text.trim())) return 0
  const age = Number(text.trim())
  return Number.isSafeInteger(age) ? age : 2 ** 31
}

/** Stored at the base key when the response varies on request headers (its `Vary`). */
export interface VaryRecord {
  vary: string[]
  id: string
}

export function isVaryRecord(value: unknown): value is VaryRecord {
  return typeof value === 'object' && value !== null && Array.isArray((value as VaryRecord).vary)
}

export function isStoredResponse(value: unknown): value is StoredResponse {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as StoredResponse).status === 'number' &&
    (value as StoredResponse).body instanceof Uint8Array
  )
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) and the ones recomputed on every replay. */
const NOT_STORED = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'date',
  'content-length',
  'age',
  'cache-status',
  'x-cache',
  'etag',
])

/** A header name: an RFC 9110 token. */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/

/**
 * The characters of an RFC 9110 token (a directive's name), lower case. A directive name is read
 * between any two characters that are not, not only between the list's `,` and spaces: a list with
 * stray separators (`no-store;`, `public;private`, `"private"`) says what its sender meant, and
 * reading it so only ever refuses more.
 */
const TOKEN = "!#$%&'*+\\-.^_`|~0-9a-z"
/** `no-store`, `private` or `no-cache`, anywhere in the list (with or without a value). */
const REFUSING_DIRECTIVE = new RegExp(`(?:^|[^${TOKEN}])(?:no-store|private|no-cache)(?![${TOKEN}])`)

/** Why a response is not stored, or `undefined` when it may be. */
export function unstorableReason(headers: OutgoingHttpHeaders): string | undefined {
  if (setsCookie(headers['set-cookie'])) return 'set-cookie'
  const raw = headers['cache-control']
  const cacheControl = (Array.isArray(raw) ? raw.join(',') : String(raw ?? '')).toLowerCase()
  if (REFUSING_DIRECTIVE.test(cacheControl)) return 'cache-control'
  // A shared cache reads s-maxage, else max-age: zero (or a value that is not a number of
  // seconds) means the response is stale at once, as no-cache does.
  const ages = directiveValues(cacheControl, 's-maxage')
  for (const age of ages.length > 0 ? ages : directiveValues(cacheControl, 'max-age')) {
    if (!/^[0-9]+$/.test(age) || !/[1-9]/.test(age)) return 'cache-control'
  }
  // `*`, or a name that is no header name (`"X-User"` quoted, `X-User;q=1`): no request header
  // matches it, so every client would share the one entry the handler made for the first.
  if (varyNames(headers).some((name) => name === '*' || !HEADER_NAME.test(name))) return 'vary'
  return undefined
}

/** Every value of one `Cache-Control` directive (quotes removed; `''` when it has none). */
function directiveValues(cacheControl: string, name: string): string[] {
  const values: string[] = []
  const pattern = new RegExp(`(?:^|[^${TOKEN}])${name}(?:\\s*=\\s*("[^"]*"|[^,\\s]*))?(?![${TOKEN}])`, 'g')
  for (const match of cacheControl.matchAll(pattern)) values.push((match[1] ?? '').replaceAll('"', ''))
  return values
}

/** The response's `Vary` header names, lower-cased and sorted. */
export function varyNames(headers: OutgoingHttpHeaders): string[] {
  const vary = headers.vary
  if (vary === undefined) return []
  const text = Array.isArray(vary) ? vary.join(',') : String(vary)
  const names = text
    .split(',')
    .map((n) => n.trim().toLowerCase())
    .filter((n) => n !== '')
  return [...new Set(names)].sort()
}

/** The headers to store, as a flat list. */
export function storedHeaders(headers: OutgoingHttpHeaders): (string | string[])[] {
  const out: (string | string[])[] = []
  for (const name of Object.keys(headers)) {
    const lower = name.toLowerCase()
    const value = headers[name]
    if (value === undefined || NOT_STORED.has(lower) || lower.startsWith('proxy-')) continue
    out.push(lower, Array.isArray(value) ? value.map(String) : String(value))
  }
  return out
}

/** A strong entity tag from the body's SHA-1: `"<base64url>"`. */
export function bodyEtag(body: Buffer): string {
  return `"${createHash('sha1').update(body).digest('base64url')}"`
}

/** `If-None-Match` evaluation (RFC 9110 §13.1.2): weak comparison, `*` matches any. */
export function etagMatches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (ifNoneMatch === undefined || etag === '') return false
  if (ifNoneMatch.trim() === '*') return true
  const opaque = etag.startsWith('W/') ? etag.slice(2) : etag
  for (const candidate of ifNoneMatch.split(',')) {
    const c = candidate.trim()
    if ((c.startsWith('W/') ? c.slice(2) : c) === opaque) return true
  }
  return false
}

/** Headers a `304` repeats from the `200` it stands for (RFC 9110 §15.4.5). */
export const NOT_MODIFIED_HEADERS = new Set(['cache-control', 'content-location', 'expires', 'vary', 'etag'])

/**
 * Whether a response's `Set-Cookie` sends a line: an empty list (`res.setHeader('Set-Cookie', [])`,
 * a cookie helper that had nothing to set) sends none, and the response is stored as one without it.
 */
export function setsCookie(value: unknown): boolean {
  return value !== undefined && !(Array.isArray(value) && value.length === 0)
}
