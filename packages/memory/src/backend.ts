import {
  CacheConflictError,
  CacheClosedError,
  type CacheBackend,
  type CacheEntry,
  CacheNotANumberError,
  CacheValueTooLargeError,
  type Duration,
  type ListKeysOptions,
  parseSize,
  type SetManyItem,
  type Size,
  ttlToMs,
} from '@cache/core'
import {
  assertIncrement,
  assertKey,
  assertSerializable,
  type BaseBackendOptions,
  ObservedBackend,
  isListedKey,
  KeyedQueue,
  listPrefix,
  type SyncAccess,
  ttlOption,
  checkOption,
  countOption,
} from '@cache/core/backend'
import { LRUCache } from 'lru-cache'
import { cloneValue } from './clone.js'
import { coarseNow, preciseNow } from './clock.js'
import { estimateSize } from './size.js'

/** Options of {@link memoryBackend}. */
export interface MemoryBackendOptions extends BaseBackendOptions {
  /**
   * Most entries kept; past it the least recently used is evicted. Default: 10000 (when
   * `maxSize` is set and `maxKeys` is not, there is no count limit).
   */
  maxKeys?: number
  /**
   * Most bytes kept, measured by `sizeOf`; past it least recently used entries are evicted.
   * A value larger than this throws `CacheValueTooLargeError`. Default: no byte limit.
   */
  maxSize?: Size
  /**
   * How many bytes a value takes, for `maxSize`. Default: {@link estimateSize}, an estimate
   * that walks the value (cost proportional to its size, paid once per set).
   */
  sizeOf?: (value: unknown, key: string) => number
  /**
   * Store a structured clone and return a clone on every read, so callers cannot mutate what is
   * cached. Default: false (store references: fastest; do not mutate what you get).
   */
  clone?: boolean
  /**
   * Refuse what disk, redis and memcached would refuse: a value the default serializer cannot
   * write (a class instance, a function, a symbol, a cycle) throws the same
   * `CacheSerializationError`, naming its path, so code tested on memory caches the same way
   * once deployed on a shared backend. Costs one walk of each value set (no copy for plain JSON
   * values). Default: `true` unless `NODE_ENV` is `production`, or `clone` is on (cloning already
   * refuses class instances and functions, as the `v8` serializer would).
   */
  checkValues?: boolean
  /**
   * Clock in epoch ms, for tests. Default: `Date.now`, read at most once a millisecond and at
   * least every 32 reads (an entry may be answered that long past its expiry).
   */
  now?: () => number
}

/**
 * What lru-cache holds for a stored `undefined` (lru-cache takes setting `undefined` as a delete).
 * Every other value is stored as it is, with no wrapper: a set allocates nothing of its own.
 */
const UNDEFINED: unique symbol = Symbol('undefined')
/** What {@link MemoryBackend.read} returns for a miss. */
const MISS: unique symbol = Symbol('miss')
/** What `set` returns: one promise for every write, as a set has nothing to answer. */
const DONE: Promise<void> = Promise.resolve()
/** Runs of an `atomicUpdate` function before `CacheConflictError` when the key keeps being written meanwhile. */
const MAX_UPDATE_ATTEMPTS = 100
type Stored = NonNullable<unknown> | typeof UNDEFINED

/**
 * Expiries live in lru-cache's own TTL storage (two number arrays, no object per entry). An entry
 * that expires at `e` (epoch ms) is stored with `start: e - 1` and `ttl: 1 - EPSILON`: lru-cache
 * calls it stale once `now - start > ttl`, which for whole-millisecond clocks is exactly `now >= e`,
 * the rule of every backend (and within EPSILON of it for a clock with fractions).
 */
const EPSILON = 2 ** -10

const UNDERSCORE = 95

/**
 * An in-process LRU cache on `lru-cache`. TTLs are checked on read (an expired entry is a miss
 * and is dropped then); expired entries otherwise leave when the LRU evicts them.
 */
export class MemoryBackend extends ObservedBackend implements CacheBackend {
  readonly name = 'memory'
  readonly namespace: string | undefined
  private readonly lru: LRUCache<string, Stored>
  private readonly queue = new KeyedQueue()
  private readonly defaultTtlMs: number | undefined
  private readonly clone: boolean
  private readonly checkValues: boolean
  private readonly now: () => number
  /** The clock an expiry is computed from when a value is written: exact, not coarse. */
  private readonly writeNow: () => number
  private readonly maxSize: number | undefined
  /** The bytes an entry counts for, when `maxSize` is set (what lru-cache's `sizeCalculation` would say). */
  private readonly sizeOfEntry: ((stored: Stored, key: string) => number) | undefined
  /** Reused for every set and entry read: lru-cache reads its options, it does not keep them. */
  private readonly setOptions: LRUCache.SetOptions<string, Stored, unknown> = {
    ttl: 0,
    start: 0,
    noUpdateTTL: false,
  }
  private readonly status: LRUCache.Status<string, Stored> = {}
  /** Changes when a key that starts with `_` (@cache's own: generations, locks) may have changed. */
  private internalWrites = 0
  private readonly getOptions: LRUCache.GetOptions<string, Stored, unknown> = { status: this.status }

  constructor(options: MemoryBackendOptions = {}) {
    super('memory')
    this.namespace = options.namespace
    this.defaultTtlMs = ttlOption(options.defaultTtl, 'defaultTtl')
    this.clone = options.clone ?? false
    this.checkValues = options.checkValues ?? (!this.clone && process.env.NODE_ENV !== 'production')
    // The default clock follows fake timers in tests (see clock.ts).
    this.now = options.now ?? coarseNow
    this.writeNow = options.now ?? preciseNow
    this.maxSize =
      options.maxSize === undefined
        ? undefined
        : checkOption('maxSize', () => parseSize(options.maxSize as Size, 'maxSize'))
    const maxKeys =
      options.maxKeys === undefined && this.maxSize !== undefined
        ? undefined
        : countOption(options.maxKeys, 'maxKeys', 10_000)
    const sizeOf = options.sizeOf ?? estimateSize
    this.sizeOfEntry =
      this.maxSize === undefined
        ? undefined
        : (stored: Stored, key: string) =>
            Math.max(1, sizeOf(stored === UNDEFINED ? undefined : stored, key) + key.length * 2)
    const now = this.now
    const lruOptions = {
      ...(maxKeys === undefined ? {} : { max: maxKeys }),
      ...(this.maxSize === undefined ? {} : { maxSize: this.maxSize, sizeCalculation: this.sizeOfEntry }),
      // lru-cache checks expiry against this clock, read at every check (it is cached already).
      perf: { now },
      ttlResolution: 0,
    } as LRUCache.Options<string, Stored, unknown>
    this.lru = new LRUCache<string, Stored>(lruOptions)
  }

  /** Entries currently held (expired ones not yet dropped included). */
  get size(): number {
    return this.lru.size
  }

  /** Bytes held, when `maxSize` is set. */
  get calculatedSize(): number {
    return this.lru.calculatedSize
  }

  async get<T = unknown>(key: string): Promise<T | undefined> {
    const stored = this.read(key)
    return stored === MISS ? undefined : (this.out(stored) as T)
  }

  async getEntry<T = unknown>(key: string): Promise<CacheEntry<T> | undefined> {
    return this.readEntry<T>(key)
  }

  set(key: string, value: unknown, ttl?: Duration): Promise<void> {
    try {
      this.write(key, value, ttl)
    } catch (error) {
      return Promise.reject(error)
    }
    return DONE
  }

  async add(key: string, value: unknown, ttl?: Duration): Promise<boolean> {
    const expiresAt = this.expiry(ttl)
    if (this.read(key, false) !== MISS) return false
    this.store(key, value, expiresAt)
    return true
  }

  async delete(key: string): Promise<boolean> {
    this.assertOpen()
    assertKey(key)
    const existed = this.read(key, false) !== MISS
    this.lru.delete(key)
    if (key.charCodeAt(0) === UNDERSCORE) this.internalWrites++
    if (existed) this.observer.delete(key)
    return existed
  }

  async has(key: string): Promise<boolean> {
    return this.read(key, false) !== MISS
  }

  async compareAndDelete(key: string, expected: string): Promise<boolean> {
    this.assertOpen()
    if (this.read(key, false) !== expected) return false
    this.lru.delete(key)
    if (key.charCodeAt(0) === UNDERSCORE) this.internalWrites++
    this.observer.delete(key)
    return true
  }

  async clear(): Promise<void> {
    this.assertOpen()
    this.lru.clear()
    this.internalWrites++
  }

  /**
   * The live keys of this backend, each once (internal `__` keys left out); with `prefix`, only
   * those that start with it. Iterates a snapshot of the key list taken at the first step (one
   * array of references, as long as the cache holds entries: the keys themselves are not copied),
   * and checks each key's expiry, and that it is still there, when it is reached.
   */
  async *keys(options?: ListKeysOptions): AsyncIterableIterator<string> {
    this.assertOpen()
    const prefix = listPrefix(options)
    // A snapshot: lru-cache's own iterator may skip or repeat keys when entries change under it.
    const snapshot = [...this.lru.keys()]
    for (const key of snapshot) {
      if (!isListedKey(key, prefix)) continue
      // peek answers undefined for an entry that expired, and leaves it where it is.
      if (this.lru.peek(key) !== undefined) yield key
    }
  }

  async incr(key: string, by = 1, ttl?: Duration): Promise<number> {
    assertIncrement(by)
    const expiresAt = this.expiry(ttl)
    const current = this.read(key, false)
    if (current === MISS) {
      this.store(key, by, expiresAt)
      return by
    }
    if (!Number.isSafeInteger(current)) throw new CacheNotANumberError(key)
    const next = (current as number) + by
    this.store(key, next, 0, true)
    return next
  }

  atomicUpdate<T>(key: string, fn: (current: T | undefined) => T | Promise<T>, ttl?: Duration): Promise<T> {
    if (this.closed) return Promise.reject(new CacheClosedError(this.name))
    assertKey(key)
    const expiresAt = this.expiry(ttl)
    return this.queue.run(key, async () => {
      // A set or delete of the key while an async `fn` runs is not lost: `fn` runs again on what
      // is there now (compare-and-set, as on the server backends; `fn` may run more than once).
      for (let attempt = 1; attempt <= MAX_UPDATE_ATTEMPTS; attempt++) {
        const current = this.read(key, false)
        const next = await fn(current === MISS ? undefined : (this.out(current) as T))
        if (this.read(key, false) !== current) continue
        this.store(key, next, expiresAt)
        return next
      }
      throw new CacheConflictError(key, MAX_UPDATE_ATTEMPTS)
    })
  }

  async getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    const out = new Array<T | undefined>(keys.length)
    for (let i = 0; i < keys.length; i++) {
      const stored = this.read(keys[i]!)
      out[i] = stored === MISS ? undefined : (this.out(stored) as T)
    }
    return out
  }

  async setMany(items: readonly SetManyItem[]): Promise<void> {
    this.assertOpen()
    // Check every key, TTL and value first so a bad item stores nothing.
    for (const item of items) if (typeof item.key !== 'string') assertKey(item.key)
    const expiries = items.map((item) => this.expiry(item.ttl))
    // Each value is copied (with clone) and measured (with maxSize) before any is stored: a value
    // that cannot be copied, or is too large, rejects the call and stores no item (the too-large
    // key's own old value is dropped, as by set).
    const stored: Stored[] = []
    const sizes: (number | undefined)[] = []
    for (const { key, value } of items) {
      const one = this.prepare(key, value)
      stored.push(one)
      sizes.push(this.sizeOfEntry === undefined ? undefined : this.measure(key, value, one))
    }
    for (let i = 0; i < items.length; i++) this.commit(items[i]!.key, stored[i]!, sizes[i], expiries[i]!)
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    let removed = 0
    for (const key of keys) if (await this.delete(key)) removed++
    return removed
  }

  /** Drops every entry; from then on every operation rejects with `CacheClosedError`. Idempotent. */
  async close(): Promise<void> {
    if (!this.markClosed()) return
    this.lru.clear()
    this.internalWrites++
  }

  /** Synchronous access: lets memoized sync functions stay sync. */
  readonly sync: SyncAccess = {
    getEntry: <T>(key: string) => this.readEntry<T>(key),
    get: <T>(key: string) => {
      const stored = this.read(key)
      return stored === MISS ? undefined : (this.out(stored) as T)
    },
    getOr: <T, M>(key: string, miss: M) => {
      const stored = this.read(key)
      return stored === MISS ? miss : (this.out(stored) as T)
    },
    set: (key, value, ttl) => this.write(key, value, ttl),
    internalVersion: () => this.internalWrites,
  }

  private readEntry<T>(key: string): CacheEntry<T> | undefined {
    this.assertOpen()
    if (typeof key !== 'string') assertKey(key)
    const status = this.status
    status.ttl = 0
    const stored = this.lru.get(key, this.getOptions)
    if (stored === undefined) {
      this.observer.miss(key)
      return undefined
    }
    this.observer.hit(key)
    const value = this.out(stored) as T
    // lru-cache fills in ttl and start only for an entry that has them.
    return status.ttl === 0 ? { value } : { value, expiresAt: status.start! + status.ttl! + EPSILON }
  }

  private write(key: string, value: unknown, ttl: Duration | undefined): void {
    this.store(key, value, this.expiry(ttl))
  }

  /**
   * The live value for a key as stored (see {@link UNDEFINED}), or MISS; lru-cache drops an
   * expired entry as it finds it. `count` records hit/miss.
   */
  private read(key: string, count = true): Stored | typeof MISS {
    this.assertOpen()
    if (typeof key !== 'string') assertKey(key)
    const stored = this.lru.get(key)
    if (stored !== undefined) {
      if (count) this.observer.hit(key)
      return stored
    }
    if (count) this.observer.miss(key)
    return MISS
  }

  /** `expiresAt`: epoch ms, 0 for never; `keepExpiry`: the entry's own instead (it exists). */
  private store(key: string, value: unknown, expiresAt: number, keepExpiry = false): void {
    const stored = this.prepare(key, value)
    this.commit(
      key,
      stored,
      this.sizeOfEntry === undefined ? undefined : this.measure(key, value, stored),
      expiresAt,
      keepExpiry,
    )
  }

  /**
   * What `store` keeps for a value; throws what storing it would throw (a bad key, a value that
   * cannot be copied) having stored nothing.
   */
  private prepare(key: string, value: unknown): Stored {
    this.assertOpen()
    if (typeof key !== 'string') assertKey(key)
    if (this.checkValues) assertSerializable(value)
    const copy = this.clone ? cloneValue(value) : value
    return copy === undefined ? UNDEFINED : (copy as Stored)
  }

  /**
   * The bytes an entry counts for with `maxSize`; throws `CacheValueTooLargeError` for one larger
   * than `maxSize`, having dropped what its key held (as lru-cache does when it refuses a value).
   * A value that passed is always taken by lru-cache: its `maxEntrySize` is `maxSize`.
   */
  private measure(key: string, value: unknown, stored: Stored): number {
    const size = this.sizeOfEntry!(stored, key)
    if (!Number.isSafeInteger(size) || size <= 0)
      throw new TypeError(
        `memory: sizeOf returned ${String(size)} for key ${JSON.stringify(key)} (expected a number of bytes)`,
      )
    if (size > this.maxSize!) {
      this.lru.delete(key)
      throw new CacheValueTooLargeError(key, estimateSize(value), this.maxSize!)
    }
    return size
  }

  private commit(
    key: string,
    stored: Stored,
    size: number | undefined,
    expiresAt: number,
    keepExpiry = false,
  ): void {
    const options = this.setOptions
    if (size !== undefined) options.size = size
    if (keepExpiry) {
      options.noUpdateTTL = true
    } else {
      options.noUpdateTTL = false
      if (expiresAt === 0) {
        options.ttl = 0
        options.start = 0
      } else {
        // A start of 0 means "no TTL" to lru-cache: possible with an injected clock near 0.
        const start = expiresAt - 1 === 0 ? -1 : expiresAt - 1
        options.start = start
        options.ttl = expiresAt - start - EPSILON
      }
    }
    if (key.charCodeAt(0) === UNDERSCORE) this.internalWrites++
    this.lru.set(key, stored, options)
    this.observer.set(key)
  }

  private expiry(ttl: Duration | undefined): number {
    const ms = ttl === undefined ? this.defaultTtlMs : ttlToMs(ttl)
    return ms === undefined ? 0 : this.writeNow() + ms
  }

  /** A stored value as a reader gets it. */
  private out(stored: Stored): unknown {
    if (stored === UNDEFINED) return undefined
    return this.clone ? cloneValue(stored) : stored
  }
}

/** An in-process LRU backend. See {@link MemoryBackendOptions}. */
export function memoryBackend(options: MemoryBackendOptions = {}): MemoryBackend {
  return new MemoryBackend(options)
}
