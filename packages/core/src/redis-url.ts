import { CacheConfigError } from './errors.js'

/**
 * Redis connection URLs, shared by every package that connects to Redis (the redis backend, the
 * multi-level invalidation bus), so one `REDIS_URL` means the same thing everywhere.
 */

/** A host and port, as ioredis takes them for sentinels and cluster seeds. */
export interface RedisHost {
  host: string
  port: number
}

/** What a connection URL describes. */
export type ParsedRedisUrl =
  | { mode: 'single'; host: string; port: number; db: number; tls: boolean; auth: Auth; query: RedisUrlQuery }
  | {
      mode: 'sentinel'
      sentinels: RedisHost[]
      name: string
      db: number
      tls: boolean
      auth: Auth
      query: RedisUrlQuery
    }
  | { mode: 'cluster'; nodes: RedisHost[]; tls: boolean; auth: Auth; query: RedisUrlQuery }

interface Auth {
  username?: string
  password?: string
}

/** The query parameters a URL may carry. */
export interface RedisUrlQuery {
  /** `?sentinelUsername=` and `?sentinelPassword=`: credentials of the sentinels themselves. */
  sentinelUsername?: string
  sentinelPassword?: string
  /** `?connectionName=`: shown by `CLIENT LIST`. */
  connectionName?: string
  /** `?family=4|6`: IP family for host names. */
  family?: 4 | 6
}

const URL_FORM = /^(rediss?)(\+sentinel|\+cluster)?:\/\/(?:([^@/?#]*)@)?([^/?#]*)(\/[^?#]*)?(\?[^#]*)?$/i
const HOST_PORT = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/i

/**
 * Parses the URL forms @cache/redis understands (passwords are never echoed in errors):
 *
 * - `redis://[[user]:password@]host[:port][/db]` (TLS: `rediss://`)
 * - `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/masterName[/db]`
 * - `redis+cluster://[[user]:password@]host[:port][,host[:port]…]`
 *
 * The credentials in the URL are those of the Redis servers (for Sentinel: of the master and its
 * replicas); sentinels that need their own take `?sentinelUsername=&sentinelPassword=`.
 */
export function parseRedisUrl(url: string): ParsedRedisUrl {
  const match = URL_FORM.exec(url.trim())
  if (!match) fail(url, 'expected redis://, rediss://, redis+sentinel:// or redis+cluster://')
  const [, scheme, variant, userinfo, hostList, path = '', search = ''] = match
  const tls = scheme!.toLowerCase() === 'rediss'
  const mode = variant ? (variant.slice(1).toLowerCase() as 'sentinel' | 'cluster') : 'single'
  const auth = parseAuth(url, userinfo)
  const query = parseQuery(url, search)
  const hosts = parseHosts(url, hostList!, mode === 'sentinel' ? 26379 : 6379)
  const segments = path.split('/').filter(Boolean).map(decodeURIComponent)
  if (mode === 'single') {
    if (hosts.length !== 1) fail(url, 'a redis:// URL names one host (use redis+cluster:// for several)')
    if (segments.length > 1) fail(url, 'the path is the database number, e.g. /0')
    return { mode, ...hosts[0]!, db: parseDb(url, segments[0]), tls, auth, query }
  }
  if (mode === 'sentinel') {
    if (segments.length === 0 || segments.length > 2)
      fail(url, 'expected redis+sentinel://host:port[,host:port…]/masterName[/db]')
    return { mode, sentinels: hosts, name: segments[0]!, db: parseDb(url, segments[1]), tls, auth, query }
  }
  if (segments.length > 0) fail(url, 'a Redis Cluster has no database number: drop the path')
  return { mode, nodes: hosts, tls, auth, query }
}

/** The URL with its password replaced by `***`, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/^([^:]+:\/\/)([^@/]*)@/, (_, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':')
    return `${scheme}${colon === -1 ? '' : userinfo.slice(0, colon + 1)}***@`
  })
}

function parseAuth(url: string, userinfo: string | undefined): Auth {
  if (userinfo === undefined) return {}
  const colon = userinfo.indexOf(':')
  const user = decode(url, colon === -1 ? userinfo : userinfo.slice(0, colon))
  const password = colon === -1 ? undefined : decode(url, userinfo.slice(colon + 1))
  // `redis://secret@host` is the old password-only form (as redis-cli reads it).
  if (password === undefined) return user ? { password: user } : {}
  return { ...(user ? { username: user } : {}), password }
}

function parseHosts(url: string, list: string, defaultPort: number): RedisHost[] {
  const hosts = list.split(',').map((part) => {
    const match = HOST_PORT.exec(part.trim())
    const port = match?.[2] === undefined ? defaultPort : Number(match[2])
    if (!match || port < 1 || port > 65535) fail(url, `${JSON.stringify(part)} is not host[:port]`)
    return { host: match[1]!.replace(/^\[|\]$/g, ''), port }
  })
  if (hosts.length === 0 || hosts[0]!.host === '') fail(url, 'no host')
  return hosts
}

function parseDb(url: string, text: string | undefined): number {
  if (text === undefined) return 0
  if (!/^\d{1,5}$/.test(text)) fail(url, `${JSON.stringify(text)} is not a database number`)
  return Number(text)
}

function parseQuery(url: string, search: string): RedisUrlQuery {
  const query: RedisUrlQuery = {}
  for (const [name, value] of new URLSearchParams(search)) {
    switch (name) {
      case 'sentinelUsername':
      case 'sentinelPassword':
      case 'connectionName':
        query[name] = value
        break
      case 'family':
        if (value !== '4' && value !== '6') fail(url, `family=${value}: expected 4 or 6`)
        query.family = Number(value) as 4 | 6
        break
      default:
        fail(
          url,
          `unknown parameter ${JSON.stringify(name)} (known: sentinelUsername, sentinelPassword, connectionName, family)`,
        )
    }
  }
  return query
}

function decode(url: string, text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return fail(url, 'the credentials are not valid percent-encoding')
  }
}

function fail(url: string, message: string): never {
  throw new CacheConfigError('url', `${JSON.stringify(redactUrl(url))} is not a Redis URL: ${message}`)
}

/** What {@link sentinelConnection} reads of a Sentinel client's options (ioredis `RedisOptions`). */
export interface SentinelClientOptions {
  sentinelUsername?: string | null
  sentinelPassword?: string | null
  enableTLSForSentinelMode?: boolean
  sentinelTLS?: unknown
}

/**
 * The options of a connection of our own to one sentinel of a Sentinel client (its address,
 * credentials and TLS), for the redis switch-over guard and the invalidation bus to listen to
 * the sentinels as the client does. Timeouts, retries and names are the caller's.
 */
export function sentinelConnection(
  options: SentinelClientOptions,
  sentinel: { host?: string; port?: number; family?: number },
): { host: string; port: number; family?: number; username?: string; password?: string; tls?: any } {
  return {
    host: sentinel.host ?? '127.0.0.1',
    port: sentinel.port ?? 26379,
    ...(sentinel.family === undefined ? {} : { family: sentinel.family }),
    username: options.sentinelUsername ?? undefined,
    password: options.sentinelPassword ?? undefined,
    ...(options.enableTLSForSentinelMode && options.sentinelTLS ? { tls: options.sentinelTLS } : {}),
  }
}
