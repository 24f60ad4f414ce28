import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'

/** What the key reads from a request: Express's `protocol`, `hostname`, `app` and `originalUrl` when present. */
type KeyedRequest = IncomingMessage & {
  protocol?: string
  hostname?: string
  originalUrl?: string
  app?: any
}

/** A host name as it may appear in a key: letters, digits, dots, dashes, IPv6 brackets. */
const SAFE_HOST = /^[a-z0-9._\-[\]:]*$/
const SAFE_PORT = /^[0-9]{1,5}$/

/**
 * The built-in key: `<prefix>:<protocol>://<host>[:port]<path>?<sorted query>` plus the values of
 * the `vary` headers. Protocol, host and port are the ones Express resolved for the handler
 * (`req.protocol`, and the `Host` or, under `trust proxy`, the `X-Forwarded-Host` it read
 * `req.hostname` from), so nothing the handler can see of them is left out. The host is
 * lower-cased and without a trailing dot. `undefined` when the host or port is malformed, so such
 * requests bypass the cache instead of poisoning an entry.
 */
export function requestKey(
  req: KeyedRequest,
  keyPrefix: string,
  vary: readonly string[],
): string | undefined {
  const origin = requestOrigin(req)
  if (origin === undefined) return undefined
  return `${keyPrefix}:${origin}${pathAndQuery(req.originalUrl ?? req.url ?? '/')}${varyPart(req.headers, vary)}`
}

/** `http://host[:port]` as Express resolves it for this request, or `undefined` when malformed. */
function requestOrigin(req: KeyedRequest): string | undefined {
  const protocol =
    typeof req.protocol === 'string'
      ? req.protocol
      : (req.socket as { encrypted?: boolean }).encrypted
        ? 'https'
        : 'http'
  if (protocol !== 'http' && protocol !== 'https') return undefined
  const authority = splitAuthority(resolvedHost(req))
  if (authority === undefined) return undefined
  const host = normalizeHost(authority.host)
  if (host === undefined) return undefined
  // Express's own reading of the host must agree with ours, or the key could name another host.
  if (req.hostname !== undefined && normalizeHost(req.hostname) !== host) return undefined
  return authority.port === undefined ? `${protocol}://${host}` : `${protocol}://${host}:${authority.port}`
}

/** The raw `host[:port]` Express reads `req.hostname` from: `X-Forwarded-Host` only when trusted. */
function resolvedHost(req: KeyedRequest): string | undefined {
  const forwarded = req.headers['x-forwarded-host']
  if (forwarded !== undefined && req.hostname !== undefined) {
    const trust = req.app?.get?.('trust proxy fn')
    if (typeof trust === 'function' && trust(req.socket?.remoteAddress, 0)) {
      const first = String(forwarded).split(',')[0]!.trim()
      if (first !== '') return first
    }
  }
  return req.headers.host
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
 * as requests for it over http and https get them.
 */
export function urlKeys(
  url: string,
  keyPrefix: string,
  options: { host?: string; headers?: IncomingHttpHeaders; vary?: readonly string[] } = {},
): string[] {
  let host = options.host
  let target = url
  const absolute = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)
  if (absolute) {
    const parsed = new URL(url)
    host ??= parsed.host
    target = `${parsed.pathname}${parsed.search}`
  }
  const authority = splitAuthority(host)
  const normalized = authority && normalizeHost(authority.host)
  if (authority === undefined || normalized === undefined)
    throw new TypeError(`cannot build a response key for ${url}: give a host`)
  const origin = authority.port === undefined ? normalized : `${normalized}:${authority.port}`
  const rest = `${pathAndQuery(target)}${varyPart(lowerCaseKeys(options.headers ?? {}), options.vary ?? [])}`
  // The app may see either protocol (a TLS proxy without `trust proxy` makes every request http):
  // both entries go.
  return [`${keyPrefix}:http://${origin}${rest}`, `${keyPrefix}:https://${origin}${rest}`]
}

/** The key of one variant of a response that sent `Vary`: the base key plus the varied header values. */
export function variantKey(
  base: string,
  id: string,
  headers: IncomingHttpHeaders,
  names: readonly string[],
): string {
  return `${base}#${id}${varyPart(headers, names)}`
}

function normalizeHost(host: string | undefined): string | undefined {
  if (host === undefined || host === '') return undefined
  let h = host.toLowerCase()
  if (h.endsWith('.')) h = h.slice(0, -1)
  return SAFE_HOST.test(h) ? h : undefined
}

/** The path as sent, and the query parameters sorted by name (repeated names keep their order). */
function pathAndQuery(url: string): string {
  const q = url.indexOf('?')
  if (q === -1) return url
  const params = url
    .slice(q + 1)
    .split('&')
    .filter((p) => p !== '')
  if (params.length === 0) return url.slice(0, q)
  params.sort((a, b) => {
    const ka = paramName(a)
    const kb = paramName(b)
    return ka < kb ? -1 : ka > kb ? 1 : 0
  })
  return `${url.slice(0, q)}?${params.join('&')}`
}

function paramName(param: string): string {
  const eq = param.indexOf('=')
  return eq === -1 ? param : param.slice(0, eq)
}

function varyPart(headers: IncomingHttpHeaders, names: readonly string[]): string {
  let part = ''
  for (const name of names) {
    const value = headers[name]
    part += `|${name}=${value === undefined ? '-' : JSON.stringify(value)}`
  }
  return part
}

function lowerCaseKeys(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {}
  for (const [k, v] of Object.entries(headers)) out[k.toLowerCase()] = v
  return out
}
