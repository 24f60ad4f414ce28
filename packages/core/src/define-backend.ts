import {
  type CacheBackend,
  type CacheEntry,
  type ListKeysOptions,
  type SetManyItem,
  addToCounter,
  assertIncrement,
  listPrefix,
} from './backend.js'
import { withTimeout } from './deadlines.js'
import { type Duration, ttlToMs } from './durations.js'
import {
  CacheClosedError,
  CacheConfigError,
  CacheTimeoutError,
  CacheUnsupportedError,
  isUnavailable,
} from './errors.js'
import { KeyedQueue } from './key-queue.js'
import { assertKey, copyItemList, copyKeyList } from './keys.js'
import { booleanOption, durationOption, isOptionsObject, optionNames, readOptions } from './option-checks.js'
import { CacheObserver, STORE, storeOf } from './stats.js'

/**
 * The least a custom backend must implement: `get`, `set(key, value, ttl)` and `delete`, sync or
 * async. Everything else has a fallback; without `clear`, `clear()` throws
 * `CacheUnsupportedError` when it is called.
 */
export type MinimalBackend = {
  get(key: string): unknown
  set(key: string, value: unknown, ttl?: any): unknown
  delete(key: string): unknown
  clear?(): unknown
} & Partial<Omit<CacheBackend, 'get' | 'set' | 'delete' | 'clear'>>

/** Options of {@link defineBackend}: what the layer does around every call to the store. */
export interface DefineBackendOptions {
  /**
   * Longest time one call to the store may take before the operation fails with
   * `CacheTimeoutError` (counted in `stats.timeouts` and `stats.errors`): seconds, or a string
   * such as `'250ms'`; `false` or `0` for none. A read-then-write fallback bounds its read and
   * its write each. Not applied to a native `atomicUpdate`, whose time is mostly the caller's
   * `fn`. The call itself is not cancelled. Default: none.
   */
  timeout?: Duration | false
  /**
   * What a failure of the store means, given the error the store threw and the operation: return
   * the error to throw. A `CacheUnavailableError` (or its `CacheTimeoutError`) says the store is
   * unavailable (down, unreachable): it is counted in `stats.errors` and emitted as an `error`
   * event. Any other error is the caller's (a value the store cannot encode, a bad argument):
   * thrown, not counted. Not called for the layer's own refusals (bad keys and TTLs, a closed
   * backend, a counter that is not a number), nor for what an `atomicUpdate` function throws.
   * Default: the error as it is.
   */
  classifyError?: (error: unknown, operation: string) => Error
  /**
   * Where the stats and events are kept, for a store that reports failures outside of any
   * operation too (an `error` event of its client): give it the observer it reports to. Default:
   * a new one, unless the store keeps `stats` of its own.
   */
  observer?: CacheObserver
}

const DEFINE_BACKEND_OPTION_NAMES = optionNames<DefineBackendOptions>({
  timeout: true,
  classifyError: true,
  observer: true,
})

/**
 * Completes a backend that implements at least get/set/delete, so it works with the decorator,
 * the convenience functions and multi-level. Its methods may be sync or async; `set` receives the
 * TTL as a number of seconds: `Infinity` for "never expires", `undefined` when the caller gave
 * none (the backend's default, if it has one); `delete` should return whether it removed something.
 *
 * The fallbacks for `add`, `incr`, `atomicUpdate` and `compareAndDelete` read then write, one
 * caller at a time per key, **inside this process only**; for cross-process atomicity implement
 * them natively. While any fallback is in use, every write of a key in this process (set, delete,
 * the batches, your native methods, and `clear` for every key) is ordered with them, so none is
 * lost between a fallback's read and its write.
 * `getEntry` without a native implementation cannot tell a stored `undefined` from a miss,
 * and reports no `expiresAt`. With one, `get` reads through it (a stored `undefined` counts as a
 * hit), and so does the fallback `getMany`; a store with a native `getMany` tells them apart in
 * batches by also having `getManyEntries(keys)` (the entries in order, `undefined` for a miss),
 * which `getMany` then reads through.
 *
 * Which methods are native is read once, here: a method added to the store later is not used.
 * After `close()`, no call reaches the store, also for operations already queued.
 */
export function defineBackend(backend: MinimalBackend, given: DefineBackendOptions = {}): CacheBackend {
  if (typeof backend !== 'object' || backend === null)
    throw new CacheConfigError(
      'backend',
      `defineBackend() takes an object with get, set and delete methods, got ${backend === null ? 'null' : typeof backend}`,
    )
  refuseOtherTtlUnits(backend)
  refuseMissingMethods(backend)
  // Each in its place: what the store says of itself on the store, how to run it in the options.
  const placed = isOptionsObject(given) ? given : {}
  for (const name of ['shared', 'hostOnly'])
    if (name in placed)
      throw new CacheConfigError(
        name,
        `the store says it of itself: put \`${name}\` on the object given to defineBackend (defineBackend({ ...store, ${name}: true })), not in its options`,
      )
  if (
    typeof (backend as { classifyError?: unknown }).classifyError === 'function' &&
    !('classifyError' in placed)
  )
    throw new CacheConfigError(
      'classifyError',
      'an option of defineBackend(), not a method of the store: it would be ignored there; write defineBackend(store, { classifyError })',
    )
  const options = readOptions(given, DEFINE_BACKEND_OPTION_NAMES, 'defineBackend()')
  if (options.classifyError !== undefined && typeof options.classifyError !== 'function')
    throw new CacheConfigError('classifyError', `expected a function, got ${typeof options.classifyError}`)
  if (options.observer !== undefined && !(options.observer instanceof CacheObserver))
    throw new CacheConfigError(
      'observer',
      'expected a CacheObserver (from @cache/core/backend), the one the store reports to',
    )
  const source = backend as CacheBackend
  const shared = sharedOption(source.shared)
  const chain = chainOf(source)
  const hostOnly = hostOnlyOption(source.hostOnly)
  const queue = new KeyedQueue()
  // A class names its instances; a plain object literal (constructor Object) is just "custom".
  const ctor = (source as { constructor?: Function }).constructor
  const name =
    typeof source.name === 'string'
      ? source.name
      : ctor && ctor !== Object && ctor.name
        ? ctor.name
        : 'custom'
  const native = (method: keyof CacheBackend): boolean => typeof source[method] === 'function'
  const timeoutMs =
    options.timeout === undefined || options.timeout === false
      ? 0
      : durationOption(options.timeout, 'timeout', 0, { zero: true })
  const classify = options.classifyError
  const observer = options.observer ?? (source.stats === undefined ? new CacheObserver(name) : undefined)
  let closing: Promise<void> | undefined
  const open = (): void => {
    if (closing !== undefined) throw new CacheClosedError(name)
  }
  // The calls that reached the store and have not settled: close() lets them finish first.
  const inFlight = new Set<Promise<unknown>>()
  const track = <R>(work: Promise<R>): Promise<R> => {
    inFlight.add(work)
    const done = () => inFlight.delete(work)
    work.then(done, done)
    return work
  }
  // What the store throws, as the caller receives it: classified, and counted when it says the
  // store is unavailable.
  const failed = (operation: string, key: string | undefined, error: unknown): unknown => {
    const failure = classify === undefined ? error : classify(error, operation)
    if (isUnavailable(failure)) observer?.error(operation, failure, key)
    return failure
  }
  /**
   * Every call to the store goes through here: refused once closed (also for work that was
   * queued), bounded by the timeout, its failure classified. `run` starts in the caller's tick,
   * so calls reach the store in the order they were made.
   */
  const call = async <R>(
    operation: string,
    key: string | undefined,
    run: () => R | Promise<R>,
  ): Promise<R> => {
    open()
    try {
      return await bounded(operation, run)
    } catch (error) {
      if (error instanceof CacheClosedError) throw error
      throw failed(operation, key, error)
    }
  }
  // `run()`, tracked as in flight and bounded by the timeout.
  const bounded = <R>(operation: string, run: () => R | Promise<R>): Promise<R> =>
    track(
      timeoutMs === 0
        ? started(run)
        : withTimeout(started(run), timeoutMs, () => new CacheTimeoutError(name, operation, timeoutMs)),
    )
  // The store's methods, as the layer calls them. Sync methods, and methods that throw instead of
  // rejecting, become async ones.
  const get = <T>(key: string, operation = 'get'): Promise<T | undefined> =>
    call(operation, key, () => source.get<T>(key))
  const set = async (key: string, value: unknown, ttl?: Duration, operation = 'set'): Promise<void> => {
    const ms = ttlToMs(ttl)
    const seconds = ms !== undefined ? ms / 1000 : ttl === undefined ? undefined : Infinity
    return call(operation, key, () => source.set(key, value, seconds) as Promise<void>)
  }
  const del = (key: string, operation = 'delete'): Promise<boolean> =>
    call(operation, key, async () => Boolean(await source.delete(key)))
  const clear = native('clear')
    ? () => call('clear', undefined, () => source.clear())
    : async (): Promise<void> => {
        throw new CacheUnsupportedError(
          name,
          'clear',
          'the backend has no clear method (add one to use cacheFlush() or clear a multi-level chain)',
        )
      }
  // Decided once, as every native method: get reads through the store's getEntry when it has one.
  const readsEntries = native('getEntry')
  const getEntry = readsEntries
    ? <T>(key: string, operation = 'getEntry') => call(operation, key, () => source.getEntry<T>(key))
    : async <T>(key: string, operation = 'getEntry'): Promise<CacheEntry<T> | undefined> => {
        const value = await get<T>(key, operation)
        return value === undefined ? undefined : { value }
      }
  const has = native('has')
    ? (key: string) => call('has', key, () => source.has(key))
    : async (key: string) => (await getEntry(key, 'has')) !== undefined
  const getMany = native('getMany')
    ? <T>(keys: readonly string[]) => call('getMany', undefined, () => source.getMany<T>(keys))
    : <T>(keys: readonly string[]) => Promise.all(keys.map((k) => get<T>(k, 'getMany')))
  // A store that tells a stored `undefined` from a miss is read through its entries, so that such
  // a value counts as a hit in get and getMany too (as on every other backend).
  const storeEntries = (backend as { getManyEntries?: (keys: readonly string[]) => unknown }).getManyEntries
  const getManyEntries =
    typeof storeEntries === 'function'
      ? <T>(keys: readonly string[]) =>
          call(
            'getMany',
            undefined,
            () => storeEntries.call(source, keys) as Promise<(CacheEntry<T> | undefined)[]>,
          )
      : readsEntries && !native('getMany')
        ? <T>(keys: readonly string[]) => Promise.all(keys.map((k) => getEntry<T>(k, 'getMany')))
        : undefined
  const setMany = native('setMany')
    ? (items: readonly SetManyItem[]) => call('setMany', undefined, () => source.setMany(items))
    : async (items: readonly SetManyItem[]) => {
        await Promise.all(items.map((item) => set(item.key, item.value, item.ttl, 'setMany')))
      }
  // A fallback reads then writes: a write of the same key landing in between would be lost. While
  // one is in use, every other write goes through the same queue (uncontended writes start at once).
  const ordered = !(['add', 'incr', 'atomicUpdate', 'compareAndDelete'] as const).every(native)
  const write = <R>(key: string, run: () => Promise<R>): Promise<R> =>
    ordered ? queue.write([key], run) : run()
  const writeMany = <R>(keys: readonly string[], run: () => Promise<R>): Promise<R> =>
    ordered ? queue.write(keys, run) : run()
  const add = native('add')
    ? (key: string, value: unknown, ttl?: Duration) =>
        write(key, () => call('add', key, () => source.add(key, value, ttl)))
    : (key: string, value: unknown, ttl?: Duration) =>
        queue.run(key, async () => {
          if ((await getEntry(key, 'add')) !== undefined) return false
          await set(key, value, ttl, 'add')
          return true
        })
  // Without a native getEntry the entry's expiry is unknown: the counter is re-set with the
  // store's default TTL. With one, an entry without expiry keeps none.
  const noExpiry = readsEntries ? Infinity : undefined
  const incr = native('incr')
    ? (key: string, by?: number, ttl?: Duration) =>
        write(key, () => call('incr', key, () => source.incr(key, by, ttl)))
    : (key: string, by = 1, ttl?: Duration) =>
        queue.run(key, async () => {
          assertIncrement(by)
          const entry = await getEntry(key, 'incr')
          const next = addToCounter(key, entry === undefined ? 0 : entry.value, by)
          // Keep the original expiry: re-set with what remains of it.
          const remaining =
            entry?.expiresAt === undefined ? noExpiry : Math.max(1, entry.expiresAt - Date.now()) / 1000
          await set(key, next, entry === undefined ? ttl : remaining, 'incr')
          return next
        })
  const atomicUpdate = native('atomicUpdate')
    ? <T>(key: string, fn: (current: T | undefined) => T | Promise<T>, ttl?: Duration) =>
        write(key, () => callerAtomicUpdate(key, fn, ttl))
    : <T>(key: string, fn: (current: T | undefined) => T | Promise<T>, ttl?: Duration) =>
        queue.run(key, async () => {
          const entry = await getEntry<T>(key, 'atomicUpdate')
          const next = await fn(entry?.value)
          await set(key, next, ttl, 'atomicUpdate')
          return next
        })
  // A native atomicUpdate runs the caller's fn inside the store's call: what fn throws is the
  // caller's and passes unclassified, and fn's time is not the store's (no timeout).
  const callerAtomicUpdate = async <T>(
    key: string,
    fn: (current: T | undefined) => T | Promise<T>,
    ttl?: Duration,
  ): Promise<T> => {
    open()
    const thrownByFn = new WeakSet<object>()
    const marked = async (current: T | undefined): Promise<T> => {
      try {
        return await fn(current)
      } catch (error) {
        if (typeof error === 'object' && error !== null) thrownByFn.add(error)
        throw error
      }
    }
    try {
      return await track(started(() => source.atomicUpdate<T>(key, marked, ttl)))
    } catch (error) {
      if (typeof error === 'object' && error !== null && thrownByFn.has(error)) throw error
      throw failed('atomicUpdate', key, error)
    }
  }
  const compareAndDelete = native('compareAndDelete')
    ? (key: string, expected: string) =>
        write(key, () => call('compareAndDelete', key, () => source.compareAndDelete!(key, expected)))
    : (key: string, expected: string) =>
        queue.run(key, async () => {
          if ((await get(key, 'compareAndDelete')) !== expected) return false
          return del(key, 'compareAndDelete')
        })
  const deleteMany = native('deleteMany')
    ? (keys: readonly string[]) =>
        writeMany(keys, () => call('deleteMany', undefined, () => source.deleteMany(keys)))
    : undefined
  // The layer in front of the store: closed state, key and TTL checks before anything is written,
  // and stats and events when the store keeps none of its own.
  const counted = <R>(count: (result: R) => void, run: () => Promise<R>): Promise<R> =>
    run().then((result) => {
      count(result)
      return result
    })
  const hitOrMiss = (key: string, found: boolean) => (found ? observer?.hit(key) : observer?.miss(key))
  const wrapped: Partial<CacheBackend> = {
    get: async <T>(key: string) => {
      open()
      assertKey(key)
      if (readsEntries) {
        const entry = await counted(
          (found) => hitOrMiss(key, found !== undefined),
          () => getEntry<T>(key, 'get'),
        )
        return entry?.value
      }
      return counted(
        (value) => hitOrMiss(key, value !== undefined),
        () => get<T>(key),
      )
    },
    getEntry: async <T>(key: string) => {
      open()
      assertKey(key)
      return counted(
        (entry) => hitOrMiss(key, entry !== undefined),
        () => getEntry<T>(key),
      )
    },
    has: async (key: string) => {
      open()
      assertKey(key)
      return has(key)
    },
    set: async (key: string, value: unknown, ttl?: Duration) => {
      open()
      assertKey(key)
      return counted(
        () => observer?.set(key),
        () => write(key, () => set(key, value, ttl)),
      )
    },
    add: async (key: string, value: unknown, ttl?: Duration) => {
      open()
      assertKey(key)
      ttlToMs(ttl)
      return counted(
        (added) => added && observer?.set(key),
        () => add(key, value, ttl),
      )
    },
    delete: async (key: string) => {
      open()
      assertKey(key)
      return counted(
        (removed) => removed && observer?.delete(key),
        () => write(key, () => del(key)),
      )
    },
    clear: async () => {
      open()
      return ordered ? queue.writeAll(clear) : clear()
    },
    incr: async (key: string, by?: number, ttl?: Duration) => {
      open()
      assertKey(key)
      ttlToMs(ttl)
      return counted(
        () => observer?.set(key),
        () => incr(key, by, ttl),
      )
    },
    atomicUpdate: async <T>(key: string, fn: (current: T | undefined) => T | Promise<T>, ttl?: Duration) => {
      open()
      assertKey(key)
      ttlToMs(ttl)
      return counted(
        () => observer?.set(key),
        () => atomicUpdate<T>(key, fn, ttl),
      )
    },
    getMany: async <T>(given: readonly string[]) => {
      open()
      // The list as it is now: the store may read it after the caller has changed it.
      const keys = copyKeyList(given, 'getMany')
      if (getManyEntries !== undefined) {
        const entries = await counted(
          (found) => {
            for (let i = 0; i < keys.length; i++) hitOrMiss(keys[i]!, found[i] !== undefined)
          },
          () => getManyEntries<T>(keys),
        )
        return entries.map((entry) => entry?.value)
      }
      return counted(
        (values) => {
          for (let i = 0; i < keys.length; i++) hitOrMiss(keys[i]!, values[i] !== undefined)
        },
        () => getMany<T>(keys),
      )
    },
    setMany: async (given: readonly SetManyItem[]) => {
      open()
      // Every item, key and TTL is checked first, so a bad item stores nothing.
      const items = copyItemList(given)
      for (const item of items) ttlToMs(item.ttl)
      return counted(
        () => {
          for (const item of items) observer?.set(item.key)
        },
        () =>
          writeMany(
            items.map((item) => item.key),
            () => setMany(items),
          ),
      )
    },
    deleteMany: async (given: readonly string[]) => {
      open()
      const keys = copyKeyList(given, 'deleteMany')
      if (deleteMany !== undefined) return deleteMany(keys)
      // Key by key, so that each removal is counted with its key.
      const removed = await Promise.all(keys.map((key) => wrapped.delete!(key)))
      return removed.filter(Boolean).length
    },
    compareAndDelete: async (key: string, expected: string) => {
      open()
      assertKey(key)
      return counted(
        (removed) => removed && observer?.delete(key),
        () => compareAndDelete(key, expected),
      )
    },
  }
  // Refuses every later call at once; the store is closed once the calls in flight have settled
  // with their real result (each is bounded by the timeout, when there is one). The store's own
  // close is bounded too: past the timeout, close() resolves with the timeout counted and emitted
  // (a shutdown path goes on), and what the store's close throws rejects it.
  const close = () =>
    (closing ??= Promise.allSettled([...inFlight])
      .then(() => bounded('close', () => source.close?.()))
      .then(
        () => undefined,
        (error: unknown) => {
          const failure = failed('close', undefined, error)
          if ((failure as { code?: string } | null)?.code !== 'CACHE_TIMEOUT') throw failure
        },
      ))
  /**
   * A listing, one call to the store per step: each `next()` refused once closed, bounded by the
   * timeout, its failure classified and counted like any other call. When the listing ends
   * before the store's does (a failed or timed-out step, a caller that stops early), the store's
   * iterator is closed; that is awaited (bounded) only for a caller that stopped.
   */
  async function* listed(keys: AsyncIterator<string>): AsyncIterableIterator<string> {
    let finished = false
    let failure = false
    try {
      for (;;) {
        const step = await call('keys', undefined, () => keys.next()).catch((error: unknown) => {
          failure = true
          throw error
        })
        if (step.done) {
          finished = true
          return
        }
        yield step.value
      }
    } finally {
      if (!finished && typeof keys.return === 'function') {
        const release = bounded('keys', () => keys.return!())
        if (failure)
          release.catch(() => {}) // the caller has the step's error
        else
          await release.catch((error: unknown) => {
            throw failed('keys', undefined, error)
          })
      }
    }
  }
  const keys = source.keys
  return {
    name,
    ...wrapped,
    close,
    // No fallback: listing cannot be built from get/set/delete. A backend that lists keeps it.
    ...(typeof keys === 'function'
      ? {
          keys: (options?: ListKeysOptions) => {
            listPrefix(options) // a store's own keys() may not check what it is given
            open()
            return listed(keys.call(source, options))
          },
        }
      : {}),
    get stats() {
      return observer?.stats ?? source.stats!
    },
    on: observer ? observer.on.bind(observer) : source.on?.bind(source),
    off: observer ? observer.off.bind(observer) : source.off?.bind(source),
    sync: source.sync,
    ...(shared === undefined ? {} : { shared }),
    ...(hostOnly === undefined ? {} : { hostOnly }),
    // A chain of levels wrapped here stays one for the chains that take this backend as a level.
    ...(chain === undefined ? {} : { [CHAIN]: chain }),
    // The store wrapped here is the store this backend is (see STORE).
    [STORE]: storeOf(source),
  } as CacheBackend
}

/** `run()` as a promise, started now: what it throws synchronously becomes the rejection. */
function started<R>(run: () => R | Promise<R>): Promise<R> {
  try {
    return Promise.resolve(run())
  } catch (error) {
    return Promise.reject(error)
  }
}

const PROTOCOL = [
  'clear',
  'getEntry',
  'add',
  'has',
  'incr',
  'atomicUpdate',
  'getMany',
  'setMany',
  'deleteMany',
  'close',
] as const

/** True if `value` has every method of {@link CacheBackend}. */
export function isCacheBackend(value: unknown): value is CacheBackend {
  if (typeof value !== 'object' || value === null) return false
  const v = value as Record<string, unknown>
  return isMinimalBackend(value) && PROTOCOL.every((m) => typeof v[m] === 'function')
}

/** True if `value` has get/set/delete (and, if it has `clear`, a function there). */
export function isMinimalBackend(value: unknown): value is MinimalBackend {
  if (typeof value !== 'object' || value === null) return false
  const v = value as Record<string, unknown>
  return (
    ['get', 'set', 'delete'].every((m) => typeof v[m] === 'function') &&
    (v.clear === undefined || typeof v.clear === 'function')
  )
}

/** A full backend as is; a minimal one completed with {@link defineBackend}. */
export function toBackend(value: MinimalBackend | CacheBackend): CacheBackend {
  if (isCacheBackend(value)) return value
  if (!isMinimalBackend(value))
    throw new TypeError(
      'expected a cache backend: an object with get, set and delete methods (clear optional)',
    )
  return defineBackend(value)
}

/** Methods a store may have; one it has must be a function. */
const OPTIONAL_METHODS = [
  'clear',
  'getEntry',
  'has',
  'getMany',
  'getManyEntries',
  'setMany',
  'add',
  'incr',
  'atomicUpdate',
  'compareAndDelete',
  'deleteMany',
  'keys',
  'close',
] as const

/**
 * A store without `get`, `set` or `delete`, or with one of its methods not a function (`get: 1`),
 * is refused when it is defined, not at its first call with a `TypeError` from inside.
 */
function refuseMissingMethods(store: object): void {
  const methods = store as Record<string, unknown>
  for (const name of ['get', 'set', 'delete'])
    if (typeof methods[name] !== 'function')
      throw new CacheConfigError(
        'backend',
        `defineBackend(): the store has no ${name} method (${name}: ${methods[name] === undefined ? 'missing' : typeof methods[name]}); it needs get, set and delete`,
      )
  for (const name of OPTIONAL_METHODS)
    if (methods[name] !== undefined && typeof methods[name] !== 'function')
      throw new CacheConfigError(
        'backend',
        `defineBackend(): the store's ${name} is a ${typeof methods[name]}, not a method: remove it or make it one`,
      )
}

/**
 * Stores whose `set` does not take the TTL in seconds that a backend's `set` is given: a Keyv
 * instance or storage adapter (`KeyvRedis`, `KeyvSqlite`…) reads it as milliseconds, so a 60 s
 * entry would be gone after 60 ms; a `Map` ignores it, so an entry would never expire.
 */
function refuseOtherTtlUnits(store: unknown): void {
  if (store instanceof Map)
    throw new CacheConfigError(
      'backend',
      'a Map has no TTL (its set ignores one: entries would never expire): use memoryBackend() from @cache/memory, or defineBackend() over get/set/delete functions of your own',
    )
  // Keyv, its storage adapters (KeyvRedis, KeyvSqlite…), and classes extending either.
  let keyv: string | undefined
  for (
    let proto = Object.getPrototypeOf(store);
    proto !== null && keyv === undefined;
    proto = Object.getPrototypeOf(proto)
  ) {
    const named = (proto as { constructor?: { name?: unknown } }).constructor?.name
    if (typeof named === 'string' && /^Keyv/.test(named)) keyv = named
  }
  if (keyv !== undefined && typeof (store as { opts?: unknown }).opts === 'object')
    throw new CacheConfigError(
      'backend',
      `a ${keyv} (Keyv takes TTLs in milliseconds, a backend's set gets seconds: a 60 s entry would be gone after 60 ms): wrap it with keyvBackend() from @cache/keyv`,
    )
  if (isLruCache(store))
    throw new CacheConfigError(
      'backend',
      'an lru-cache LRUCache (its set takes an options object and ignores a TTL in seconds: entries would never expire): use memoryBackend() from @cache/memory, which is built on it',
    )
}

/**
 * A `shared` setting checked: `true`, `false` or not said. Another type (`'false'` from a
 * configuration file) is refused, as it would be read as not said.
 */
export function sharedOption(shared: unknown): boolean | undefined {
  return booleanOption(shared, 'shared', undefined, "whether other processes see the store's entries")
}

/** A `hostOnly` setting checked as {@link sharedOption} checks `shared`; `fallback` when not said. */
export function hostOnlyOption(hostOnly: unknown, fallback?: boolean): boolean | undefined {
  return booleanOption(
    hostOnly,
    'hostOnly',
    fallback,
    "whether only this machine's processes see the entries",
  )
}

/** Whether a store is lru-cache's `LRUCache`, told by shape: its class name is minified. */
export function isLruCache(store: unknown): boolean {
  const lru = store as { getRemainingTTL?: unknown; peek?: unknown; dump?: unknown } | null
  return (
    typeof lru?.getRemainingTTL === 'function' &&
    typeof lru.peek === 'function' &&
    typeof lru.dump === 'function'
  )
}

/**
 * Where a backend says which chain of levels it is, or wraps (`multiLevel`'s backends, and
 * `defineBackend` or a keyv level over one): a chain taking it as a level looks through it.
 */
export const CHAIN: unique symbol = Symbol.for('@cache/chain') as never

/** The chain of levels a backend is or wraps, if any. */
export function chainOf(backend: unknown): object | undefined {
  if ((typeof backend !== 'object' && typeof backend !== 'function') || backend === null) return undefined
  const chain = (backend as { [CHAIN]?: unknown })[CHAIN]
  return typeof chain === 'object' && chain !== null ? chain : undefined
}
