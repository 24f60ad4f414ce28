import type { ConnectionOptions } from 'node:tls'
import { Cluster, type ClusterNode, type ClusterOptions, Redis, type RedisOptions } from 'ioredis'
import { CacheConfigError, type Duration } from '@cache/core'
import {
  assertKnownOptions,
  durationOption,
  fromMilliseconds,
  optionNames,
  parseRedisUrl,
  renamedOption,
} from '@cache/core/backend'

/** A client of either kind: commands are the same, `isCluster` tells them apart. */
export type RedisClient = Redis | Cluster

/** Options that build a Redis Cluster client: the seed nodes plus any ioredis `ClusterOptions`. */
export interface RedisClusterConnection extends ClusterOptions {
  /** Seed nodes, e.g. `[{ host: '10.0.0.1', port: 6379 }]`: the others are discovered. */
  cluster: ClusterNode[]
}

/**
 * What to connect to: a URL (see the README for the forms), ioredis options (single node, or
 * Sentinel with `sentinels` and `name`), cluster options, or a client you built yourself.
 */
export type RedisConnection = string | RedisOptions | RedisClusterConnection | Redis | Cluster

/** How the clients we build behave when Redis is down. */
export interface ConnectionSettings {
  /** Per-command timeout in ms (enforced by the backend's Connection, not ioredis `commandTimeout`). */
  timeoutMs: number
  /** TCP connect (and TLS handshake) timeout in ms. */
  connectTimeoutMs: number
  /** Longest wait between reconnection attempts in ms; they go on forever. */
  maxReconnectDelayMs: number
  /** TLS settings, e.g. `{ ca }`; also turns TLS on for `redis://` URLs and option objects. */
  tls: ConnectionOptions | undefined
  /** More ioredis options for single-node and Sentinel connections; they win over ours. */
  redisOptions: RedisOptions | undefined
  /** More ioredis options for cluster connections; they win over ours. */
  clusterOptions: ClusterOptions | undefined
}

/** True for an ioredis `Redis` or `Cluster` instance (also from another copy of ioredis). */
export function isRedisClient(value: unknown): value is RedisClient {
  if (value instanceof Redis || value instanceof Cluster) return true
  const v = value as Partial<Redis> | null
  return (
    typeof v?.sendCommand === 'function' && typeof v.status === 'string' && typeof v.duplicate === 'function'
  )
}

/** The settings of {@link failFastOptions}: Durations (seconds, or `'300ms'`), as `redisBackend` takes them. */
export interface FailFastSettings {
  /** Per-command timeout (ioredis `commandTimeout`). Default: `'300ms'`. */
  timeout?: Duration
  /** TCP connect (and TLS handshake) timeout. Default: `'2s'`. */
  connectTimeout?: Duration
  /** Longest wait between reconnection attempts; they go on forever. Default: `'2s'`. */
  maxReconnectDelay?: Duration
  /** @deprecated Use `timeout`; accepted until the next minor version. */
  timeoutMs?: number
  /** @deprecated Use `connectTimeout`; accepted until the next minor version. */
  connectTimeoutMs?: number
  /** @deprecated Use `maxReconnectDelay`; accepted until the next minor version. */
  maxReconnectDelayMs?: number
}

const FAIL_FAST_NAMES = optionNames<FailFastSettings>({
  timeout: true,
  connectTimeout: true,
  maxReconnectDelay: true,
  timeoutMs: true,
  connectTimeoutMs: true,
  maxReconnectDelayMs: true,
})

/**
 * The ioredis options that make a client fail fast instead of queueing while Redis is down, and
 * follow a Sentinel switch-over at once; for clients you build yourself. Defaults: 300 ms per
 * command, 2 s to connect, reconnection pauses up to 2 s.
 */
export function failFastOptions(settings: FailFastSettings = {}): RedisOptions {
  assertKnownOptions(settings, FAIL_FAST_NAMES, 'failFastOptions()')
  const duration = (name: 'timeout' | 'connectTimeout' | 'maxReconnectDelay', fallback: Duration) =>
    durationOption(
      renamedOption(
        settings,
        name,
        `${name}Ms`,
        fromMilliseconds(`${name}Ms`),
        " (a Duration: seconds, or e.g. '300ms')",
      ),
      name,
      fallback,
      { msHabitFrom: name === 'maxReconnectDelay' ? 100 : 10 },
    )
  return failFastMs({
    timeoutMs: duration('timeout', '300ms'),
    connectTimeoutMs: duration('connectTimeout', '2s'),
    maxReconnectDelayMs: duration('maxReconnectDelay', '2s'),
  })
}

/** {@link failFastOptions} from settings already in ms. */
function failFastMs(
  settings: Pick<ConnectionSettings, 'timeoutMs' | 'connectTimeoutMs' | 'maxReconnectDelayMs'>,
): RedisOptions {
  const { timeoutMs, connectTimeoutMs, maxReconnectDelayMs: cap } = settings
  return {
    // A command sent while disconnected is rejected at once, not parked until the reconnect.
    enableOfflineQueue: false,
    commandTimeout: timeoutMs,
    connectTimeout: connectTimeoutMs,
    // A command in flight when the connection drops may or may not have run: never send it
    // twice (an INCRBY would count twice); the caller gets an error at once instead of after
    // the timeout.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    // Sentinel: every sentinel's +switch-master message makes the client ask for the new master
    // at once (without it, writes go on to a demoted master until it turns read-only: ~10 s).
    failoverDetector: true,
    // A master that became a replica (a switch-over, a DNS name that moved) answers writes with
    // READONLY: reconnect, to the master the sentinels or the DNS now give.
    reconnectOnError: (error: Error) => (error.message.startsWith('READONLY') ? 1 : false),
    // Reconnect forever, backing off to at most `cap` ms, with jitter so many clients do not
    // stampede a restarted server.
    retryStrategy: (attempt: number) =>
      Math.min(cap, 50 * 2 ** Math.min(attempt, 10)) * (0.75 + Math.random() / 4),
    sentinelRetryStrategy: (attempt: number) => Math.min(cap, 50 * 2 ** Math.min(attempt, 10)),
  }
}

/** Builds the client a connection describes, with fail-fast settings under the caller's own options. */
export function createClient(
  connection: Exclude<RedisConnection, Redis | Cluster>,
  settings: ConnectionSettings,
): RedisClient {
  // The backend's Connection times every command itself (see deadlines.ts): ioredis's
  // `commandTimeout` would fail a command whose reply arrived while this process was busy.
  const { commandTimeout: _, ...base } = failFastMs(settings)
  if (typeof connection === 'string') {
    const url = parseRedisUrl(connection)
    const tls = url.tls || settings.tls ? { ...settings.tls } : undefined
    const common: RedisOptions = {
      ...(url.auth.username === undefined ? {} : { username: url.auth.username }),
      ...(url.auth.password === undefined ? {} : { password: url.auth.password }),
      ...(url.query.connectionName === undefined ? {} : { connectionName: url.query.connectionName }),
      ...(url.query.family === undefined ? {} : { family: url.query.family }),
      ...(tls ? { tls } : {}),
    }
    if (url.mode === 'cluster') return buildCluster(url.nodes, base, common, {}, settings)
    if (url.mode === 'sentinel') {
      return new Redis({
        ...base,
        ...common,
        sentinels: url.sentinels,
        name: url.name,
        // The backend's switch-over guard follows +switch-master (and holds calls back before it).
        failoverDetector: false,
        // A sentinel that accepts the connection but does not answer (frozen) must not stall the
        // reconnection: the next one is asked.
        sentinelCommandTimeout: settings.connectTimeoutMs,
        db: url.db,
        ...(url.query.sentinelUsername === undefined ? {} : { sentinelUsername: url.query.sentinelUsername }),
        ...(url.query.sentinelPassword === undefined ? {} : { sentinelPassword: url.query.sentinelPassword }),
        ...(tls ? { enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
        ...settings.redisOptions,
      })
    }
    return new Redis({
      ...base,
      ...common,
      host: url.host,
      port: url.port,
      db: url.db,
      ...settings.redisOptions,
    })
  }
  const tls = settings.tls ? { tls: settings.tls } : {}
  if ('cluster' in connection && Array.isArray(connection.cluster)) {
    const { cluster: nodes, ...clusterOptions } = connection
    return buildCluster(nodes, base, tls, clusterOptions, settings)
  }
  const guarded =
    'sentinels' in connection
      ? { failoverDetector: false, sentinelCommandTimeout: settings.connectTimeoutMs }
      : {}
  return new Redis({ ...base, ...guarded, ...tls, ...settings.redisOptions, ...(connection as RedisOptions) })
}

function buildCluster(
  nodes: ClusterNode[],
  base: RedisOptions,
  common: RedisOptions,
  given: ClusterOptions,
  settings: ConnectionSettings,
): Cluster {
  const cap = settings.maxReconnectDelayMs
  const backoff = (attempt: number) => Math.min(cap, 50 * 2 ** Math.min(attempt, 10))
  const options: ClusterOptions = {
    enableOfflineQueue: false,
    clusterRetryStrategy: backoff,
    // A node whose connection dropped reconnects by itself (not on its next command), so a
    // command for a down master fails at once and one for a recovered master goes through.
    clusterNodeRetryStrategy: (attempt: number) => backoff(attempt) * (0.75 + Math.random() / 4),
    // ioredis resends a command after a dropped link, CLUSTERDOWN or a failover, even after the
    // caller's timeout rejected it: an INCRBY reported failed was applied later, or twice. These
    // fail instead (the backend settles what may have run, see exactly-once.ts).
    retryDelayOnFailover: 0,
    retryDelayOnClusterDown: 0,
    slotsRefreshTimeout: Math.max(1000, settings.timeoutMs),
    ...settings.clusterOptions,
    ...given,
    redisOptions: {
      ...base,
      ...common,
      ...settings.clusterOptions?.redisOptions,
      ...given.redisOptions,
    },
  }
  return new Cluster(nodes, options)
}

/**
 * Refuses a client whose ioredis options change what the backend's commands mean (checked on a
 * client passed in, and on the one built from `redisOptions`/`clusterOptions`): `keyPrefix` is
 * not applied to `SCAN MATCH` (clear() and keys() would miss every key), `stringNumbers` turns
 * integer replies into strings (has, delete, incr, atomicUpdate read numbers), and
 * `enableAutoPipelining` sends the backend's Lua scripts as unknown commands and holds every
 * command to the next turn of the event loop; a cluster's `scaleReads` other than `'master'` and a
 * Sentinel client's `role: 'slave'` read replicas, from before writes that resolved. On a
 * cluster, its own options and those of its node connections (`redisOptions`) are read.
 */
export function checkClientOptions(client: RedisClient, namespace: string): void {
  const where = client.isCluster ? 'the cluster' : 'the client'
  const own = ((client as { options?: unknown }).options ?? {}) as RedisOptions & ClusterOptions
  const sets: [RedisOptions, string][] = [[own, where]]
  if (client.isCluster && own.redisOptions) sets.push([own.redisOptions, `${where}'s redisOptions`])
  for (const [options, holder] of sets) {
    const prefix = options.keyPrefix
    if (prefix !== undefined && prefix !== null && String(prefix) !== '') {
      const instead =
        namespace === ''
          ? ''
          : ` (keyPrefix ${JSON.stringify(String(prefix))} with namespace ${JSON.stringify(namespace)} is namespace ${JSON.stringify(String(prefix) + namespace)})`
      throw new CacheConfigError(
        'keyPrefix',
        `${holder} has keyPrefix ${JSON.stringify(String(prefix))}, which ioredis does not apply to SCAN MATCH: clear() and keys() would miss every key. Give the backend a client without keyPrefix and set its namespace option instead${instead}`,
      )
    }
    if (options.stringNumbers)
      throw new CacheConfigError(
        'stringNumbers',
        `${holder} has stringNumbers: true, which turns integer replies into strings: has, delete, incr and atomicUpdate would give wrong answers. Give the backend a client without stringNumbers (e.g. client.duplicate({ stringNumbers: false }))`,
      )
    if ((options as { enableAutoPipelining?: boolean }).enableAutoPipelining)
      throw new CacheConfigError(
        'enableAutoPipelining',
        `${holder} has enableAutoPipelining: true, with which ioredis sends the backend's Lua scripts (incr, getEntry, atomicUpdate, compareAndDelete) as unknown commands. Give the backend a client without it; the backend writes the calls of one tick together itself (coalesce)`,
      )
  }
  // A database other than 0: when a reconnect's SELECT is refused (a restarted server with fewer
  // databases), the commands ioredis resends go out after it, into DB 0.
  // The database it uses now: a `client.select(3)` of the app's changes it, not its options, and
  // a reconnect puts it back on its options' database (0) whatever the server says to the SELECT
  // ioredis sends after: the database must be the one its options name.
  const selected = (client as { condition?: { select?: unknown } }).condition?.select
  const configured = Number((own as RedisOptions).db ?? 0)
  if (!client.isCluster && selected !== undefined && Number(selected) !== configured)
    throw new CacheConfigError(
      'db',
      `${where} was moved to database ${String(selected)} with client.select(), while its options name database ${configured}: after a reconnect ioredis selects it again without reporting a refusal, and writes may land in database ${configured}. Give the backend a client whose options name its database (new Redis({ db: ${String(selected)}, autoResendUnfulfilledCommands: false })), or the URL`,
    )
  const db = Number(selected ?? configured)
  if (!client.isCluster && db !== 0 && (own as RedisOptions).autoResendUnfulfilledCommands !== false)
    throw new CacheConfigError(
      'autoResendUnfulfilledCommands',
      `${where} selects database ${db} and resends the commands a dropped connection left unanswered (autoResendUnfulfilledCommands, on by default): after a reconnect whose SELECT the server refuses, they would run in database 0. Give the backend a client with autoResendUnfulfilledCommands: false, or the URL or options to build its own`,
    )
  // Replicas answer from before writes the master acknowledged: a getMany or a memoized call
  // would read values older than a set or an invalidation that resolved.
  if (client.isCluster && own.scaleReads !== undefined && own.scaleReads !== 'master')
    throw new CacheConfigError(
      'scaleReads',
      `${where} has scaleReads ${typeof own.scaleReads === 'function' ? '(a function)' : JSON.stringify(own.scaleReads)}, which sends reads to replicas: they answer from before writes and invalidations that resolved. Give the backend a cluster with scaleReads 'master' (the default); for replicated writes use the replicas option`,
    )
  if (!client.isCluster && (own as RedisOptions).role === 'slave')
    throw new CacheConfigError(
      'role',
      `${where} has role 'slave': it connects to a replica, which answers from before writes that resolved and refuses writes. Give the backend a client with role 'master' (the default)`,
    )
}

/** The per-command timeout a client enforces by itself, if any. */
export function commandTimeoutOf(client: RedisClient): number | undefined {
  const options = (client.isCluster ? (client as Cluster).options.redisOptions : (client as Redis).options) as
    | RedisOptions
    | undefined
  const timeout = options?.commandTimeout
  return typeof timeout === 'number' && timeout > 0 ? timeout : undefined
}

/**
 * Where a client connects, for messages: `host:port` (one node), the sentinels and master name
 * (Sentinel), or the seed nodes (Cluster).
 */
export function addressOf(client: RedisClient): string {
  if (client.isCluster) {
    const nodes = (client as unknown as { startupNodes?: ClusterNode[] }).startupNodes ?? []
    const named = nodes.map((node) =>
      typeof node === 'object' ? `${node.host ?? '127.0.0.1'}:${node.port ?? 6379}` : String(node),
    )
    return `cluster ${named.join(',')}`
  }
  const options = (client as Redis).options
  if (options.sentinels && options.sentinels.length > 0) {
    const sentinels = options.sentinels.map((s) => `${s.host ?? '127.0.0.1'}:${s.port ?? 26379}`).join(',')
    return `master "${options.name}" of sentinels ${sentinels}`
  }
  if (options.path) return options.path
  return `${options.host ?? '127.0.0.1'}:${options.port ?? 6379}`
}
