import type { Duration } from './durations.js'
import { CacheConfigError, CacheKeyError, CacheNotANumberError, CacheUnsupportedError } from './errors.js'
import { describeGiven } from './keys.js'
import { assertKnownOptions, optionNames } from './option-checks.js'
import type { CacheEvent, CacheEventName, CacheStats } from './stats.js'

/** A stored value with its absolute expiry (epoch ms), if it has one. */
export interface CacheEntry<T = unknown> {
  value: T
  expiresAt?: number
}

/** One item of {@link CacheBackend.setMany}. */
export interface SetManyItem {
  key: string
  value: unknown
  ttl?: Duration
}

/** Options of {@link CacheBackend.keys} and {@link listKeys}. */
export interface ListKeysOptions {
  /** Only keys that start with this text (compared literally: no glob, no LIKE). Default: every key. */
  prefix?: string
}

/**
 * The async protocol every @cache backend implements. A plain object with these methods is
 * enough; {@link defineBackend} fills in everything but get/set/delete/clear.
 *
 * `ttl` is seconds or a duration string; `undefined` means the backend's default TTL.
 */
export interface CacheBackend {
  readonly name: string
  /** The value, or `undefined` on a miss (a stored `undefined` also reads as `undefined`: use `getEntry`). */
  get<T = unknown>(key: string): Promise<T | undefined>
  /** The entry, or `undefined` on a miss: tells a stored `undefined`/`null` from a miss. */
  getEntry<T = unknown>(key: string): Promise<CacheEntry<T> | undefined>
  set(key: string, value: unknown, ttl?: Duration): Promise<void>
  /** Set only if the key is absent; `true` if this call stored the value. */
  add(key: string, value: unknown, ttl?: Duration): Promise<boolean>
  /** `true` if a key was removed. */
  delete(key: string): Promise<boolean>
  has(key: string): Promise<boolean>
  /** Removes this backend's namespace only. */
  clear(): Promise<void>
  /**
   * Adds `by` (default 1) to an integer counter, creating it at 0 first. `ttl` applies only when
   * this call creates the counter; later increments keep the original expiry.
   */
  incr(key: string, by?: number, ttl?: Duration): Promise<number>
  /**
   * Read-modify-write with no lost update under contention. `fn` may be called more than once
   * (on conflict it is retried with the newer value), so it must be free of side effects.
   */
  atomicUpdate<T>(key: string, fn: (current: T | undefined) => T | Promise<T>, ttl?: Duration): Promise<T>
  getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]>
  setMany(items: readonly SetManyItem[]): Promise<void>
  /** The number of keys removed. */
  deleteMany(keys: readonly string[]): Promise<number>
  /** Idempotent. Never closes a client the user passed in. */
  close(): Promise<void>
  /**
   * Deletes `key` only if it holds exactly the string `expected`, in one atomic step across every
   * process sharing the backend: how a lock holder releases its own lock and never one that
   * another caller took after its own expired. `true` if it deleted. Optional: without it, core's
   * {@link compareAndDelete} reads then deletes, serialized in this process only.
   */
  compareAndDelete?(key: string, expected: string): Promise<boolean>
  /**
   * The keys of this backend's namespace that are live (not expired), as they were passed to
   * `set` (without the namespace), each at most once, in no particular order; with `prefix`,
   * only those that start with it. Keys @cache writes for itself (invalidation state, locks:
   * every key that starts with `__`) are never listed.
   *
   * Streams in pages (bounded memory, no blocking server command). Like Redis `SCAN`, a key
   * present for the whole iteration is listed; a key written or deleted during it may or may not
   * be. Optional: a backend that cannot list (memcached) lacks it, and {@link listKeys} throws
   * `CacheUnsupportedError` for it.
   */
  keys?(options?: ListKeysOptions): AsyncIterableIterator<string>
  /**
   * Whether other processes see this backend's entries: `true` for a server or a file (redis,
   * memcached, disk, a Keyv store such as @keyv/redis), `false` for entries held in this process
   * (memory, a Keyv over a `Map`). A chain of levels refuses one whose last level is `false`
   * behind a `true` one: its counters, locks and invalidations would stay in one process.
   * Optional: a backend that leaves it out is judged by its name.
   */
  readonly shared?: boolean
  /**
   * With `shared`: `true` when only processes of this machine see the entries (a file on its
   * disk: disk, a Keyv over SQLite), not those of other machines. A chain refuses such a level
   * last behind one other machines share (redis, memcached): processes of two machines would
   * count, lock and invalidate apart. Optional: a backend that leaves it out is judged by its
   * name (`disk` is this machine's).
   */
  readonly hostOnly?: boolean
  /**
   * The TTL in ms a write that names none gets (`defaultTtl`); `null` for no expiry. Optional: a
   * backend that leaves it out says nothing (all @cache backends tell). A chain of levels gives
   * its faster levels the shared level's, so none keeps a copy past the shared level's expiry.
   */
  readonly defaultTtlMs?: number | null
  /** Counters, when the backend keeps them (all @cache backends do). */
  readonly stats?: CacheStats
  on?(event: CacheEventName, listener: (event: CacheEvent) => void): unknown
  off?(event: CacheEventName, listener: (event: CacheEvent) => void): unknown
  /**
   * Synchronous access, for backends that hold data in-process. Lets a memoized sync function
   * stay sync.
   */
  readonly sync?: SyncAccess
}

/** Synchronous reads and writes, offered by in-process backends. */
export interface SyncAccess {
  getEntry<T = unknown>(key: string): CacheEntry<T> | undefined
  /** The value alone (`undefined` for a miss), without building an entry: the memoize hit path. */
  get?<T = unknown>(key: string): T | undefined
  /**
   * The value, or `miss` for a miss: tells a stored `undefined` from a miss without building an
   * entry (a multi-level chain's L1 hit). Counts a hit or a miss as `getEntry` does.
   */
  getOr?<T = unknown, M = undefined>(key: string, miss: M): T | M
  set(key: string, value: unknown, ttl?: Duration): void
  /**
   * A number that changes whenever a key of @cache's own (one that starts with `_`: generations,
   * locks) is written or deleted here, or the backend is cleared. Memoize keeps the generations
   * it read while it stays the same, instead of reading them again on every hit. Leave it out
   * unless every such change goes through this backend's methods.
   */
  internalVersion?(): number
}

/**
 * Deletes `key` if it holds exactly `expected`: the backend's own atomic `compareAndDelete`, or
 * for a backend without one a read then a delete (atomic within this process only).
 */
export async function compareAndDelete(
  backend: CacheBackend,
  key: string,
  expected: string,
): Promise<boolean> {
  if (backend.compareAndDelete) return backend.compareAndDelete(key, expected)
  if ((await backend.get(key)) !== expected) return false
  return backend.delete(key)
}

/**
 * The keys of `backend`'s namespace (see {@link CacheBackend.keys}): live ones, each at most once,
 * without internal keys; with `prefix`, only those that start with it.
 *
 * ```ts
 * for await (const key of listKeys(backend, { prefix: 'user:' })) console.log(key)
 * ```
 *
 * Throws `CacheUnsupportedError` at once when the backend cannot list keys (memcached, a custom
 * backend without `keys`), and `CacheKeyError` when `prefix` is not a string.
 */
export function listKeys(
  backend: CacheBackend,
  options: ListKeysOptions = {},
): AsyncIterableIterator<string> {
  listPrefix(options)
  if (typeof backend.keys !== 'function') {
    throw new CacheUnsupportedError(
      backend.name,
      'keys',
      'this backend cannot list its keys (use memory, disk, redis or a Keyv store that iterates)',
    )
  }
  return backend.keys(options)
}

const LIST_KEYS_OPTION_NAMES = optionNames<ListKeysOptions>({ prefix: true })

/**
 * The `prefix` of {@link ListKeysOptions}: `''` when absent; throws `CacheKeyError` unless a
 * string. Options that are not an object (`keys('session:*')`, a pattern by Redis habit) or
 * carry a misspelt name (`{ prefx }`) throw `CacheConfigError`: read as "no prefix", they would
 * list every key, and a purge loop over them delete every key. Called once per listing.
 */
export function listPrefix(options: ListKeysOptions | undefined): string {
  if (options === undefined) return ''
  if (typeof options === 'string')
    throw new CacheConfigError(
      'keys()',
      `expected an options object, got ${describeGiven(options)}: keys() matches no pattern; give the literal start of the keys: { prefix: ${JSON.stringify(literalStart(options))} }`,
    )
  assertKnownOptions(options, LIST_KEYS_OPTION_NAMES, 'keys()')
  const prefix = options.prefix
  if (prefix === undefined) return ''
  if (typeof prefix !== 'string')
    throw new CacheKeyError(`keys: prefix must be a string, got ${prefix === null ? 'null' : typeof prefix}`)
  return prefix
}

/** The text of a glob pattern before its first wildcard: `'session:'` for `'session:*'`. */
function literalStart(pattern: string): string {
  const wildcard = pattern.search(/[*?[]/)
  return wildcard === -1 ? pattern : pattern.slice(0, wildcard)
}

/** Throws a `RangeError` unless `by` is a safe integer. */
export function assertIncrement(by: number): void {
  if (!Number.isSafeInteger(by)) throw new RangeError(`incr: ${String(by)} is not a safe integer`)
}

/**
 * What `incr` leaves in a counter that holds `current`: `current + by`, exact. Throws
 * `CacheNotANumberError` when `current` is not an integer, and a `RangeError` when `current` or the
 * result is past ±`Number.MAX_SAFE_INTEGER` (it would not be exact: the counter would stop
 * counting), as the server backends answer it; the caller leaves the counter unchanged.
 */
export function addToCounter(key: string, current: unknown, by: number): number {
  if (typeof current !== 'number' || !Number.isInteger(current)) throw new CacheNotANumberError(key)
  const next = current + by
  if (!Number.isSafeInteger(current) || !Number.isSafeInteger(next))
    throw new RangeError(
      `incr: ${by} added to the counter ${JSON.stringify(key)} is not a safe integer (past ±Number.MAX_SAFE_INTEGER); the counter is unchanged`,
    )
  return next
}
