import type { CacheBackend } from './backend.js'
import { type MinimalBackend, toBackend } from './define-backend.js'
import { getBackend } from './default-cache.js'
import { CacheKeyError } from './errors.js'
import { invalidatedHere } from './flights.js'
import { registerInvalidationTarget } from './invalidation-targets.js'
import { generationKey, isInternalKey } from './internal-keys.js'
import { assertKey, copyKeyList } from './keys.js'
import { LOAD_OPTION_NAMES, type LoadOptions, resolvePolicy } from './load-options.js'
import { assertKnownOptions, optionNames } from './option-checks.js'
import { type CallKeys, Loader } from './loader.js'
import { type CacheEvent, type MemoEventName, MemoObserver, type MemoStats } from './stats.js'
import { INVALIDATE_OPTION_NAMES, tagList, tagVersionKey } from './tags.js'

/** Options of {@link getOrSet}: those of `cached()` that are not about naming keys, plus `tags`. */
export interface GetOrSetOptions<T = unknown> extends LoadOptions<[], T> {
  /**
   * Tags for `invalidateTags()`. Default: none. Giving some registers the backend, so that
   * `invalidateTags()` without a `backend` reaches it.
   */
  tags?: readonly string[]
}

/** {@link getOrSet}: the function, with the counters and events of every call. */
export interface GetOrSet {
  /**
   * The value under `key`, or `fn()`'s result, stored under `key`: `cached()` for one key, with
   * the same engine (single-flight, `lock`, `staleWhileRevalidate`, `grace`, timeouts,
   * `refreshAhead`, `tags`, a `ttl` function). Concurrent calls for one key share one run of the
   * first caller's `fn` (and options). The key holds an envelope (the value and its invalidation
   * state): read it with `getOrSet`, invalidate it with {@link invalidateKeys}.
   */
  <T>(
    backend: CacheBackend | MinimalBackend,
    key: string,
    fn: () => T | Promise<T>,
    options?: GetOrSetOptions<Awaited<T>>,
  ): Promise<Awaited<T>>
  /** Counters of every `getOrSet` call in this process. */
  readonly stats: MemoStats
  on(event: MemoEventName, listener: (event: CacheEvent) => void): void
  off(event: MemoEventName, listener: (event: CacheEvent) => void): void
}

const observer = new MemoObserver('getOrSet')
const NO_ARGUMENTS: [] = []
/** Custom backends completed once, so that every call on one of them shares flights. */
const completed = new WeakMap<object, CacheBackend>()

function backendOf(backend: CacheBackend | MinimalBackend): CacheBackend {
  let full = completed.get(backend)
  if (full === undefined) completed.set(backend, (full = toBackend(backend)))
  return full
}

/** What an options object resolves to, with the values it was resolved from. */
interface Engine {
  readonly loader: Loader
  readonly tags: readonly string[]
  readonly from: readonly unknown[]
}

const KNOWN_OPTIONS = optionNames<GetOrSetOptions>({ ...LOAD_OPTION_NAMES, tags: true })
const OPTION_NAMES = [...KNOWN_OPTIONS] as (keyof GetOrSetOptions)[]

/** The engines of the last option sets used: call sites usually pass the same values every time. */
const recent: Engine[] = []
const RECENT = 8

function engineFor(options: GetOrSetOptions<any>): Engine {
  // Checked on every call, not only when an engine is built: `{ ttl: 60, tgas }` would match the
  // engine of `{ ttl: 60 }`. A loop over the few names given, without allocating.
  // Not a plain object (null, a Map, a settings class): the full check, which refuses or reads
  // the names its prototypes define.
  if (typeof options !== 'object' || options === null || Object.getPrototypeOf(options) !== Object.prototype)
    assertKnownOptions(options, KNOWN_OPTIONS, 'getOrSet()')
  for (const name in options)
    if (!KNOWN_OPTIONS.has(name)) assertKnownOptions(options, KNOWN_OPTIONS, 'getOrSet()')
  for (const engine of recent) if (sameValues(options, engine.from)) return engine
  const policy = resolvePolicy(options)
  const engine: Engine = {
    loader: new Loader(policy, observer, 'getOrSet', [policy.generationTtl]),
    tags: tagList(options.tags ?? []).map(tagVersionKey),
    from: OPTION_NAMES.map((name) =>
      Array.isArray(options[name]) ? [...(options[name] as unknown[])] : options[name],
    ),
  }
  if (recent.unshift(engine) > RECENT) recent.pop()
  return engine
}

function sameValues(options: GetOrSetOptions<any>, values: readonly unknown[]): boolean {
  for (let i = 0; i < OPTION_NAMES.length; i++) {
    const value = options[OPTION_NAMES[i]!]
    if (value !== values[i] && !(Array.isArray(value) && sameList(value, values[i]))) return false
  }
  return true
}

/** Tags written inline (`tags: [`user:${id}`]`) are a new array every call: compare their items. */
function sameList(list: readonly unknown[], other: unknown): boolean {
  if (!Array.isArray(other) || other.length !== list.length) return false
  for (let i = 0; i < list.length; i++) if (list[i] !== other[i]) return false
  return true
}

/**
 * The keys of one `getOrSet` call. In one process, deleting the entry invalidates it: only the
 * tags are state to check there (`local`). The key's own generation is built when a shared
 * backend reads it, or a flight is started.
 */
class KeysOf implements CallKeys {
  private all: readonly string[] | undefined
  constructor(
    readonly entry: string,
    readonly local: readonly string[],
  ) {}
  get shared(): readonly string[] {
    return (this.all ??= [keyGeneration(this.entry), ...this.local])
  }
}

/** The generation of one `getOrSet` key: what {@link invalidateKeys} ends. */
function keyGeneration(key: string): string {
  return generationKey('key', key)
}

function checkKey(key: unknown): asserts key is string {
  assertKey(key)
  if (isInternalKey(key))
    throw new CacheKeyError(
      `"${key}" starts with "__", which @cache keeps for its own keys (invalidation state, locks)`,
    )
}

export const getOrSet: GetOrSet = Object.defineProperties(
  function getOrSetCall<T>(
    backend: CacheBackend | MinimalBackend,
    key: string,
    fn: () => T | Promise<T>,
    options: GetOrSetOptions<Awaited<T>> = {},
  ): Promise<Awaited<T>> {
    try {
      checkKey(key)
      if (typeof fn !== 'function')
        throw new TypeError(`getOrSet("${key}"): expected a function, got ${typeof fn}`)
      const store = backendOf(backend)
      const { loader, tags } = engineFor(options)
      // invalidateTags() without a backend reaches the entries tagged here, as it does cached()'s.
      if (tags.length > 0) registerInvalidationTarget(store)
      return loader.callAsync(
        store,
        new KeysOf(key, tags),
        fn,
        undefined,
        NO_ARGUMENTS,
        undefined,
      ) as Promise<Awaited<T>>
    } catch (error) {
      return Promise.reject(error)
    }
  },
  {
    name: { value: 'getOrSet' },
    stats: { get: () => observer.stats },
    on: {
      value: (event: MemoEventName, listener: (event: CacheEvent) => void) =>
        void observer.on(event, listener),
    },
    off: {
      value: (event: MemoEventName, listener: (event: CacheEvent) => void) =>
        void observer.off(event, listener),
    },
  },
) as GetOrSet

/** {@link getOrSet} on the default cache. */
export function cacheGetOrSet<T>(
  key: string,
  fn: () => T | Promise<T>,
  options?: GetOrSetOptions<Awaited<T>>,
): Promise<Awaited<T>> {
  let backend: CacheBackend
  try {
    backend = getBackend()
  } catch (error) {
    return Promise.reject(error)
  }
  return getOrSet(backend, key, fn, options)
}

/**
 * Invalidates what {@link getOrSet} stored under `keys`, in every process sharing the backend:
 * once it resolves, no call returns a value computed before it (a computation in flight is
 * neither joined nor stored, and no `grace` serves the old value). Rejects if the backend did
 * not take the change. A plain `backend.delete(key)` removes the value but does not stop a
 * computation in flight from storing its older result.
 */
export async function invalidateKeys(
  given: readonly string[],
  options: { backend?: CacheBackend | MinimalBackend } = {},
): Promise<void> {
  // A misspelt `backend` would invalidate the default cache instead, and resolve.
  assertKnownOptions(options, INVALIDATE_OPTION_NAMES, 'invalidateKeys()')
  // A copy: the entries are deleted after the generations, once the caller has gone on.
  const keys = copyKeyList(given, 'invalidateKeys')
  for (const key of keys) checkKey(key)
  const backend = options.backend === undefined ? getBackend() : backendOf(options.backend)
  const generations = keys.map(keyGeneration)
  invalidatedHere(generations)
  // In one process, deleting the entries is the invalidation.
  if (backend.sync !== undefined) {
    await backend.deleteMany(keys)
    return
  }
  // A missing generation is created anew on the next read, never read as an old one: deleting
  // it ends every entry written under it, whatever TTL the next writer picks.
  await backend.deleteMany(generations)
  // The stored values can no longer match; removing them only frees the space.
  await backend.deleteMany(keys).catch((error) => observer.error('delete', error))
}
