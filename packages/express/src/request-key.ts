import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'

/** What the key reads from a request: Express's `hostname` and `originalUrl` when present. */
type KeyedRequest = IncomingMessage & { hostname?: string; originalUrl?: string }

/** A host name as it may appear in a key: letters, digits, dots, dashes, IPv6 brackets. */
const SAFE_HOST = /^[a-z0-9._\-[\]:]*$/

/**
 * The built-in key: `<prefix>:<host><path>?<sorted query>` plus the values of the `vary` headers.
 * The host is the one Express resolved (`req.hostname`, which honours `X-Forwarded-Host` only under
 * `trust proxy`), lower-cased and without a trailing dot. `undefined` when the host is malformed,
 * so such requests bypass the cache instead of poisoning an entry.
 */
export function requestKey(
  req: KeyedRequest,
  keyPrefix: string,
  vary: readonly string[],
): string | undefined {
  const host = normalizeHost(req.hostname ?? hostWithoutPort(req.headers.host))
  if (host === undefined) return undefined
  return `${keyPrefix}:${host}${pathAndQuery(req.originalUrl ?? req.url ?? '/')}${varyPart(req.headers, vary)}`
}

/** The key of a URL (`https://example.com/a?b=1`, or a path with `host`), as a request for it gets. */
export function urlKey(
  url: string,
  keyPrefix: string,
  options: { host?: string; headers?: IncomingHttpHeaders; vary?: readonly string[] } = {},
): string {
  let host = options.host
  let target = url
  const absolute = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)
  if (absolute) {
    const parsed = new URL(url)
    host ??= parsed.hostname
    target = `${parsed.pathname}${parsed.search}`
  }
  const normalized = normalizeHost(host)
  if (normalized === undefined) throw new TypeError(`cannot build a response key for ${url}: give a host`)
  const headers = lowerCaseKeys(options.headers ?? {})
  return `${keyPrefix}:${normalized}${pathAndQuery(target)}${varyPart(headers, options.vary ?? [])}`
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

function hostWithoutPort(host: string | undefined): string | undefined {
  if (host === undefined) return undefined
  const end = host.startsWith('[') ? host.indexOf(']') + 1 : host.indexOf(':')
  return end > 0 ? host.slice(0, end) : host
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
