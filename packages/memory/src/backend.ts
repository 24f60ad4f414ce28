import {
  assertIncrement,
  assertKey,
  assertSerializable,
  type BaseBackendOptions,
  type CacheBackend,
  type CacheEntry,
  CacheNotANumberError,
  ObservedBackend,
  CacheValueTooLargeError,
  type Duration,
  isListedKey,
  KeyedQueue,
  type ListKeysOptions,
  listPrefix,
  parseSize,
  type SetManyItem,
  type Size,
  type SyncAccess,
  ttlToMs,
  ttlOption,
  checkOption,
  countOption,
} from '@cache/core'
import { LRUCache } from 'lru-cache'
import { cloneValue } from './clone.js'
import { coarseNow } from './clock.js'
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

/** An entry as stored: the value and its expiry (0 = never). */
interface Slot {
  v: unknown
  e: number
}

/**
 * An in-process LRU cache on `lru-cache`. TTLs are checked on read (an expired entry is a miss
 * and is dropped then); expired entries otherwise leave when the LRU evicts them.
 */
export class MemoryBackend extends ObservedBackend implements CacheBackend {
  readonly name = 'memory'
  readonly namespace: string | undefined
  private readonly lru: LRUCache<string, Slot>
  private readonly queue = new KeyedQueue()
  private readonly defaultTtlMs: number | undefined
  private readonly clone: boolean
  private readonly checkValues: boolean
  private readonly now: () => number
  private readonly maxSize: number | undefined

  constructor(options: MemoryBackendOptions = {}) {
    super('memory')
    this.namespace = options.namespace
    this.defaultTtlMs = ttlOption(options.defaultTtl, 'defaultTtl')
    this.clone = options.clone ?? false
    this.checkValues = options.checkValues ?? (!this.clone && process.env.NODE_ENV !== 'production')
    // The default clock follows fake timers in tests (see clock.ts).
    this.now = options.now ?? coarseNow
    this.maxSize =
      options.maxSize === undefined
        ? undefined
        : checkOption('maxSize', () => parseSize(options.maxSize as Size, 'maxSize'))
    const maxKeys =
      options.maxKeys === undefined && this.maxSize !== undefined
        ? undefined
        : countOption(options.maxKeys, 'maxKeys', 10_000)
    const sizeOf = options.sizeOf ?? estimateSize
    const lruOptions = {
      ...(maxKeys === undefined ? {} : { max: maxKeys }),
      ...(this.maxSize === undefined
        ? {}
        : {
            maxSize: this.maxSize,
            sizeCalculation: (slot: Slot, key: string) => Math.max(1, sizeOf(slot.v, key) + key.length * 2),
          }),
    } as LRUCache.Options<string, Slot, unknown>
    this.lru = new LRUCache<string, Slot>(lruOptions)
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
    const slot = this.read(key)
    return slot === undefined ? undefined : (this.out(slot.v) as T)
  }

  async getEntry<T = unknown>(key: string): Promise<CacheEntry<T> | undefined> {
    return this.readEntry<T>(key)
  }

  async set(key: string, value: unknown, ttl?: Duration): Promise<void> {
    this.write(key, value, ttl)
  }

  async add(key: string, value: unknown, ttl?: Duration): Promise<boolean> {
    const expiresAt = this.expiry(ttl)
    if (this.read(key, false) !== undefined) return false
    this.store(key, value, expiresAt)
    return true
  }

  async delete(key: string): Promise<boolean> {
    assertKey(key)
    const existed = this.read(key, false) !== undefined
    this.lru.delete(key)
    if (existed) this.observer.delete(key)
    return existed
  }

  async has(key: string): Promise<boolean> {
    return this.read(key, false) !== undefined
  }

  async compareAndDelete(key: string, expected: string): Promise<boolean> {
    const slot = this.read(key, false)
    if (slot === undefined || slot.v !== expected) return false
    this.lru.delete(key)
    this.observer.delete(key)
    return true
  }

  async clear(): Promise<void> {
    this.lru.clear()
  }

  /**
   * The live keys of this backend, each once (internal `__` keys left out); with `prefix`, only
   * those that start with it. Iterates a snapshot of the key list taken at the first step (one
   * array of references, as long as the cache holds entries: the keys themselves are not copied),
   * and checks each key's expiry, and that it is still there, when it is reached.
   */
  async *keys(options?: ListKeysOptions): AsyncIterableIterator<string> {
    const prefix = listPrefix(options)
    // A snapshot: lru-cache's own iterator may skip or repeat keys when entries change under it.
    const snapshot = [...this.lru.keys()]
    for (const key of snapshot) {
      if (!isListedKey(key, prefix)) continue
      const slot = this.lru.peek(key)
      if (slot !== undefined && (slot.e === 0 || slot.e > this.now())) yield key
    }
  }

  async incr(key: string, by = 1, ttl?: Duration): Promise<number> {
    assertIncrement(by)
    const expiresAt = this.expiry(ttl)
    const slot = this.read(key, false)
    if (slot === undefined) {
      this.store(key, by, expiresAt)
      return by
    }
    if (!Number.isSafeInteger(slot.v)) throw new CacheNotANumberError(key)
    const next = (slot.v as number) + by
    this.store(key, next, slot.e)
    return next
  }

  atomicUpdate<T>(key: string, fn: (current: T | undefined) => T | Promise<T>, ttl?: Duration): Promise<T> {
    assertKey(key)
    const expiresAt = this.expiry(ttl)
    return this.queue.run(key, async () => {
      const slot = this.read(key, false)
      const next = await fn(slot === undefined ? undefined : (this.out(slot.v) as T))
      this.store(key, next, expiresAt)
      return next
    })
  }

  async getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    const out = new Array<T | undefined>(keys.length)
    for (let i = 0; i < keys.length; i++) {
      const slot = this.read(keys[i]!)
      out[i] = slot === undefined ? undefined : (this.out(slot.v) as T)
    }
    return out
  }

  async setMany(items: readonly SetManyItem[]): Promise<void> {
    // Check every TTL and value first so a bad item stores nothing.
    const expiries = items.map((item) => this.expiry(item.ttl))
    if (this.checkValues) for (const item of items) assertSerializable(item.value)
    for (let i = 0; i < items.length; i++) this.store(items[i]!.key, items[i]!.value, expiries[i]!)
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    let removed = 0
    for (const key of keys) if (await this.delete(key)) removed++
    return removed
  }

  async close(): Promise<void> {
    this.lru.clear()
  }

  /** Synchronous access: lets memoized sync functions stay sync. */
  readonly sync: SyncAccess = {
    getEntry: <T>(key: string) => this.readEntry<T>(key),
    get: <T>(key: string) => {
      const slot = this.read(key)
      return slot === undefined ? undefined : (this.out(slot.v) as T)
    },
    set: (key, value, ttl) => this.write(key, value, ttl),
  }

  private readEntry<T>(key: string): CacheEntry<T> | undefined {
    const slot = this.read(key)
    if (slot === undefined) return undefined
    const value = this.out(slot.v) as T
    return slot.e === 0 ? { value } : { value, expiresAt: slot.e }
  }

  private write(key: string, value: unknown, ttl: Duration | undefined): void {
    this.store(key, value, this.expiry(ttl))
  }

  /** The live slot for a key, or undefined; drops an expired one. `count` records hit/miss. */
  private read(key: string, count = true): Slot | undefined {
    if (typeof key !== 'string') assertKey(key)
    const slot = this.lru.get(key)
    if (slot !== undefined && (slot.e === 0 || slot.e > this.now())) {
      if (count) this.observer.hit(key)
      return slot
    }
    if (slot !== undefined) this.lru.delete(key)
    if (count) this.observer.miss(key)
    return undefined
  }

  private store(key: string, value: unknown, expiresAt: number): void {
    if (typeof key !== 'string') assertKey(key)
    if (this.checkValues) assertSerializable(value)
    const slot: Slot = { v: this.clone ? cloneValue(value) : value, e: expiresAt }
    this.lru.set(key, slot)
    if (this.maxSize !== undefined && this.lru.peek(key) !== slot) {
      this.lru.delete(key)
      throw new CacheValueTooLargeError(key, estimateSize(value), this.maxSize)
    }
    this.observer.set(key)
  }

  private expiry(ttl: Duration | undefined): number {
    const ms = ttl === undefined ? this.defaultTtlMs : ttlToMs(ttl)
    return ms === undefined ? 0 : this.now() + ms
  }

  private out(value: unknown): unknown {
    return this.clone ? cloneValue(value) : value
  }
}

/** An in-process LRU backend. See {@link MemoryBackendOptions}. */
export function memoryBackend(options: MemoryBackendOptions = {}): MemoryBackend {
  return new MemoryBackend(options)
}
