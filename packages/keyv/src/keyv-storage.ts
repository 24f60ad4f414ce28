import {
  CacheConfigError,
  type CacheEntry,
  CacheSerializationError,
  CacheUnavailableError,
  isCacheError,
  jsonSerializer,
  type ListKeysOptions,
  type SetManyItem,
  ttlToMs,
} from '@cache/core'
import {
  assertSerializable,
  type CacheObserver,
  fromTaggedJson,
  isListedKey,
  keyFromWellFormed,
  listPrefix,
  toTaggedJson,
  waitAtMost,
  wellFormedKey,
} from '@cache/core/backend'
import { Keyv, type KeyvStoreAdapter } from 'keyv'

/** How {@link KeyvStorage} reads and writes. */
export interface KeyvStorageOptions {
  /** Namespace of the backend's own Keyv (ignored for a Keyv instance). */
  namespace: string
  /** Milliseconds applied when `set` has no TTL; `undefined` for none. */
  defaultTtlMs: number | undefined
  /** `close()` disconnects the store, waiting at most `disconnectWithin` ms (`undefined`: the layer's timeout bounds it). */
  closeStore: boolean
  disconnectWithin: number | undefined
}

/** The `{ value, expires }` envelope Keyv stores. */
interface Envelope {
  value: unknown
  expires?: number | null
}

/**
 * The store behind `keyvBackend`: reads and writes through a Keyv instance, for core's
 * `defineBackend`, which adds the rest (key and TTL checks, the per-key queue of the
 * read-then-write operations, the timeout, stats and events, the closed state). What is Keyv's
 * lives here: keys as stored (the namespace written `~XXXX`-safe, well-formed keys), the envelope
 * and its expiry, values as tagged JSON trees for a Keyv instance, a `Map` store's scoped clear
 * and listing, and what Keyv's failures mean ({@link classifyError}).
 */
export class KeyvStorage {
  readonly name = 'keyv'
  readonly namespace: string | undefined
  /** The Keyv instance every operation goes through. */
  readonly keyv: Keyv
  /** Present when the store can be iterated (see `KeyvBackend.keys`). */
  readonly keys?: (options?: ListKeysOptions) => AsyncIterableIterator<string>
  private readonly prefix: string
  private readonly mapPrefix: string | undefined
  /** Values go through the Keyv instance's own serializer as tagged JSON trees (see `keyvBackend`). */
  private readonly tagged: boolean
  /** A Keyv instance without a namespace: its keys are the whole store, which `clear()` never empties. */
  private readonly wholeStore: boolean = false

  constructor(
    keyvOrStore: Keyv | KeyvStoreAdapter | Map<unknown, unknown>,
    private readonly options: KeyvStorageOptions,
    observer: CacheObserver,
  ) {
    if (isKeyvInstance(keyvOrStore)) {
      this.keyv = keyvOrStore
      this.tagged = true
      this.namespace = keyvOrStore.namespace
      this.prefix = ''
      // Keyv prefixes keys itself; in a bare Map they read `namespace:key`, or `key` without one.
      this.wholeStore = !keyvOrStore.namespace
      this.mapPrefix =
        keyvOrStore.store instanceof Map ? (this.wholeStore ? '' : `${keyvOrStore.namespace}:`) : undefined
      // A Keyv that swallows store errors still emits them: count them at least.
      if (!keyvOrStore.throwOnErrors) keyvOrStore.on('error', (error) => observer.error('keyv', error))
    } else {
      this.tagged = false
      this.namespace = options.namespace
      // Our own prefix, always applied: Keyv's skips keys that already start with `namespace:`,
      // which would make `x` and `keyv:x` one key.
      this.prefix = `${storedNamespace(options.namespace)}:`
      this.mapPrefix = keyvOrStore instanceof Map ? this.prefix : undefined
      // Adapters such as @keyv/redis turn failures into misses unless told to throw.
      const adapter = keyvOrStore as { throwOnErrors?: unknown }
      if (adapter.throwOnErrors === false) adapter.throwOnErrors = true
      this.keyv = new Keyv({
        store: keyvOrStore,
        namespace: storedNamespace(options.namespace),
        useKeyPrefix: false,
        throwOnErrors: true,
        serialize: (data) => jsonSerializer.serialize(data).toString('utf8'),
        deserialize: (text) => jsonSerializer.deserialize(Buffer.from(text, 'utf8')) as never,
      })
      this.keyv.on('error', () => {}) // thrown to the caller instead
    }
    if (this.keyv.store instanceof Map) this.keys = (options) => this.mapKeys(listPrefix(options))
    else if (typeof this.keyv.iterator === 'function')
      this.keys = (options) => this.iteratedKeys(listPrefix(options))
  }

  async get<T>(key: string): Promise<T | undefined> {
    return (await this.getEntry<T>(key))?.value
  }

  async getEntry<T>(key: string): Promise<CacheEntry<T> | undefined> {
    const raw = (await this.keyv.get(this.storeKey(key), { raw: true })) as Envelope | undefined
    return raw === undefined || raw === null ? undefined : this.entry<T>(raw)
  }

  private entry<T>(raw: Envelope): CacheEntry<T> {
    const value = this.unwrap(raw.value) as T
    return typeof raw.expires === 'number' ? { value, expiresAt: raw.expires } : { value }
  }

  /** `ttl` in seconds, as the layer gives it: `Infinity` for none, `undefined` for the default. */
  async set(key: string, value: unknown, ttl: number | undefined): Promise<void> {
    const ms = ttl === undefined ? this.options.defaultTtlMs : ttl === Infinity ? undefined : ttl * 1000
    // Whole milliseconds, as the caller gave them (seconds in between are a float).
    await this.keyv.set(this.storeKey(key), this.wrap(value), ms === undefined ? ms : Math.round(ms))
  }

  delete(key: string): Promise<boolean> {
    return this.keyv.delete(this.storeKey(key))
  }

  has(key: string): Promise<boolean> {
    return this.keyv.has(this.storeKey(key))
  }

  async clear(): Promise<void> {
    if (this.wholeStore)
      throw new CacheConfigError(
        'namespace',
        'clear() needs a Keyv instance with a namespace: without one Keyv would empty the whole store',
      )
    const store = this.keyv.store
    if (this.mapPrefix !== undefined && store instanceof Map) {
      // Keyv clears a Map whole; remove this namespace only.
      for (const key of [...store.keys()]) {
        if (typeof key === 'string' && key.startsWith(this.mapPrefix)) store.delete(key)
      }
      return
    }
    await this.keyv.clear()
  }

  /**
   * The layer's `getMany` reads through this (a stored `undefined` is a hit): one Keyv call for
   * every key when the store reads batches. Over a store without `getMany` (a `Map`, some
   * adapters), Keyv's own batch reads key by key and answers every failure — an entry it cannot
   * parse, a store that is down — as a miss, so the keys are read one by one as `get` reads them
   * (as many store calls as Keyv would make) and fail as `get` does.
   */
  async getManyEntries<T>(keys: readonly string[]): Promise<(CacheEntry<T> | undefined)[]> {
    if (keys.length === 0) return []
    const store = this.keyv.store as { getMany?: unknown }
    if (typeof store.getMany !== 'function') return Promise.all(keys.map((key) => this.getEntry<T>(key)))
    const rows = (await this.keyv.get(
      keys.map((key) => this.storeKey(key)),
      { raw: true },
    )) as (Envelope | undefined)[]
    return rows.map((row) => (row === undefined || row === null ? undefined : this.entry<T>(row)))
  }

  /** One Keyv call. TTLs as the caller gave them (the layer has checked them). */
  async setMany(items: readonly SetManyItem[]): Promise<void> {
    const entries = items.map((item) => {
      // Keyv serializes item by item as it stores them: a value that cannot be written is refused
      // before any is, so a bad item stores nothing.
      if (!this.tagged) assertSerializable(item.value)
      const ttl = item.ttl === undefined ? this.options.defaultTtlMs : ttlToMs(item.ttl)
      return { key: this.storeKey(item.key), value: this.wrap(item.value), ttl }
    })
    await this.keyv.setMany(entries)
  }

  /**
   * Disconnects the store when it is ours to close, waiting at most `disconnectWithin`: a client
   * that is reconnecting to a dead server may never answer.
   */
  async close(): Promise<void> {
    if (!this.options.closeStore) return
    // With a timeout, the layer bounds this call and counts it when it runs out.
    if (this.options.disconnectWithin === undefined) await this.keyv.disconnect()
    else await waitAtMost(this.keyv.disconnect(), this.options.disconnectWithin, false)
  }

  /**
   * What a failure inside Keyv means. Store failures are `CacheUnavailableError`; what the Keyv
   * instance's own serializer throws (see {@link serializerFailure}) is the caller's
   * `CacheSerializationError`; @cache's own errors and `RangeError`s pass as they are.
   */
  classifyError(error: unknown, operation: string): Error {
    if (isCacheError(error) || error instanceof RangeError) return error
    if (this.tagged && serializerFailure(error)) {
      return new CacheSerializationError(
        `keyv: ${operation} failed in the Keyv instance's serializer: ${error.message}`,
        '$',
        { cause: error },
      )
    }
    return new CacheUnavailableError(
      'keyv',
      `keyv: ${operation} failed: ${(error as Error)?.message ?? error}`,
      {
        cause: error,
      },
    )
  }

  /**
   * The keys of a `Map` store, read directly: Keyv's own iterator over a Map would also yield the
   * keys of every namespace whose name contains this one's (`list` inside `listAbc`).
   */
  private async *mapKeys(prefix: string): AsyncIterableIterator<string> {
    const map = this.keyv.store as Map<unknown, unknown>
    const start = this.mapPrefix ?? ''
    for (const stored of [...map.keys()]) {
      if (typeof stored !== 'string' || !stored.startsWith(start)) continue
      const escaped = stored.slice(start.length)
      const key = keyFromWellFormed(escaped)
      if (!isListedKey(key, prefix)) continue
      // Through Keyv, so an expired entry is not listed (and is dropped, as a read drops it).
      if (await this.keyv.has(this.tagged ? escaped : stored)) yield key
    }
  }

  /** The keys Keyv's `iterator()` yields, as `set` was given them. */
  private async *iteratedKeys(prefix: string): AsyncIterableIterator<string> {
    for await (const [stored] of this.keyv.iterator!(undefined) as AsyncIterable<[string, unknown]>) {
      if (typeof stored !== 'string') continue
      // Our own Keyv hands keys as stored (`namespace:key`); a Keyv instance strips its namespace.
      if (!this.tagged && !stored.startsWith(this.prefix)) continue
      const key = keyFromWellFormed(this.tagged ? stored : stored.slice(this.prefix.length))
      if (isListedKey(key, prefix)) yield key
    }
  }

  /**
   * The key as the store is given it (Keyv's own prefixing included): every `keyvBackend` over
   * one store queues its writes by it, so two backends that write one stored key wait for each
   * other, whichever namespace option or Keyv instance led them there.
   */
  queueKey(key: string): string {
    if (!this.tagged) return this.storeKey(key)
    const wellFormed = wellFormedKey(key)
    const namespace = this.keyv.namespace
    // As Keyv's own prefixing: none without a namespace or with `useKeyPrefix: false`, and a key
    // that already starts with `namespace:` is stored as it is.
    // (`useKeyPrefix` is read as true when absent: Keyv 5 releases before it prefixed always.)
    const prefixed = (this.keyv as { useKeyPrefix?: boolean }).useKeyPrefix !== false
    if (!prefixed || !namespace || wellFormed.startsWith(`${namespace}:`)) return wellFormed
    return `${namespace}:${wellFormed}`
  }

  /**
   * The key in the store: prefixed, and well-formed, since most stores (Redis, SQL) encode keys
   * as UTF-8, where every key with a lone surrogate would become one.
   */
  private storeKey(key: string): string {
    return this.prefix + wellFormedKey(key)
  }

  /**
   * What a Keyv instance is given to store: a JSON value its serializer (whatever it is) keeps
   * as it is. Plain JSON values stay themselves; a Date, Map, BigInt… is tagged; what cannot
   * round-trip (a class instance, an Error, a subclass of a built-in) throws
   * `CacheSerializationError` instead of being mangled by that serializer.
   */
  private wrap(value: unknown): unknown {
    return this.tagged ? toTaggedJson(value) : value
  }

  private unwrap(value: unknown): unknown {
    return this.tagged ? fromTaggedJson(value) : value
  }
}

/**
 * True for what a serializer throws: `TypeError` (JSON.stringify on a BigInt or a cycle) or
 * `SyntaxError` (JSON.parse on text that is not JSON). A Keyv instance serializes inside its own
 * calls, so this is how its serializer's failures are told from its store's: stores report a
 * server that is down or slow with plain `Error`s (connection refused, closed, timed out).
 */
function serializerFailure(error: unknown): error is TypeError | SyntaxError {
  return error instanceof TypeError || error instanceof SyntaxError
}

/** A Keyv, also from another copy of the keyv package. */
export function isKeyvInstance(value: unknown): value is Keyv {
  if (value instanceof Keyv) return true
  const v = value as Record<string, unknown>
  return typeof v.getRaw === 'function' && typeof v.getMany === 'function' && 'store' in v && 'hooks' in v
}

/**
 * The namespace as it is written in the store: lowercase ASCII letters, digits and `-` as they
 * are, every other UTF-16 unit as `~` and four lowercase hex digits (`App` is `~0041pp`, `a:b`
 * is `a~003ab`). Adapters clear a namespace by matching a prefix (`namespace:*` in Redis,
 * `LIKE 'namespace:%'` in SQL stores, a regular expression in others), and some of those
 * matches fold case (SQLite's and MySQL's LIKE) or treat characters as wildcards (`*?[]\`, `%_`,
 * `.`). No character of the written form is special to any of them nor has another case, and no
 * `:` is left inside it, so the prefix of one namespace never matches another's keys (`App` does
 * not clear `app`, `user_1` does not clear `userX1`, `a` does not reach into `a:b`). Namespaces
 * made of lowercase letters, digits and `-` are written as they are (a plain Keyv on the same
 * store and namespace reads the same keys).
 */
function storedNamespace(namespace: string): string {
  return namespace.replace(/[^a-z0-9-]/g, (c) => `~${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}
