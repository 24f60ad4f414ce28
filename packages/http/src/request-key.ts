import type { IncomingHttpHeaders } from 'node:http'
import { unescape as lenientDecode } from 'node:querystring'
import { arrivalOf } from './arrivals.js'
import type { HttpRequestView } from './view.js'

/**
 * Separates the parts of a key that do not come from the URL (the `vary` header values, a
 * variant's id): a line feed, which no request target, `Host` or header value can contain (Node's
 * parser refuses it), so no URL can address a variant's key or another header value's key.
 */
const SEPARATOR = '\n'

/** A host name as it may appear in a key: lower-case letters, digits, dots, dashes, IPv6 brackets. */
const CANONICAL_HOST = /^[a-z0-9._\-[\]:]+$/
const SAFE_PORT = /^[0-9]{1,5}$/
/** A port a client may spell out or leave off (`Host: shop.test:80`): the scope leaves it off. */
const DEFAULT_PORT = /:(?:80|443)$/

/**
 * Characters after which URL parsers (Express's `parseurl`, Fastify's) stop reading the target as
 * sent: they drop a fragment (`#`) and trim white space, so the query they route on is not the one
 * a sort of the raw target would name. Node refuses all but `#` in a request target today.
 */
const UNROUTED = /[#\t\n\f\r \u00a0\ufeff]/

/**
 * Query strings with more parameters than this are not keyed: the usual parsers (`qs` and
 * `querystring`) drop the parameters after the 1000th, so two orders of one list could mean two
 * different queries.
 */
const MAX_QUERY_PARAMETERS = 1000

/**
 * The built-in key: `<prefix>:<protocol>://<host>[:port]<path>?<sorted query>` plus the values of
 * the `vary` headers and the adapter's {@link HttpRequestView.keyExtra}. Protocol, host and port are
 * the ones the framework resolved for the handler, so nothing the handler can see of them is left
 * out. `undefined` (the request bypasses the cache) when the protocol is not http(s), the host is
 * missing, malformed or not in its canonical spelling (upper case, a trailing dot, or another
 * spelling than a URL gives it: port `080`, `127.1`, `[0:0:0:0:0:0:0:1]`), when the
 * target holds a `#` or white space (a URL parser routes on what comes before it), is in
 * absolute form, or when the query has more parameters than the usual parsers read.
 */
export function requestKey(
  view: Pick<HttpRequestView, 'protocol' | 'host' | 'url' | 'headers' | 'keyExtra'>,
  keyPrefix: string,
  vary: readonly string[],
): RequestKey | undefined {
  const origin = requestOrigin(view.protocol, view.host)
  if (origin === undefined) return undefined
  const sent = view.url
  if (UNROUTED.test(sent)) return undefined
  // An absolute-form target (`GET http://host/path`, what a client sends a proxy): frameworks route
  // its path, but the handler may see the whole target and reflect it, host included, which need
  // not be the host the framework resolves. Keyed as its path it could plant that text for every
  // client of the URL; keyed as sent, no invalidation of the URL reaches it.
  if (protohostOf(sent) !== '') return undefined
  const target = pathAndQuery(sent)
  if (target === undefined) return undefined
  const varied = varyPart(view.headers, vary)
  const extra = view.keyExtra
  if (extra?.includes(SEPARATOR)) return undefined
  return {
    key: keyWithExtra(`${keyPrefix}:${origin}${target}${varied}`, extra),
    scopes: knownScopes(origin.slice(origin.indexOf('://') + 3), sent),
  }
}

/** A built-in key with the adapter's {@link HttpRequestView.keyExtra}, if any. */
export function keyWithExtra(key: string, extra: string | undefined): string {
  return extra === undefined || extra === '' ? key : `${key}${SEPARATOR}${extra}`
}

/**
 * The scopes of the URLs requested lately: a request for a URL asks for the same ones each time,
 * and computing them (decoding, lower-casing, sorting the query) is most of the key's cost. The
 * same array is handed out for one URL (callers never change it), so a cache may keep what it
 * derives from it. Bounded: emptied when full.
 */
const scopesMemo = new Map<string, readonly string[]>()
const MAX_MEMO = 2_000

function knownScopes(authority: string, target: string): string[] {
  const id = `${authority}${SEPARATOR}${target}`
  let scopes = scopesMemo.get(id)
  if (scopes === undefined) {
    scopes = Object.freeze(urlScopes(authority, target))
    if (scopesMemo.size >= MAX_MEMO) scopesMemo.clear()
    scopesMemo.set(id, scopes)
  }
  return scopes as string[]
}

/**
 * The {@link HttpRequestView.keyExtra} of a request whose host the framework resolved from a
 * trusted proxy's `X-Forwarded-Host`: the `Host` header as sent (`-` when none), when it differs
 * from the resolved host. The handler can still read it (`req.get('host')`,
 * `request.headers.host`, a common way to build absolute links), so a request with a forged
 * `Host` behind a forwarded one keeps its own entry. Invalidating the URL reaches it (the URL's
 * scope leaves it out). `undefined` when both are the same.
 */
export function sentHostPart(resolved: string | undefined, sent: string | undefined): string | undefined {
  if (sent === resolved) return undefined
  return `@host=${sent === undefined ? '-' : JSON.stringify(sent)}`
}

/**
 * The part of a request's key that names its host beyond the one the framework resolved
 * (`req.hostname`, `request.host`): the `Host` header the handler can read when a trusted proxy's
 * `X-Forwarded-Host` resolved another (`@host=`, see {@link sentHostPart}), and the first `Host`
 * line the client sent when a layer before the cache rewrote the header (a legacy domain alias
 * mapped to the new one and flagged on the request for the handler: `@sent-host=`), so that the
 * alias's page is never replayed to clients of the new domain. `invalidate(url, { host })` with
 * the host the app sees reaches both (the URL's scope leaves them out). The rule of
 * `@cache/express`, `@cache/fastify` and `@cache/nestjs`. `read`: the headers the framework reads
 * when they are not Node's (Fastify's `request.headers`, which a hook may replace as a whole).
 * `arrived`: the lines as the request arrived (default: as its server noted them).
 */
export function hostKeyPart(
  resolved: string | undefined,
  raw: { headers: { host?: string; [name: string]: unknown }; rawHeaders?: readonly string[] },
  read: Record<string, unknown> = raw.headers,
  arrived: readonly string[] | undefined = arrivalOf(raw)?.lines,
): string | undefined {
  const seen = raw.headers.host
  // The lines as the server emitted the request (`arrived`: as the adapter noted them otherwise),
  // when it noted them: a listener or hook may have rewritten `rawHeaders` along with `headers` since.
  const lines = arrived ?? raw.rawHeaders
  const sent = sentHost(lines, seen)
  const forwarded = sentHostPart(resolved, seen)
  const rewritten =
    sent === seen ? undefined : `@sent-host=${sent === undefined ? '-' : JSON.stringify(sent)}`
  const parts = [
    forwarded,
    rewritten,
    ...FORWARDING.map(
      (name) => forwardedRewrite(name, raw.headers, lines) ?? forwardedRewrite(name, read, lines),
    ),
  ]
  const key = parts.filter((part) => part !== undefined).join('')
  return key === '' ? undefined : key
}

/** The proxy headers a framework that trusts its proxy resolves the host and protocol from. */
const FORWARDING = ['x-forwarded-host', 'x-forwarded-proto'] as const

/**
 * `@sent-x-forwarded-host=…` when the header the app reads is not what the client (or its proxy)
 * sent: a layer before the cache rewrote it (a legacy domain behind a proxy mapped to the new
 * one and flagged for the handler), and the host or protocol the framework resolves from it no
 * longer tells the two apart. Node joins repeated lines of these headers with `, `.
 */
function forwardedRewrite(
  name: (typeof FORWARDING)[number],
  headers: Record<string, unknown>,
  lines: readonly string[] | undefined,
): string | undefined {
  if (lines === undefined) return undefined
  const sent = lineValue(lines, name)
  if (headers[name] === sent) return undefined
  return `@sent-${name}=${sent === undefined ? '-' : JSON.stringify(sent)}`
}

/**
 * A header's value in raw header lines (name, value, …) as Node reads it into `headers`: the
 * first line for `host`, the lines joined with `, ` for the others this module reads
 * (`X-Forwarded-Host`, `X-Forwarded-Proto`). `name` in lower case.
 */
export function lineValue(lines: readonly string[], name: string): string | undefined {
  let value: string | undefined
  for (let i = 0; i + 1 < lines.length; i += 2) {
    if (lines[i]!.length !== name.length || lines[i]!.toLowerCase() !== name) continue
    if (name === 'host') return lines[i + 1]
    value = value === undefined ? lines[i + 1] : `${value}, ${lines[i + 1]}`
  }
  return value
}

/** The first `Host` line the client sent (Node keeps the first), or `seen` without raw lines. */
function sentHost(rawHeaders: readonly string[] | undefined, seen: string | undefined): string | undefined {
  return rawHeaders === undefined ? seen : lineValue(rawHeaders, 'host')
}

/**
 * A request's key, and its invalidation scopes: the coarser keys whose generations
 * `invalidate(url)` renews, shared by every spelling of the URL that a framework may route to the
 * same handler (see {@link urlScopes}). Its entry is served only while every one is current.
 */
export interface RequestKey {
  key: string
  /** One scope; three for a path holding `;` (see {@link urlScopes}). */
  scopes: string[]
}

/**
 * The invalidation scopes of a URL, whatever the `keyPrefix` (as tags are): invalidating a URL
 * reaches its entries under every `keyPrefix`, in every process, without knowing the prefixes. The
 * first scope: host (both protocols, without a default port: `:80`
 * and `:443` name the host the framework resolves without one), the path with percent-escapes
 * decoded, lower-cased, runs of slashes made one and without trailing slashes (Express routes
 * case-insensitively and with an optional trailing slash by default, and decodes parameters;
 * Fastify's `caseSensitive: false`, `ignoreTrailingSlash` and `ignoreDuplicateSlashes` do the
 * same), the query parsed, decoded, sorted and without empty pairs. The values of the headers of
 * the `vary` option are not in it: invalidating a URL reaches every variant of them (the values
 * given in `headers` only choose which entries are deleted at once to free their space).
 *
 * A path holding `;` has two more: Fastify's `useSemicolonDelimiter` routes `/a;b=1` to `/a` with
 * the query `b=1` (everything after the `;`, a `?` included), and `;` parameters such as
 * `;jsessionid=…` are commonly ignored (`/a` with the `?` query only). An entry is reached through
 * any of its scopes, and invalidating a URL renews every scope of it: `/a;b=1` is reached from
 * `/a`, `/a?b=1` and `/a;b=1`.
 *
 * Entries keep their exact key (a parameter keeps its case); only invalidation is coarser:
 * invalidating `/Products/1/` also renews `/products/1`, and in an app with case-sensitive or
 * strict routing, `/a` also renews `/A`.
 */
function urlScopes(authority: string, target: string): string[] {
  const host = authority.replace(DEFAULT_PORT, '')
  const q = target.indexOf('?')
  const path = q === -1 ? target : target.slice(0, q)
  const query = q === -1 ? '' : target.slice(q + 1)
  const scopes = scopesOf(host, path, query)
  const semicolon = path.indexOf(';')
  if (semicolon !== -1) {
    const routed = path.slice(0, semicolon)
    for (const other of [
      ...scopesOf(host, routed, target.slice(semicolon + 1)),
      ...scopesOf(host, routed, query),
    ])
      if (!scopes.includes(other)) scopes.push(other)
  }
  return scopes
}

/**
 * The scope of a path and query; two when the query holds a percent sign that does not start a
 * valid UTF-8 escape (`50%+off`, a Latin-1 `%E9`): `qs` (Express's `'extended'` parser) keeps such
 * a value as sent, while Node's `querystring` (`'simple'`, Fastify's default reads alike) decodes
 * every valid escape around it and turns invalid UTF-8 into U+FFFD. Each reading has its scope, so
 * invalidating a spelling reaches the entries of every spelling either parser reads as the same.
 */
function scopesOf(host: string, path: string, query: string): string[] {
  const scope = (canonical: string) =>
    `${SEPARATOR}url ${host}${canonicalPath(path)}${canonical === '' ? '' : `?${canonical}`}`
  const strict = canonicalQuery(query, safeDecode)
  if (!query.includes('%')) return [scope(strict)]
  const lenient = canonicalQuery(query, lenientDecode)
  return lenient === strict ? [scope(strict)] : [scope(strict), scope(lenient)]
}

function canonicalPath(path: string): string {
  const decoded = path
    .split('/')
    .map((segment) => safeDecode(segment))
    .join('/')
    .toLowerCase()
    .replace(SLASHES, '/')
  let end = decoded.length
  while (end > 1 && decoded[end - 1] === '/') end--
  return decoded.slice(0, end)
}

/** Two or more slashes in a row: one to Fastify's `ignoreDuplicateSlashes`. */
const SLASHES = /\/{2,}/g

/**
 * The query as a set of decoded pairs, sorted. Coarser than any parser, so that every spelling
 * Express 4's `qs` reads as one query shares it: a pair without a name is dropped (`qs` drops
 * `=x`), and list brackets and indices are dropped (`ids=1&ids=2`, `ids[]=1&ids[]=2` and
 * `ids[0]=1&ids[1]=2` are all `{ ids: ['1', '2'] }`).
 */
function canonicalQuery(query: string, decode: (text: string) => string): string {
  const pairs: [string, string][] = []
  for (const param of query.split('&')) {
    if (param === '') continue
    const eq = param.indexOf('=')
    const name = decode((eq === -1 ? param : param.slice(0, eq)).replaceAll('+', ' ')).replace(
      LIST_BRACKETS,
      '',
    )
    if (name === '') continue
    const value = eq === -1 ? '' : decode(param.slice(eq + 1).replaceAll('+', ' '))
    pairs.push([name, value])
  }
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
  return pairs.map(([n, v]) => `${encodeURIComponent(n)}=${encodeURIComponent(v)}`).join('&')
}

/**
 * `[]` and `[<index>]` in a parameter name: `qs` reads `ids`, `ids[]` and `ids[0]` as one list.
 * Other bracket spellings `qs` reads as one (`[page]` and `page`, `a[b]x` and `a[b]`) are not
 * canonical here: under that parser such requests bypass the cache (see
 * `expressQueryParserBypass`).
 */
const LIST_BRACKETS = /\[\s*\d*\s*\]/g

/** Percent-escapes decoded, or the text as it is when they do not decode. */
function safeDecode(text: string): string {
  if (!text.includes('%')) return text
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

/** `scheme://host` of an absolute-form target, or `''`. */
export function protohostOf(url: string): string {
  if (url === '' || url[0] === '/') return ''
  const query = url.indexOf('?')
  const scheme = url.slice(0, query === -1 ? url.length : query).indexOf('://')
  if (scheme === -1) return ''
  const path = url.indexOf('/', scheme + 3)
  return path === -1 ? url : url.slice(0, path)
}

/** `http://host[:port]` in the one spelling the cache stores, or `undefined`. */
function requestOrigin(protocol: string, host: string | undefined): string | undefined {
  if (protocol !== 'http' && protocol !== 'https') return undefined
  if (host === undefined) return undefined
  const memo = protocol === 'https' ? httpsOrigins : httpOrigins
  const known = memo.get(host)
  if (known !== undefined) return known ?? undefined
  const origin = originOf(protocol, host)
  if (host.length <= MAX_MEMO_TARGET) {
    if (memo.size >= MAX_MEMO) memo.clear()
    memo.set(host, origin ?? null)
  }
  return origin
}

/** The origins of the hosts requested lately, by protocol (`null`: not canonical). Bounded. */
const httpOrigins = new Map<string, string | null>()
const httpsOrigins = new Map<string, string | null>()

function originOf(protocol: string, host: string): string | undefined {
  const authority = splitAuthority(host)
  if (
    authority === undefined ||
    !CANONICAL_HOST.test(authority.host) ||
    authority.host.endsWith('.') ||
    urlHost(authority.host, authority.port) !== host
  )
    return undefined
  return authority.port === undefined
    ? `${protocol}://${authority.host}`
    : `${protocol}://${authority.host}:${authority.port}`
}

/**
 * `host[:port]` as a URL spells it (`new URL()`, which `invalidateResponse(url)` reads the host
 * with): a port without leading zeros (`080` is `80`), an IPv4 address in dotted decimal (`127.1`,
 * `0x7f000001` and `127.000.000.001` are `127.0.0.1`), an IPv6 address compressed
 * (`[0:0:0:0:0:0:0:1]` is `[::1]`). A default port stays as given (`:80` and `:443` are both left
 * off by the scope). `undefined` when a URL cannot hold it (a port over 65535, `shop.0x10`).
 */
function urlHost(host: string, port: string | undefined): string | undefined {
  let hostname: string
  try {
    hostname = new URL(`http://${host}`).hostname
  } catch {
    return undefined
  }
  if (port === undefined) return hostname
  const number = Number(port)
  return number > 65_535 ? undefined : `${hostname}:${number}`
}

export function splitAuthority(
  value: string | undefined,
): { host: string; port: string | undefined } | undefined {
  if (value === undefined || value === '') return undefined
  const end = value.startsWith('[') ? value.indexOf(']') + 1 : value.indexOf(':')
  if (end <= 0) return { host: value, port: undefined }
  const rest = value.slice(end)
  if (rest === '') return { host: value.slice(0, end), port: undefined }
  if (rest[0] !== ':' || !SAFE_PORT.test(rest.slice(1))) return undefined
  return { host: value.slice(0, end), port: rest.slice(1) }
}

/**
 * The keys of a URL (`https://example.com/a?b=1`, or a path with `host`, which may carry a port),
 * as requests for it over http and https get them, and its invalidation scopes. The host is taken
 * in its canonical spelling (lower case, no trailing dot, as a URL spells it: port `080` is `80`,
 * `127.1` is `127.0.0.1`), the only one the cache stores.
 */
export function urlKeys(
  url: string,
  keyPrefix: string,
  options: { host?: string; headers?: IncomingHttpHeaders; vary?: readonly string[] } = {},
): { keys: string[]; scopes: string[] } {
  let host = options.host
  let target = url
  const absolute = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)
  if (absolute) {
    const parsed = new URL(url)
    host ??= parsed.host
    target = `${parsed.pathname}${parsed.search}`
  }
  const given = splitAuthority(host)
  const lower = given?.host.toLowerCase().replace(/\.$/, '')
  const path = pathAndQuery(target)
  if (given === undefined || lower === undefined || !CANONICAL_HOST.test(lower) || path === undefined)
    throw new TypeError(`cannot build a response key for ${url}: give a host`)
  // Another spelling of the host (`127.1`, port `080`) names the entries of the one a URL gives it:
  // requests in any other spelling are never stored (see originOf).
  const authority = splitAuthority(urlHost(lower, given.port)) ?? { host: lower, port: given.port }
  const canonical = authority.host
  const origin = authority.port === undefined ? canonical : `${canonical}:${authority.port}`
  const varied = varyPart(lowerCaseKeys(options.headers ?? {}), options.vary ?? [])
  const rest = `${path}${varied}`
  // The app may see either protocol (a TLS proxy without `trust proxy` makes every request http):
  // both entries go, and the scope names neither. A default port may have been spelled out by
  // the client or left off: the entries of both spellings go.
  const origins = new Set([`http://${origin}`, `https://${origin}`])
  if (authority.port === undefined || DEFAULT_PORT.test(`:${authority.port}`))
    for (const o of [canonical, `${canonical}:80`, `${canonical}:443`])
      for (const protocol of ['http', 'https']) origins.add(`${protocol}://${o}`)
  return {
    keys: [...origins].map((o) => `${keyPrefix}:${o}${rest}`),
    scopes: urlScopes(origin, target),
  }
}

/** The key of one variant of a response that sent `Vary`: the base key plus the varied header values. */
export function variantKey(
  base: string,
  id: string,
  headers: IncomingHttpHeaders,
  names: readonly string[],
): string {
  return `${base}${SEPARATOR}#${id}${varyPart(headers, names)}`
}

/**
 * The key of a request at one site of the app (see site.ts): `''` for entries that every site
 * shares (`frontSkipsAllMiddleware`). The line feed keeps it out of reach of any URL.
 */
export function siteKey(key: string, site: string): string {
  return site === '' ? key : `${key}${SEPARATOR}@${site}`
}

/** Whether `key` is `base` itself or one of its variants. */
export function isKeyOf(key: string, base: string): boolean {
  return key === base || key.startsWith(`${base}${SEPARATOR}#`)
}

/** A key built by the `key` option must not reach into the key space of variants. */
export function isSafeCustomKey(key: string): boolean {
  return !key.includes(SEPARATOR)
}

/**
 * The path as sent, and the query parameters sorted by their decoded name; parameters with the
 * same name keep their order (`a=1&a=2` is the list `[1, 2]`). Only plain names are reordered: when
 * a name holds `[`, `]` or `.` (which `qs` turns into nesting, where order changes what
 * `a[b]=1&a=2` means) or does not decode, the query keeps its order. `undefined` for more
 * parameters than the parsers read.
 */
function pathAndQuery(url: string): string | undefined {
  const q = url.indexOf('?')
  if (q === -1) return url
  if (url.length > MAX_MEMO_TARGET) return sortedQuery(url, q)
  const known = targetsMemo.get(url)
  if (known !== undefined) return known ?? undefined
  const target = sortedQuery(url, q)
  if (targetsMemo.size >= MAX_MEMO) targetsMemo.clear()
  targetsMemo.set(url, target ?? null)
  return target
}

/**
 * The targets with a query requested lately, as {@link pathAndQuery} spells them (`null`: too many
 * parameters): decoding and sorting the query is the most of a key's cost, and a URL asks for the
 * same each time. Bounded: emptied when full; long targets are not kept.
 */
const targetsMemo = new Map<string, string | null>()
const MAX_MEMO_TARGET = 2_048

function sortedQuery(url: string, q: number): string | undefined {
  // Empty parameters stay: `/a?` and `/a` are two request targets a handler can tell apart.
  const params = url.slice(q + 1).split('&')
  if (params.length > MAX_QUERY_PARAMETERS) return undefined
  const named: { param: string; name: string }[] = []
  for (const param of params) {
    const name = plainName(param)
    if (name === undefined) return `${url.slice(0, q)}?${params.join('&')}`
    named.push({ param, name })
  }
  // Array.prototype.sort is stable: parameters of one name keep their order.
  named.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  return `${url.slice(0, q)}?${named.map((p) => p.param).join('&')}`
}

/** The name of a query parameter as the parsers decode it, or `undefined` when it is not plain. */
function plainName(param: string): string | undefined {
  const eq = param.indexOf('=')
  let name: string
  try {
    name = decodeURIComponent((eq === -1 ? param : param.slice(0, eq)).replaceAll('+', ' '))
  } catch {
    return undefined
  }
  return /[[\].]/.test(name) ? undefined : name
}

/**
 * The values of the varied headers, as a key part. `Referer` and `Referrer` are one header to
 * Express (`req.get('referer')` answers `Referrer` first, and so does `req.get('referrer')`), which
 * Nest's Express platform hands its handlers too: whichever spelling is varied, the other one's
 * value is keyed as well when the request holds it, so a client sending the other spelling never
 * plants its variant for a client without it. Requests without it keep the key they always had.
 * `(` is not a header-name character: no varied name spells the alias part.
 */
function varyPart(headers: IncomingHttpHeaders, names: readonly string[]): string {
  let part = ''
  for (const name of names) {
    const value = headers[name]
    part += `${SEPARATOR}${name}=${value === undefined ? '-' : JSON.stringify(value)}`
    const alias = name === 'referer' ? 'referrer' : name === 'referrer' ? 'referer' : undefined
    if (alias !== undefined && headers[alias] !== undefined)
      part += `${SEPARATOR}(${alias})=${JSON.stringify(headers[alias])}`
  }
  return part
}

/** Whether two requests' headers give one variant of the headers `names`. */
export function sameVariantValues(
  a: IncomingHttpHeaders,
  b: IncomingHttpHeaders,
  names: readonly string[],
): boolean {
  return varyPart(a, names) === varyPart(b, names)
}

function lowerCaseKeys(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {}
  for (const [k, v] of Object.entries(headers)) out[k.toLowerCase()] = v
  return out
}
