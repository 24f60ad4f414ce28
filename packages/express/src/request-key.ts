import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'

/**
 * What the key reads from a request: Express's `protocol`, `hostname`, `app`, `originalUrl` and
 * `baseUrl` when present.
 */
type KeyedRequest = IncomingMessage & {
  protocol?: string
  hostname?: string
  originalUrl?: string
  baseUrl?: string
  app?: any
}

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
 * Characters after which Express's URL parser (`parseurl`) stops reading the target as sent: it
 * drops a fragment (`#`) and trims white space, so the query it routes on is not the one a sort
 * of the raw target would name. Node refuses all but `#` in a request target today.
 */
const UNROUTED = /[#\t\n\f\r \u00a0\ufeff]/

/**
 * Query strings with more parameters than this are not keyed: Express's parsers (`qs` and
 * `querystring`) drop the parameters after the 1000th, so two orders of one list could mean two
 * different queries.
 */
const MAX_QUERY_PARAMETERS = 1000

/**
 * The built-in key: `<prefix>:<protocol>://<host>[:port]<path>?<sorted query>` plus the values of
 * the `vary` headers. Protocol, host and port are the ones Express resolved for the handler
 * (`req.protocol`, and the `Host` or, under `trust proxy`, the `X-Forwarded-Host` it read
 * `req.hostname` from), so nothing the handler can see of them is left out. `undefined` (the
 * request bypasses the cache) when the host is malformed, not in its canonical spelling (upper
 * case, a trailing dot), when Express resolves no host or another one, when the target holds a
 * `#` (Express routes on what comes before it), or when the query has more parameters than Express
 * parses.
 */
export function requestKey(
  req: KeyedRequest,
  keyPrefix: string,
  vary: readonly string[],
): RequestKey | undefined {
  const origin = requestOrigin(req)
  if (origin === undefined) return undefined
  const sent = req.originalUrl ?? req.url ?? '/'
  if (UNROUTED.test(sent)) return undefined
  // An absolute-form target (`GET http://host/path`, what a client sends a proxy): Express routes
  // its path, but the handler sees the whole target in `originalUrl` and may reflect it, host
  // included, which need not be the `Host` Express resolves. Keyed as its path it could plant that
  // text for every client of the URL; keyed as sent, no invalidation of the URL reaches it.
  if (protohostOf(sent) !== '') return undefined
  const target = pathAndQuery(sent)
  if (target === undefined) return undefined
  const varied = varyPart(req.headers, vary)
  return {
    key: `${keyPrefix}:${origin}${target}${varied}${forwardedPart(req)}`,
    scope: urlScope(keyPrefix, origin.slice(origin.indexOf('://') + 3), sent, varied),
  }
}

/**
 * Under `trust proxy`, the host comes from `X-Forwarded-Host`, and the `Host` header the handler
 * can still read (`req.get('host')`, a common way to build absolute links) is another input: when
 * it differs, it is part of the key, so a request with a forged `Host` behind a forwarded one
 * keeps its own entry. Invalidation by URL reaches it (the URL's scope leaves it out).
 */
function forwardedPart(req: KeyedRequest): string {
  const forwarded = req.headers['x-forwarded-host']
  if (forwarded === undefined) return ''
  const host = req.headers.host
  if (host === undefined || resolvedHost(req) === host) return ''
  return `${SEPARATOR}@host=${JSON.stringify(host)}`
}

/**
 * A request's key, and its invalidation scope: the coarser key whose generation
 * `invalidate(url)` renews, shared by every spelling of the URL that Express may route to the same
 * handler (see {@link urlScope}).
 */
export interface RequestKey {
  key: string
  scope: string
}

/**
 * The invalidation scope of a URL: host (both protocols, without a default port: `:80` and `:443`
 * name the host Express resolves without one), the path with percent-escapes decoded,
 * lower-cased and without trailing slashes (Express routes case-insensitively and with an optional
 * trailing slash by default, and decodes parameters), the query parsed, decoded, sorted and
 * without empty pairs, and the `vary` header values. Entries keep their exact key (a parameter
 * keeps its case); only invalidation is coarser: invalidating `/Products/1/` also renews
 * `/products/1`, and in an app with case-sensitive or strict routing, `/a` also renews `/A`.
 */
function urlScope(keyPrefix: string, authority: string, target: string, varied: string): string {
  const host = authority.replace(DEFAULT_PORT, '')
  const q = target.indexOf('?')
  const path = canonicalPath(q === -1 ? target : target.slice(0, q))
  const query = q === -1 ? '' : canonicalQuery(target.slice(q + 1))
  return `${keyPrefix}:${SEPARATOR}url ${host}${path}${query === '' ? '' : `?${query}`}${varied}`
}

function canonicalPath(path: string): string {
  const decoded = path
    .split('/')
    .map((segment) => safeDecode(segment))
    .join('/')
    .toLowerCase()
  let end = decoded.length
  while (end > 1 && decoded[end - 1] === '/') end--
  return decoded.slice(0, end)
}

/**
 * The query as a set of decoded pairs, sorted. Coarser than any parser, so that every spelling
 * Express 4's `qs` reads as one query shares it: a pair without a name is dropped (`qs` drops
 * `=x`), and list brackets and indices are dropped (`ids=1&ids=2`, `ids[]=1&ids[]=2` and
 * `ids[0]=1&ids[1]=2` are all `{ ids: ['1', '2'] }`).
 */
function canonicalQuery(query: string): string {
  const pairs: [string, string][] = []
  for (const param of query.split('&')) {
    if (param === '') continue
    const eq = param.indexOf('=')
    const name = safeDecode((eq === -1 ? param : param.slice(0, eq)).replaceAll('+', ' ')).replace(
      LIST_BRACKETS,
      '',
    )
    if (name === '') continue
    const value = eq === -1 ? '' : safeDecode(param.slice(eq + 1).replaceAll('+', ' '))
    pairs.push([name, value])
  }
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
  return pairs.map(([n, v]) => `${encodeURIComponent(n)}=${encodeURIComponent(v)}`).join('&')
}

/** `[]` and `[<index>]` in a parameter name: `qs` reads `ids`, `ids[]` and `ids[0]` as one list. */
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

/**
 * Whether Express routes `req` on the URL it was sent with (`originalUrl`, which the key names):
 * `baseUrl` + `url` must lead back to it. Mounting strips the mount path from `url` (`/admin?x`
 * is routed as `/?x` under `baseUrl` `/admin`); middleware that rewrites `req.url` (an internal
 * rewrite, a history-API fallback) makes the request another one than its key says.
 */
export function isRoutedAsSent(req: KeyedRequest): boolean {
  const sent = req.originalUrl
  const url = req.url
  // Outside Express (no `originalUrl`) the key is `url` itself.
  if (sent === undefined || url === undefined) return true
  const base = req.baseUrl ?? ''
  // An absolute-form target (`GET http://host/path`): Express keeps `http://host` in front of `url`.
  const protohost = protohostOf(sent)
  if (!url.startsWith(protohost)) return false
  const routed = url.slice(protohost.length)
  const path = sent.slice(protohost.length)
  if (!path.startsWith(base)) return false
  const rest = path.slice(base.length)
  // Express adds the leading slash a mount path left out (`/admin` → `/`, `/admin?x` → `/?x`).
  return routed === rest || (protohost === '' && (rest === '' || rest[0] === '?') && routed === `/${rest}`)
}

/** `scheme://host` of an absolute-form target as Express reads it, or `''`. */
function protohostOf(url: string): string {
  if (url === '' || url[0] === '/') return ''
  const query = url.indexOf('?')
  const scheme = url.slice(0, query === -1 ? url.length : query).indexOf('://')
  if (scheme === -1) return ''
  const path = url.indexOf('/', scheme + 3)
  return path === -1 ? url : url.slice(0, path)
}

/** `http://host[:port]` as Express resolves it for this request, or `undefined`. */
function requestOrigin(req: KeyedRequest): string | undefined {
  const protocol =
    typeof req.protocol === 'string'
      ? req.protocol
      : (req.socket as { encrypted?: boolean } | undefined)?.encrypted
        ? 'https'
        : 'http'
  if (protocol !== 'http' && protocol !== 'https') return undefined
  const authority = splitAuthority(resolvedHost(req))
  if (authority === undefined || !CANONICAL_HOST.test(authority.host) || authority.host.endsWith('.'))
    return undefined
  // Express's own reading of the host must be exactly ours; a request where Express resolves no
  // host at all (`X-Forwarded-Host: ,x` under trust proxy) has nothing to key on.
  if ('hostname' in req && req.hostname !== authority.host) return undefined
  return authority.port === undefined
    ? `${protocol}://${authority.host}`
    : `${protocol}://${authority.host}:${authority.port}`
}

/**
 * The raw `host[:port]` Express reads `req.hostname` from, by Express's own rule: the first
 * `X-Forwarded-Host` entry when the app trusts the peer, else `Host`.
 */
function resolvedHost(req: KeyedRequest): string | undefined {
  let value = req.headers['x-forwarded-host'] as string | undefined
  const trust = req.app?.get?.('trust proxy fn')
  if (!value || typeof trust !== 'function' || !trust(req.socket?.remoteAddress, 0)) {
    value = req.headers.host
  } else if (value.includes(',')) {
    value = value.slice(0, value.indexOf(',')).trimEnd()
  }
  return value || undefined
}

function splitAuthority(value: string | undefined): { host: string; port: string | undefined } | undefined {
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
 * as requests for it over http and https get them, and its invalidation scope. The host is taken in its canonical spelling
 * (lower case, no trailing dot), the only one the cache stores.
 */
export function urlKeys(
  url: string,
  keyPrefix: string,
  options: { host?: string; headers?: IncomingHttpHeaders; vary?: readonly string[] } = {},
): { keys: string[]; scope: string } {
  let host = options.host
  let target = url
  const absolute = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)
  if (absolute) {
    const parsed = new URL(url)
    host ??= parsed.host
    target = `${parsed.pathname}${parsed.search}`
  }
  const authority = splitAuthority(host)
  const canonical = authority?.host.toLowerCase().replace(/\.$/, '')
  const path = pathAndQuery(target)
  if (
    authority === undefined ||
    canonical === undefined ||
    !CANONICAL_HOST.test(canonical) ||
    path === undefined
  )
    throw new TypeError(`cannot build a response key for ${url}: give a host`)
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
    scope: urlScope(keyPrefix, origin, target, varied),
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
 * parameters than Express parses.
 */
function pathAndQuery(url: string): string | undefined {
  const q = url.indexOf('?')
  if (q === -1) return url
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

function varyPart(headers: IncomingHttpHeaders, names: readonly string[]): string {
  let part = ''
  for (const name of names) {
    const value = headers[name]
    part += `${SEPARATOR}${name}=${value === undefined ? '-' : JSON.stringify(value)}`
  }
  return part
}

function lowerCaseKeys(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {}
  for (const [k, v] of Object.entries(headers)) out[k.toLowerCase()] = v
  return out
}
