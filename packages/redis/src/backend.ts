import {
  type CacheBackend,
  CacheConfigError,
  type CacheEntry,
  CacheUnavailableError,
  type Duration,
  jsonSerializer,
  type ListKeysOptions,
  parseDuration,
  type SetManyItem,
  ttlToMs,
} from '@cache/core'
import {
  assertIncrement,
  assertKey,
  checkLogger,
  CONFLICT,
  retryConflicts,
  countOption,
  durationOption,
  ObservedBackend,
  type Codec,
  createCodec,
  isListedKey,
  KeyedQueue,
  listPrefix,
  parseTagged,
  stringifyTagged,
  wellFormedKey,
  ttlOption,
} from '@cache/core/backend'
import type { ChainableCommander, Cluster, Redis } from 'ioredis'
import type { RedisClient, RedisConnection } from './client.js'
import { Coalescer } from './coalesce.js'
import { Connection } from './connection.js'
import { clearCluster } from './cluster-clear.js'
import { listCluster } from './cluster-keys.js'
import { COMPARE_AND_DELETE } from './compare-and-delete.js'
import { clearNode, listPatterns, namespacePattern, scanNode, userKeyOf } from './listing.js'
import { COMPARE_AND_SET_ONCE, ExactlyOnce, INCR_ONCE, REFUSED } from './exactly-once.js'
import { NearCache, nearCacheSettings } from './near-cache.js'
import { type Replication, replicationSettings } from './replication.js'
import type { RedisBackendOptions } from './options.js'
import { COMPARE_AND_SET, GET_EACH, GET_ENTRY, INCR, sha1 } from './scripts.js'
import { groupByNodeAndSlot, isMoved, renewSlots } from './slots.js'

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
/** Redis rejects expiries past 2^63 ms from the epoch; anything near that is a mistake. */
const MAX_TTL_MS = 2 ** 52
const NO_ARGS: string[] = []

/**
 * A cache on Redis through ioredis: one node, Sentinel or Cluster. Fails fast while Redis is
 * down (no offline queue, per-command timeout) and reconnects forever in the background.
 */
export class RedisBackend extends ObservedBackend implements CacheBackend {
  readonly name = 'redis'
  /** The ioredis client in use: the one passed in, or the one built from the URL or options. */
  readonly client: RedisClient
  readonly namespace: string | undefined
  private readonly connection: Connection
  private readonly prefix: string
  private readonly codec: Codec
  /**
   * The default JSON serializer without compression: values go to ioredis as strings, which it
   * writes without the copies a Buffer costs.
   */
  private readonly text: boolean
  private readonly queue = new KeyedQueue()
  /** Settles `incr`/`atomicUpdate` calls whose reply was lost; undefined with `exactlyOnceWindow: false`. */
  private readonly once: ExactlyOnce | undefined
  /** Values read, kept until Redis says they changed; undefined unless `nearCache` is on. */
  private readonly near: NearCache | undefined
  private readonly connectTimeoutMs: number
  private readonly defaultTtlMs: number | undefined
  private readonly maxAttempts: number
  private readonly scanCount: number
  /** Writes wait for this many replicas; undefined with `replicas: 0`. */
  private readonly replication: Replication | undefined
  /** Batches the gets and sets of one tick; undefined with `coalesce: false` (see the option). */
  private readonly coalescer: Coalescer | undefined

  constructor(connection: RedisConnection = 'redis://127.0.0.1:6379', options: RedisBackendOptions = {}) {
    super('redis')
    const namespace = options.namespace ?? DEFAULT_NAMESPACE
    if (typeof namespace !== 'string' || !(namespace as string & { isWellFormed(): boolean }).isWellFormed())
      throw new CacheConfigError('namespace', 'expected a string that UTF-8 can encode (no lone surrogates)')
    this.namespace = namespace === '' ? undefined : namespace
    this.prefix = namespace === '' ? '' : `${namespace}:`
    this.defaultTtlMs = ttlOption(options.defaultTtl, 'defaultTtl')
    this.codec = createCodec(options)
    this.text =
      this.codec.serializer === jsonSerializer &&
      (options.compressThreshold === undefined || options.compressThreshold === false)
    this.maxAttempts = countOption(options.maxAttempts, 'maxAttempts', 200)
    this.scanCount = countOption(options.scanCount, 'scanCount', 1000)
    const window =
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
    this.connectTimeoutMs = durationOption(options.connectTimeout, 'connectTimeout', '2s', MS_HABIT.timeout)
    this.connection = new Connection(
      connection,
      {
        timeoutMs: durationOption(options.timeout, 'timeout', '300ms', MS_HABIT.timeout),
        connectTimeoutMs: this.connectTimeoutMs,
        maxReconnectDelayMs,
        tls: options.tls,
        redisOptions: options.redisOptions,
        clusterOptions: options.clusterOptions,
      },
      this.observer,
      checkLogger(options.logger),
    )
    this.client = this.connection.client
    this.replication = replicationSettings(options.replicas, this.connection.timeoutMs)
    this.once =
      window === undefined
        ? undefined
        : new ExactlyOnce(
            this.connection,
            this.observer,
            window,
            maxReconnectDelayMs,
            this.prefix,
            this.replication,
          )
    if (near !== undefined && this.client.isCluster) {
      void this.connection.close()
      throw new CacheConfigError(
        'nearCache',
        'not available on a Redis Cluster (one server or Sentinel only)',
      )
    }
    this.near = near === undefined ? undefined : new NearCache(this.client as Redis, near, this.observer)
    if (options.coalesce !== undefined && typeof options.coalesce !== 'boolean')
      throw new CacheConfigError('coalesce', 'expected true or false')
    this.coalescer =
      options.coalesce === false ||
      this.client.isCluster ||
      near !== undefined ||
      this.replication !== undefined
        ? undefined
        : new Coalescer(this.client as Redis, this.connection, this.observer, this.text, {
            get: (k, key) => this.getOne(k, key),
            read: (stored, k, key) => this.read(stored, k, key),
          })
  }

  /**
   * Resolves once the backend can serve: connected (Sentinel: to the master the sentinels name;
   * Cluster: every slot has a master and every master is connected). Waits through reconnection
   * attempts and failovers for at most `timeout` (seconds, or `'5s'`; default: `connectTimeout`), then
   * rejects with `CacheUnavailableError`. With `nearCache`, also until Redis tracks its reads. Optional: calls made while the client connects wait for
   * it, but only up to their own `timeout` each.
   */
  async ready(timeout?: Duration): Promise<void> {
    const ms = timeout === undefined ? this.connectTimeoutMs : parseDuration(timeout, 'timeout')
    const deadline = Date.now() + ms
    await this.connection.whenReady(ms)
    if (this.near !== undefined && !(await this.near.whenActive(deadline - Date.now())))
      throw new CacheUnavailableError(
        'redis',
        `redis: nearCache: tracking not on within ${ms} ms (Redis 6+ needed)`,
      )
  }

  /** Per-operation timeout in ms. */
  get timeoutMs(): number {
    return this.connection.timeoutMs
  }

  get<T = unknown>(key: string): Promise<T | undefined> {
    if (this.near !== undefined) return this.getNear<T>('get', key).then((entry) => entry?.value)
    let k: string
    try {
      k = this.key(key)
    } catch (error) {
      return Promise.reject(error)
    }
    if (this.coalescer !== undefined && !this.connection.blocked) {
      const batched = this.coalescer.get(k, key)
      if (batched !== undefined) return batched as Promise<T | undefined>
    }
    return this.getOne(k, key) as Promise<T | undefined>
  }

  /** One `GET`, sent now (or once the connection is ready). */
  private async getOne(k: string, key: string): Promise<unknown> {
    const stored = await this.connection.send<string | Buffer | null>('get', key, () =>
      this.text ? this.client.get(k) : this.client.getBuffer(k),
    )
    return this.read(stored, k, key)
  }

  /** What `get` returns for a stored value (null: a miss), the hit or miss counted. */
  private read(stored: string | Buffer | null, k: string, key: string): unknown {
    if (stored === null) {
      this.observer.miss(key)
      return undefined
    }
    this.observer.hit(key)
    if (typeof stored !== 'string') return this.codec.decode(stored)
    const first = stored.charCodeAt(0)
    // NUL (compressed) or U+FFFD (binary, e.g. v8) was written by a differently configured
    // client: those need the exact bytes.
    if (first === 0 || first === 0xfffd) return this.getBytes(k, key)
    return parseTagged(stored)
  }

  async getEntry<T = unknown>(key: string): Promise<CacheEntry<T> | undefined> {
    this.coalescer?.flush()
    if (this.near !== undefined) return this.getNear<T>('getEntry', key)
    const k = this.key(key)
    const reply = (await this.connection.send('getEntry', key, () =>
      GET_ENTRY.run(this.client, k, NO_ARGS),
    )) as [Buffer, number] | null
    if (reply === null) {
      this.observer.miss(key)
      return undefined
    }
    this.observer.hit(key)
    const value = this.codec.decode(reply[0]) as T
    return reply[1] >= 0 ? { value, expiresAt: Date.now() + reply[1] } : { value }
  }

  set(key: string, value: unknown, ttl?: Duration): Promise<void> {
    let k: string
    let ms: number | undefined
    let bytes: string | Buffer
    try {
      k = this.key(key)
      ms = this.ttlMs(ttl)
      bytes = this.text ? stringifyTagged(value) : this.codec.encode(value)
    } catch (error) {
      return Promise.reject(error)
    }
    // Sets go alone (batched as one script they were slower under load); gets waiting go first.
    this.coalescer?.flush()
    return this.setOne(k, key, bytes, ms)
  }

  /** One `SET`, sent now (or once the connection is ready). */
  private async setOne(
    k: string,
    key: string,
    bytes: string | Buffer,
    ms: number | undefined,
  ): Promise<void> {
    this.near?.forget(k)
    await this.connection.send('set', key, () =>
      this.replication !== undefined
        ? this.replication.send(
            this.client,
            'set',
            k,
            'set',
            ms === undefined ? [k, bytes] : [k, bytes, 'PX', ms],
          )
        : ms === undefined
          ? this.client.set(k, bytes)
          : this.client.set(k, bytes, 'PX', ms),
    )
    this.near?.forget(k)
    this.observer.set(key)
  }

  async add(key: string, value: unknown, ttl?: Duration): Promise<boolean> {
    this.coalescer?.flush()
    const k = this.key(key)
    const ms = this.ttlMs(ttl)
    const bytes = this.encode(value)
    const args = ms === undefined ? [k, bytes, 'NX'] : [k, bytes, 'PX', ms, 'NX']
    this.near?.forget(k)
    const reply = await this.connection.send('add', key, () =>
      this.replication !== undefined
        ? this.replication.send(this.client, 'add', k, 'set', args)
        : this.client.call('set', ...args),
    )
    this.near?.forget(k)
    if (reply === null) return false
    this.observer.set(key)
    return true
  }

  async delete(key: string): Promise<boolean> {
    this.coalescer?.flush()
    const k = this.key(key)
    this.near?.forget(k)
    const unlink = () =>
      this.replication !== undefined
        ? this.replication.send(this.client, 'delete', k, 'unlink', [k])
        : this.client.unlink(k)
    const removed = (await this.connection.send('delete', key, unlink)) === 1
    this.near?.forget(k)
    if (removed) this.observer.delete(key)
    return removed
  }

  /** Deletes the key only if it holds the string `expected`: one Lua script, atomic on the server. */
  async compareAndDelete(key: string, expected: string): Promise<boolean> {
    this.coalescer?.flush()
    const k = this.key(key)
    const bytes = this.encode(expected)
    const script = () => COMPARE_AND_DELETE.run(this.client, k, [bytes], this.replication, 'compareAndDelete')
    const removed = (await this.connection.send('compareAndDelete', key, script)) === 1
    if (removed) this.observer.delete(key)
    return removed
  }

  async has(key: string): Promise<boolean> {
    this.coalescer?.flush()
    const k = this.key(key)
    return (await this.connection.send('has', key, () => this.client.exists(k))) === 1
  }

  /**
   * Removes every key of this namespace with `SCAN MATCH namespace:*` and `UNLINK`; on a cluster
   * on every master the nodes themselves name (see cluster-clear.ts). Never `FLUSHDB`. Refuses to
   * run without a namespace.
   */
  async clear(): Promise<void> {
    this.coalescer?.flush()
    if (this.namespace === undefined) {
      throw new CacheConfigError(
        'namespace',
        'clear() needs a namespace: without one it would delete every key in the database',
      )
    }
    this.near?.forgetAll()
    const pattern = namespacePattern(this.namespace)
    await this.connection.run('clear', undefined, async () => {
      const start = performance.now()
      try {
        if (this.client.isCluster) {
          const limits = {
            timed: <T>(command: Promise<T>) => this.connection.timed(command, 'clear'),
            ms: this.timeoutMs,
          }
          await clearCluster(this.client as Cluster, pattern, this.scanCount, limits)
        } else {
          const timed = <T>(command: Promise<T>) => this.connection.timed(command, 'clear')
          await clearNode(this.client as Redis, pattern, this.scanCount, timed)
        }
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
    this.coalescer?.flush()
    const prefix = listPrefix(options)
    yield* await this.connection.run('keys', undefined, async () => this.scan(prefix))
  }

  /** The SCAN of {@link keys}, once commands may be sent. */
  private async *scan(prefix: string): AsyncIterableIterator<string> {
    const timed = <T>(command: Promise<T>) => this.connection.timed(command, 'keys')
    try {
      for (const pattern of listPatterns(this.namespace, prefix)) {
        const found = this.client.isCluster
          ? listCluster(this.client as Cluster, pattern, this.scanCount, { timed, ms: this.timeoutMs })
          : scanNode(this.client as Redis, pattern, this.scanCount, timed)
        for await (const stored of found) {
          const key = userKeyOf(stored, this.namespace, this.prefix)
          if (key !== undefined && isListedKey(key, prefix)) yield key
        }
      }
    } catch (error) {
      throw this.connection.failed('keys', error, undefined)
    }
  }

  async incr(key: string, by = 1, ttl?: Duration): Promise<number> {
    this.coalescer?.flush()
    assertIncrement(by)
    const k = this.key(key)
    const ms = this.ttlMs(ttl)
    this.near?.forget(k)
    let reply: unknown
    if (this.once !== undefined)
      reply = await this.once.run('incr', key, k, INCR_ONCE, [by, ms ?? ''], (recorded) =>
        recorded === REFUSED ? null : Number(recorded),
      )
    else {
      const script = () => INCR.run(this.client, k, [by, ms ?? ''], this.replication, 'incr')
      reply = await this.connection.send('incr', key, script)
    }
    this.near?.forget(k)
    // null: the script refused, writing nothing, as the result would be past the safe integers.
    if (!Number.isSafeInteger(reply))
      throw new RangeError(
        `incr: ${by} added to the counter "${key}" is not a safe integer (past ±Number.MAX_SAFE_INTEGER); the counter is unchanged`,
      )
    this.observer.set(key)
    return reply as number
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
    const k = this.key(key)
    const ms = this.ttlMs(ttl)
    this.near?.forget(k)
    return this.queue.run(k, async () => {
      this.coalescer?.flush()
      let current = await this.connection.send('atomicUpdate', key, () => this.client.getBuffer(k))
      // A conflict's reply holds the newer value: the next attempt starts from it at once, without
      // a read and without a pause (a pause would hand the key to writers that start fresh, and
      // starve this one).
      return retryConflicts(key, { maxAttempts: this.maxAttempts, pause: () => 0 }, async () => {
        const next = await fn(current === null ? undefined : (this.codec.decode(current) as T))
        const expected = current === null ? '' : sha1(current)
        const reply = await this.compareAndSet(key, k, [expected, this.encode(next), ms ?? ''])
        if (reply[0] !== 1) {
          current = reply[1] ?? null
          return CONFLICT
        }
        this.near?.forget(k)
        this.observer.set(key)
        return next
      })
    })
  }

  /**
   * `MGET`, and in the same round trip `EXISTS` of the same keys: `MGET` answers a key of another
   * type (a list) with nil, as a miss, but `EXISTS` counts it. When more keys exist than `MGET`
   * returned values (a key of another type, or a write between the two), the nil ones are read
   * again with a script of `GET`s, whose WRONGTYPE fails the call as `get` would. One node: one
   * pair of commands; a cluster: one pair per hash slot, one pipeline per node.
   */
  async getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    this.coalescer?.flush()
    const out = new Array<T | undefined>(keys.length).fill(undefined)
    if (keys.length === 0) return out
    const full = keys.map((key) => this.key(key))
    if (!this.client.isCluster) {
      // One node: no pipeline around the two commands, read as `get` reads (strings by default).
      const [stored, existing] = await this.connection.send('getMany', undefined, () =>
        Promise.all([
          this.text ? this.client.mget(full) : this.client.mgetBuffer(full),
          this.client.exists(full),
        ]),
      )
      const positions = keys.map((_, i) => i)
      if (existing > hitsIn(stored)) await this.readAgain(stored, positions, full, keys)
      for (let i = 0; i < keys.length; i++) {
        const value = this.read(stored[i] ?? null, full[i]!, keys[i]!)
        out[i] = (value instanceof Promise ? await value : value) as T
      }
      return out
    }
    const batches = await this.batch('getMany', full, false, (pipeline, positions) => {
      const group = positions.map((i) => full[i]!)
      pipeline.mgetBuffer(group).exists(group)
    })
    for (const { groups, replies } of batches) {
      for (let g = 0; g < groups.length; g++) {
        const values = replies[2 * g] as (Buffer | null)[]
        if ((replies[2 * g + 1] as number) > hitsIn(values))
          await this.readAgain(values, groups[g]!, full, keys)
      }
    }
    for (const { groups, replies } of batches) {
      for (let g = 0; g < groups.length; g++) {
        const values = replies[2 * g] as (Buffer | null)[]
        const positions = groups[g]!
        for (let j = 0; j < positions.length; j++) {
          const i = positions[j]!
          const bytes = values[j]
          if (bytes === null || bytes === undefined) this.observer.miss(keys[i]!)
          else {
            this.observer.hit(keys[i]!)
            out[i] = this.codec.decode(bytes as Buffer) as T
          }
        }
      }
    }
    return out
  }

  async setMany(items: readonly SetManyItem[]): Promise<void> {
    this.coalescer?.flush()
    if (items.length === 0) return
    // Check and encode everything first, so a bad item stores nothing.
    const full = items.map((item) => this.key(item.key))
    const ttls = items.map((item) => this.ttlMs(item.ttl))
    const values = items.map((item) => this.encode(item.value))
    for (const k of full) this.near?.forget(k)
    await this.batch('setMany', full, true, (pipeline, positions) => {
      for (const i of positions) {
        const ms = ttls[i]
        if (ms === undefined) pipeline.set(full[i]!, values[i]!)
        else pipeline.set(full[i]!, values[i]!, 'PX', ms)
      }
    })
    for (const k of full) this.near?.forget(k)
    for (const item of items) this.observer.set(item.key)
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    this.coalescer?.flush()
    if (keys.length === 0) return 0
    const full = keys.map((key) => this.key(key))
    for (const k of full) this.near?.forget(k)
    // One UNLINK per key (still one round trip per node) tells which keys were removed.
    const batches = await this.batch('deleteMany', full, true, (pipeline, positions) => {
      for (const i of positions) pipeline.unlink(full[i]!)
    })
    for (const k of full) this.near?.forget(k)
    let removed = 0
    for (const { groups, replies } of batches) {
      let r = 0
      for (const positions of groups) {
        for (const i of positions) {
          if (replies[r++] === 1) {
            removed++
            this.observer.delete(keys[i]!)
          }
        }
      }
    }
    return removed
  }

  /** Idempotent. Quits a client this backend created; a client passed in is left open. */
  close(): Promise<void> {
    this.coalescer?.flush()
    this.once?.close()
    this.near?.close()
    return this.connection.close()
  }

  /**
   * Reads again, with a script of `GET`s (one hash slot), the keys `MGET` answered with nil
   * (`values[j]` is the key at `positions[j]`), filling in `values`. A key of another type fails
   * the whole `getMany` as `get` of that key fails: counted, with the error `get` throws.
   */
  private async readAgain(
    values: (string | Buffer | null)[],
    positions: readonly number[],
    full: readonly string[],
    keys: readonly string[],
  ): Promise<void> {
    const missing: number[] = []
    for (let j = 0; j < values.length; j++) if (values[j] === null) missing.push(j)
    const args = [GET_EACH, missing.length, ...missing.map((j) => full[positions[j]!]!)]
    const strings = this.text && !this.client.isCluster
    const again = await this.connection.call<(string | Buffer | null | Error)[]>(
      'getMany',
      undefined,
      (strings ? this.client.call('eval', args) : this.client.callBuffer('eval', args)) as Promise<
        (string | Buffer | null | Error)[]
      >,
    )
    for (let m = 0; m < missing.length; m++) {
      const value = again[m] ?? null
      const j = missing[m]!
      if (value instanceof Error) throw this.connection.failed('getMany', value, keys[positions[j]!])
      values[j] = value
    }
  }

  /** One compare-and-set attempt of `atomicUpdate`: `[1]` when written, else `[0, current?]`. */
  private async compareAndSet(
    key: string,
    k: string,
    args: (string | Buffer | number)[],
  ): Promise<[number, Buffer?]> {
    this.coalescer?.flush()
    if (this.once !== undefined)
      return this.once.run('atomicUpdate', key, k, COMPARE_AND_SET_ONCE, args, () => [1] as [number])
    const script = () => COMPARE_AND_SET.run(this.client, k, args, this.replication, 'atomicUpdate')
    return (await this.connection.send('atomicUpdate', key, script)) as [number, Buffer?]
  }

  /** `get`/`getEntry` through the near cache: a copy Redis has not invalidated, else a read kept. */
  private async getNear<T>(operation: string, key: string): Promise<CacheEntry<T> | undefined> {
    const k = this.key(key)
    // A copy is served only when a call could be sent now: never while a Sentinel switch-over
    // holds calls back, nor while the connection is down.
    const entry = await this.connection.run(operation, key, () =>
      this.near!.read(k, () =>
        // PTTL keeps the copy from outliving the key.
        this.connection.call(operation, key, Promise.all([this.client.getBuffer(k), this.client.pttl(k)])),
      ),
    )
    if (entry === undefined) {
      this.observer.miss(key)
      return undefined
    }
    this.observer.hit(key)
    const value = this.codec.decode(entry.bytes) as T
    return entry.expiresAt === undefined ? { value } : { value, expiresAt: entry.expiresAt }
  }

  private encode(value: unknown): string | Buffer {
    return this.text ? stringifyTagged(value) : this.codec.encode(value)
  }

  /** Reads a value again as bytes (see `get`). */
  private async getBytes(k: string, key: string): Promise<unknown> {
    this.coalescer?.flush()
    const bytes = await this.connection.call('get', key, this.client.getBuffer(k))
    return bytes === null ? undefined : this.codec.decode(bytes)
  }

  private key(key: string): string {
    if (typeof key !== 'string') assertKey(key)
    // Redis keys are bytes and ioredis sends strings as UTF-8: a key with a lone surrogate
    // would become U+FFFD and share its entry with every other such key.
    return this.prefix + wellFormedKey(key)
  }

  private ttlMs(ttl: Duration | undefined): number | undefined {
    const ms = ttl === undefined ? this.defaultTtlMs : ttlToMs(ttl)
    if (ms !== undefined && ms > MAX_TTL_MS) throw new RangeError(`ttl: ${String(ttl)} is too long for Redis`)
    return ms
  }

  /**
   * Sends commands for many keys: one pipeline per node (a single node: one pipeline), `add`
   * called once per hash slot group. Replies come back flat, in the order the commands were added.
   * Writes (`writes`) end each pipeline with the WAIT of `replicas`.
   */
  private async batch(
    operation: string,
    keys: string[],
    writes: boolean,
    add: (pipeline: ChainableCommander, positions: number[]) => void,
  ): Promise<{ groups: number[][]; replies: unknown[] }[]> {
    const replication = writes ? this.replication : undefined
    const run = async (groups: number[][]) => {
      // Without replicas (or with a master known to have them) the pipeline is sent before this
      // returns: commands go out in call order.
      const first = keys[groups[0]![0]!]!
      const master =
        replication === undefined
          ? undefined
          : (replication.admitted(this.client, first) ??
            (await replication.admit(this.client, operation, first)))
      const pipeline = this.client.pipeline()
      for (const positions of groups) add(pipeline, positions)
      if (replication !== undefined) replication.addWait(pipeline)
      const results = (await pipeline.exec()) ?? []
      const waited = replication === undefined ? undefined : results.pop()
      const replies = new Array<unknown>(results.length)
      for (let i = 0; i < results.length; i++) {
        const [error, reply] = results[i]!
        if (error) {
          // Followed by WAIT, ioredis does not follow a MOVED: the next call goes to the new master.
          if (isMoved(this.client, error)) await renewSlots(this.client as Cluster)
          throw error
        }
        replies[i] = reply
      }
      if (master !== undefined) replication!.check(master, operation, waited)
      return { groups, replies }
    }
    return this.connection.send(operation, undefined, () => {
      const perNode: number[][][] = this.client.isCluster
        ? [...groupByNodeAndSlot(this.client as Cluster, keys).values()].map((slots) => [...slots.values()])
        : [[keys.map((_, i) => i)]]
      return Promise.all(perNode.map(run))
    })
  }
}

/** A cache on Redis: `redisBackend('redis://localhost:6379', { namespace: 'app' })`. See {@link RedisBackendOptions}. */
export function redisBackend(connection?: RedisConnection, options?: RedisBackendOptions): RedisBackend {
  return new RedisBackend(connection, options)
}

/** Values `MGET` returned (not nil). */
function hitsIn(values: readonly unknown[]): number {
  let hits = 0
  for (const value of values) if (value !== null) hits++
  return hits
}
