/**
 * The Redis connections of the invalidation bus: built from any form @cache/redis accepts (URL,
 * ioredis options, a client), with settings for publishing (fail fast) and subscribing (queue the
 * SUBSCRIBE until connected), and closed without waiting on a server that never answered.
 */
import { CacheConfigError } from '@cache/core'
import { parseRedisUrl, unrefRedisClient } from '@cache/core/backend'

/** The part of an ioredis client (`Redis` or `Cluster`) the bus uses. */
export interface RedisClientLike {
  publish(channel: string, message: string): Promise<unknown>
  subscribe(...channels: string[]): Promise<unknown>
  unsubscribe?(...channels: string[]): Promise<unknown>
  duplicate(...args: any[]): RedisClientLike
  on(event: string, listener: (...args: any[]) => void): unknown
  once?(event: string, listener: (...args: any[]) => void): unknown
  off?(event: string, listener: (...args: any[]) => void): unknown
  quit(): Promise<unknown>
  disconnect?(reconnect?: boolean): void
  readonly status?: string
  readonly isCluster?: boolean
  readonly options?: Record<string, any>
  /** The socket of a single-node client (where it is connected). */
  readonly stream?: { remoteAddress?: string; remotePort?: number }
  /** A cluster client's node connections. */
  nodes?(role?: 'all' | 'master' | 'slave'): RedisClientLike[]
}

/**
 * Where the bus connects: any form the redis backend accepts.
 *
 * - a URL: `redis://`, `rediss://`, `redis+sentinel://host:port[,…]/masterName`,
 *   `redis+cluster://host:port[,…]` (see @cache/redis for the full grammar);
 * - ioredis options for one node or Sentinel (`{ host, port }`, `{ sentinels, name }`), or
 *   `{ cluster: [{ host, port }, …], …ClusterOptions }`;
 * - an ioredis `Redis` or `Cluster` client (e.g. `redisBackend(url).client`).
 */
export type RedisBusConnection = string | RedisClientLike | Record<string, unknown>

/** The bus's two connections, and those it opened itself (and closes). */
export interface Clients {
  publisher: RedisClientLike
  subscriber: RedisClientLike
  owned: RedisClientLike[]
}

/**
 * QUIT when connected (bounded), else drop the connection: a QUIT sent while Redis is unreachable
 * would wait in the offline queue for good.
 */
export async function closeClient(client: RedisClientLike, ms: number): Promise<void> {
  if (client.status === 'ready') {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms)
    })
    await Promise.race([client.quit().catch(() => {}), late])
    clearTimeout(timer)
  }
  client.disconnect?.()
}

const CONNECTING = new Set(['wait', 'connecting', 'connect', 'reconnecting'])
const readiness = new WeakMap<RedisClientLike, Promise<void>>()

/** Resolves when the client can send, or at once if it is not connecting (the send then fails fast). */
export function whenReady(client: RedisClientLike): Promise<void> {
  if (client.status === undefined || !CONNECTING.has(client.status) || !client.once) return Promise.resolve()
  let ready = readiness.get(client)
  if (ready === undefined) {
    // One listener per client however many sends wait for it.
    ready = new Promise<void>((resolve) => client.once!('ready', () => resolve())).finally(() =>
      readiness.delete(client),
    )
    readiness.set(client, ready)
  }
  return ready
}

/** Connection settings of the bus's own clients: fail fast when publishing, queue the SUBSCRIBE. */
const PUBLISHER = { enableOfflineQueue: false, maxRetriesPerRequest: 0 }
const SUBSCRIBER = { enableOfflineQueue: true, maxRetriesPerRequest: null, autoResubscribe: true }
const RECONNECT = { retryStrategy: (attempt: number) => Math.min(attempt * 50, 500) }

/** What the bus connects to: a client passed in, or the ioredis settings of a URL or options. */
export type Target = RedisClientLike | Described

export async function openClients(target: Target, extra: Record<string, unknown>): Promise<Clients> {
  // The connections the bus opens must not keep the process alive (a client passed in is its owner's).
  if (isClient(target)) {
    const subscriber = duplicateForSubscribing(target)
    unrefRedisClient(subscriber)
    return { publisher: target, subscriber, owned: [subscriber] }
  }
  const { Redis, Cluster } = await import('ioredis')
  const { nodes, options } = target
  const build = (settings: Record<string, unknown>): RedisClientLike => {
    if (nodes !== undefined) {
      const { redisOptions, ...clusterOptions } = options as { redisOptions?: Record<string, unknown> }
      return new Cluster(nodes, {
        clusterRetryStrategy: RECONNECT.retryStrategy,
        ...clusterOptions,
        enableOfflineQueue: settings.enableOfflineQueue as boolean,
        redisOptions: { ...redisOptions, ...extra, ...settings },
      }) as unknown as RedisClientLike
    }
    return new Redis({ ...RECONNECT, ...options, ...extra, ...settings }) as unknown as RedisClientLike
  }
  const publisher = build(PUBLISHER)
  publisher.on('error', () => {})
  const subscriber = build(SUBSCRIBER)
  unrefRedisClient(publisher)
  unrefRedisClient(subscriber)
  return { publisher, subscriber, owned: [publisher, subscriber] }
}

/** The subscriber for a client passed in: its settings, but queueing commands until connected. */
function duplicateForSubscribing(client: RedisClientLike): RedisClientLike {
  // A client built to fail fast (no offline queue, a command timeout) would drop the SUBSCRIBE
  // sent before its connection is up, and never receive anything.
  if (client.isCluster) {
    const redisOptions = { ...client.options?.redisOptions, ...SUBSCRIBER, commandTimeout: undefined }
    return client.duplicate([], { enableOfflineQueue: true, lazyConnect: false, redisOptions })
  }
  return client.duplicate({ ...SUBSCRIBER, commandTimeout: undefined, lazyConnect: false })
}

/** ioredis options for a URL or an options object; `nodes` for a cluster. */
interface Described {
  nodes?: { host: string; port: number }[]
  options: Record<string, unknown>
}

export function describe(connection: string | Record<string, unknown>): Described {
  if (typeof connection !== 'string' && (typeof connection !== 'object' || connection === null))
    throw new CacheConfigError('connection', 'expected a Redis URL, ioredis options or an ioredis client')
  if (typeof connection !== 'string') {
    const { cluster, ...options } = connection as { cluster?: unknown }
    if (Array.isArray(cluster)) return { nodes: cluster, options }
    return { options }
  }
  const url = parseRedisUrl(connection)
  const common: Record<string, unknown> = {
    ...(url.auth.username === undefined ? {} : { username: url.auth.username }),
    ...(url.auth.password === undefined ? {} : { password: url.auth.password }),
    ...(url.query.connectionName === undefined ? {} : { connectionName: url.query.connectionName }),
    ...(url.query.family === undefined ? {} : { family: url.query.family }),
    ...(url.tls ? { tls: {} } : {}),
  }
  if (url.mode === 'cluster') return { nodes: url.nodes, options: { redisOptions: common } }
  if (url.mode === 'sentinel') {
    return {
      options: {
        ...common,
        sentinels: url.sentinels,
        name: url.name,
        db: url.db,
        ...(url.query.sentinelUsername === undefined ? {} : { sentinelUsername: url.query.sentinelUsername }),
        ...(url.query.sentinelPassword === undefined ? {} : { sentinelPassword: url.query.sentinelPassword }),
        ...(url.tls ? { enableTLSForSentinelMode: true, sentinelTLS: {} } : {}),
      },
    }
  }
  return { options: { ...common, host: url.host, port: url.port, db: url.db } }
}

export function isClient(value: unknown): value is RedisClientLike {
  const v = value as Partial<RedisClientLike> | null
  return typeof v?.publish === 'function' && typeof v.duplicate === 'function'
}

/** Where the bus connects, for messages: `host:port`, the seed nodes, or the sentinels. */
export function addressOf(target: Target): string {
  const options = (isClient(target) ? target.options : target.options) ?? {}
  const nodes = isClient(target) ? undefined : target.nodes
  if (nodes !== undefined) return `cluster ${nodes.map((n) => `${n.host}:${n.port}`).join(',')}`
  const sentinels = options.sentinels as { host?: string; port?: number }[] | undefined
  if (Array.isArray(sentinels) && sentinels.length > 0)
    return `master "${options.name}" of sentinels ${sentinels.map((s) => `${s.host ?? '127.0.0.1'}:${s.port ?? 26379}`).join(',')}`
  if (isClient(target) && target.isCluster) return 'cluster'
  return `${options.host ?? '127.0.0.1'}:${options.port ?? 6379}`
}
