import type { CacheEvent, CacheEventName, Duration, Size } from '@cache/core'
import { CacheConfigError } from '@cache/core'
import {
  booleanOption,
  type BaseBackendOptions,
  type CodecOptions,
  assertKnownOptions,
  countOption,
  optionNames,
  parseServerList,
  renamedOption,
} from '@cache/core/backend'
import memjs from 'memjs'
import type { EjectOptions } from './pool.js'

/** Options of {@link memcachedBackend}. */
export interface MemcachedBackendOptions extends BaseBackendOptions, CodecOptions {
  /**
   * Prefix of every key; `clear()` removes this namespace only. 1-128 printable ASCII
   * characters without spaces or `#`. Default: `'cache'`.
   */
  namespace?: string
  /**
   * Per-operation timeout: a server that does not answer (or cannot be connected to) within it
   * fails the operation with `CacheTimeoutError`. Seconds or a duration string. Default: `'300ms'`.
   */
  timeout?: Duration
  /**
   * Largest serialized value accepted; larger ones throw `CacheValueTooLargeError` before
   * anything is sent. Default: 1 MB minus 512 bytes (memcached's default item limit, `-I 1m`,
   * less the item header and a 250-byte key). Raise it only with the server's `-I`. Each server's
   * own limit is read from it too (`stats settings`, once per connection): a value it would refuse
   * is refused before it is sent, whatever this allows (see the README, "Item size limit").
   */
  maxValueSize?: Size
  /** SASL username (memjs also reads `MEMCACHIER_USERNAME`/`MEMCACHE_USERNAME`). Default: none. */
  username?: string
  /** SASL password (memjs also reads `MEMCACHIER_PASSWORD`/`MEMCACHE_PASSWORD`). Default: none. */
  password?: string
  /**
   * How long a process trusts its copy of a namespace's generation without reading it. `0`: the
   * generation is read with every operation, in the same round trip (one extra small request, no
   * extra wait), so a `clear()` by any process is seen at once. A longer time saves that request,
   * and plain reads and writes in this process may then see another process's `clear()` up to
   * that late; @cache's own keys (memoize's invalidation state and locks) are always checked.
   * Seconds or a duration string. Default: `0`.
   */
  generationTtl?: Duration | 0
  /** `atomicUpdate`/`incr` attempts on CAS conflicts before `CacheConflictError`. Default: 100. */
  maxAttempts?: number
  /** @deprecated Use `maxAttempts`; accepted until the next minor version. */
  casAttempts?: number
  /**
   * Make `clear()` flush every server (`flush_all`): removes every key of every application
   * sharing the servers. Default: false (clear by generation).
   */
  flushOnClear?: boolean
  /** TCP keep-alive on the connections. Default: true. */
  keepAlive?: boolean
  /**
   * Relative weights of servers, by `host:port` as listed, e.g. `{ '10.0.0.3:11211': 2 }`: a
   * server with weight 2 gets twice the keys of one with weight 1. Whole numbers. Default: 1 each.
   */
  weights?: Readonly<Record<string, number>>
  /**
   * When a failing server is ejected (its keys then fail at once) and when it is tried again.
   * Defaults: ejected after 2 consecutive failed reads or 1 failed write; retried every `'250ms'`,
   * backing off to `'10s'` while retries time out. See the README ("Several servers").
   */
  eject?: EjectOptions
  /** A memjs client to use instead of creating one; `close()` leaves it open. Default: none. */
  client?: memjs.Client
  /** Clock in epoch ms, for tests. Default: `Date.now`. */
  now?: () => number
}

export const DEFAULT_MAX_VALUE = 1024 * 1024 - 512

const OPTION_NAMES = optionNames<MemcachedBackendOptions>({
  namespace: true,
  defaultTtl: true,
  logger: true,
  serializer: true,
  compressThreshold: true,
  timeout: true,
  maxValueSize: true,
  username: true,
  password: true,
  generationTtl: true,
  maxAttempts: true,
  casAttempts: true,
  flushOnClear: true,
  keepAlive: true,
  weights: true,
  eject: true,
  client: true,
  now: true,
})

const EJECT_NAMES = optionNames<EjectOptions>({
  failureThreshold: true,
  retryAfter: true,
  maxRetryAfter: true,
})

/**
 * Refuses, before any client is made, servers that are not `'host:port'` (or a list of them) and
 * an option name that is not one (with `eject`'s own): a misspelt `namespace` would otherwise
 * share keys with every application on the servers.
 */
export function checkArguments(servers: unknown, options: MemcachedBackendOptions): MemcachedBackendOptions {
  if (typeof servers !== 'string' && !Array.isArray(servers))
    throw new CacheConfigError(
      'servers',
      "expected 'host:port', 'host:port,host:port' or a list of them; options go in the second argument: memcachedBackend('host:port', { namespace })",
    )
  assertKnownOptions(options, OPTION_NAMES, 'memcachedBackend()')
  if (options.eject !== undefined)
    assertKnownOptions(options.eject, EJECT_NAMES, "memcachedBackend()'s eject")
  const client = options.client as { servers?: unknown; get?: unknown } | undefined
  if (
    client !== undefined &&
    (typeof client !== 'object' ||
      client === null ||
      !Array.isArray(client.servers) ||
      typeof client.get !== 'function')
  )
    throw new CacheConfigError(
      'client',
      'expected a memjs client (memjs.Client.create(…)), or leave `client` out for the backend to make its own',
    )
  return options
}

/** `maxAttempts`, or its deprecated name `casAttempts` (accepted with one warning); default 100. */
export function maxAttemptsOption(options: MemcachedBackendOptions): number {
  return countOption(
    renamedOption(options, 'maxAttempts', 'casAttempts', (old) => countOption(old, 'casAttempts', 100)),
    'maxAttempts',
    100,
  )
}

/** The backend's events: the cache events, plus a server being ejected and re-admitted. */
export type MemcachedEventName = CacheEventName | 'server-down' | 'server-up'

/** What a listener receives; `server` (`host:port`) is set for events about one server. */
export interface MemcachedEvent extends CacheEvent {
  server?: string
}

/** The memjs client of a backend that makes its own: requests go through protocol.ts. */
export function createClient(
  servers: string | readonly string[],
  options: MemcachedBackendOptions,
  timeoutMs: number,
): memjs.Client {
  const list = parseServerList(typeof servers === 'string' ? servers : servers.join(','), 'servers')
  return memjs.Client.create(list.join(','), {
    username: options.username,
    password: options.password,
    // Each request has its own deadline (protocol.ts); memjs's timer, which every new request
    // resets, must never end a connection first (it would skip the undo of late writes).
    timeout: 3600,
    conntimeout: timeoutMs / 1000,
    keepAlive: booleanOption(options.keepAlive, 'keepAlive', true),
    // Requests go through protocol.ts, never through memjs's retrying perform(); keep it quiet
    // and retry-free anyway for anyone who uses the client directly.
    retries: 1,
    logger: { log() {} },
  })
}
