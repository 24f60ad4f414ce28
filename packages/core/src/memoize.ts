import { randomUUID } from 'node:crypto'
import { type CacheBackend, type MinimalBackend, toBackend } from './backend.js'
import { getBackend } from './default-cache.js'
import { type Duration, parseDuration, ttlToMs } from './durations.js'
import { argumentsKey, assertNamespace } from './keys.js'
import { CacheObserver, type CacheEvent, type CacheEventName, type CacheStats } from './stats.js'
import { sameVersions, tagVersionKey, versionsOf } from './tags.js'

type AnyFunction = (...args: any[]) => any

/** Options of {@link cached} and the {@link cache} decorator. */
export interface CacheOptions<A extends unknown[] = any[], R = any> {
  /** Seconds or a duration string. Default: the backend's default TTL (none unless configured). */
  ttl?: Duration
  /** Where results are stored. Default: the configured default cache ({@link getBackend}), resolved at call time. */
  backend?: CacheBackend | MinimalBackend
  /** Builds the key part for a call from its arguments. Default: a stable hash of the arguments. */
  key?: (...args: A) => string
  /** First segment of every key. Default: `'memo'`. */
  namespace?: string
  /** Name of the function in keys. Default: `Class.method` for decorated methods, `fn.name` for functions. */
  name?: string
  /** Store a result only when this returns true. */
  condition?: (result: Awaited<R>, ...args: A) => boolean
  /** Do not store a result when this returns true. */
  unless?: (result: Awaited<R>, ...args: A) => boolean
  /**
   * After `ttl`, keep serving the stale result for this long while one caller refreshes it in
   * the background. Default: off.
   */
  staleWhileRevalidate?: Duration
  /**
   * Stampede protection across processes: on a miss, only the caller that wins a lock (`add` on
   * the backend) runs the function; others wait for its result up to `wait` (default 5 s), then
   * run it themselves. `true` uses the defaults. Default: off (single-flight is per process).
   */
  lock?: boolean | { ttl?: Duration; wait?: Duration; poll?: Duration }
  /** Tags for {@link invalidateTags}: a list, or a function of the arguments. */
  tags?: readonly string[] | ((...args: A) => readonly string[])
  /** Rethrow backend failures instead of calling the function uncached. Default: false. */
  strict?: boolean
}

/** A memoized function: the same call signature plus invalidation and stats. */
export type Memoized<F extends AnyFunction> = F & {
  /** Removes the stored result for one set of arguments. */
  invalidate(...args: Parameters<F>): Promise<void>
  /** Removes every stored result of this function (in every process sharing the backend). */
  clear(): Promise<void>
  /** The full backend key for a set of arguments. */
  keyFor(...args: Parameters<F>): string
  readonly stats: CacheStats
  on(event: CacheEventName, listener: (event: CacheEvent) => void): void
  off(event: CacheEventName, listener: (event: CacheEvent) => void): void
}

/** The stored envelope: the value, the versions it was written under, and when it turns stale. */
interface Envelope {
  v: unknown
  g: number[]
  s?: number
}

const ASYNC_FUNCTION = Object.getPrototypeOf(async () => {}).constructor

/** Most keys remembered per memoized function (about 100 bytes each): the default memory backend's size. */
const KEY_CACHE_SIZE = 10_000
/** Longest string argument whose key is remembered. */
const KEY_CACHE_ARGUMENT_LENGTH = 64

/**
 * Memoizes `fn`. Concurrent misses for one key run `fn` once (single-flight); errors are never
 * cached and reach every waiter; `null`/`undefined` results are cached. A failing backend makes
 * the call a pass-through (counted in `stats.errors`, emitted as `error`) unless `strict`.
 *
 * With a sync `fn` and an in-process backend (memory) the result stays sync; otherwise the
 * memoized function returns a promise.
 */
export function cached<F extends AnyFunction>(
  fn: F,
  options: CacheOptions<Parameters<F>, ReturnType<F>> = {},
): Memoized<F> {
  const name = options.name ?? fn.name
  if (!name)
    throw new TypeError('cached(): anonymous functions need a `name` option so that their keys are distinct')
  return createMemo(fn, options, () => name)
}

function createMemo<F extends AnyFunction>(
  fn: F,
  options: CacheOptions<Parameters<F>, ReturnType<F>>,
  resolveName: () => string,
): Memoized<F> {
  const namespace = options.namespace ?? 'memo'
  assertNamespace(namespace)
  const ttlMs = ttlToMs(options.ttl)
  const swrMs =
    options.staleWhileRevalidate === undefined
      ? undefined
      : parseDuration(options.staleWhileRevalidate, 'staleWhileRevalidate')
  const lock = resolveLock(options.lock)
  const fixedBackend = options.backend === undefined ? undefined : toBackend(options.backend)
  const observer = new CacheObserver(`memo`)
  const inflight = new Map<string, Promise<unknown>>()
  const tagsOf =
    typeof options.tags === 'function' ? options.tags : () => (options.tags ?? []) as readonly string[]
  const hasTags = options.tags !== undefined
  let prefix: string | undefined
  let versionKey = ''
  let isAsync = fn instanceof ASYNC_FUNCTION

  // Full keys for calls with one number or short string argument (`getUser(42)`). Building a key
  // allocates a new string that the backend must then hash and compare character by character;
  // the cached one is hashed once and matches the stored key by identity. Bounded: emptied when full.
  const keyCache = options.key === undefined ? new Map<unknown, string>() : undefined

  const backendOf = () => fixedBackend ?? getBackend()
  const keyFor = (args: Parameters<F>): string => {
    if (prefix === undefined) {
      const fnName = resolveName()
      prefix = `${namespace}:${fnName}:`
      versionKey = `__v:${namespace}:${fnName}`
      observer.backend = `memo ${fnName}`
    }
    if (keyCache !== undefined && args.length === 1) {
      const only = args[0]
      if (
        typeof only === 'number' ||
        (typeof only === 'string' && only.length <= KEY_CACHE_ARGUMENT_LENGTH)
      ) {
        let key = keyCache.get(only)
        if (key === undefined) {
          key = prefix + argumentsKey(args)
          if (keyCache.size >= KEY_CACHE_SIZE) keyCache.clear()
          keyCache.set(only, key)
        }
        return key
      }
    }
    return prefix + (options.key ? options.key(...args) : argumentsKey(args))
  }
  const versionKeys = (args: Parameters<F>): string[] => {
    if (!hasTags) return [versionKey]
    return [versionKey, ...tagsOf(...args).map(tagVersionKey)]
  }

  function shouldStore(result: unknown, args: Parameters<F>): boolean {
    if (options.condition && !options.condition(result as Awaited<ReturnType<F>>, ...args)) return false
    if (options.unless?.(result as Awaited<ReturnType<F>>, ...args)) return false
    return true
  }

  function envelopeFor(value: unknown, versions: number[]): { envelope: Envelope; ttl: number | undefined } {
    if (swrMs !== undefined && ttlMs !== undefined) {
      return { envelope: { v: value, g: versions, s: Date.now() + ttlMs }, ttl: (ttlMs + swrMs) / 1000 }
    }
    return { envelope: { v: value, g: versions }, ttl: ttlMs === undefined ? undefined : ttlMs / 1000 }
  }

  function failed(operation: string, error: unknown, key: string): void {
    if (options.strict) throw error
    observer.error(operation, error, key)
  }

  /** Looks up a key. Returns the envelope on a fresh or stale hit, `undefined` on a miss. */
  function readSync(
    backend: CacheBackend,
    key: string,
    args: Parameters<F>,
  ): { hit?: Envelope; versions: number[] } {
    const sync = backend.sync!
    const envelope = sync.getEntry<Envelope>(key)?.value
    if (!hasTags) {
      // The common case (one version counter, no tags) without the arrays of the general path.
      // On a hit the stored versions equal the current ones, so they are handed on as they are.
      const stored = sync.getEntry(versionKey)?.value
      const version = typeof stored === 'number' ? stored : 0
      if (typeof envelope === 'object' && envelope !== null) {
        const g = envelope.g
        if (Array.isArray(g) && g.length === 1 && g[0] === version) return { hit: envelope, versions: g }
      }
      return { versions: [version] }
    }
    const values: unknown[] = [envelope]
    for (const k of versionKeys(args)) values.push(sync.getEntry(k)?.value)
    return classify(values)
  }

  async function readAsync(
    backend: CacheBackend,
    key: string,
    vkeys: string[],
  ): Promise<{ hit?: Envelope; versions: number[] }> {
    return classify(await backend.getMany([key, ...vkeys]))
  }

  function classify(values: readonly unknown[]): { hit?: Envelope; versions: number[] } {
    const versions = versionsOf(values, 1)
    const envelope = values[0] as Envelope | undefined
    if (
      envelope !== undefined &&
      envelope !== null &&
      typeof envelope === 'object' &&
      sameVersions(envelope.g, versions)
    ) {
      return { hit: envelope, versions }
    }
    return { versions }
  }

  async function store(
    backend: CacheBackend,
    key: string,
    value: unknown,
    versions: number[],
    args: Parameters<F>,
  ) {
    if (!shouldStore(value, args)) return
    const { envelope, ttl } = envelopeFor(value, versions)
    try {
      if (backend.sync && !isPromiseLike(value)) backend.sync.set(key, envelope, ttl)
      else await backend.set(key, envelope, ttl)
      observer.set(key)
    } catch (error) {
      failed('set', error, key)
    }
  }

  async function load(
    backend: CacheBackend,
    key: string,
    versions: number[],
    thisArg: unknown,
    args: Parameters<F>,
  ): Promise<unknown> {
    let lockKey: string | undefined
    if (lock) {
      lockKey = `__lock:${key}`
      const acquired = await backend.add(lockKey, randomUUID(), lock.ttlMs / 1000).catch((error) => {
        failed('lock', error, key)
        return true
      })
      if (!acquired) {
        const waited = await waitForValue(backend, key, versions, lock)
        if (waited !== undefined) return waited.v
        lockKey = undefined
      }
    }
    try {
      const value = await fn.apply(thisArg, args)
      await store(backend, key, value, versions, args)
      return value
    } finally {
      if (lockKey) await backend.delete(lockKey).catch((error) => failed('unlock', error, key))
    }
  }

  async function waitForValue(
    backend: CacheBackend,
    key: string,
    versions: number[],
    settings: { waitMs: number; pollMs: number },
  ): Promise<Envelope | undefined> {
    const deadline = Date.now() + settings.waitMs
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, settings.pollMs))
      const envelope = (await backend.get<Envelope>(key).catch(() => undefined)) as Envelope | undefined
      if (envelope && sameVersions(envelope.g, versions)) return envelope
    }
    return undefined
  }

  function singleFlight(key: string, start: () => Promise<unknown>): Promise<unknown> {
    let pending = inflight.get(key)
    if (pending === undefined) {
      pending = start().finally(() => inflight.delete(key))
      inflight.set(key, pending)
    }
    return pending
  }

  function onHit(
    backend: CacheBackend,
    key: string,
    hit: Envelope,
    versions: number[],
    thisArg: unknown,
    args: Parameters<F>,
  ) {
    observer.hit(key)
    if (hit.s !== undefined && Date.now() > hit.s && !inflight.has(key)) {
      // Stale: answer now, refresh once in the background.
      void singleFlight(key, () => load(backend, key, versions, thisArg, args)).catch((error) =>
        observer.error('refresh', error, key),
      )
    }
    return hit.v
  }

  function miss(
    backend: CacheBackend,
    key: string,
    versions: number[],
    thisArg: unknown,
    args: Parameters<F>,
  ): Promise<unknown> {
    observer.miss(key)
    return singleFlight(key, () => load(backend, key, versions, thisArg, args))
  }

  /** The sync path: an in-process backend and a function that has returned plain values. */
  function callSync(this: unknown, backend: CacheBackend, key: string, args: Parameters<F>): unknown {
    let read: { hit?: Envelope; versions: number[] }
    try {
      read = readSync(backend, key, args)
    } catch (error) {
      failed('get', error, key)
      return fn.apply(this, args)
    }
    if (read.hit) return onHit(backend, key, read.hit, read.versions, this, args)
    observer.miss(key)
    const value = fn.apply(this, args)
    if (isPromiseLike(value)) {
      isAsync = true
      return singleFlight(key, async () => {
        const resolved = await value
        await store(backend, key, resolved, read.versions, args)
        return resolved
      })
    }
    void store(backend, key, value, read.versions, args)
    return value
  }

  async function callAsync(
    this: unknown,
    backend: CacheBackend,
    key: string,
    args: Parameters<F>,
  ): Promise<unknown> {
    let read: { hit?: Envelope; versions: number[] }
    try {
      read = backend.sync ? readSync(backend, key, args) : await readAsync(backend, key, versionKeys(args))
    } catch (error) {
      failed('get', error, key)
      return fn.apply(this, args)
    }
    if (read.hit) return onHit(backend, key, read.hit, read.versions, this, args)
    return miss(backend, key, read.versions, this, args)
  }

  const memoized = function (this: unknown, ...args: Parameters<F>): unknown {
    const backend = backendOf()
    const key = keyFor(args)
    // Locks wait asynchronously, so a locked function always takes the async path.
    if (backend.sync && !isAsync && !lock) return callSync.call(this, backend, key, args)
    return callAsync.call(this, backend, key, args)
  } as Memoized<F>

  Object.defineProperties(memoized, {
    name: { value: fn.name, configurable: true },
    length: { value: fn.length, configurable: true },
    stats: { get: () => observer.stats },
  })
  memoized.keyFor = (...args) => keyFor(args)
  memoized.invalidate = async (...args) => {
    await backendOf().delete(keyFor(args))
  }
  memoized.clear = async () => {
    keyFor([] as unknown as Parameters<F>)
    await backendOf().incr(versionKey)
  }
  memoized.on = (event, listener) => void observer.on(event, listener)
  memoized.off = (event, listener) => void observer.off(event, listener)
  return memoized
}

function resolveLock(
  lock: CacheOptions['lock'],
): { ttlMs: number; waitMs: number; pollMs: number } | undefined {
  if (!lock) return undefined
  const settings = lock === true ? {} : lock
  return {
    ttlMs: parseDuration(settings.ttl ?? 30, 'lock.ttl'),
    waitMs: parseDuration(settings.wait ?? 5, 'lock.wait'),
    pollMs: parseDuration(settings.poll ?? '50ms', 'lock.poll'),
  }
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function'
}

/**
 * Memoizes a method: `@cache({ ttl: 60 })`, `@cache(60)` or `@cache('1m')`.
 *
 * Works as a TC39 standard decorator (TypeScript 5 default) and as a legacy
 * `experimentalDecorators` decorator (NestJS). Keys are `memo:Class.method:<arguments>`: every
 * instance of the class shares them, so put instance-specific state into `key` if results depend
 * on it. The decorated method gains `.invalidate(...args)`, `.clear()` and `.stats`.
 */
export function cache(options: CacheOptions | Duration = {}): any {
  const opts: CacheOptions = typeof options === 'object' ? options : { ttl: options }
  return function decorate(target: any, context: any, descriptor?: PropertyDescriptor): any {
    if (typeof context === 'object' && context !== null && 'kind' in context) {
      // TC39 standard decorator: (method, context) => replacement
      if (context.kind !== 'method') throw new TypeError(`@cache() decorates methods, not ${context.kind}s`)
      const method = String(context.name)
      let owner = opts.name
      const memo = createMemo(target, opts, () => owner ?? method)
      context.addInitializer(function (this: unknown) {
        owner ??= `${definingClass(this, context.name, memo)}.${method}`
      })
      return memo
    }
    // Legacy decorator: (prototype or constructor, propertyKey, descriptor) => descriptor
    if (!descriptor || typeof descriptor.value !== 'function')
      throw new TypeError('@cache() decorates methods')
    const className = typeof target === 'function' ? target.name : target.constructor.name
    const name = opts.name ?? `${className}.${String(context)}`
    descriptor.value = createMemo(descriptor.value, opts, () => name)
    return descriptor
  }
}

function definingClass(self: unknown, key: PropertyKey, method: unknown): string {
  if (typeof self === 'function') return self.name
  for (let proto = Object.getPrototypeOf(self); proto; proto = Object.getPrototypeOf(proto)) {
    if (Object.hasOwn(proto, key) && proto[key] === method) return proto.constructor.name
  }
  return (self as { constructor?: { name?: string } })?.constructor?.name ?? 'anonymous'
}
