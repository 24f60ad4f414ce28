import {
  type CacheBackend,
  type CacheEntry,
  CacheNotANumberError,
  CacheSerializationError,
  CacheTimeoutError,
  CacheUnavailableError,
  type Duration,
  isCacheError,
  jsonSerializer,
  type ListKeysOptions,
  type SetManyItem,
  ttlToMs,
} from '@cache/core'
import {
  assertIncrement,
  assertKey,
  assertSerializable,
  type BaseBackendOptions,
  ObservedBackend,
  fromTaggedJson,
  isListedKey,
  KeyedQueue,
  keyFromWellFormed,
  listPrefix,
  toTaggedJson,
  wellFormedKey,
  ttlOption,
  durationOption,
  fromMilliseconds,
  renamedOption,
} from '@cache/core/backend'
import { Keyv, type KeyvStoreAdapter } from 'keyv'

/** Options of {@link keyvBackend}. */
export interface KeyvBackendOptions extends BaseBackendOptions {
  /**
   * Prefix of every key (`namespace:key`) and scope of `clear()` when a store is given. Ignored
   * when a Keyv instance is given: its own namespace applies. Default: `'keyv'` (Keyv's default).
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
}

/** The `{ value, expires }` envelope Keyv stores. */
interface Envelope {
  value: unknown
  expires?: number | null
}

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
 * are serialized by a per-key queue **in this process only**, and every other write of a key in
 * this process (`set`, `delete`, the batches, `clear`) is ordered with them through that queue.
 * Two processes sharing a store can lose updates.
 */
export class KeyvBackend extends ObservedBackend implements CacheBackend {
  readonly name = 'keyv'
  readonly namespace: string | undefined
  /** The Keyv instance every operation goes through. */
  readonly keyv: Keyv
  private readonly prefix: string
  private readonly mapPrefix: string | undefined
  private readonly queue = new KeyedQueue()
  private readonly defaultTtlMs: number | undefined
  private readonly timeoutMs: number
  private readonly closeStore: boolean
  /** Values go through the Keyv instance's own serializer as tagged JSON trees (see `keyvBackend`). */
  private readonly tagged: boolean
  private closing: Promise<void> | undefined
  /**
   * The live keys of this namespace, each once (internal `__` keys left out); with `prefix`, only
   * those that start with it. Present when the store can be iterated: a `Map` (a snapshot of its
   * keys), or a store Keyv iterates (`keyv.iterator()`: @keyv/redis, sqlite, postgres, mysql,
   * mongo, etcd…), which reads every key of the Keyv namespace with its value, page by page as
   * the store does; the prefix is applied here. Absent otherwise.
   */
  readonly keys?: (options?: ListKeysOptions) => AsyncIterableIterator<string>

  constructor(
    keyvOrStore: Keyv | KeyvStoreAdapter | Map<unknown, unknown>,
    options: KeyvBackendOptions = {},
  ) {
    super('keyv')
    if (!isKeyvLike(keyvOrStore)) {
      throw new TypeError('keyvBackend: expected a Keyv instance, a Keyv store adapter or a Map')
    }
    this.defaultTtlMs = ttlOption(options.defaultTtl, 'defaultTtl')
    this.closeStore = options.closeStore ?? false
    if (isKeyvInstance(keyvOrStore)) {
      this.keyv = keyvOrStore
      this.tagged = true
      this.namespace = keyvOrStore.namespace
      this.prefix = ''
      // Keyv prefixes keys itself; in a bare Map they read `namespace:key`.
      this.mapPrefix = keyvOrStore.store instanceof Map ? `${keyvOrStore.namespace ?? ''}:` : undefined
      // A Keyv that swallows store errors still emits them: count them at least.
      if (!keyvOrStore.throwOnErrors) keyvOrStore.on('error', (error) => this.observer.error('keyv', error))
    } else {
      const namespace = options.namespace ?? 'keyv'
      this.tagged = false
      this.namespace = namespace
      // Our own prefix, always applied: Keyv's skips keys that already start with `namespace:`,
      // which would make `x` and `keyv:x` one key.
      this.prefix = `${storedNamespace(namespace)}:`
      this.mapPrefix = keyvOrStore instanceof Map ? this.prefix : undefined
      // Adapters such as @keyv/redis turn failures into misses unless told to throw.
      const adapter = keyvOrStore as { throwOnErrors?: unknown }
      if (adapter.throwOnErrors === false) adapter.throwOnErrors = true
      this.keyv = new Keyv({
        store: keyvOrStore,
        namespace: storedNamespace(namespace),
        useKeyPrefix: false,
        throwOnErrors: true,
        serialize: (data) => jsonSerializer.serialize(data).toString('utf8'),
        deserialize: (text) => jsonSerializer.deserialize(Buffer.from(text, 'utf8')) as never,
      })
      this.keyv.on('error', () => {}) // thrown to the caller instead
    }
    const timeout = renamedOption<KeyvBackendOptions, Duration | false>(
      options,
      'timeout',
      'timeoutMs',
      fromMilliseconds('timeoutMs', { zero: true }),
      " (a Duration: seconds, or e.g. '250ms'; false for none)",
    )
    const timeoutMs =
      timeout === false
        ? 0
        : durationOption(timeout, 'timeout', this.keyv.store instanceof Map ? 0 : '1s', {
            zero: true,
            msHabitFrom: 10,
          })
    this.timeoutMs = timeoutMs
    if (this.keyv.store instanceof Map) this.keys = (options) => this.mapKeys(listPrefix(options))
    else if (typeof this.keyv.iterator === 'function')
      this.keys = (options) => this.iteratedKeys(listPrefix(options))
  }

  async get<T = unknown>(key: string): Promise<T | undefined> {
    return (await this.getEntry<T>(key))?.value
  }

  async getEntry<T = unknown>(key: string): Promise<CacheEntry<T> | undefined> {
    assertKey(key)
    const entry = await this.read<T>(key)
    if (entry === undefined) this.observer.miss(key)
    else this.observer.hit(key)
    return entry
  }

  /** The entry of a key, read for an operation of this backend (add, incr…): not counted as the caller's hit or miss. */
  private async read<T>(key: string): Promise<CacheEntry<T> | undefined> {
    const raw = (await this.run('get', key, () => this.keyv.get(this.storeKey(key), { raw: true }))) as
      | Envelope
      | undefined
    return raw === undefined || raw === null ? undefined : this.entry<T>(raw)
  }

  async set(key: string, value: unknown, ttl?: Duration): Promise<void> {
    assertKey(key)
    const ms = this.ttlMs(ttl)
    const stored = this.wrap(value)
    await this.queue.write([key], () =>
      this.run('set', key, () => this.keyv.set(this.storeKey(key), stored, ms)),
    )
    this.observer.set(key)
  }

  async add(key: string, value: unknown, ttl?: Duration): Promise<boolean> {
    assertKey(key)
    const ms = this.ttlMs(ttl)
    const stored = this.wrap(value)
    return this.queue.run(key, async () => {
      if ((await this.read(key)) !== undefined) return false
      await this.run('add', key, () => this.keyv.set(this.storeKey(key), stored, ms))
      this.observer.set(key)
      return true
    })
  }

  async delete(key: string): Promise<boolean> {
    assertKey(key)
    return this.queue.write([key], () => this.remove(key))
  }

  /** Deletes, inside the key's queue (a plain delete, or `compareAndDelete`'s). */
  private async remove(key: string): Promise<boolean> {
    const removed = await this.run('delete', key, () => this.keyv.delete(this.storeKey(key)))
    if (removed) this.observer.delete(key)
    return removed
  }

  /**
   * Deletes the key only if it holds the string `expected`. Keyv has no conditional delete: the
   * read and the delete are serialized with `add` by the per-key queue, in this process only.
   */
  async compareAndDelete(key: string, expected: string): Promise<boolean> {
    assertKey(key)
    return this.queue.run(key, async () => {
      if ((await this.read(key))?.value !== expected) return false
      return this.remove(key)
    })
  }

  async has(key: string): Promise<boolean> {
    assertKey(key)
    return this.run('has', key, () => this.keyv.has(this.storeKey(key)))
  }

  async clear(): Promise<void> {
    this.assertOpen()
    // After every write issued before it, before every one issued after it.
    return this.queue.writeAll(() => this.clearStore())
  }

  private async clearStore(): Promise<void> {
    this.assertOpen()
    const store = this.keyv.store
    if (this.mapPrefix !== undefined && store instanceof Map) {
      // Keyv clears a Map whole; remove this namespace only.
      for (const key of [...store.keys()]) {
        if (typeof key === 'string' && key.startsWith(this.mapPrefix)) store.delete(key)
      }
      return
    }
    await this.run('clear', undefined, () => this.keyv.clear())
  }

  async incr(key: string, by = 1, ttl?: Duration): Promise<number> {
    assertKey(key)
    assertIncrement(by)
    const ms = this.ttlMs(ttl)
    return this.queue.run(key, async () => {
      const entry = await this.read(key)
      if (entry !== undefined && !Number.isSafeInteger(entry.value)) throw new CacheNotANumberError(key)
      const next = ((entry?.value as number | undefined) ?? 0) + by
      // Keep the counter's original expiry: re-set it with what remains.
      const keep = entry === undefined ? ms : remainingMs(entry.expiresAt)
      await this.run('incr', key, () => this.keyv.set(this.storeKey(key), next, keep))
      this.observer.set(key)
      return next
    })
  }

  async atomicUpdate<T>(
    key: string,
    fn: (current: T | undefined) => T | Promise<T>,
    ttl?: Duration,
  ): Promise<T> {
    assertKey(key)
    const ms = this.ttlMs(ttl)
    return this.queue.run(key, async () => {
      const entry = await this.read<T>(key)
      const next = await fn(entry?.value)
      const stored = this.wrap(next)
      await this.run('atomicUpdate', key, () => this.keyv.set(this.storeKey(key), stored, ms))
      this.observer.set(key)
      return next
    })
  }

  async getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    for (const key of keys) assertKey(key)
    if (keys.length === 0) return []
    const rows = (await this.run('getMany', undefined, () =>
      this.keyv.get(
        keys.map((key) => this.storeKey(key)),
        { raw: true },
      ),
    )) as (Envelope | undefined)[]
    return rows.map((row, i) => {
      if (row === undefined || row === null) {
        this.observer.miss(keys[i]!)
        return undefined
      }
      this.observer.hit(keys[i]!)
      return this.unwrap(row.value) as T
    })
  }

  async setMany(items: readonly SetManyItem[]): Promise<void> {
    const entries = items.map((item) => {
      assertKey(item.key)
      // Keyv serializes item by item as it stores them: a value that cannot be written is refused
      // before any is, so a bad item stores nothing.
      if (!this.tagged) assertSerializable(item.value)
      return { key: this.storeKey(item.key), value: this.wrap(item.value), ttl: this.ttlMs(item.ttl) }
    })
    await this.queue.write(
      items.map((item) => item.key),
      () => this.run('setMany', undefined, () => this.keyv.setMany(entries)),
    )
    for (const item of items) this.observer.set(item.key)
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    // Keyv's deleteMany answers one boolean; the count needs one delete per key.
    const removed = await Promise.all(keys.map((key) => this.delete(key)))
    return removed.filter(Boolean).length
  }

  /** Idempotent. Waits at most `timeoutMs` (or 1 s) for the store to disconnect: a client that
   * is reconnecting to a dead server may never answer. */
  close(): Promise<void> {
    if (this.markClosed()) this.closing = this.closeStore ? this.disconnect() : Promise.resolve()
    return this.closing as Promise<void>
  }

  private async disconnect(): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const bounded = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.timeoutMs || 1000)
      timer.unref()
    })
    try {
      await Promise.race([this.keyv.disconnect(), bounded])
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * The keys of a `Map` store, read directly: Keyv's own iterator over a Map would also yield the
   * keys of every namespace whose name contains this one's (`list` inside `listAbc`).
   */
  private async *mapKeys(prefix: string): AsyncIterableIterator<string> {
    this.assertOpen()
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
    this.assertOpen()
    try {
      for await (const [stored] of this.keyv.iterator!(undefined) as AsyncIterable<[string, unknown]>) {
        if (typeof stored !== 'string') continue
        // Our own Keyv hands keys as stored (`namespace:key`); a Keyv instance strips its namespace.
        if (!this.tagged && !stored.startsWith(this.prefix)) continue
        const key = keyFromWellFormed(this.tagged ? stored : stored.slice(this.prefix.length))
        if (isListedKey(key, prefix)) yield key
      }
    } catch (error) {
      if (isCacheError(error)) throw error
      const failure = new CacheUnavailableError(
        'keyv',
        `keyv: keys failed: ${(error as Error)?.message ?? error}`,
        { cause: error },
      )
      this.observer.error('keys', failure)
      throw failure
    }
  }

  /**
   * Runs a Keyv call within the timeout. Store failures become `CacheUnavailableError`; what the
   * Keyv instance's own serializer throws (see {@link serializerFailure}) `CacheSerializationError`.
   */
  private async run<R>(operation: string, key: string | undefined, call: () => Promise<R>): Promise<R> {
    this.assertOpen()
    try {
      if (this.timeoutMs === 0) return await call()
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new CacheTimeoutError('keyv', operation, this.timeoutMs)),
          this.timeoutMs,
        )
      })
      try {
        return await Promise.race([call(), timeout])
      } finally {
        clearTimeout(timer)
      }
    } catch (error) {
      if (isCacheError(error) && !(error instanceof CacheUnavailableError)) throw error
      if (error instanceof RangeError) throw error
      if (this.tagged && serializerFailure(error)) {
        throw new CacheSerializationError(
          `keyv: ${operation} failed in the Keyv instance's serializer: ${error.message}`,
          '$',
          { cause: error },
        )
      }
      const failure =
        error instanceof CacheUnavailableError
          ? error
          : new CacheUnavailableError(
              'keyv',
              `keyv: ${operation} failed: ${(error as Error)?.message ?? error}`,
              {
                cause: error,
              },
            )
      this.observer.error(operation, failure, key)
      throw failure
    }
  }

  /**
   * The key in the store: prefixed, and well-formed, since most stores (Redis, SQL) encode keys
   * as UTF-8, where every key with a lone surrogate would become one.
   */
  private storeKey(key: string): string {
    return this.prefix + wellFormedKey(key)
  }

  private ttlMs(ttl: Duration | undefined): number | undefined {
    return ttl === undefined ? this.defaultTtlMs : ttlToMs(ttl)
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

  private entry<T>(raw: Envelope): CacheEntry<T> {
    const expires = raw.expires
    const value = this.unwrap(raw.value) as T
    return typeof expires === 'number' ? { value, expiresAt: expires } : { value }
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

/** What remains of an expiry, at least 1 ms; `undefined` for none. */
function remainingMs(expiresAt: number | undefined): number | undefined {
  return expiresAt === undefined ? undefined : Math.max(1, expiresAt - Date.now())
}

/** A Keyv, also from another copy of the keyv package. */
function isKeyvInstance(value: unknown): value is Keyv {
  if (value instanceof Keyv) return true
  const v = value as Record<string, unknown>
  return typeof v.getRaw === 'function' && typeof v.getMany === 'function' && 'store' in v && 'hooks' in v
}

function isKeyvLike(value: unknown): value is Keyv | KeyvStoreAdapter | Map<unknown, unknown> {
  if (value instanceof Keyv || value instanceof Map) return true
  if (typeof value !== 'object' || value === null) return false
  const v = value as Record<string, unknown>
  return ['get', 'set', 'delete', 'clear'].every((m) => typeof v[m] === 'function')
}

/** A Keyv instance or store as a @cache backend. See {@link KeyvBackendOptions}. */
export function keyvBackend(
  keyvOrStore: Keyv | KeyvStoreAdapter | Map<unknown, unknown>,
  options: KeyvBackendOptions = {},
): KeyvBackend {
  return new KeyvBackend(keyvOrStore, options)
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
