import { randomUUID } from 'node:crypto'
import { type CacheBackend, compareAndDelete, type MinimalBackend, toBackend } from './backend.js'
import { getBackend, prepareDefaultCache } from './default-cache.js'
import { type Duration, parseDuration, ttlToMs } from './durations.js'
import { CacheConfigError } from './errors.js'
import {
  type Flight,
  invalidatedHere,
  isStale,
  prefixesOf,
  type Round,
  release,
  type Slot,
  slotOf,
  startFlight,
  tick,
  usePrefix,
} from './flights.js'
import {
  currentGenerations,
  currentGenerationsSync,
  isGeneration,
  newGeneration,
  renewGenerations,
  sameGenerations,
} from './generations.js'
import { claimPrefix, sourceOf } from './identity.js'
import { assertMemoNamespace, generationKey, keySegment, lockKey } from './internal-keys.js'
import { argumentsKey } from './keys.js'
import { CacheObserver, type CacheEvent, type CacheEventName, type CacheStats } from './stats.js'
import { tagVersionKey } from './tags.js'

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
  /** First segment of every key. Must not start with `__` (kept for internal keys). Default: `'memo'`. */
  namespace?: string
  /**
   * Name of the function in keys. Default: `fn.name` for functions; for decorated methods the
   * class of `this` and the method (`Reports.monthly`, or `Repository.findById(UserRepository)`
   * for a method inherited from another class). Required for anonymous and bound functions.
   * Two different functions (or classes) that would get the same default name in one process
   * are an error that asks for this option. A name you give is yours: functions given the same
   * `name` share entries, deliberately.
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
  /** Tags for {@link invalidateTags}: a list (read once, when the function is memoized), or a function of the arguments. */
  tags?: readonly string[] | ((...args: A) => readonly string[])
  /** Rethrow backend failures instead of calling the function uncached. Default: false. */
  strict?: boolean
}

/** A memoized function: the same call signature plus invalidation and stats. */
export type Memoized<F extends AnyFunction> = F & {
  /**
   * Invalidates the stored result for one argument list (exactly as the call passed it:
   * `f(1)` and `f(1, undefined)` are two lists), in every process sharing the backend and for
   * every handle sharing this function's name. Rejects if the backend did not take the change.
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
 * process is still computing, must stop matching once `invalidate()` resolves. `shared` is also
 * what a flight in this process is made stale by, on every backend.
 */
interface CallKeys {
  entry: string
  local: readonly string[]
  shared: readonly string[]
}

type Read = { hit?: Envelope; generations: number[] }
/** What a round of callers read: the entry and generations, or the backend's failure. */
type Outcome = Read | { error: unknown }

const ASYNC_FUNCTION = Object.getPrototypeOf(async () => {}).constructor

/** Most keys remembered per memoized function (about 100 bytes each): the default memory backend's size. */
const KEY_CACHE_SIZE = 10_000
/** Longest string argument whose key is remembered. */
const KEY_CACHE_ARGUMENT_LENGTH = 64

/**
 * How a memoized function names itself in keys. `scope` names its generations (what `clear()`
 * and `invalidate()` renew): a function of names only, the same in every process and build.
 * `prefix` is the start of its entry keys for a call on `thisArg`.
 */
interface Naming {
  readonly label: string
  readonly scope: readonly [string, ...string[]]
  prefix(thisArg: unknown): string
  /** The prefix of calls without a known `this` (`keyFor`); throws if it cannot be known yet. */
  defaultPrefix(): string
}

/** Characters a name may not hold as they are: the key separator, `%`, and the parentheses of `Base.method(Subclass)`. */
const NAME_SPECIALS = /[%:()]/g
/** Also `.`, for the class and method parts of a default method name (`Class.method`). */
const PART_SPECIALS = /[%:().]/g

const percent = (c: string) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`

/** A function name, or a `name` option, in a key: separators percent-encoded so keys stay one-to-one. */
function nameSegment(name: string): string {
  return name.replace(NAME_SPECIALS, percent)
}

/** A class or method name inside a default method name. */
function partSegment(name: string): string {
  return name.replace(PART_SPECIALS, percent)
}

function assertName(name: unknown): asserts name is string | undefined {
  if (name !== undefined && (typeof name !== 'string' || name.length === 0))
    throw new CacheConfigError('name', `expected a non-empty string, got ${JSON.stringify(name)}`)
}

/**
 * Memoizes `fn`. Concurrent misses for one key run `fn` once (single-flight), in this process,
 * across every handle sharing its name; errors are never cached and reach every waiter;
 * `null`/`undefined` results are cached. A failing backend makes the call a pass-through
 * (counted in `stats.errors`, emitted as `error`) unless `strict`.
 *
 * With a sync `fn` and an in-process backend (memory) the result stays sync; otherwise the
 * memoized function returns a promise.
 */
export function cached<F extends AnyFunction>(
  fn: F,
  options: CacheOptions<Parameters<F>, ReturnType<F>> = {},
): Memoized<F> {
  const namespace = options.namespace ?? 'memo'
  assertMemoNamespace(namespace)
  assertName(options.name)
  const name = options.name ?? fn.name
  if (options.name === undefined && (!name || sourceOf(fn) === undefined))
    throw new CacheConfigError(
      'name',
      `cached(): ${name ? `"${name}" is a bound or native function` : 'an anonymous function'} needs a \`name\` option so that its keys are its own`,
    )
  const prefix = `${keySegment(namespace)}:${nameSegment(name)}:`
  const scope: [string, ...string[]] = ['fn', namespace, name]
  // Claimed once the other options are checked: a bad option must not hold the name.
  const memo = createMemo(fn, options, {
    label: `${namespace}:${name}`,
    scope,
    prefix: () => prefix,
    defaultPrefix: () => prefix,
  })
  claimPrefix(prefix, fn, options.name === undefined, () => `Two different functions named "${name}"`)
  usePrefix(generationKey(...scope), prefix)
  return memo
}

function createMemo<F extends AnyFunction>(
  fn: F,
  options: CacheOptions<Parameters<F>, ReturnType<F>>,
  naming: Naming,
): Memoized<F> {
  const ttlMs = ttlToMs(options.ttl, 'ttl')
  const swrMs =
    options.staleWhileRevalidate === undefined
      ? undefined
      : parseDuration(options.staleWhileRevalidate, 'staleWhileRevalidate')
  const lock = resolveLock(options.lock)
  const fixedBackend = options.backend === undefined ? undefined : toBackend(options.backend)
  // A bad CACHE_* variable stops the application now, while it defines its functions.
  if (fixedBackend === undefined) prepareDefaultCache()
  const observer = new CacheObserver(`memo ${naming.label}`)
  const tagsOf =
    typeof options.tags === 'function' ? options.tags : () => (options.tags ?? []) as readonly string[]
  const staticTags = typeof options.tags === 'function' ? undefined : (options.tags ?? []).map(tagVersionKey)
  const functionGeneration = generationKey(...naming.scope)
  /** Lifetime of an entry, and of the generation of its arguments (created with it). */
  const entryTtl =
    ttlMs === undefined ? options.ttl : swrMs === undefined ? ttlMs / 1000 : (ttlMs + swrMs) / 1000
  // The function's generation (and its tags', past the end) never expires; its arguments' live as long as their entry.
  const generationTtls = [Number.POSITIVE_INFINITY, entryTtl]
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

  function argumentsGeneration(part: string): string {
    return generationKey(...naming.scope, part)
  }

  function buildKeys(prefix: string, part: string, args: Parameters<F>): CallKeys {
    const tags = staticTags ?? tagsOf(...args).map(tagVersionKey)
    return {
      entry: prefix + part,
      local: staticLocal ?? [functionGeneration, ...tags],
      shared: [functionGeneration, argumentsGeneration(part), ...tags],
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

  function envelopeFor(value: unknown, generations: readonly number[]): Envelope {
    if (swrMs !== undefined && ttlMs !== undefined)
      return { v: value, g: generations as number[], s: Date.now() + ttlMs }
    return { v: value, g: generations as number[] }
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
    generations: readonly number[],
    args: Parameters<F>,
    flight: Flight,
  ) {
    // Invalidated here while it computed: its result is from before, and must not be stored.
    if (isStale(flight)) return
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
    generations: readonly number[],
    thisArg: unknown,
    args: Parameters<F>,
    flight: Flight,
  ): Promise<unknown> {
    let held: { key: string; token: string } | undefined
    if (lock) {
      const key = lockKey(keys.entry)
      const token = randomUUID()
      let acquired: boolean | 'unknown'
      try {
        acquired = await backend.add(key, token, lock.ttlMs / 1000)
      } catch (error) {
        // No lock to be had: compute without one rather than wait for a backend that is down.
        failed('lock', error, keys.entry)
        acquired = 'unknown'
      }
      if (acquired === true) held = { key, token }
      else if (acquired === false) {
        const waited = await waitForValue(backend, keys.entry, generations, key, token, lock)
        if (waited === 'acquired') held = { key, token }
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
    generations: readonly number[],
    lockKeyName: string,
    token: string,
    settings: { ttlMs: number; waitMs: number; pollMs: number },
  ): Promise<Envelope | 'acquired' | undefined> {
    const deadline = Date.now() + settings.waitMs
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, settings.pollMs))
      try {
        const envelope = await backend.get<Envelope>(key)
        if (envelope && sameGenerations(envelope.g, generations)) return envelope
        if (await backend.add(lockKeyName, token, settings.ttlMs / 1000)) return 'acquired'
      } catch (error) {
        observer.error('lock', error, key)
      }
    }
    return undefined
  }

  /**
   * Joins the flight of `slot` if it computes under the same generations, nothing invalidated it
   * here since it started, and it was still running when the caller's read was sent (`sent`);
   * otherwise starts one.
   */
  function joinOrStart(
    backend: CacheBackend,
    keys: CallKeys,
    slot: Slot,
    generations: number[],
    sent: number,
    thisArg: unknown,
    args: Parameters<F>,
  ): Promise<unknown> {
    const current = slot.flight
    if (
      current !== undefined &&
      current.generations !== undefined &&
      (current.settled === undefined || current.settled > sent) &&
      !isStale(current) &&
      sameGenerations(current.generations, generations)
    )
      return current.promise
    return startFlight(backend, keys.entry, slot, generations, keys.shared, (flight) =>
      load(backend, keys, generations, thisArg, args, flight),
    ).promise
  }

  function onHit(backend: CacheBackend, keys: CallKeys, read: Read, thisArg: unknown, args: Parameters<F>) {
    const hit = read.hit!
    observer.hit(keys.entry)
    if (hit.s !== undefined && Date.now() > hit.s) {
      // Stale: answer now, refresh once in the background.
      const slot = slotOf(backend, keys.entry)
      if (slot.flight === undefined || slot.flight.settled !== undefined) {
        startFlight(backend, keys.entry, slot, read.generations, keys.shared, (flight) =>
          load(backend, keys, read.generations, thisArg, args, flight),
        ).promise.catch((error) => observer.error('refresh', error, keys.entry))
      } else release(backend, keys.entry, slot)
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
      const slot = slotOf(backend, keys.entry)
      return startFlight(backend, keys.entry, slot, read.generations, keys.shared, async (flight) => {
        const resolved = await value
        await store(backend, keys, resolved, read.generations, args, flight)
        return resolved
      }).promise
    }
    storeSync(backend, keys, value, read, args)
    return value
  }

  /**
   * The async path. On an in-process backend the read is synchronous, made when the caller
   * arrives. On any other, callers of one key that arrive before its read is sent share that
   * read (sent once the current tick's callers are in), and then one flight: a hundred
   * concurrent misses run `fn` once and get one result or one error.
   */
  function callAsync(
    thisArg: unknown,
    backend: CacheBackend,
    keys: CallKeys,
    args: Parameters<F>,
  ): Promise<unknown> {
    if (backend.sync !== undefined) {
      let read: Read
      try {
        read = readSync(backend, keys)
      } catch (error) {
        try {
          failed('get', error, keys.entry)
        } catch (strict) {
          return Promise.reject(strict)
        }
        return Promise.resolve().then(() => fn.apply(thisArg, args))
      }
      if (read.hit) return Promise.resolve(onHit(backend, keys, read, thisArg, args))
      observer.miss(keys.entry)
      return joinOrStart(backend, keys, slotOf(backend, keys.entry), read.generations, tick(), thisArg, args)
    }
    const slot = slotOf(backend, keys.entry)
    let round = slot.gathering as Round<Outcome> | undefined
    if (round === undefined) slot.gathering = round = gather(backend, keys, slot)
    round.waiters++
    return settle(round, slot, backend, keys, thisArg, args)
  }

  function gather(backend: CacheBackend, keys: CallKeys, slot: Slot): Round<Outcome> {
    const round: Round<Outcome> = { promise: undefined as unknown as Promise<Outcome>, sent: 0, waiters: 0 }
    round.promise = (async (): Promise<Outcome> => {
      // Every caller of this tick joins before the read goes out.
      await undefined
      slot.gathering = undefined
      slot.rounds++
      round.sent = tick()
      try {
        return await readAsync(backend, keys)
      } catch (error) {
        return { error }
      }
    })()
    return round
  }

  async function settle(
    round: Round<Outcome>,
    slot: Slot,
    backend: CacheBackend,
    keys: CallKeys,
    thisArg: unknown,
    args: Parameters<F>,
  ): Promise<unknown> {
    const outcome = await round.promise
    try {
      if ('error' in outcome) {
        if (options.strict) throw outcome.error
        if (!round.reported) {
          round.reported = true
          observer.error('get', outcome.error, keys.entry)
        }
        // The backend is down: one pass-through run for the callers of this round.
        round.passThrough ??= Promise.resolve().then(() => fn.apply(thisArg, args))
        return round.passThrough
      }
      if (outcome.hit) return onHit(backend, keys, outcome, thisArg, args)
      observer.miss(keys.entry)
      return joinOrStart(backend, keys, slot, outcome.generations, round.sent, thisArg, args)
    } finally {
      if (--round.waiters === 0) {
        slot.rounds--
        release(backend, keys.entry, slot)
      }
    }
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
    const generation = argumentsGeneration(part)
    // Calls in flight here under these arguments, through any handle, are neither joined nor stored.
    invalidatedHere([generation])
    const entries = [...prefixesOf(functionGeneration)].map((prefix) => prefix + part)
    const backend = backendOf()
    const done = () => observer.delete(entries[0] ?? `${naming.label}:${part}`)
    // In one process, deleting the entries is the invalidation.
    if (backend.sync !== undefined) {
      await backend.deleteMany(entries)
      return done()
    }
    await renewGenerations(backend, [generation], entryTtl)
    done()
    // The stored results can no longer match; removing them only frees the space.
    await backend.deleteMany(entries).catch((error) => observer.error('delete', error))
  }
  memoized.clear = async () => {
    invalidatedHere([functionGeneration])
    await renewGenerations(backendOf(), [functionGeneration])
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
 * `experimentalDecorators` decorator (NestJS), in any order with other decorators: metadata they
 * attached to the method (reflect-metadata keys, TC39 `context.metadata`) is kept. Keys name the
 * class of `this`: `memo:Reports.monthly:<arguments>`, and
 * `memo:Repository.findById(UserRepository):<arguments>` for a method a subclass inherits. Two
 * different classes that would share those keys in one process are an error that asks for
 * `name`. Every instance of a class shares them, so put instance-specific state into `key` if
 * results depend on it. The decorated method gains `.invalidate(...args)`, `.clear()`,
 * `.keyFor(...args)` and `.stats`.
 */
export function cache(options: CacheOptions | Duration = {}): any {
  const opts: CacheOptions = typeof options === 'object' ? options : { ttl: options }
  return function decorate(target: any, context: any, descriptor?: PropertyDescriptor): any {
    if (typeof context === 'object' && context !== null && 'kind' in context) {
      // TC39 standard decorator: (method, context) => replacement
      if (context.kind !== 'method') throw new TypeError(`@cache() decorates methods, not ${context.kind}s`)
      const naming = new MethodNaming(opts, String(context.name), context.static === true)
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
    const naming = new MethodNaming(opts, String(context), typeof target === 'function')
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
 * Names a decorated method after the class of `this`. Its generations are scoped by names only
 * (the `name` option, or the method's name), never by its source, so `clear()` and `invalidate()`
 * reach the entries of every class that runs it, in every process and every build of the code,
 * even before any instance exists. Methods of the same name in other classes of the namespace
 * share that scope: invalidating one also invalidates theirs (a miss, never a wrong result).
 */
class MethodNaming implements Naming {
  readonly scope: readonly [string, ...string[]]
  readonly label: string
  memo: Function | undefined
  definingClass: Function | undefined
  private readonly namespace: string
  private readonly functionGeneration: string
  private readonly byClass = new WeakMap<Function, string>()

  constructor(
    private readonly options: CacheOptions,
    private readonly method: string,
    private readonly isStatic: boolean,
  ) {
    this.namespace = options.namespace ?? 'memo'
    assertMemoNamespace(this.namespace)
    assertName(options.name)
    this.scope =
      options.name === undefined
        ? ['method', this.namespace, isStatic ? 'static' : 'instance', method]
        : ['fn', this.namespace, options.name]
    this.label = options.name ?? method
    this.functionGeneration = generationKey(...this.scope)
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
    }
    return prefix
  }

  defaultPrefix(): string {
    if (this.definingClass !== undefined) return this.prefix(this.definingClass)
    if (this.options.name !== undefined)
      return `${keySegment(this.namespace)}:${nameSegment(this.options.name)}:`
    throw this.unknownClass()
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
    const name = this.options.name
    const base =
      name === undefined
        ? `${partSegment((owner ?? runtime).name)}.${partSegment(this.method)}`
        : nameSegment(name)
    const prefix = `${keySegment(this.namespace)}:${own ? base : `${base}(${partSegment(runtime.name)})`}:`
    // The claimant is this method on this class: another class of the same name, or another
    // method that would be named the same, is a different one.
    claimPrefix(
      prefix,
      {},
      name === undefined,
      () =>
        `Two different memoized methods named "${own ? '' : `${(owner ?? runtime).name}.${this.method} on `}` +
        `${runtime.name}${own ? `.${this.method}` : ''}" (two classes named "${runtime.name}", or a static and an instance method)`,
    )
    usePrefix(this.functionGeneration, prefix)
    return prefix
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
