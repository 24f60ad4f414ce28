import {
  CacheClosedError,
  type CacheBackend,
  type CacheEntry,
  type Duration,
  type ListKeysOptions,
  type SetManyItem,
  ttlToMs,
} from '@cache/core'
import {
  addToCounter,
  assertIncrement,
  assertKnownOptions,
  assertKey,
  assertKeyList,
  assertSerializable,
  booleanOption,
  CONFLICT,
  copyItemList,
  ObservedBackend,
  KeyedQueue,
  listPrefix,
  retryConflicts,
  type SyncAccess,
  ttlOption,
} from '@cache/core/backend'
import type { LRUCache } from 'lru-cache'
import { cloneValue } from './clone.js'
import { coarseNow, preciseNow } from './clock.js'
import { expiryOf, liveKeys, setExpiry, type Stored, UNDEFINED } from './entries.js'
import { MEMORY_OPTION_NAMES, type MemoryBackendOptions } from './options.js'
import { createLru, type EntrySizer } from './sizing.js'

/** What {@link MemoryBackend.read} returns for a miss. */
const MISS: unique symbol = Symbol('miss')
/** What `set` returns: one promise for every write, as a set has nothing to answer. */
const DONE: Promise<void> = Promise.resolve()
/** Runs of an `atomicUpdate` function before `CacheConflictError` when the key keeps being written meanwhile. */
const UPDATE_RETRIES = { maxAttempts: 100, pause: () => 0 }

const UNDERSCORE = 95

/**
 * An in-process LRU cache on `lru-cache`. TTLs are checked on read (an expired entry is a miss
 * and is dropped then); expired entries otherwise leave when the LRU evicts them.
 */
export class MemoryBackend extends ObservedBackend implements CacheBackend {
  readonly name = 'memory'
  /** Entries live in this process only. */
  readonly shared = false
  readonly namespace: string | undefined
  private readonly lru: LRUCache<string, Stored>
  private readonly queue = new KeyedQueue()
  /** The TTL in ms a write that names none gets; `null` for no expiry. */
  readonly defaultTtlMs: number | null
  private readonly clone: boolean
  private readonly checkValues: boolean
  /** The clock an expiry is computed from when a value is written: exact, not coarse. */
  private readonly writeNow: () => number
  /** Measures entries, when `maxSize` is set. */
  private readonly sizer: EntrySizer | undefined
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
    assertKnownOptions(options, MEMORY_OPTION_NAMES, 'memoryBackend()')
    this.namespace = options.namespace
    this.defaultTtlMs = ttlOption(options.defaultTtl, 'defaultTtl') ?? null
    this.clone = booleanOption(options.clone, 'clone', false)
    this.checkValues = booleanOption(
      options.checkValues,
      'checkValues',
      !this.clone && process.env.NODE_ENV !== 'production',
    )
    // The default clocks follow fake timers in tests (see clock.ts); reads use the coarse one.
    this.writeNow = options.now ?? preciseNow
    const { lru, sizer } = createLru(options, options.now ?? coarseNow)
    this.lru = lru
    this.sizer = sizer
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
    return this.remove(key)
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

  /** The live keys, each once (internal `__` keys left out); with `prefix`, those that start with it. */
  async *keys(options?: ListKeysOptions): AsyncIterableIterator<string> {
    this.assertOpen()
    yield* liveKeys(this.lru, listPrefix(options))
  }

  async incr(key: string, by = 1, ttl?: Duration): Promise<number> {
    assertIncrement(by)
    const expiresAt = this.expiry(ttl)
    const current = this.read(key, false)
    if (current === MISS) {
      this.store(key, by, expiresAt)
      return by
    }
    const next = addToCounter(key, current, by)
    if (next === 0 && Object.is(current, -0)) {
      // lru-cache keeps an old value `===` to the new one: -0 would stay. Replaced, same expiry.
      const expiresAt = this.expiryOfEntry(key)
      this.lru.delete(key)
      this.store(key, 0, expiresAt ?? 0)
      return 0
    }
    this.store(key, next, 0, true)
    return next
  }

  atomicUpdate<T>(key: string, fn: (current: T | undefined) => T | Promise<T>, ttl?: Duration): Promise<T> {
    if (this.closed) return Promise.reject(new CacheClosedError(this.name))
    assertKey(key)
    const expiresAt = this.expiry(ttl)
    // A set or delete of the key while an async `fn` runs is not lost: `fn` runs again on what is
    // there now (compare-and-set, as on the server backends; `fn` may run more than once).
    const attempt = async (): Promise<T | typeof CONFLICT> => {
      const current = this.read(key, false)
      const next = await fn(current === MISS ? undefined : (this.out(current) as T))
      if (this.read(key, false) !== current) return CONFLICT
      this.store(key, next, expiresAt)
      return next
    }
    return this.queue.run(key, () => retryConflicts(key, UPDATE_RETRIES, attempt))
  }

  async getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    this.assertOpen()
    assertKeyList(keys, 'getMany')
    // Read at once, in this call: checking the list is all the copy it needs.
    const out = new Array<T | undefined>(keys.length)
    for (let i = 0; i < keys.length; i++) {
      const stored = this.read(keys[i]!)
      out[i] = stored === MISS ? undefined : (this.out(stored) as T)
    }
    return out
  }

  async setMany(given: readonly SetManyItem[]): Promise<void> {
    this.assertOpen()
    // Check every item, key, TTL and value first so a bad item stores nothing.
    const items = copyItemList(given)
    const expiries = items.map((item) => this.expiry(item.ttl))
    // Each value is copied (with clone) and measured (with maxSize) before any is stored: a value
    // that cannot be copied, or is too large, rejects the call and stores no item (the too-large
    // key's own old value is dropped, as by set).
    const stored: Stored[] = []
    const sizes: (number | undefined)[] = []
    for (const { key, value } of items) {
      const one = this.prepare(key, value)
      stored.push(one)
      sizes.push(this.sizer?.measure(key, value, one, this.drop))
    }
    for (let i = 0; i < items.length; i++) this.commit(items[i]!.key, stored[i]!, sizes[i], expiries[i]!)
  }

  /** Every key is checked first (a bad one removes nothing); then all are removed at once, as `delete` removes one. */
  async deleteMany(keys: readonly string[]): Promise<number> {
    this.assertOpen()
    assertKeyList(keys, 'deleteMany')
    let removed = 0
    for (const key of keys) if (this.remove(key)) removed++
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
    const expiresAt = expiryOf(status)
    return expiresAt === undefined ? { value } : { value, expiresAt }
  }

  /** The expiry (epoch ms) of a live entry, undefined for none; counts nothing. */
  private expiryOfEntry(key: string): number | undefined {
    const status = this.status
    status.ttl = 0
    this.lru.get(key, this.getOptions)
    return expiryOf(status)
  }

  private remove(key: string): boolean {
    const existed = this.read(key, false) !== MISS
    this.lru.delete(key)
    if (key.charCodeAt(0) === UNDERSCORE) this.internalWrites++
    if (existed) this.observer.delete(key)
    return existed
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
    this.commit(key, stored, this.sizer?.measure(key, value, stored, this.drop), expiresAt, keepExpiry)
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

  private commit(
    key: string,
    stored: Stored,
    size: number | undefined,
    expiresAt: number,
    keepExpiry = false,
  ): void {
    const options = this.setOptions
    if (size !== undefined) options.size = size
    setExpiry(options, expiresAt, keepExpiry)
    if (key.charCodeAt(0) === UNDERSCORE) this.internalWrites++
    // lru-cache keeps an old value `===` to the new one: a zero of the other sign would stay.
    if (stored === 0 && !keepExpiry && this.lru.peek(key) === 0) this.lru.delete(key)
    this.lru.set(key, stored, options)
    this.observer.set(key)
  }

  /** Drops what a key held: a value too large for it must not leave the old one in place. */
  private readonly drop = (key: string): void => {
    this.lru.delete(key)
  }

  private expiry(ttl: Duration | undefined): number {
    const ms = ttl === undefined ? (this.defaultTtlMs ?? undefined) : ttlToMs(ttl)
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
