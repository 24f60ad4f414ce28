import { randomUUID } from 'node:crypto'
import { type CacheBackend, compareAndDelete, type MinimalBackend, toBackend } from './backend.js'
import { getBackend } from './default-cache.js'
import { type Duration, parseDuration, ttlToMs } from './durations.js'
import { CacheConfigError } from './errors.js'
import {
  currentGenerations,
  currentGenerationsSync,
  generationKey,
  isGeneration,
  newGeneration,
  renewGenerations,
  sameGenerations,
} from './generations.js'
import { callerFile, claimName, classFingerprint, digest, sourceOf } from './identity.js'
import { argumentsKey, assertNamespace } from './keys.js'
import { CacheObserver, type CacheEvent, type CacheEventName, type CacheStats } from './stats.js'
import { tagInvalidationCount, tagVersionKey } from './tags.js'

type AnyFunction = (...args: any[]) => any

/** Options of {@link cached} and the {@link cache} decorator. */
export interface CacheOptions<A extends unknown[] = any[], R = any> {
  /** Seconds or a duration string. Default: the backend's default TTL (none unless configured). */
  ttl?: Duration
  /** Where results are stored. Default: the configured default cache ({@link getBackend}), resolved at call time. */
  backend?: CacheBackend | MinimalBackend
  /**
   * Builds the key part for a call from its arguments. Default: a text of every argument's full
   * value; an argument whose value cannot be read in full (a class instance, a function) throws
   * a `CacheArgumentError` that points here.
   */
  key?: (...args: A) => string
  /** First segment of every key. Default: `'memo'`. */
  namespace?: string
  /**
   * Name of the function in keys. Default: `fn.name` for functions; for decorated methods the
   * class of `this` and the method (`Reports.monthly`, or `Repository.findById(UserRepository)`
   * for a method inherited from another class). Required for anonymous and bound functions.
   * A name you give is yours: two functions given the same name share entries.
   */
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
   * the backend) runs the function; the others poll for its result and take the lock over as
   * soon as it is released (the holder failed) or expired, or run the function themselves after
   * `wait` (default 5 s). The holder releases only its own lock (`compareAndDelete` of its
   * token). `true` uses the defaults. Default: off (single-flight is per process).
   */
  lock?: boolean | { ttl?: Duration; wait?: Duration; poll?: Duration }
  /** Tags for {@link invalidateTags}: a list, or a function of the arguments. */
  tags?: readonly string[] | ((...args: A) => readonly string[])
  /** Rethrow backend failures instead of calling the function uncached. Default: false. */
  strict?: boolean
}

/** A memoized function: the same call signature plus invalidation and stats. */
export type Memoized<F extends AnyFunction> = F & {
  /**
   * Invalidates the stored result for one set of arguments, in every process sharing the
   * backend. Rejects if the backend did not take the change.
   */
  invalidate(...args: Parameters<F>): Promise<void>
  /** Invalidates every stored result of this function, in every process sharing the backend. */
  clear(): Promise<void>
  /** The full backend key for a set of arguments. */
  keyFor(...args: Parameters<F>): string
  readonly stats: CacheStats
  on(event: CacheEventName, listener: (event: CacheEvent) => void): void
  off(event: CacheEventName, listener: (event: CacheEvent) => void): void
}

/** The stored envelope: the value, the generations it was computed under, and when it turns stale. */
interface Envelope {
  v: unknown
  g: number[]
  s?: number
}

/**
 * The keys of one call: its entry, and its generations. An in-process backend (one with `sync`
 * access) needs the function's and the tags' (`local`): invalidating one set of arguments there
 * is deleting its entry, and no other process holds a copy. A shared backend also needs the
 * generation of the arguments (`shared`): a copy in another process's L1, or a result another
 * process is still computing, must stop matching once `invalidate()` resolves.
 */
interface CallKeys {
  entry: string
  local: readonly string[]
  shared: readonly string[]
}

/** A computation in flight, joined by concurrent misses of the same key. */
interface Flight {
  promise: Promise<unknown>
  generations: number[]
  tagInvalidations: number
  /** An invalidation happened after it started: nobody joins it and its result is not stored. */
  superseded: boolean
}

type Read = { hit?: Envelope; generations: number[] }

const ASYNC_FUNCTION = Object.getPrototypeOf(async () => {}).constructor

/** Most keys remembered per memoized function (about 100 bytes each): the default memory backend's size. */
const KEY_CACHE_SIZE = 10_000
/** Longest string argument whose key is remembered. */
const KEY_CACHE_ARGUMENT_LENGTH = 64

/**
 * How a memoized function names itself in keys. `scope` names its generations (what `clear()`
 * and `invalidate()` renew); `prefix` the start of its entry keys for a call on `thisArg`.
 */
interface Naming {
  readonly label: string
  readonly scope: string
  prefix(thisArg: unknown): string
  /** The prefix of calls without a known `this` (`keyFor`); throws if it cannot be known yet. */
  defaultPrefix(): string
  /** Every entry prefix this function has used in this process. */
  prefixes(): Iterable<string>
}

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
  const namespace = options.namespace ?? 'memo'
  assertNamespace(namespace)
  let name = options.name
  if (name === undefined) {
    name = fn.name
    const source = sourceOf(fn)
    if (!name || source === undefined)
      throw new CacheConfigError(
        'name',
        `cached(): ${name ? `"${name}" is a bound or native function` : 'an anonymous function'} needs a \`name\` option so that its keys are its own`,
      )
    // Claimed once the other options are checked, below: a bad option must not hold the name.
    const label = `${namespace}:${name}`
    const file = callerFile(cached)
    const memo = createMemo(fn, options, functionNaming(label))
    claimName(label, { file, fingerprint: digest(source) }, `functions named "${name}"`)
    return memo
  }
  return createMemo(fn, options, functionNaming(`${namespace}:${name}`))
}

function functionNaming(label: string): Naming {
  const prefix = `${label}:`
  return {
    label,
    scope: label,
    prefix: () => prefix,
    defaultPrefix: () => prefix,
    prefixes: () => [prefix],
  }
}

function createMemo<F extends AnyFunction>(
  fn: F,
  options: CacheOptions<Parameters<F>, ReturnType<F>>,
  naming: Naming,
): Memoized<F> {
  const ttlMs = ttlToMs(options.ttl)
  const swrMs =
    options.staleWhileRevalidate === undefined
      ? undefined
      : parseDuration(options.staleWhileRevalidate, 'staleWhileRevalidate')
  const lock = resolveLock(options.lock)
  const fixedBackend = options.backend === undefined ? undefined : toBackend(options.backend)
  const observer = new CacheObserver(`memo ${naming.label}`)
  const inflight = new Map<string, Flight>()
  const tagsOf =
    typeof options.tags === 'function' ? options.tags : () => (options.tags ?? []) as readonly string[]
  const hasTags = options.tags !== undefined
  const staticTags = typeof options.tags === 'function' ? undefined : (options.tags ?? []).map(tagVersionKey)
  const functionGeneration = generationKey(naming.scope)
  /** Lifetime of an entry, and of the generation of its arguments (created with it). */
  const entryTtl =
    ttlMs === undefined ? undefined : swrMs === undefined ? ttlMs / 1000 : (ttlMs + swrMs) / 1000
  const generationTtls = [undefined, entryTtl]
  const staticLocal = staticTags === undefined ? undefined : [functionGeneration, ...staticTags]
  let isAsync = fn instanceof ASYNC_FUNCTION

  // Keys for calls with one number or short string argument (`getUser(42)`), per entry prefix.
  // Building a key allocates a new string that the backend must then hash and compare character
  // by character; a remembered one is hashed once and matches the stored key by identity.
  // Bounded: emptied when full.
  const keyCaches = options.key === undefined ? new Map<string, Map<unknown, CallKeys>>() : undefined

  const backendOf = () => fixedBackend ?? getBackend()

  function argumentPart(args: Parameters<F>): string {
    try {
      return options.key ? options.key(...args) : argumentsKey(args)
    } catch (error) {
      if ((error as { code?: unknown })?.code === 'CACHE_ARGUMENT')
        (error as Error).message = `${naming.label}: ${(error as Error).message}`
      throw error
    }
  }

  function buildKeys(prefix: string, part: string, args: Parameters<F>): CallKeys {
    const argsGeneration = generationKey(`${naming.scope}:${part}`)
    const tags = staticTags ?? tagsOf(...args).map(tagVersionKey)
    return {
      entry: prefix + part,
      local: staticLocal ?? [functionGeneration, ...tags],
      shared: [functionGeneration, argsGeneration, ...tags],
    }
  }

  function keysFor(prefix: string, args: Parameters<F>): CallKeys {
    if (keyCaches !== undefined && args.length === 1 && staticTags !== undefined) {
      const only = args[0]
      if (
        (typeof only === 'number' && !Object.is(only, -0)) ||
        (typeof only === 'string' && only.length <= KEY_CACHE_ARGUMENT_LENGTH)
      ) {
        let cache = keyCaches.get(prefix)
        if (cache === undefined) keyCaches.set(prefix, (cache = new Map()))
        let keys = cache.get(only)
        if (keys === undefined) {
          keys = buildKeys(prefix, argumentPart(args), args)
          if (cache.size >= KEY_CACHE_SIZE) cache.clear()
          cache.set(only, keys)
        }
        return keys
      }
    }
    return buildKeys(prefix, argumentPart(args), args)
  }

  function shouldStore(result: unknown, args: Parameters<F>): boolean {
    if (options.condition && !options.condition(result as Awaited<ReturnType<F>>, ...args)) return false
    if (options.unless?.(result as Awaited<ReturnType<F>>, ...args)) return false
    return true
  }

  function envelopeFor(value: unknown, generations: number[]): Envelope {
    if (swrMs !== undefined && ttlMs !== undefined) return { v: value, g: generations, s: Date.now() + ttlMs }
    return { v: value, g: generations }
  }

  /** A backend failure: rethrown in strict mode, else counted and evented. */
  function failed(operation: string, error: unknown, key: string): void {
    if (options.strict) throw error
    observer.error(operation, error, key)
  }

  /**
   * A write the backend refused. A value it cannot serialize is the caller's error, thrown on
   * every backend; a value too large is not cached (thrown only in strict mode); anything else
   * is a backend failure.
   */
  function storeFailed(error: unknown, key: string): void {
    const code = (error as { code?: unknown })?.code
    if (code === 'CACHE_SERIALIZATION') throw error
    failed('set', error, key)
  }

  function classify(envelope: unknown, generations: number[]): Read {
    if (
      typeof envelope === 'object' &&
      envelope !== null &&
      sameGenerations((envelope as Envelope).g, generations)
    ) {
      return { hit: envelope as Envelope, generations }
    }
    return { generations }
  }

  function readSync(backend: CacheBackend, keys: CallKeys): Read {
    const sync = backend.sync!
    const envelope = sync.getEntry<Envelope>(keys.entry)?.value
    const local = keys.local
    if (local.length === 1) {
      // The common case (the function's generation, no tags) without the arrays of the general
      // path: on a hit the stored generations equal the current ones and are handed on as they are.
      const found = sync.getEntry(local[0]!)?.value
      let generation: number
      if (isGeneration(found)) generation = found
      else sync.set(local[0]!, (generation = newGeneration()))
      if (typeof envelope === 'object' && envelope !== null) {
        const stored = envelope.g
        if (Array.isArray(stored) && stored.length === 1 && stored[0] === generation)
          return { hit: envelope, generations: stored }
      }
      return { generations: [generation] }
    }
    return classify(envelope, currentGenerationsSync(sync, local))
  }

  async function readAsync(backend: CacheBackend, keys: CallKeys): Promise<Read> {
    const values = await backend.getMany([keys.entry, ...keys.shared])
    const generations = await currentGenerations(backend, keys.shared, values.slice(1), generationTtls)
    return classify(values[0], generations)
  }

  function storeSync(backend: CacheBackend, keys: CallKeys, value: unknown, read: Read, args: Parameters<F>) {
    if (!shouldStore(value, args)) return
    try {
      backend.sync!.set(keys.entry, envelopeFor(value, read.generations), entryTtl)
      observer.set(keys.entry)
    } catch (error) {
      storeFailed(error, keys.entry)
    }
  }

  async function store(
    backend: CacheBackend,
    keys: CallKeys,
    value: unknown,
    generations: number[],
    args: Parameters<F>,
    flight: Flight | undefined,
  ) {
    if (flight !== undefined && isStale(flight)) return
    if (!shouldStore(value, args)) return
    try {
      await backend.set(keys.entry, envelopeFor(value, generations), entryTtl)
      observer.set(keys.entry)
    } catch (error) {
      storeFailed(error, keys.entry)
    }
  }

  async function load(
    backend: CacheBackend,
    keys: CallKeys,
    generations: number[],
    thisArg: unknown,
    args: Parameters<F>,
    flight: Flight | undefined,
  ): Promise<unknown> {
    let held: { key: string; token: string } | undefined
    if (lock) {
      const lockKey = `__lock:${keys.entry}`
      const token = randomUUID()
      let acquired: boolean | 'unknown'
      try {
        acquired = await backend.add(lockKey, token, lock.ttlMs / 1000)
      } catch (error) {
        // No lock to be had: compute without one rather than wait for a backend that is down.
        failed('lock', error, keys.entry)
        acquired = 'unknown'
      }
      if (acquired === true) held = { key: lockKey, token }
      else if (acquired === false) {
        const waited = await waitForValue(backend, keys.entry, generations, lockKey, token, lock)
        if (waited === 'acquired') held = { key: lockKey, token }
        else if (waited !== undefined) return waited.v
      }
    }
    try {
      const value = await fn.apply(thisArg, args)
      await store(backend, keys, value, generations, args, flight)
      return value
    } finally {
      if (held)
        await compareAndDelete(backend, held.key, held.token).catch((error) =>
          observer.error('unlock', error, keys.entry),
        )
    }
  }

  /**
   * Waits for the lock holder's result. Takes the lock over as soon as it is free (the holder
   * failed and released it, or it expired): then the caller computes. `undefined` after `wait`.
   */
  async function waitForValue(
    backend: CacheBackend,
    key: string,
    generations: number[],
    lockKey: string,
    token: string,
    settings: { ttlMs: number; waitMs: number; pollMs: number },
  ): Promise<Envelope | 'acquired' | undefined> {
    const deadline = Date.now() + settings.waitMs
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, settings.pollMs))
      try {
        const envelope = await backend.get<Envelope>(key)
        if (envelope && sameGenerations(envelope.g, generations)) return envelope
        if (await backend.add(lockKey, token, settings.ttlMs / 1000)) return 'acquired'
      } catch (error) {
        observer.error('lock', error, key)
      }
    }
    return undefined
  }

  function isStale(flight: Flight): boolean {
    return flight.superseded || (hasTags && flight.tagInvalidations !== tagInvalidationCount())
  }

  /** Joins the flight for `key` if it computes under the same generations, else starts one. */
  function singleFlight(
    key: string,
    generations: number[],
    start: (flight: Flight) => Promise<unknown>,
  ): Promise<unknown> {
    const current = inflight.get(key)
    if (current !== undefined && !isStale(current) && sameGenerations(current.generations, generations))
      return current.promise
    const flight: Flight = {
      promise: undefined as unknown as Promise<unknown>,
      generations,
      tagInvalidations: tagInvalidationCount(),
      superseded: false,
    }
    flight.promise = start(flight).finally(() => {
      if (inflight.get(key) === flight) inflight.delete(key)
    })
    inflight.set(key, flight)
    return flight.promise
  }

  function onHit(backend: CacheBackend, keys: CallKeys, read: Read, thisArg: unknown, args: Parameters<F>) {
    const hit = read.hit!
    observer.hit(keys.entry)
    if (hit.s !== undefined && Date.now() > hit.s && !inflight.has(keys.entry)) {
      // Stale: answer now, refresh once in the background.
      void singleFlight(keys.entry, read.generations, (flight) =>
        load(backend, keys, read.generations, thisArg, args, flight),
      ).catch((error) => observer.error('refresh', error, keys.entry))
    }
    return hit.v
  }

  /** The sync path: an in-process backend and a function that has returned plain values. */
  function callSync(thisArg: unknown, backend: CacheBackend, keys: CallKeys, args: Parameters<F>): unknown {
    let read: Read
    try {
      read = readSync(backend, keys)
    } catch (error) {
      failed('get', error, keys.entry)
      return fn.apply(thisArg, args)
    }
    if (read.hit) return onHit(backend, keys, read, thisArg, args)
    observer.miss(keys.entry)
    const value = fn.apply(thisArg, args)
    if (isPromiseLike(value)) {
      isAsync = true
      return singleFlight(keys.entry, read.generations, async (flight) => {
        const resolved = await value
        await store(backend, keys, resolved, read.generations, args, flight)
        return resolved
      })
    }
    storeSync(backend, keys, value, read, args)
    return value
  }

  async function callAsync(
    thisArg: unknown,
    backend: CacheBackend,
    keys: CallKeys,
    args: Parameters<F>,
  ): Promise<unknown> {
    let read: Read
    try {
      read = backend.sync ? readSync(backend, keys) : await readAsync(backend, keys)
    } catch (error) {
      failed('get', error, keys.entry)
      return fn.apply(thisArg, args)
    }
    if (read.hit) return onHit(backend, keys, read, thisArg, args)
    observer.miss(keys.entry)
    return singleFlight(keys.entry, read.generations, (flight) =>
      load(backend, keys, read.generations, thisArg, args, flight),
    )
  }

  const memoized = function (this: unknown, ...args: Parameters<F>): unknown {
    const backend = backendOf()
    // Locks wait asynchronously, so a locked function always takes the async path.
    const sync = backend.sync !== undefined && !isAsync && !lock
    let keys: CallKeys
    try {
      keys = keysFor(naming.prefix(this), args)
    } catch (error) {
      if (sync) throw error
      return Promise.reject(error)
    }
    if (sync) return callSync(this, backend, keys, args)
    return callAsync(this, backend, keys, args)
  } as Memoized<F>

  Object.defineProperties(memoized, {
    name: { value: fn.name, configurable: true },
    length: { value: fn.length, configurable: true },
    stats: { get: () => observer.stats },
  })
  memoized.keyFor = (...args) => keysFor(naming.defaultPrefix(), args).entry
  memoized.invalidate = async (...args) => {
    const part = argumentPart(args)
    const argsGeneration = generationKey(`${naming.scope}:${part}`)
    const entries = [...naming.prefixes()].map((prefix) => prefix + part)
    for (const entry of entries) supersede(inflight.get(entry))
    const backend = backendOf()
    // In one process, deleting the entry is the invalidation (calls in flight were superseded).
    if (backend.sync !== undefined) {
      await backend.deleteMany(entries)
      return
    }
    await renewGenerations(backend, [argsGeneration], entryTtl)
    // The stored results can no longer match; removing them only frees the space.
    await backend.deleteMany(entries).catch((error) => observer.error('delete', error))
  }
  memoized.clear = async () => {
    for (const flight of inflight.values()) supersede(flight)
    await renewGenerations(backendOf(), [functionGeneration])
  }
  memoized.on = (event, listener) => void observer.on(event, listener)
  memoized.off = (event, listener) => void observer.off(event, listener)
  return memoized
}

function supersede(flight: Flight | undefined): void {
  if (flight !== undefined) flight.superseded = true
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
 * `experimentalDecorators` decorator (NestJS), in any order with other decorators: metadata they
 * attached to the method (reflect-metadata keys, TC39 `context.metadata`) is kept. Keys name the
 * class of `this`: `memo:Reports.monthly:<arguments>`, and
 * `memo:Repository.findById(UserRepository):<arguments>` for a method a subclass inherits. Every
 * instance of a class shares them, so put instance-specific state into `key` if results depend
 * on it. The decorated method gains `.invalidate(...args)`, `.clear()`, `.keyFor(...args)` and
 * `.stats`.
 */
export function cache(options: CacheOptions | Duration = {}): any {
  const opts: CacheOptions = typeof options === 'object' ? options : { ttl: options }
  return function decorate(target: any, context: any, descriptor?: PropertyDescriptor): any {
    if (typeof context === 'object' && context !== null && 'kind' in context) {
      // TC39 standard decorator: (method, context) => replacement
      if (context.kind !== 'method') throw new TypeError(`@cache() decorates methods, not ${context.kind}s`)
      const naming = new MethodNaming(opts, String(context.name), target, context.static === true)
      const memo = createMemo(target, opts, naming)
      naming.memo = memo
      keepMetadata(target, memo)
      context.addInitializer(function (this: unknown) {
        naming.definedOn(this)
      })
      return memo
    }
    // Legacy decorator: (prototype or constructor, propertyKey, descriptor) => descriptor
    if (!descriptor || typeof descriptor.value !== 'function')
      throw new TypeError('@cache() decorates methods')
    const original = descriptor.value
    const naming = new MethodNaming(opts, String(context), original, typeof target === 'function')
    const memo = createMemo(original, opts, naming)
    naming.memo = memo
    naming.definingClass = typeof target === 'function' ? target : target.constructor
    keepMetadata(original, memo)
    descriptor.value = memo
    return descriptor
  }
}

/**
 * Copies the reflect-metadata keys other decorators attached to the method before `@cache`
 * replaced it (NestJS's `@UseGuards`, `@Get` and friends keep theirs on the function), so the
 * decorators may be written in any order. TC39 `context.metadata` lives on the class and is
 * untouched.
 */
function keepMetadata(from: Function, to: Function): void {
  const reflect = Reflect as unknown as {
    getOwnMetadataKeys?: (target: object) => unknown[]
    getOwnMetadata?: (key: unknown, target: object) => unknown
    defineMetadata?: (key: unknown, value: unknown, target: object) => void
  }
  if (typeof reflect.getOwnMetadataKeys !== 'function' || typeof reflect.defineMetadata !== 'function') return
  for (const key of reflect.getOwnMetadataKeys(from))
    reflect.defineMetadata(key, reflect.getOwnMetadata!(key, from), to)
}

/**
 * Names a decorated method after the class of `this`. Generations are scoped to the method
 * itself (its `name`, or its name and a digest of its source), so `clear()` and `invalidate()`
 * reach the entries of every class that runs it, even before any instance exists.
 */
class MethodNaming implements Naming {
  readonly scope: string
  readonly label: string
  memo: Function | undefined
  definingClass: Function | undefined
  private readonly namespace: string
  private readonly byClass = new WeakMap<Function, string>()
  private readonly used = new Set<string>()
  private readonly fingerprint: string

  constructor(
    private readonly options: CacheOptions,
    private readonly method: string,
    fn: Function,
    private readonly isStatic: boolean,
  ) {
    this.namespace = options.namespace ?? 'memo'
    assertNamespace(this.namespace)
    const source = sourceOf(fn) ?? method
    this.fingerprint = `${isStatic ? 'static' : 'instance'}:${digest(source)}`
    this.scope = `${this.namespace}:${options.name ?? `${method}#${digest(source)}`}`
    this.label = options.name ?? method
  }

  /** A TC39 initializer ran: `self` is an instance (or, for a static method, the class). */
  definedOn(self: unknown): void {
    if (this.definingClass !== undefined) return
    this.definingClass = this.ownerOf(
      typeof self === 'function' ? self : Object.getPrototypeOf(self)?.constructor,
    )
  }

  prefix(thisArg: unknown): string {
    const cls =
      typeof thisArg === 'function'
        ? thisArg
        : typeof thisArg === 'object' && thisArg !== null
          ? Object.getPrototypeOf(thisArg)?.constructor
          : undefined
    const runtime = typeof cls === 'function' ? cls : this.definingClass
    if (runtime === undefined) throw this.unknownClass()
    let prefix = this.byClass.get(runtime)
    if (prefix === undefined) {
      prefix = this.prefixOf(runtime)
      this.byClass.set(runtime, prefix)
      this.used.add(prefix)
    }
    return prefix
  }

  defaultPrefix(): string {
    if (this.definingClass !== undefined) return this.prefix(this.definingClass)
    if (this.options.name !== undefined) return `${this.namespace}:${this.options.name}:`
    throw this.unknownClass()
  }

  prefixes(): Iterable<string> {
    return this.used
  }

  private prefixOf(runtime: Function): string {
    if (!runtime.name)
      throw new CacheConfigError(
        'name',
        `@cache(): ${this.method} runs on an anonymous class: pass a \`name\` option`,
      )
    const owner = this.ownerOf(runtime)
    this.definingClass ??= owner
    const own = owner === undefined || owner === runtime
    const base = this.options.name ?? `${(owner ?? runtime).name}.${this.method}`
    if (own && this.options.name !== undefined) return `${this.namespace}:${base}:`
    const label = `${this.namespace}:${own ? base : `${base}(${runtime.name})`}`
    claimName(
      label,
      { file: undefined, fingerprint: `${classFingerprint(runtime)}:${this.fingerprint}` },
      `classes or methods named "${runtime.name}"`,
    )
    return `${label}:`
  }

  /** The class whose prototype (or, for static methods, the class itself) holds this memoized method. */
  private ownerOf(runtime: Function | undefined): Function | undefined {
    for (let cls: unknown = runtime; typeof cls === 'function'; cls = Object.getPrototypeOf(cls)) {
      const holder = this.isStatic ? cls : (cls as Function).prototype
      if (holder && Object.hasOwn(holder, this.method) && holder[this.method] === this.memo)
        return cls as Function
    }
    return undefined
  }

  private unknownClass(): CacheConfigError {
    return new CacheConfigError(
      'name',
      `@cache(): the class of ${this.method}() is not known before an instance of it exists; ` +
        'call it on an instance, or pass a `name` option',
    )
  }
}
