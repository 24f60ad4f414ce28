import type { ConnectionOptions } from 'node:tls'
import type { Duration } from '@cache/core'
import { CacheConfigError } from '@cache/core'
import {
  type BaseBackendOptions,
  type CodecOptions,
  assertKnownOptions,
  checkLogger,
  countOption,
  durationOption,
  isOptionsObject,
  notAnOptionsObject,
  type OptionNames,
  optionNames,
} from '@cache/core/backend'
import type { ClusterOptions, RedisOptions } from 'ioredis'
import { type ConnectionSettings, isRedisClient, type RedisConnection } from './client.js'
import { RedisFormat } from './format.js'
import { type NearCacheOptions, type NearCacheSettings, nearCacheSettings } from './near-cache.js'

/**
 * Options of {@link redisBackend}. Every duration is a `Duration`: a number of **seconds**
 * (`0.3`), or a string with a unit (`'300ms'`, `'2s'`). A bad option throws `CacheConfigError`.
 */
export interface RedisBackendOptions extends BaseBackendOptions, CodecOptions {
  /**
   * Prefix of every key, as `namespace:key`; `clear()` removes `namespace:*` only. `''` stores
   * keys as given, and then `clear()` refuses to run. Default: `'cache'`.
   */
  namespace?: string
  /**
   * Longest wait for one operation (seconds, or `'300ms'`): past it the call rejects with
   * `CacheTimeoutError`. Default: `'300ms'`.
   */
  timeout?: Duration
  /** TCP connect (and TLS handshake) timeout (seconds, or `'2s'`). Default: `'2s'`. */
  connectTimeout?: Duration
  /** Longest pause between reconnection attempts (seconds, or `'2s'`); attempts never stop. Default: `'2s'`. */
  maxReconnectDelay?: Duration
  /**
   * `atomicUpdate` attempts before `CacheConflictError` when other clients keep writing the same
   * key. Each attempt costs one round trip and one call of `fn`; with n clients updating one key
   * non-stop, an update takes about n attempts on average and rarely more than 10n. Default: 200.
   */
  maxAttempts?: number
  /** Keys asked for per `SCAN` step of `clear()` and `keys()`. Default: 1000. */
  scanCount?: number
  /**
   * How long (seconds, or `'10s'`) the server remembers the outcome of each `incr` and
   * `atomicUpdate`, so that a call whose reply was lost is applied exactly once or reported
   * failed and not applied (see the README). Costs one small key per call for this long.
   * `false`: no records; a call whose reply is lost then fails without telling whether it was
   * applied. Default: 10 s.
   */
  exactlyOnceWindow?: Duration | false
  /**
   * Replicas that must have every write before it resolves: each write is followed by `WAIT
   * replicas` on the same connection (same round trip), waiting up to `timeout` − 50 ms for the
   * acknowledgements; too few reject with `CacheReplicationError` (the master applied the write).
   * Without it a failover can lose acknowledged writes (replication is asynchronous). `clear()`
   * does not wait. Costs the replication delay on every write. Default: 0.
   */
  replicas?: number
  /**
   * Keep what `get`/`getEntry` read in this process, evicted by Redis itself when any client
   * changes the key (`CLIENT TRACKING`, Redis 6+; one server or Sentinel). `true` or
   * `{ maxKeys, heartbeat }` (see {@link NearCacheOptions}). Costs one more connection, a
   * heartbeat PUBLISH every 500 ms and, on the server, a tracking-table entry per key read.
   * Default: off.
   */
  nearCache?: boolean | NearCacheOptions
  /** TLS settings (e.g. `{ ca }`); `rediss://` URLs use TLS with Node's defaults without it. Default: none. */
  tls?: ConnectionOptions
  /**
   * Send the gets that this process issues in the same tick together: the first get of a tick
   * goes out at once as before; the gets that follow it in that tick go out at its end as one
   * command (a Lua script running each key's `GET`). Each call keeps its own value, error,
   * timeout and stats; commands go out in the order calls were made. One node or Sentinel only,
   * and not with `nearCache` or `replicas` (those send each call alone). `false`: every get is its own
   * command. Default: `true`.
   */
  coalesce?: boolean
  /** More ioredis options for single-node and Sentinel connections we create; they win over ours. */
  redisOptions?: RedisOptions
  /** More ioredis options for cluster connections we create; they win over ours. */
  clusterOptions?: ClusterOptions
}

/** The names of {@link RedisBackendOptions} that ioredis does not read (all but `connectTimeout` and `tls`). */
const NOT_IOREDIS: Omit<OptionNames<RedisBackendOptions>, 'connectTimeout' | 'tls'> = {
  namespace: true,
  defaultTtl: true,
  logger: true,
  serializer: true,
  compressThreshold: true,
  timeout: true,
  maxReconnectDelay: true,
  maxAttempts: true,
  scanCount: true,
  exactlyOnceWindow: true,
  replicas: true,
  nearCache: true,
  coalesce: true,
  redisOptions: true,
  clusterOptions: true,
}

/** Every name of {@link RedisBackendOptions}: any other is refused, not dropped in silence. */
const OPTION_NAMES = optionNames<RedisBackendOptions>({ ...NOT_IOREDIS, connectTimeout: true, tls: true })

/**
 * Names that ioredis ignores in the options object given as the connection, though they are
 * certainly meant: the URL (node-redis and Keyv take `{ url }`; ioredis would connect to
 * 127.0.0.1:6379 instead), node-redis's `socket` and `database`, and this backend's own options
 * (a cluster object's `redisOptions` excepted: there it is ioredis's). ioredis's own names cannot
 * be listed reliably, so every other name is left to it.
 */
const CONNECTION_MISTAKES: Readonly<Record<string, string>> = {
  url: "give the URL itself as the first argument: redisBackend('redis://…', { namespace })",
  socket: "ioredis takes host, port and tls at the top level; or give a URL: redisBackend('redis://…')",
  database: 'ioredis calls it `db`',
  ...Object.fromEntries(
    Object.keys(NOT_IOREDIS).map((name) => [
      name,
      `an option of @cache/redis: give it in the second argument, redisBackend(connection, { ${name} })`,
    ]),
  ),
}

/**
 * Refuses a connection object (ioredis options, or cluster options with `cluster`) holding a
 * name ioredis would ignore though it is certainly meant (see {@link CONNECTION_MISTAKES}); the
 * same for a cluster object's `redisOptions` (its node connections).
 */
export function checkConnectionNames(connection: RedisConnection | undefined, where: string): void {
  if (typeof connection !== 'object' || connection === null || isRedisClient(connection)) return
  const cluster = 'cluster' in connection
  checkIoredisNames(connection, `${where}'s first argument`, cluster)
}

/**
 * Refuses, in the ioredis options given as `redisOptions` or `clusterOptions` (and a cluster's
 * node `redisOptions`), a name ioredis would ignore: `redisOptions: { namespace: 'shop' }`
 * would write under the default namespace, shared with every other application.
 */
export function checkNestedIoredisNames(options: RedisBackendOptions): void {
  if (options.redisOptions !== undefined)
    checkIoredisNames(options.redisOptions, "redisBackend()'s redisOptions", false)
  if (options.clusterOptions !== undefined)
    checkIoredisNames(options.clusterOptions, "redisBackend()'s clusterOptions", true)
}

/**
 * Throws for the first name of `given` in {@link CONNECTION_MISTAKES}; `cluster`: `given` is
 * cluster options, whose `redisOptions` is ioredis's own (its names are checked in turn).
 */
function checkIoredisNames(given: unknown, where: string, cluster: boolean): void {
  if (!isOptionsObject(given)) throw notAnOptionsObject(given, where)
  for (const name of Object.keys(given)) {
    if (cluster && name === 'redisOptions') {
      const nodes = (given as { redisOptions?: unknown }).redisOptions
      if (nodes !== undefined) checkIoredisNames(nodes, `${where}'s redisOptions`, false)
      continue
    }
    if (!Object.hasOwn(CONNECTION_MISTAKES, name)) continue
    throw new CacheConfigError(
      name,
      `not an ioredis option (${where}, where ioredis ignores it): ${CONNECTION_MISTAKES[name]}`,
    )
  }
}

const DEFAULT_NAMESPACE = 'cache'
/**
 * Bare numbers from these up are read as seconds but warned about once: until 0.2 they were
 * milliseconds here, and `timeout: 300` (5 minutes now) is far likelier to mean 300 ms.
 */
const MS_HABIT = {
  timeout: { msHabitFrom: 10 },
  delay: { msHabitFrom: 100 },
  window: { msHabitFrom: 1000 },
} as const

/** The options a backend needs before it connects, checked (a bad one throws `CacheConfigError`). */
export interface RedisSettings {
  /** `''`: none. */
  namespace: string
  format: RedisFormat
  maxAttempts: number
  scanCount: number
  /** `exactlyOnceWindow` in ms; undefined: off. */
  windowMs: number | undefined
  near: NearCacheSettings | undefined
  connection: ConnectionSettings
  logger: RedisBackendOptions['logger']
}

/** `options`, once its names are checked: read before anything else is (the logger). */
export function checkedOptions(options: RedisBackendOptions): RedisBackendOptions {
  assertKnownOptions(options, OPTION_NAMES, 'redisBackend()')
  return options
}

/** Checks `options` in a fixed order (the first bad one throws) and fills in the defaults. */
export function redisSettings(options: RedisBackendOptions): RedisSettings {
  assertKnownOptions(options, OPTION_NAMES, 'redisBackend()')
  checkNestedIoredisNames(options)
  const namespace = options.namespace ?? DEFAULT_NAMESPACE
  const format = new RedisFormat(namespace, options)
  const maxAttempts = countOption(options.maxAttempts, 'maxAttempts', 200)
  const scanCount = countOption(options.scanCount, 'scanCount', 1000)
  const windowMs =
    options.exactlyOnceWindow === false
      ? undefined
      : durationOption(options.exactlyOnceWindow, 'exactlyOnceWindow', '10s', MS_HABIT.window)
  const near = nearCacheSettings(options.nearCache)
  const maxReconnectDelayMs = durationOption(
    options.maxReconnectDelay,
    'maxReconnectDelay',
    '2s',
    MS_HABIT.delay,
  )
  const connectTimeoutMs = durationOption(options.connectTimeout, 'connectTimeout', '2s', MS_HABIT.timeout)
  const connection: ConnectionSettings = {
    timeoutMs: durationOption(options.timeout, 'timeout', '300ms', MS_HABIT.timeout),
    connectTimeoutMs,
    maxReconnectDelayMs,
    tls: options.tls,
    redisOptions: options.redisOptions,
    clusterOptions: options.clusterOptions,
  }
  const logger = checkLogger(options.logger)
  return { namespace, format, maxAttempts, scanCount, windowMs, near, connection, logger }
}
