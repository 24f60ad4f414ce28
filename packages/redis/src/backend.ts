import {
  type CacheBackend,
  CacheConfigError,
  type CacheEntry,
  CacheUnavailableError,
  type Duration,
  type ListKeysOptions,
  parseDuration,
  type SetManyItem,
} from '@cache/core'
import {
  booleanOption,
  assertIncrement,
  copyItemList,
  copyKeyList,
  listPrefix,
  ObservedBackend,
} from '@cache/core/backend'
import type { Redis } from 'ioredis'
import { Batches } from './batches.js'
import type { RedisClient, RedisConnection } from './client.js'
import type { Limits } from './cluster-clear.js'
import { COMPARE_AND_DELETE } from './compare-and-delete.js'
import { Connection } from './connection.js'
import { Counters } from './counters.js'
import { assertStored, integerReply } from './errors.js'
import { ExactlyOnce } from './exactly-once.js'
import type { RedisFormat } from './format.js'
import { clearNamespace, listKeys } from './listing.js'
import { NearCache } from './near-cache.js'
import { checkConnectionNames, checkedOptions, type RedisBackendOptions, redisSettings } from './options.js'
import type { BackendParts } from './parts.js'
import { Reads } from './reads.js'
import { type Replication, replicationSettings } from './replication.js'
import { Writes } from './writes.js'

/**
 * A cache on Redis through ioredis: one node, Sentinel or Cluster. Fails fast while Redis is
 * down (no offline queue, per-command timeout) and reconnects forever in the background.
 */
export class RedisBackend extends ObservedBackend implements CacheBackend {
  readonly name = 'redis'
  /** Every process that reaches the server sees its entries. */
  readonly shared = true
  /** The ioredis client in use: the one passed in, or the one built from the URL or options. */
  readonly client: RedisClient
  readonly namespace: string | undefined
  private readonly connection: Connection
  private readonly format: RedisFormat
  private readonly connectTimeoutMs: number
  private readonly scanCount: number
  /** Writes wait for this many replicas; undefined with `replicas: 0`. */
  private readonly replication: Replication | undefined
  /** Settles `incr`/`atomicUpdate` calls whose reply was lost; undefined with `exactlyOnceWindow: false`. */
  private readonly once: ExactlyOnce | undefined
  /** Values read, kept until Redis says they changed; undefined unless `nearCache` is on. */
  private readonly near: NearCache | undefined
  private readonly reads: Reads
  /** Sends the sets of one tick in one socket write; undefined when each goes alone (see Reads). */
  private readonly writes: Writes | undefined
  private readonly batches: Batches
  private readonly counters: Counters

  /** The TTL in ms a write that names none gets; `null` for no expiry. */
  get defaultTtlMs(): number | null {
    return this.format.defaultTtlMs ?? null
  }

  constructor(connection: RedisConnection = 'redis://127.0.0.1:6379', options: RedisBackendOptions = {}) {
    super('redis', checkedOptions(options).logger)
    checkConnectionNames(connection, 'redisBackend()')
    const settings = redisSettings(options)
    // Checked before the client is made: a refused option leaves nothing connecting.
    const coalesce = booleanOption(options.coalesce, 'coalesce', true)
    this.namespace = settings.namespace === '' ? undefined : settings.namespace
    this.format = settings.format
    this.scanCount = settings.scanCount
    this.connectTimeoutMs = settings.connection.connectTimeoutMs
    this.connection = new Connection(
      connection,
      settings.connection,
      this.observer,
      settings.logger,
      settings.namespace,
    )
    this.client = this.connection.client
    this.replication = replicationSettings(options.replicas, this.connection.timeoutMs)
    this.once =
      settings.windowMs === undefined
        ? undefined
        : new ExactlyOnce(
            this.connection,
            this.observer,
            settings.windowMs,
            settings.connection.maxReconnectDelayMs,
            this.format.prefix,
            this.replication,
          )
    const once = this.once
    if (once !== undefined) this.connection.beforeQuit = () => once.finish()
    const near = settings.near
    if (near !== undefined && this.client.isCluster) {
      void this.connection.close()
      throw new CacheConfigError(
        'nearCache',
        'not available on a Redis Cluster (one server or Sentinel only)',
      )
    }
    this.near =
      near === undefined ? undefined : new NearCache(this.connection, near, this.observer, settings.logger)
    const parts: BackendParts = {
      client: this.client,
      connection: this.connection,
      observer: this.observer,
      format: this.format,
      near: this.near,
      replication: this.replication,
    }
    this.reads = new Reads(parts, coalesce)
    this.writes =
      coalesce && !this.client.isCluster && this.near === undefined && this.replication === undefined
        ? new Writes(this.client as Redis, this.connection, this.observer)
        : undefined
    this.batches = new Batches(parts, this.reads)
    this.counters = new Counters(parts, settings.maxAttempts, this.once, () => this.reads.flush())
  }

  /**
   * Resolves once the backend can serve: connected (Sentinel: to the master the sentinels name;
   * Cluster: every slot has a master and every master is connected). Waits through reconnection
   * attempts and failovers for at most `timeout` (seconds, or `'5s'`; default: `connectTimeout`),
   * then rejects with `CacheUnavailableError`. With `nearCache`, also until Redis tracks its reads.
   * Optional: calls made while the client connects wait for it, but only up to their own `timeout` each.
   */
  async ready(timeout?: Duration): Promise<void> {
    const ms = timeout === undefined ? this.connectTimeoutMs : parseDuration(timeout, 'timeout')
    const deadline = Date.now() + ms
    // A caller awaits this: the process stays alive until it settles (the connections and their
    // timers do not hold it open, so that a script that never calls close() can exit).
    const hold = setTimeout(() => {}, ms + 1000)
    try {
      await this.connection.whenReady(ms)
      if (this.near !== undefined && !(await this.near.whenActive(deadline - Date.now())))
        throw new CacheUnavailableError(
          'redis',
          `redis: nearCache: tracking not on within ${ms} ms (${this.near.whyOff() ?? 'Redis 6+ needed'})`,
        )
    } finally {
      clearTimeout(hold)
    }
  }

  /** Per-operation timeout in ms. */
  get timeoutMs(): number {
    return this.connection.timeoutMs
  }

  get<T = unknown>(key: string): Promise<T | undefined> {
    return this.reads.get<T>(key)
  }

  getEntry<T = unknown>(key: string): Promise<CacheEntry<T> | undefined> {
    return this.reads.getEntry<T>(key)
  }

  set(key: string, value: unknown, ttl?: Duration): Promise<void> {
    let args: (string | Buffer | number)[]
    try {
      const k = this.format.key(key)
      const ms = this.format.ttlMs(ttl)
      const bytes = this.format.encode(value)
      args = ms === undefined ? [k, bytes] : [k, bytes, 'PX', ms]
    } catch (error) {
      return Promise.reject(error)
    }
    // Gets waiting go first. Each set is its own command (batched as one script they were
    // slower under load); those of one tick leave in one socket write (see writes.ts).
    this.reads.flush()
    if (this.writes !== undefined && !this.connection.blocked) return this.writes.set(key, args)
    return this.setAlone(key, args)
  }

  async add(key: string, value: unknown, ttl?: Duration): Promise<boolean> {
    this.reads.flush()
    const k = this.format.key(key)
    const ms = this.format.ttlMs(ttl)
    const bytes = this.format.encode(value)
    this.near?.forget(k)
    const args = ms === undefined ? [k, bytes, 'NX'] : [k, bytes, 'PX', ms, 'NX']
    const reply = await this.write('add', key, k, 'set', args)
    this.near?.forget(k)
    assertStored(reply, 'add', key, true)
    if (reply === null) return false
    this.observer.set(key)
    return true
  }

  async delete(key: string): Promise<boolean> {
    this.reads.flush()
    const k = this.format.key(key)
    this.near?.forget(k)
    const removed = integerReply(await this.write('delete', key, k, 'unlink', [k]), 'delete', key) === 1
    this.near?.forget(k)
    if (removed) this.observer.delete(key)
    return removed
  }

  /** Deletes the key only if it holds the string `expected`: one Lua script, atomic on the server. */
  async compareAndDelete(key: string, expected: string): Promise<boolean> {
    this.reads.flush()
    const k = this.format.key(key)
    const bytes = this.format.encode(expected)
    const script = () => COMPARE_AND_DELETE.run(this.client, k, [bytes], this.replication, 'compareAndDelete')
    const removed =
      integerReply(await this.connection.send('compareAndDelete', key, script), 'compareAndDelete', key) === 1
    if (removed) this.observer.delete(key)
    return removed
  }

  async has(key: string): Promise<boolean> {
    this.reads.flush()
    const k = this.format.key(key)
    return integerReply(await this.connection.send('has', key, () => this.client.exists(k)), 'has', key) === 1
  }

  /**
   * Removes every key of this namespace with `SCAN MATCH namespace:*` and `UNLINK`; on a cluster
   * on every master the nodes themselves name (see cluster-clear.ts). Never `FLUSHDB`. Refuses to
   * run without a namespace.
   */
  async clear(): Promise<void> {
    this.reads.flush()
    const namespace = this.namespace
    if (namespace === undefined) {
      throw new CacheConfigError(
        'namespace',
        'clear() needs a namespace: without one it would delete every key in the database',
      )
    }
    this.near?.forgetAll()
    await this.connection.run('clear', undefined, async () => {
      const start = performance.now()
      try {
        await clearNamespace(this.client, namespace, this.scanCount, this.limits('clear'))
      } catch (error) {
        throw this.connection.failed('clear', error, undefined)
      }
      this.observer.latency(performance.now() - start)
    })
  }

  /**
   * The live keys of this namespace, each once (internal `__` keys left out); with `prefix`, only
   * those that start with it. `SCAN cursor MATCH namespace:prefix* COUNT scanCount` (glob
   * characters in both escaped), one step per page, never `KEYS`; on a cluster on every master
   * the nodes themselves name (see cluster-keys.ts). Keys stored escaped (those with a lone
   * surrogate or U+FFFF) cannot be matched by their text: with a prefix, a second
   * `SCAN MATCH namespace:\uffff*` finds them. Like `SCAN`, a key present for the whole
   * iteration is listed; one written or deleted during it may or may not be. Without a
   * namespace it lists every key of the database.
   */
  async *keys(options?: ListKeysOptions): AsyncIterableIterator<string> {
    this.reads.flush()
    const prefix = listPrefix(options)
    const { namespace, format, scanCount } = this
    // A listing is read page by page at its caller's pace: close() does not wait for it, and
    // its next page after close() is refused (CacheClosedError), as every call then is.
    const limits = { ...this.limits('keys'), open: () => this.connection.assertOpen() }
    const listed = await this.connection.run('keys', undefined, async () =>
      listKeys(this.client, namespace, format.prefix, prefix, scanCount, limits),
    )
    try {
      yield* listed
    } catch (error) {
      throw this.connection.failed('keys', error, undefined)
    }
  }

  async incr(key: string, by = 1, ttl?: Duration): Promise<number> {
    this.reads.flush()
    assertIncrement(by)
    return this.counters.incr(key, this.format.key(key), by, this.format.ttlMs(ttl))
  }

  /**
   * Optimistic read-modify-write: read, run `fn`, then write only if the key still holds what was
   * read (a Lua compare-and-set); on conflict `fn` runs again with the newer value, up to
   * `maxAttempts` times. Calls for one key in this process wait for each other first, so only
   * other processes can cause a conflict.
   */
  async atomicUpdate<T>(
    key: string,
    fn: (current: T | undefined) => T | Promise<T>,
    ttl?: Duration,
  ): Promise<T> {
    return this.counters.atomicUpdate(key, this.format.key(key), fn, this.format.ttlMs(ttl))
  }

  async getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    // Refused after close() like every call, also with no keys (nothing would be sent).
    this.connection.assertOpen()
    // A copy: the keys are read again once the replies are in.
    const list = copyKeyList(keys, 'getMany')
    this.reads.flush()
    // Under way (close() waits for it) until every step is done: a second read of some keys.
    return this.connection.track(this.batches.getMany<T>(list))
  }

  async setMany(items: readonly SetManyItem[]): Promise<void> {
    this.connection.assertOpen()
    const list = copyItemList(items)
    this.reads.flush()
    return this.connection.track(this.batches.setMany(list))
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    this.connection.assertOpen()
    const list = copyKeyList(keys, 'deleteMany')
    this.reads.flush()
    return this.connection.track(this.batches.deleteMany(list))
  }

  /** Idempotent. Quits a client this backend created; a client passed in is left open. */
  close(): Promise<void> {
    this.reads.flush()
    this.near?.close()
    return this.connection.close()
  }

  /** A set through the near cache, replication or a connection not ready yet. */
  private async setAlone(key: string, args: (string | Buffer | number)[]): Promise<void> {
    const k = args[0] as string
    this.near?.forget(k)
    const reply = await this.write('set', key, k, 'set', args)
    this.near?.forget(k)
    assertStored(reply, 'set', key)
    this.observer.set(key)
  }

  /** One write command of `k`, sent once commands may be sent; with `replicas`, followed by WAIT. */
  private write(
    operation: string,
    key: string,
    k: string,
    command: string,
    args: (string | Buffer | number)[],
  ): Promise<unknown> {
    return this.connection.send(operation, key, () =>
      this.replication !== undefined
        ? this.replication.send(this.client, operation, k, command, args)
        : this.client.call(command, ...args),
    )
  }

  /** The per-command time limits of a `SCAN` walk. */
  private limits(operation: string): Limits {
    return { timed: (command) => this.connection.timed(command, operation), ms: this.timeoutMs }
  }
}

/** A cache on Redis: `redisBackend('redis://localhost:6379', { namespace: 'app' })`. See {@link RedisBackendOptions}. */
export function redisBackend(connection?: RedisConnection, options?: RedisBackendOptions): RedisBackend {
  return new RedisBackend(connection, options)
}
