import type { CacheBackend, CacheEntry, Duration, ListKeysOptions, SetManyItem } from '@cache/core'
import { CacheConfigError, defineBackend } from '@cache/core'
import {
  booleanOption,
  CHAIN,
  chainOf,
  hostOnlyOption,
  assertKnownOptions,
  type BaseBackendOptions,
  durationOption,
  isLruCache,
  fromMilliseconds,
  ObservedBackend,
  optionNames,
  renamedOption,
  copyItemList,
  copyKeyList,
  type KeyedQueue,
  sharedOption,
  storeOf,
  storeToken,
  ttlOption,
} from '@cache/core/backend'
import { Keyv, type KeyvStoreAdapter } from 'keyv'
import { isKeyvInstance, KeyvStorage } from './keyv-storage.js'
import { KeyvStoreFromBackend } from './keyv-store.js'
import { storeQueue } from './store-queue.js'

/** Options of {@link keyvBackend}. */
export interface KeyvBackendOptions extends BaseBackendOptions {
  /**
   * Prefix of every key (`namespace:key`) and scope of `clear()` when a store is given. Ignored
   * when a Keyv instance is given: its own namespace applies. Default: `'keyv'` (Keyv's default).
   * A non-empty string: `''` throws `CacheConfigError`, since a store's clear without a namespace
   * empties the whole store.
   */
  namespace?: string
  /**
   * Longest time an operation may take before it fails with `CacheTimeoutError`: seconds, or a
   * string such as `'250ms'`; `false` (or `0`) turns the timer off. Default: `'1s'`, or off for
   * an in-process `Map` store.
   */
  timeout?: Duration | false
  /** @deprecated Use `timeout` (seconds, or `'250ms'`; `false` for none); accepted until the next minor version. */
  timeoutMs?: number
  /** `close()` disconnects the store (or Keyv instance) too. Default: false (it is yours). */
  closeStore?: boolean
  /**
   * Whether other processes see the store's entries (see `shared` on the backend). Default: told
   * from the store: false for one of this process (a `Map`, Keyv's default store, an LRU,
   * cacheable's or Keyv's in-memory stores, SQLite `:memory:`), true for Keyv's adapters of a
   * server or a file (@keyv/redis, valkey, memcache, sqlite, postgres, mysql, mongo, etcd),
   * unknown for any other store: give it for yours.
   */
  shared?: boolean
  /**
   * With `shared`: whether only this machine's processes reach the store (a file on its disk).
   * Default: told from the store: true over a SQLite file, and what a @cache backend given through
   * `toKeyvStore` says.
   */
  hostOnly?: boolean
}

const OPTION_NAMES = optionNames<KeyvBackendOptions>({
  namespace: true,
  defaultTtl: true,
  logger: true,
  timeout: true,
  timeoutMs: true,
  closeStore: true,
  shared: true,
  hostOnly: true,
})

/**
 * Any Keyv instance or Keyv store adapter (`Map`, `@keyv/redis`, `@keyv/postgres`, …) as a
 * @cache backend.
 *
 * Given a store, the backend builds its own Keyv around it that serializes the envelope with
 * @cache's tagged JSON (plain JSON values stay readable by other Keyv clients; `Date`, `Map`,
 * `Set`, `BigInt`, `undefined` and binary round-trip) and rethrows store failures. Given a Keyv
 * instance, its serializer and error policy are used as they are, and values are handed to it
 * as tagged JSON trees: plain JSON values as themselves, anything else tagged, so whatever that
 * serializer does, values come back exactly or are refused with `CacheSerializationError`.
 *
 * Keyv stores have no atomic primitives: `add`, `incr`, `atomicUpdate` and `compareAndDelete`
 * are core's `defineBackend` fallbacks, serialized by a per-key queue **in this process only**,
 * and every other write of a key in this process (`set`, `delete`, the batches, `clear`) is
 * ordered with them through that queue. The queue is the store's: every `keyvBackend` over one
 * store object (one `Map`, one adapter, or Keyv instances over one of them) in this process
 * shares it. Two processes sharing a store can lose updates, and so can two adapter objects
 * connected to one server.
 */
// Stats and events from ObservedBackend, whose observer the layer counts in. The layer refuses
// calls once closed; ObservedBackend's closed flag only lets a closed backend skip the store's queue.
export class KeyvBackend extends ObservedBackend implements CacheBackend {
  readonly name = 'keyv'
  readonly namespace: string | undefined
  /**
   * Whether other processes see the entries: the `shared` option, else told from the store (see
   * {@link KeyvBackendOptions.shared}); undefined for a store not known. A chain refuses a keyv
   * level last behind a shared one unless it is known to be shared, as it refuses memory.
   */
  readonly shared: boolean | undefined
  /**
   * Whether only this machine's processes see the entries: the `hostOnly` option, else true over
   * a SQLite file (@keyv/sqlite), and what a @cache backend given through `toKeyvStore` says; a
   * chain refuses such a level last behind one other machines share. Undefined otherwise.
   */
  readonly hostOnly: boolean | undefined
  /** The chain of levels the store wraps (`toKeyvStore(multiLevel(…))`), if any (see `CHAIN`). */
  get [CHAIN](): object | undefined {
    return chainOf(this.keyv.store)
  }
  /** The Keyv instance every operation goes through. */
  readonly keyv: Keyv
  /**
   * The live keys of this namespace, each once (internal `__` keys left out); with `prefix`, only
   * those that start with it. Present when the store can be iterated: a `Map` (a snapshot of its
   * keys), or a store Keyv iterates (`keyv.iterator()`: @keyv/redis, sqlite, postgres, mysql,
   * mongo, etcd…), which reads every key of the Keyv namespace with its value, page by page as
   * the store does; the prefix is applied here. Absent otherwise.
   */
  readonly keys?: (options?: ListKeysOptions) => AsyncIterableIterator<string>
  private readonly timeoutMs: number
  private readonly ownDefaultTtlMs: number | undefined
  /** Core's layer over the store: every operation goes through it. */
  private readonly layer: CacheBackend
  private readonly storage: KeyvStorage
  /**
   * The store's queue, shared by every backend over it (see {@link storeQueue}): each write and
   * read-then-write enters it, then the layer (whose own queue sees this backend's calls only).
   */
  private readonly queue: KeyedQueue

  /**
   * The TTL in ms a write that names none gets (`defaultTtl`, else the Keyv instance's own `ttl`);
   * `null` for no expiry.
   */
  get defaultTtlMs(): number | null {
    if (this.ownDefaultTtlMs !== undefined) return this.ownDefaultTtlMs
    const own = (this.keyv as { ttl?: unknown }).ttl
    return typeof own === 'number' && own > 0 ? own : null
  }

  constructor(
    keyvOrStore: Keyv | KeyvStoreAdapter | Map<unknown, unknown>,
    options: KeyvBackendOptions = {},
  ) {
    super('keyv')
    if (!isKeyvLike(keyvOrStore)) {
      throw new TypeError('keyvBackend: expected a Keyv instance, a Keyv store adapter or a Map')
    }
    assertKnownOptions(options, OPTION_NAMES, 'keyvBackend()')
    const defaultTtlMs = ttlOption(options.defaultTtl, 'defaultTtl')
    this.ownDefaultTtlMs = defaultTtlMs
    const store = isKeyvInstance(keyvOrStore) ? keyvOrStore.store : keyvOrStore
    this.timeoutMs = timeoutOption(options, store instanceof Map)
    const storage = new KeyvStorage(
      keyvOrStore,
      {
        namespace: namespaceOption(options.namespace),
        defaultTtlMs,
        closeStore: booleanOption(options.closeStore, 'closeStore', false),
        disconnectWithin: this.timeoutMs === 0 ? 1000 : undefined,
      },
      this.observer,
    )
    this.storage = storage
    this.keyv = storage.keyv
    this.queue = storeQueue((storage.keyv.store as object | undefined) ?? storage.keyv)
    const held = storage.keyv.store as unknown
    this.shared = sharedOption(options.shared) ?? sharedStore(held)
    this.hostOnly =
      hostOnlyOption(options.hostOnly) ?? (this.shared === true ? hostOnlyStore(held) : undefined)
    this.namespace = storage.namespace
    // Two keyv levels over one store and namespace (one Map, one Keyv, adapters of one backend)
    // hold the same entries: one store to a chain's faster-level rule.
    this.nameStore(storeToken(storeOf(store as object), this.namespace ?? ''))
    this.layer = defineBackend(storage, {
      timeout: this.timeoutMs === 0 ? false : `${this.timeoutMs}ms`,
      classifyError: (error, operation) => storage.classifyError(error, operation),
      observer: this.observer,
    })
    if (this.layer.keys) this.keys = this.layer.keys
  }

  get<T = unknown>(key: string): Promise<T | undefined> {
    return this.layer.get<T>(key)
  }

  getEntry<T = unknown>(key: string): Promise<CacheEntry<T> | undefined> {
    return this.layer.getEntry<T>(key)
  }

  set(key: string, value: unknown, ttl?: Duration): Promise<void> {
    return this.write(key, () => this.layer.set(key, value, ttl))
  }

  add(key: string, value: unknown, ttl?: Duration): Promise<boolean> {
    return this.exclusive(key, () => this.layer.add(key, value, ttl))
  }

  delete(key: string): Promise<boolean> {
    return this.write(key, () => this.layer.delete(key))
  }

  /**
   * Deletes the key only if it holds the string `expected`. Keyv has no conditional delete: the
   * read and the delete are serialized with `add` by the per-key queue, in this process only.
   */
  compareAndDelete(key: string, expected: string): Promise<boolean> {
    return this.exclusive(key, () => this.layer.compareAndDelete!(key, expected))
  }

  has(key: string): Promise<boolean> {
    return this.layer.has(key)
  }

  /** This namespace only; after every write issued before it, before every one issued after it. */
  clear(): Promise<void> {
    return this.closed ? this.layer.clear() : this.queue.writeAll(() => this.layer.clear())
  }

  incr(key: string, by?: number, ttl?: Duration): Promise<number> {
    return this.exclusive(key, () => this.layer.incr(key, by, ttl))
  }

  atomicUpdate<T>(key: string, fn: (current: T | undefined) => T | Promise<T>, ttl?: Duration): Promise<T> {
    return this.exclusive(key, () => this.layer.atomicUpdate(key, fn, ttl))
  }

  /** One Keyv call for every key. */
  getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    return this.layer.getMany<T>(keys)
  }

  /** One Keyv call for every item. */
  async setMany(given: readonly SetManyItem[]): Promise<void> {
    if (this.closed) return this.layer.setMany(given)
    // The list as it is now, as the layer takes it: the call may wait its turn.
    const items = copyItemList(given)
    const keys = items.map((item) => this.storage.queueKey(item.key))
    return this.queue.write(keys, () => this.layer.setMany(items))
  }

  /** Key by key: Keyv's deleteMany answers one boolean, and the count needs one delete per key. */
  async deleteMany(given: readonly string[]): Promise<number> {
    if (this.closed) return this.layer.deleteMany(given)
    const keys = copyKeyList(given, 'deleteMany')
    return this.queue.write(
      keys.map((key) => this.storage.queueKey(key)),
      () => this.layer.deleteMany(keys),
    )
  }

  /**
   * Idempotent. Every later call rejects with `CacheClosedError`; the calls already at the store
   * settle with their real result first (each bounded by `timeout`). With `closeStore`, then
   * waits at most `timeout` (or 1 s) for the store to disconnect: a client that is reconnecting to
   * a dead server may never answer.
   */
  close(): Promise<void> {
    this.markClosed()
    return this.layer.close()
  }

  /** A plain write of `key`, ordered with the read-then-writes of it by every backend over the store. */
  private write<R>(key: string, run: () => Promise<R>): Promise<R> {
    // A key the layer refuses (or a closed backend) is refused at once, without a turn in the queue.
    if (this.closed || typeof key !== 'string') return run()
    return this.queue.write([this.storage.queueKey(key)], run)
  }

  /** A read-then-write of `key`: one at a time per stored key, whichever backend over the store issues it. */
  private exclusive<R>(key: string, run: () => Promise<R>): Promise<R> {
    if (this.closed || typeof key !== 'string') return run()
    return this.queue.run(this.storage.queueKey(key), run)
  }
}

/** A Keyv instance or store as a @cache backend. See {@link KeyvBackendOptions}. */
export function keyvBackend(
  keyvOrStore: Keyv | KeyvStoreAdapter | Map<unknown, unknown>,
  options: KeyvBackendOptions = {},
): KeyvBackend {
  return new KeyvBackend(keyvOrStore, options)
}

/**
 * The `namespace` option: a non-empty string, `'keyv'` when absent. `''` is refused: Keyv's
 * adapters treat an empty namespace as none, and their `clear()` then empties the whole store
 * (`LIKE '%'` in SQL, every key of the database in @keyv/redis).
 */
function namespaceOption(namespace: unknown): string {
  if (namespace === undefined || namespace === null) return 'keyv'
  if (typeof namespace !== 'string' || namespace === '')
    throw new CacheConfigError(
      'namespace',
      `expected a non-empty string, got ${typeof namespace === 'string' ? "''" : typeof namespace}: without a namespace clear() would empty the whole store`,
    )
  return namespace
}

/** Milliseconds of the `timeout` option (or of its old name, `timeoutMs`); 0 for none. */
function timeoutOption(options: KeyvBackendOptions, mapStore: boolean): number {
  const timeout = renamedOption<KeyvBackendOptions, Duration | false>(
    options,
    'timeout',
    'timeoutMs',
    fromMilliseconds('timeoutMs', { zero: true }),
    " (a Duration: seconds, or e.g. '250ms'; false for none)",
  )
  if (timeout === false) return 0
  return durationOption(timeout, 'timeout', mapStore ? 0 : '1s', { zero: true, msHabitFrom: 10 })
}

function isKeyvLike(value: unknown): value is Keyv | KeyvStoreAdapter | Map<unknown, unknown> {
  if (value instanceof Keyv || value instanceof Map) return true
  if (typeof value !== 'object' || value === null) return false
  const v = value as Record<string, unknown>
  return ['get', 'set', 'delete', 'clear'].every((m) => typeof v[m] === 'function')
}

/** Stores of this process's memory, by class: the in-memory stores Keyv users pick. */
const IN_PROCESS_STORES =
  /^(?:KeyvCacheableMemory|CacheableMemory|QuickLRU|LRUCache|LRUMap|BigMap|KeyvBigMap|TTLCache)$/
/** Keyv's adapters of a server or a file, by class. */
const SHARED_STORES = /^Keyv(?:Redis|Valkey|Memcache|Sqlite|Postgres|Mysql|Mongo|Etcd)$/

/** Whether other processes see a store's entries: false for one of this process, undefined when not known. */
function sharedStore(store: unknown): boolean | undefined {
  if (store === undefined || store instanceof Map || isLruCache(store)) return false
  // A @cache backend given through toKeyvStore: what it says.
  if (store instanceof KeyvStoreFromBackend) return store.shared
  const names = storeClasses(store)
  if (names.some((name) => IN_PROCESS_STORES.test(name))) return false
  if (!names.some((name) => SHARED_STORES.test(name))) return undefined
  if (!names.includes('KeyvSqlite')) return true
  // SQLite in memory (`:memory:`), or with an empty file name (a private temporary database SQLite
  // opens for each connection, as `sqlite://` + an unset variable gives): one process's own.
  const opts = (store as { opts?: { uri?: unknown; db?: unknown } }).opts
  const file = typeof opts?.db === 'string' ? opts.db : String(opts?.uri ?? '').replace(/^sqlite:\/\//, '')
  return file !== '' && file !== ':memory:'
}

/** Whether only this machine's processes see a shared store: a SQLite file, or what a @cache backend says. */
function hostOnlyStore(store: unknown): boolean | undefined {
  if (store instanceof KeyvStoreFromBackend) return store.hostOnly
  return storeClasses(store).includes('KeyvSqlite') ? true : undefined
}

/** The names of a store's class and of the classes it extends (a subclass of KeyvSqlite is one). */
function storeClasses(store: unknown): string[] {
  const names: string[] = []
  for (
    let proto = typeof store === 'object' && store !== null ? Object.getPrototypeOf(store) : null;
    proto !== null && proto !== Object.prototype;
    proto = Object.getPrototypeOf(proto)
  ) {
    const name = (proto as { constructor?: { name?: unknown } }).constructor?.name
    if (typeof name === 'string') names.push(name)
  }
  return names
}
