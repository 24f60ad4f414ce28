import { types } from 'node:util'
import type { CacheBackend } from './backend.js'
import { type MinimalBackend, toBackend } from './define-backend.js'
import { getBackend, prepareDefaultCache } from './default-cache.js'
import { CallKeysCache } from './call-keys-cache.js'
import type { Duration } from './durations.js'
import { CacheConfigError } from './errors.js'
import { invalidatedHere, prefixesOf, usePrefix } from './flights.js'
import { renewGenerations } from './generations.js'
import {
  callerModuleFingerprint,
  claimPrefix,
  readsReceiver,
  sourceFingerprint,
  sourceOf,
} from './identity.js'
import { registerInvalidationTarget } from './invalidation-targets.js'
import { assertMemoNamespace, generationKey, keySegment } from './internal-keys.js'
import { argumentsKey } from './keys.js'
import { LOAD_OPTION_NAMES, type LoadOptions, resolvePolicy } from './load-options.js'
import { optionNames, readOptions } from './option-checks.js'
import { type CallKeys, Loader } from './loader.js'
import { type CacheEvent, type MemoEventName, MemoObserver, type MemoStats } from './stats.js'
import { tagList, tagVersionKey } from './tags.js'

type AnyFunction = (...args: any[]) => any

/**
 * Options of {@link cached} and the {@link cache} decorator: where and under which key results
 * go, plus what is done with them ({@link LoadOptions}: ttl, stale-while-revalidate, grace,
 * timeouts, refresh ahead, lock…).
 */
export interface CacheOptions<A extends unknown[] = any[], R = any> extends LoadOptions<A, R> {
  /** Where results are stored. Default: the configured default cache ({@link getBackend}), resolved at call time. */
  backend?: CacheBackend | MinimalBackend
  /**
   * Builds the key part for a call from its arguments. Default: a text of every argument's full
   * value; an argument whose value cannot be read in full (a class instance, a function) throws
   * a `CacheArgumentError` that points here. For `cached()`, giving it also says the result depends
   * on the arguments alone: a function that reads `this` may then be called on any object, and
   * calls on every object share entries.
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
  /** Tags for {@link invalidateTags}: a list (read once, when the function is memoized), or a function of the arguments. */
  tags?: readonly string[] | ((...args: A) => readonly string[])
}

const CACHE_OPTION_NAMES = optionNames<CacheOptions>({
  ...LOAD_OPTION_NAMES,
  backend: true,
  key: true,
  namespace: true,
  name: true,
  tags: true,
})

/**
 * A memoized function: the same call signature plus invalidation and stats. `cached()` returns
 * one; for a method decorated with `@cache()`, {@link memoized} gives it.
 */
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
  /** Counters, with `graced`, `refreshes` and `functionTimeouts`. */
  readonly stats: MemoStats
  on(event: MemoEventName, listener: (event: CacheEvent) => void): void
  off(event: MemoEventName, listener: (event: CacheEvent) => void): void
}

const ASYNC_FUNCTION = Object.getPrototypeOf(async () => {}).constructor

/*
 * `Symbol.metadata`, which Node does not have yet: with it, the compilers of standard decorators
 * (TypeScript 5.2+, esbuild, Babel) give each decorated class a metadata object, which is how a
 * method decorator learns its class for certain (see `MethodNaming.metadata`). The registered
 * symbol, as esbuild and Babel use when it is missing. Set when @cache/core is loaded, so before
 * any class that uses `@cache()` is defined.
 */
;(Symbol as { metadata?: symbol }).metadata ??= Symbol.for('Symbol.metadata')
const METADATA = (Symbol as unknown as { metadata: symbol }).metadata

/**
 * Marks the functions `cached()` and `@cache()` return. A registered symbol, so that two copies
 * of this package in one process (an ESM and a CJS one) recognize each other's.
 */
const MEMOIZED = Symbol.for('@cache/core.memoized')
/** The function a memoized one memoizes, on it (shared by every copy of @cache/core in the process). */
const ORIGINAL = Symbol.for('@cache/core.memoized-original')

/** The names of `T`'s methods (own or inherited, static if `T` is a class). */
export type MethodName<T> = { [K in keyof T]-?: T[K] extends AnyFunction ? K : never }[keyof T]

/**
 * The typed handle of a method decorated with `@cache()` (whose own type does not show
 * `invalidate`, `clear`, `keyFor`, `stats`), or of a function `cached()` returned:
 * `memoized(users.getUser).invalidate(42)`, `memoized(Reports.yearly).clear()`.
 *
 * With an object and a method name, `memoized(users, 'getUser')`, the handle is the method of
 * that object: calling it calls `users.getUser(...)`, and `keyFor(...)` names the entry of a call
 * on `users`, which differs from the defining class's when a subclass inherits the method (it is
 * `users.getUser.keyFor.call(users, ...)`). `invalidate()` and `clear()` reach every class's
 * entries either way.
 *
 * Throws `CacheConfigError` (setting `memoized()`) for a function that is not memoized: a method
 * without `@cache()`, or a plain function.
 */
export function memoized<F extends AnyFunction>(fn: F): Memoized<F>
export function memoized<T extends object, K extends MethodName<T>>(
  target: T,
  method: K,
): Memoized<Extract<T[K], AnyFunction>>
export function memoized(fnOrTarget: unknown, ...method: [PropertyKey?]): Memoized<AnyFunction> {
  if (method.length === 0) return memoOf(fnOrTarget, describe(fnOrTarget))
  const name = method[0]
  const target = fnOrTarget as Record<PropertyKey, unknown>
  const memo = memoOf(target?.[name as PropertyKey], String(name))
  const handle = ((...args: unknown[]) => memo.apply(target, args)) as Memoized<AnyFunction>
  Object.defineProperties(handle, {
    name: { value: memo.name, configurable: true },
    length: { value: memo.length, configurable: true },
    stats: { get: () => memo.stats },
  })
  handle.keyFor = (...args) => memo.keyFor.apply(target, args)
  handle.invalidate = memo.invalidate
  handle.clear = memo.clear
  handle.on = memo.on
  handle.off = memo.off
  return handle
}

function memoOf(value: unknown, name: string): Memoized<AnyFunction> {
  if (typeof value === 'function' && (value as { [MEMOIZED]?: unknown })[MEMOIZED] === true)
    return value as Memoized<AnyFunction>
  throw new CacheConfigError(
    'memoized()',
    `${name} is not memoized: decorate the method with @cache(), or wrap the function with cached()`,
  )
}

function describe(value: unknown): string {
  return typeof value === 'function' ? value.name || 'an anonymous function' : String(value)
}

/**
 * Shown by the compiler when `key`, `ttl`, `condition`, `unless` or `tags` of `@cache()` do not
 * accept the decorated method's arguments or (awaited) result: `Options` are the options as
 * written, `Method` the method's type.
 */
export interface CacheOptionsDoNotFitMethod<Options, Method> {
  '@cache(): key, ttl, condition, unless or tags do not accept the arguments or the result of the method': [
    Options,
    Method,
  ]
}

type Fits<O, F extends AnyFunction> = O extends CacheOptions<Parameters<F>, ReturnType<F>> ? true : false

/**
 * What `@cache()` returns: a decorator of methods, in both decorator modes, that checks the
 * options' functions against the method. On a class, a field, a getter or a setter, or with
 * options that do not fit, it does not compile.
 */
export interface CacheDecorator<O> {
  /** TC39 standard decorator (TypeScript 5 default). */
  <This, F extends (this: This, ...args: any) => any>(
    method: F,
    context: Fits<O, F> extends true
      ? ClassMethodDecoratorContext<This, F>
      : CacheOptionsDoNotFitMethod<O, F>,
  ): F
  /** Legacy `experimentalDecorators` decorator (NestJS). */
  <F extends AnyFunction>(
    target: object,
    propertyKey: Fits<O, F> extends true ? string | symbol : CacheOptionsDoNotFitMethod<O, F>,
    descriptor: TypedPropertyDescriptor<F>,
  ): TypedPropertyDescriptor<F>
}

/**
 * How a memoized function names itself in keys. `scope` names its generations (what `clear()`
 * and `invalidate()` renew): a function of names only, the same in every process and build.
 * `prefix` is the start of its entry keys for a call on `thisArg`.
 */
interface Naming {
  readonly label: string
  /** The function as its author knows it, in error messages: `square`, `Reports.square`. */
  readonly display: string
  readonly scope: readonly [string, ...string[]]
  prefix(thisArg: unknown): string
  /** The prefix of calls without a known `this` (`keyFor`); throws if it cannot be known yet. */
  defaultPrefix(): string
}

/**
 * Characters a name may not hold as they are: the key separator, `%`, the parentheses of
 * `Base.method(Subclass)` and the `#` before a default name's source fingerprint.
 */
const NAME_SPECIALS = /[%:()#]/g
/** Also `.`, for the class and method parts of a default method name (`Class.method`). */
const PART_SPECIALS = /[%:().#]/g

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
 *
 * Keys hold the arguments, never `this`. A `fn` that reads `this` (a `function` or method whose
 * text names `this`, `super` or `eval`; arrow and bound functions never do) called on an object,
 * as when it is installed as a method, is refused with a `CacheConfigError` (`setting: 'key'`):
 * two objects would otherwise share one result. Memoize methods with {@link cache}, pass the
 * state as an argument, or give `key`.
 */
export function cached<F extends AnyFunction>(
  fn: F,
  given: CacheOptions<Parameters<F>, ReturnType<F>> = {},
): Memoized<F> {
  const options = readOptions(given, CACHE_OPTION_NAMES, 'cached()')
  const namespace = options.namespace ?? 'memo'
  assertMemoNamespace(namespace)
  assertName(options.name)
  const name = options.name ?? fn.name
  if (options.name === undefined && (!name || sourceOf(fn) === undefined))
    throw new CacheConfigError(
      'name',
      `cached(): ${name ? `"${name}" is a bound or native function` : 'an anonymous function'} needs a \`name\` option so that its keys are its own`,
    )
  // A default name carries the fingerprint of the source: see `sourceFingerprint`.
  const keyName =
    options.name === undefined ? `${nameSegment(name)}#${sourceFingerprint(fn)}` : nameSegment(name)
  const prefix = `${keySegment(namespace)}:${keyName}:`
  const scope: [string, ...string[]] = ['fn', namespace, name]
  // Keys hold the arguments only: a function that reads `this`, called on an object (installed as
  // a method), would give one object's result to another. Such a call is refused, unless `key`
  // says the arguments are all the result depends on.
  const guarded = options.key === undefined && readsReceiver(fn)
  // Claimed once the other options are checked: a bad option must not hold the name.
  const memo = createMemo(fn, options, {
    label: `${namespace}:${name}`,
    display: name,
    scope,
    prefix: guarded
      ? (thisArg) => {
          if (thisArg !== undefined && thisArg !== globalThis) throw calledOnReceiver(name, thisArg)
          return prefix
        }
      : () => prefix,
    defaultPrefix: () => prefix,
  })
  claimPrefix(prefix, fn, options.name === undefined, () => `Two different functions named "${name}"`)
  usePrefix(generationKey(...scope), prefix)
  return memo
}

/** `Object`, of this realm or another (a `vm` context, a Jest sandbox): a plain object's class. */
function isObjectConstructor(cls: Function): boolean {
  return cls === Object || (cls.name === 'Object' && sourceOf(cls) === undefined)
}

/** `%TypedArray%`, the class `Uint8Array` and the other typed arrays extend: no global names it. */
const TYPED_ARRAY: unknown = Object.getPrototypeOf(Uint8Array)

/** A built-in class of this realm (`Map`, `EventTarget`, `TypedArray`): its text is native, and the same everywhere. */
function isBuiltIn(cls: Function): boolean {
  return (
    cls === TYPED_ARRAY ||
    (typeof cls.name === 'string' && (globalThis as Record<string, unknown>)[cls.name] === cls)
  )
}

/** A class by its text (`class …`): one a static method may run on, keyed by its name and text. */
function isClass(fn: Function): boolean {
  return sourceOf(fn)?.startsWith('class') === true
}

/** `Function`, of this realm or another: the class of a class (or of a plain function). */
function isFunctionConstructor(cls: unknown): boolean {
  return (
    typeof cls === 'function' &&
    (cls === Function || (cls.name === 'Function' && sourceOf(cls) === undefined))
  )
}

function calledOnReceiver(name: string, thisArg: unknown): CacheConfigError {
  const ctor =
    typeof thisArg === 'object' && thisArg !== null ? Object.getPrototypeOf(thisArg)?.constructor : undefined
  const on =
    typeof thisArg === 'function'
      ? `the class ${thisArg.name || '(anonymous)'}`
      : typeof ctor === 'function' && ctor.name && ctor !== Object
        ? `a ${ctor.name}`
        : `an object`
  return new CacheConfigError(
    'key',
    `cached(): ${name}() reads \`this\` and was called on ${on}, but its keys hold its arguments only: calls on two objects would share one result. ` +
      'Pass what it reads from `this` as an argument; for a method, decorate it with @cache() on its class (keys name the class of `this`); ' +
      'or, if its result depends on its arguments alone, give a `key` option',
  )
}

function createMemo<F extends AnyFunction>(
  fn: F,
  options: CacheOptions<Parameters<F>, ReturnType<F>>,
  naming: Naming,
): Memoized<F> {
  const policy = resolvePolicy(options)
  const fixedBackend = options.backend === undefined ? undefined : toBackend(options.backend)
  // A bad CACHE_* variable stops the application now, while it defines its functions.
  if (fixedBackend === undefined) prepareDefaultCache()
  // invalidateTags() without a backend reaches this function's entries too.
  else registerInvalidationTarget(fixedBackend)
  const observer = new MemoObserver(`memo ${naming.label}`)
  const tagsOf = typeof options.tags === 'function' ? options.tags : undefined
  const staticTags = tagsOf === undefined ? tagList(options.tags ?? []).map(tagVersionKey) : undefined
  const functionGeneration = generationKey(...naming.scope)
  // The function's generation (and its tags', past the end) never expires, whatever the
  // backend's default TTL; the arguments' lives as long as their entries.
  const loader = new Loader(policy, observer, naming.label, [Number.POSITIVE_INFINITY, policy.generationTtl])
  // What the calls have shown of `fn`: `async` once it returned a promise (an `async function`
  // from the start), `sync` once it returned anything else. A sync function stays sync, or is
  // refused: its type says it returns a value, never a promise.
  let kind: 'unknown' | 'sync' | 'async' = fn instanceof ASYNC_FUNCTION ? 'async' : 'unknown'
  const observed = function (this: unknown, ...args: unknown[]): unknown {
    const value = fn.apply(this, args)
    if (typeof (value as PromiseLike<unknown> | null)?.then === 'function') kind = 'async'
    else if (kind === 'unknown') kind = 'sync'
    return value
  }
  /** `fn` on the async path while its kind is unknown: a sync result is refused, not stored. */
  const checked = (backend: CacheBackend) =>
    function (this: unknown, ...args: unknown[]): unknown {
      const value = observed.apply(this, args)
      if (kind === 'sync') throw notSync(backend)
      return value
    }
  function notSync(backend: CacheBackend): CacheConfigError {
    const fix = 'make it async (an `async` function, or one that returns a promise)'
    const waits = policy.lock ? 'lock' : policy.graceMs !== undefined ? 'grace' : 'hardTimeout'
    if (backend.sync !== undefined)
      return new CacheConfigError(
        waits,
        `${naming.display}() is a sync function, and \`${waits}\` waits asynchronously, which would turn its result into a promise: ${fix}, or drop \`${waits}\``,
      )
    return new CacheConfigError(
      'backend',
      `${naming.display}() is a sync function, and the backend "${backend.name}" has no sync access ` +
        '(only in-process backends such as memory have it; redis, memcached, disk and multi-level chains do not), ' +
        `which would turn its result into a promise: ${fix}, or give it an in-process backend`,
    )
  }
  const staticLocal = staticTags === undefined ? undefined : [functionGeneration, ...staticTags]

  // Keys for calls with one number or short string argument (`getUser(42)`), per entry prefix.
  const keyCaches = options.key === undefined ? new Map<string, CallKeysCache>() : undefined
  let lastPrefix: string | undefined
  let lastKeyCache: CallKeysCache | undefined

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
    const tags = staticTags ?? tagList(tagsOf!(...args)).map(tagVersionKey)
    return {
      entry: prefix + part,
      local: staticLocal ?? [functionGeneration, ...tags],
      shared: [functionGeneration, argumentsGeneration(part), ...tags],
    }
  }

  /** The keys of a call with `listed` arguments, or with `only` alone (`listed` undefined). */
  function keysFor(prefix: string, listed: Parameters<F> | undefined, only: unknown): CallKeys {
    if (listed === undefined && keyCaches !== undefined && staticTags !== undefined) {
      if (CallKeysCache.remembers(only)) {
        // One prefix in all for `cached()` and most methods: skip the lookup while it repeats.
        let cache = prefix === lastPrefix ? lastKeyCache : keyCaches.get(prefix)
        if (cache === undefined) keyCaches.set(prefix, (cache = new CallKeysCache()))
        lastPrefix = prefix
        lastKeyCache = cache
        let keys = cache.find(only)
        if (keys === undefined) {
          const args = [only] as Parameters<F>
          keys = buildKeys(prefix, argumentPart(args), args)
          cache.remember(only, keys)
        }
        return keys
      }
    }
    const args = listed ?? ([only] as Parameters<F>)
    return buildKeys(prefix, argumentPart(args), args)
  }

  // `arguments`, not a rest parameter: a rest parameter allocates its list on every call, and a
  // hit with one argument (the commonest call) then needs none (about 5 % of a hit's cost).
  const memoized = function (this: unknown): unknown {
    // biome-ignore lint/complexity/noArguments: read in place, copied only for more than one argument
    const given = arguments
    const backend = backendOf()
    // Locks, grace and timeouts wait asynchronously: with them a function always takes the async path.
    const inProcess = backend.sync !== undefined && !policy.async
    if (kind === 'sync' && !inProcess) throw notSync(backend)
    const sync = inProcess && kind !== 'async'
    const listed = given.length === 1 ? undefined : (Array.prototype.slice.call(given) as Parameters<F>)
    const only: unknown = given[0]
    let keys: CallKeys
    try {
      keys = keysFor(naming.prefix(this), listed, only)
    } catch (error) {
      // Called from a getter its key reads, as the key is read: run uncached (see runReading).
      if (error instanceof KeyBeingRead) return fn.apply(this, listed ?? [only])
      if (sync) throw error
      return Promise.reject(error)
    }
    if (sync) return loader.callSync(backend, keys, observed, this, listed, only)
    return loader.callAsync(backend, keys, kind === 'async' ? fn : checked(backend), this, listed, only)
  } as Memoized<F>

  Object.defineProperties(memoized, {
    [MEMOIZED]: { value: true },
    [ORIGINAL]: { value: fn },
    name: { value: fn.name, configurable: true },
    length: { value: fn.length, configurable: true },
    stats: { get: () => observer.stats },
  })
  // `keyFor.call(instance, ...args)` names the entry of a call on `instance` (its class's keys).
  memoized.keyFor = function (this: unknown, ...args) {
    const self = this === memoized || this === undefined || this === globalThis ? undefined : this
    const prefix = self === undefined ? naming.defaultPrefix() : naming.prefix(self)
    return keysFor(prefix, args.length === 1 ? undefined : args, args[0]).entry
  } as Memoized<F>['keyFor']
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
    await renewGenerations(backend, [generation], policy.generationTtl)
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
 * `.keyFor(...args)` and `.stats`, which {@link memoized} types: `memoized(svc.getUser).clear()`.
 *
 * Typed: on anything but a method, or with `key`, `ttl`, `condition`, `unless` or `tags` functions
 * that do not accept the method's arguments or result, it does not compile ({@link CacheDecorator}).
 * A sync method stays sync: on a backend without sync access (or with `lock`, `grace`,
 * `hardTimeout`) it is refused with `CacheConfigError` instead of returning promises.
 */
export function cache<O extends CacheOptions = {}>(options?: O & CacheOptions): CacheDecorator<O>
/** `@cache(60)`, `@cache('1m')`: the ttl alone. */
export function cache(ttl: Duration): CacheDecorator<{}>
export function cache(options: CacheOptions | Duration = {}): any {
  const opts: CacheOptions =
    typeof options === 'object' ? readOptions(options, CACHE_OPTION_NAMES, '@cache()') : { ttl: options }
  return function decorate(target: any, context: any, descriptor?: PropertyDescriptor): any {
    if (typeof context === 'object' && context !== null && 'kind' in context) {
      // TC39 standard decorator: (method, context) => replacement
      if (context.kind !== 'method') throw new TypeError(`@cache() decorates methods, not ${context.kind}s`)
      const naming = new MethodNaming(
        opts,
        String(context.name),
        context.static === true,
        target,
        callerModuleFingerprint(decorate),
      )
      const memo = createMemo(target, opts, naming)
      naming.memo = memo
      naming.metadata = typeof context.metadata === 'object' ? context.metadata : undefined
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
    const naming = new MethodNaming(
      opts,
      String(context),
      typeof target === 'function',
      original,
      callerModuleFingerprint(decorate),
    )
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
  /**
   * A standard decorator's `context.metadata`: the object its compiler puts on the class being
   * defined as `Symbol.metadata` (own property). The class that holds it is the defining one; a
   * class holding a copy of the method (a mixin) does not.
   */
  metadata: object | undefined
  /** The prototype of the last object {@link prefix} keyed, and its prefix. */
  private lastProto: object | undefined
  private lastPrefix = ''
  private readonly namespace: string
  private readonly functionGeneration: string
  private readonly byClass = new WeakMap<Function, string>()

  /** A subclass that ran the method (its entries are keyed apart): `keyFor()` then needs `this`. */
  private inheritedBy: string | undefined
  /** The fingerprint of the method's source, part of its class's in default names. */
  private readonly fingerprint: string

  constructor(
    private readonly options: CacheOptions,
    private readonly method: string,
    private readonly isStatic: boolean,
    source: Function,
    /** The fingerprint of the file the class is decorated in, when it can be read. */
    module: string | undefined,
  ) {
    this.fingerprint =
      module === undefined
        ? sourceFingerprint(source)
        : sourceFingerprint(`${module}\n${sourceOf(source) ?? ''}`)
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

  get display(): string {
    if (this.options.name !== undefined) return this.options.name
    return this.definingClass?.name ? `${this.definingClass.name}.${this.method}` : this.method
  }

  /**
   * A TC39 initializer ran: `self` is the class, for a static method (its initializer runs once,
   * on the class being defined), or an instance being constructed. The instance's class may hold a
   * copy of the method, or not be the defining class at all (`Reflect.construct(Defining, [],
   * Other)`): the defining class is the one its metadata names, and without metadata (a compiler
   * that gives none) it is not learned from an instance.
   */
  definedOn(self: unknown): void {
    if (this.definingClass !== undefined) return
    if (this.isStatic) {
      if (typeof self === 'function') this.definingClass = self
      return
    }
    this.definingClass = this.metadataOwner(Object.getPrototypeOf(self)?.constructor)
  }

  /**
   * The class in `runtime`'s chain that holds this method's decoration metadata and the method
   * itself, if any: a class given a copy of the metadata (statics copied from the class, as
   * hoist-non-react-statics does) and not the method is not the one decorated.
   */
  private metadataOwner(runtime: unknown): Function | undefined {
    const metadata = this.metadata
    if (metadata === undefined) return undefined
    for (let cls: unknown = runtime; typeof cls === 'function'; cls = Object.getPrototypeOf(cls))
      if (
        Object.hasOwn(cls, METADATA) &&
        (cls as unknown as Record<symbol, unknown>)[METADATA] === metadata &&
        this.holds(cls as Function)
      )
        return cls as Function
    return undefined
  }

  /** Whether `cls`'s prototype (for a static method, `cls` itself) holds this memoized method as its own. */
  private holds(cls: Function): boolean {
    const holder = (this.isStatic ? cls : cls.prototype) as Record<string, unknown> | undefined
    return (
      holder !== undefined &&
      holder !== null &&
      Object.hasOwn(holder, this.method) &&
      holder[this.method] === this.memo
    )
  }

  prefix(thisArg: unknown): string {
    // The hit path: a call on an object of the prototype of the previous call's, which passed
    // every check (they read its prototype only) and was keyed by its class.
    const proto = typeof thisArg === 'object' && thisArg !== null ? Object.getPrototypeOf(thisArg) : undefined
    if (proto !== undefined && proto === this.lastProto) return this.lastPrefix
    const runtime = this.classOf(thisArg) ?? this.definingClass
    if (runtime === undefined) throw this.unknownClass()
    const prefix = this.prefixFor(runtime)
    if (proto !== undefined && proto !== null) {
      this.lastProto = proto
      this.lastPrefix = prefix
    }
    return prefix
  }

  /** The prefix of the calls run by `runtime` (the class of `this`, or for a static method `this`). */
  private prefixFor(runtime: Function): string {
    let prefix = this.byClass.get(runtime)
    if (prefix === undefined) {
      prefix = this.prefixOf(runtime)
      this.byClass.set(runtime, prefix)
    }
    return prefix
  }

  /**
   * The class a call on `thisArg` is keyed by: for a static method the class itself, for an
   * instance method the class of the instance; undefined for a call without a receiver.
   */
  private classOf(thisArg: unknown): Function | undefined {
    if (thisArg === undefined) return undefined
    const isObject = (typeof thisArg === 'object' && thisArg !== null) || typeof thisArg === 'function'
    const proto: unknown = isObject ? Object.getPrototypeOf(thisArg) : undefined
    const ctor = (proto as { constructor?: unknown } | null | undefined)?.constructor
    if (this.options.key !== undefined)
      return typeof thisArg === 'function' ? thisArg : typeof ctor === 'function' ? ctor : undefined
    // A static method's results are the class's; an instance method's, the instance's (whose class
    // may itself be a function, `class Callable extends Function`). A class given to an instance
    // method, or an instance to a static one, would be keyed as the other kind: refused.
    if (this.isStatic) {
      if (typeof thisArg !== 'function') throw this.wrongKind(thisArg)
      // A function that is no class (an instance of a class extending Function, a bound function)
      // would be keyed by a name many share ("anonymous", "bound Tenant") and no text of its own.
      if (this.ownerOf(thisArg) === undefined && !isClass(thisArg)) throw this.wrongKind(thisArg)
      return thisArg
    }
    if (typeof thisArg === 'function' && (ctor === Function || isFunctionConstructor(ctor)))
      throw this.wrongKind(thisArg)
    // Receivers no class of their own tells apart: objects made from a plain prototype, object
    // literals a method was put on, a null prototype, an object whose `constructor` it inherits
    // from further up its chain (an ES5 subclass, `Object.create(instance)`), a class's subclass,
    // and primitives (a method put on String.prototype). Keyed alike, one would get another's result.
    const own =
      isObject && typeof ctor === 'function' && !isObjectConstructor(ctor) && proto === ctor.prototype
    if (!own) throw this.classless()
    return ctor as Function
  }

  private wrongKind(thisArg: unknown): CacheConfigError {
    const kind = this.isStatic ? 'a static' : 'an instance'
    const on =
      typeof thisArg === 'function' && this.isStatic
        ? `a function that is no class (${thisArg.name || 'anonymous'})`
        : typeof thisArg === 'function'
          ? `the class ${thisArg.name || '(anonymous)'}`
          : typeof thisArg === 'object' && thisArg !== null
            ? 'an instance'
            : `a ${typeof thisArg}`
    return new CacheConfigError(
      'key',
      `@cache(): ${this.display}() is ${kind} method and was called on ${on}, whose keys would be those of ${this.isStatic ? 'the class' : 'its instances'}: one would get the other's result. ` +
        `Call it on ${this.isStatic ? 'the class' : 'an instance'}, or give a \`key\` option if its result depends on its arguments alone`,
    )
  }

  defaultPrefix(): string {
    if (this.inheritedBy !== undefined)
      throw new CacheConfigError(
        'name',
        `@cache(): ${this.method}() also runs on ${this.inheritedBy}, whose entries have their own keys: ` +
          'call keyFor on the instance, `obj.method.keyFor.call(obj, ...args)`',
      )
    if (this.definingClass !== undefined) return this.prefixFor(this.definingClass)
    if (this.options.name !== undefined)
      return `${keySegment(this.namespace)}:${nameSegment(this.options.name)}:`
    throw this.unknownClass()
  }

  private classless(): CacheConfigError {
    return new CacheConfigError(
      'key',
      `@cache(): ${this.display}() was called on a receiver that is no instance of a class of its own (a plain object, an object whose class it inherits from further up its prototype chain, an instance of a class whose prototype's \`constructor\` was replaced, as a mixin helper that copies \`constructor\` does, a primitive), whose keys would name no class: calls on two such receivers would share one result. ` +
        'Put the method on a class, or give a `key` option if its result depends on its arguments alone',
    )
  }

  private prefixOf(runtime: Function): string {
    if (!runtime.name)
      throw new CacheConfigError(
        'name',
        `@cache(): ${this.method} runs on an anonymous class: pass a \`name\` option`,
      )
    const owner = this.ownerOf(runtime)
    // Run by a class that did not get the decorator (the method copied onto it, a mixin, or
    // called with `.call()` on its instance): its part of the key is its own, as a subclass's is.
    // The defining class is never learned from a call: a class holding a copy would take its
    // place, and the bare key, in the process where it ran first (see definedOn).
    const own = owner === runtime && owner === this.definingClass
    if (!own) this.inheritedBy ??= runtime.name
    const name = this.options.name
    // A class's text holds the method and everything else its results may depend on (fields,
    // constructor): two classes of one name whose method text is the same but whose other code
    // differs (two modules, two processes) get two fingerprints.
    // Run on a class (or an instance of one) whose chain does not hold the method at all
    // (`Reflect.apply(Euro.rate, Other, [])`): the class that defines it is named, since two
    // methods of one text in two classes (each reading its own `super`) differ.
    const holder = owner ?? this.definingClass
    if (holder === undefined && name === undefined) throw this.unknownClass()
    const base =
      name === undefined
        ? `${partSegment(holder!.name)}.${partSegment(this.method)}#${classFingerprint(
            holder!,
            this.fingerprint,
            (member) => {
              throw this.unreadable(runtime, member)
            },
          )}`
        : nameSegment(name)
    // The classes from the one that ran it up to the one that defines it (all of them when that
    // one is not in the chain, or not known yet): a class holding a copy of the method (a mixin),
    // and every class above it, has its text in the key, as a subclass does.
    const inherited = `(${partSegment(runtime.name)}#${this.chainFingerprint(runtime)})`
    const prefix = `${keySegment(this.namespace)}:${own ? base : `${base}${inherited}`}:`
    // The claimant is this method on this class: another class of the same name, or another
    // method that would be named the same, is a different one. A subclass's part of the key is a
    // default name even under a given `name` (a factory makes many classes of one name and text).
    claimPrefix(
      prefix,
      {},
      name === undefined || !own,
      () =>
        `Two different memoized methods named "${own ? '' : `${(holder ?? runtime).name}.${this.method} on `}` +
        `${runtime.name}${own ? `.${this.method}` : ''}" (two classes named "${runtime.name}", or a static and an instance method)`,
    )
    usePrefix(this.functionGeneration, prefix)
    return prefix
  }

  /** The class whose prototype (or, for static methods, the class itself) holds this memoized method. */
  private ownerOf(runtime: Function | undefined): Function | undefined {
    for (let cls: unknown = runtime; typeof cls === 'function'; cls = Object.getPrototypeOf(cls))
      if (this.holds(cls as Function)) return cls as Function
    return undefined
  }

  /**
   * The fingerprint of every class from `runtime` up to the defining class (excluded; all of them
   * when it is not in the chain, or not known): any of them may set what the method reads (a
   * constructor passing `super('users')`, a field, an override of a helper it calls). For an
   * instance method the classes are read from the prototypes (a class a decorator replaced with a
   * Proxy is its real class there). A class whose text cannot be read (a bound function, a Proxy,
   * a native function that is no built-in) is refused: its part of the key would hold only a name.
   */
  private chainFingerprint(runtime: Function): string {
    const stop = this.definingClass
    const texts: string[] = []
    const add = (cls: unknown): void => {
      const text =
        typeof cls === 'function'
          ? classText(cls, (member) => {
              throw this.unreadable(runtime, member)
            })
          : undefined
      if (text !== undefined) texts.push(text)
      else if (typeof cls === 'function' && isBuiltIn(cls)) texts.push(`[built-in ${cls.name}]`)
      else throw this.unreadable(typeof cls === 'function' ? cls : runtime)
    }
    if (this.isStatic) {
      for (let cls: unknown = runtime; typeof cls === 'function'; cls = Object.getPrototypeOf(cls)) {
        if (cls === stop || cls === Function.prototype) break
        add(cls)
      }
    } else {
      for (
        let proto: unknown = runtime.prototype;
        typeof proto === 'object' && proto !== null && proto !== Object.prototype;
        proto = Object.getPrototypeOf(proto)
      ) {
        const cls = Object.hasOwn(proto, 'constructor')
          ? (proto as { constructor: unknown }).constructor
          : undefined
        // A prototype whose `constructor` is not its own class (an ES5 prototype reset to another
        // class, or to one of the same name): the class whose text counts cannot be told.
        if (typeof cls !== 'function' || cls.prototype !== proto) throw this.unreadable(runtime)
        if (stop !== undefined && cls === stop) break
        add(cls)
      }
    }
    return sourceFingerprint(`${this.fingerprint}\n${texts.join('\n')}`)
  }

  /** `member`: the member of a class that could not be read, and why, when it was one. */
  private unreadable(cls: Function, member?: string): CacheConfigError {
    if (member !== undefined)
      return new CacheConfigError(
        'key',
        `@cache(): ${this.display}() runs on ${cls.name || 'a class'}, whose chain holds a class with a member that cannot be read: ${member}. A class's key holds what is put on it outside its text, so that another class of that name, or this one in another deploy, gets another key; a bound function, a Proxy, a native function that is no built-in class, a getter that throws or a value too deep or too large to read cannot be. Make it a plain value or a function, or keep it off the class (a module variable)`,
      )
    return new CacheConfigError(
      'key',
      `@cache(): ${this.display}() runs on ${cls.name || 'a class'}, whose chain holds a class that cannot be read (a bound function, a Proxy of a class, a native function, a prototype whose \`constructor\` is not its own class): its part of the key could not tell it from another class of that name. Call it on the class itself, or on an instance made with \`new\`, with each prototype's \`constructor\` its own class`,
    )
  }

  private unknownClass(): CacheConfigError {
    return new CacheConfigError(
      'name',
      `@cache(): the class of ${this.method}() is not known before an instance of it exists; ` +
        'call it on an instance, or pass a `name` option',
    )
  }
}

/**
 * The fingerprint of a class's source text together with a method's: the class text holds its
 * fields and constructor, which a method's results may depend on as much as on its own text.
 * `unreadable` is called for a class with a function on it whose text cannot be read.
 */
function classFingerprint(cls: Function, method: string, unreadable: Unreadable): string {
  const text = classText(cls, unreadable)
  return text === undefined ? method : sourceFingerprint(`${method}\n${text}${basesText(cls, unreadable)}`)
}

/**
 * The texts of the classes `cls` extends (a base class or a mixin of another module, whose
 * methods and fields its methods inherit), each as {@link classText} writes it; a built-in class
 * by its name. Their members are read leniently; a class whose own text cannot be read (a Proxy, a
 * bound function) is refused.
 */
function basesText(cls: Function, unreadable: Unreadable): string {
  let text = ''
  for (
    let base: unknown = Object.getPrototypeOf(cls);
    typeof base === 'function';
    base = Object.getPrototypeOf(base)
  ) {
    if (base === Function.prototype) break
    // Leniently: what of a base cannot be read counts as unread (a native function by its name),
    // not refused. A class of Node's own modules (`Readable`) or of a library holds native and
    // bound functions that are the runtime's, not the deploy's.
    const own = isBuiltIn(base) ? `[built-in ${base.name}]` : classText(base, unreadable, true)
    if (own === undefined)
      unreadable(`the class it extends, ${base.name || 'an anonymous class'} (its text cannot be read)`)
    text += `\n<extends>\n${own}`
  }
  return text
}

/** An error as a member's refusal quotes it. */
function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error)
}

/** Throws the refusal of a class that cannot be read; `member` names the member, and why, when one could not be. */
type Unreadable = (member?: string) => never

/** Own names of a class, or of its prototype, that are not members: the language puts them there. */
const INTRINSIC = new Set<PropertyKey>(['length', 'name', 'prototype', 'arguments', 'caller', 'constructor'])

/**
 * A value put on a class outside its text, as its key holds it: primitives (each its own: `-0`,
 * `NaN`, `10n` and `'10n'` apart), plain objects and arrays by their contents (their own names,
 * symbols and non-enumerable ones included, accessors by their text), functions by their text,
 * `Map`, `Set`, `Date`, `RegExp` and typed arrays by their contents; an instance of another class
 * by that class's name only (a logger, a client: its state is this process's, and would give every
 * process keys of its own); the runtime's objects (`console`, `node:util`) by their names. What
 * cannot be read (a bound function, a Proxy) is refused by `unread`, or counts as what it says.
 */
function valueText(value: unknown, unread: Unread, path = new Set<object>()): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value)
    case 'number':
      return Object.is(value, -0) ? '-0' : String(value)
    case 'bigint':
      return `${value}n`
    case 'symbol':
      return value.toString()
    case 'function':
    case 'object':
      break
    default:
      return String(value)
  }
  if (value === null) return 'null'
  // A reference back up the path (a cycle); one seen elsewhere is written again in full.
  if (path.has(value)) return '[circular]'
  // A Proxy answers what its traps say, not what it holds: no text tells two apart.
  if (types.isProxy(value)) return unread('a Proxy: what it answers is not what it holds', value)
  path.add(value)
  try {
    const of = (part: unknown) => valueText(part, unread, path)
    if (typeof value === 'function') {
      // A memoized function by the text of the one it memoizes (its own members are @cache's);
      // a built-in class by its name.
      const text = functionText(value, unread)
      if (originalOf(value) !== value || sourceOf(value) === undefined) return text
      return `${text}${functionMembers(value, of, unread)}`
    }
    // Brands, not `instanceof`: a value made in another realm (a `vm` context) is read the same.
    // Own properties put on such a value count too.
    const brand = brandedText(value, of)
    if (brand !== undefined)
      return `${brand}${membersText(value, of, (key) => isIndexOf(value, key), unread)}`
    // An object of the runtime's (`console`, `Math`, `JSON`, a module of Node's own: `path`) by
    // its name: its functions are native or bound, and the same in every deploy.
    const global = runtimeObjectName(value)
    if (global !== undefined) return `[${global}]`
    const proto: unknown = Object.getPrototypeOf(value)
    // A plain object: `Object.prototype` (of this realm or another: a `vm` context), none, or a
    // prototype that is itself a plain object (`Object.create(defaults)`, whose contents count).
    const plainProto = proto === null || isObjectPrototype(proto)
    if (!plainProto && !isPlainObject(proto))
      return `[${(proto as { constructor?: { name?: unknown } }).constructor?.name ?? 'object'}]`
    // Its getters are run (see membersText): a module of Node's own has some, and is the runtime's.
    if (hasGetter(value)) {
      const module = runtimeObjectName(value, true)
      if (module !== undefined) return `[${module}]`
    }
    try {
      return `{${membersText(value, of, undefined, unread).slice(1)}${plainProto ? '' : `,__proto__:${of(proto)}`}}`
    } catch (error) {
      // What cannot be read in it may be the runtime's: a module of Node's own (`node:util`).
      const module = runtimeObjectName(value, true)
      if (module !== undefined) return `[${module}]`
      throw error
    }
  } finally {
    path.delete(value)
  }
}

/** The runtime's global objects by name (see {@link runtimeObjectName}), made at its first call. */
let globalObjects: WeakMap<object, string> | undefined
/** The exports of Node's own modules by name (see {@link runtimeObjectName}), made when first needed. */
let nodeModules: WeakMap<object, string> | undefined

/**
 * Modules of Node's own a class may hold as a static (`static path = path`), named when what
 * they hold cannot be read (native functions): loaded, if they were not, when one is first
 * needed. Not every module: some warn as they load (`wasi`, `sys`).
 */
const NODE_MODULES = [
  'assert',
  'async_hooks',
  'buffer',
  'child_process',
  'cluster',
  'crypto',
  'dgram',
  'diagnostics_channel',
  'dns',
  'dns/promises',
  'events',
  'fs',
  'fs/promises',
  'http',
  'http2',
  'https',
  'module',
  'net',
  'os',
  'path',
  'perf_hooks',
  'process',
  'querystring',
  'readline',
  'stream',
  'stream/promises',
  'string_decoder',
  'timers',
  'timers/promises',
  'tls',
  'tty',
  'url',
  'util',
  'util/types',
  'v8',
  'vm',
  'worker_threads',
  'zlib',
]

/**
 * The name of an object of the runtime's: a global (`console`, `Math`, `JSON`, `Intl`), or, with
 * `modules`, the exports of a module of Node's own (`node:path`, `node:fs/promises`) or its
 * namespace (`import * as path from 'node:path'`); undefined for any other.
 */
function runtimeObjectName(value: object, modules = false): string | undefined {
  if (globalObjects === undefined) {
    globalObjects = new WeakMap()
    for (const name of Object.getOwnPropertyNames(globalThis)) {
      const descriptor = Object.getOwnPropertyDescriptor(globalThis, name)
      const object: unknown = descriptor !== undefined && 'value' in descriptor ? descriptor.value : undefined
      if (
        typeof object === 'object' &&
        object !== null &&
        object !== globalThis &&
        !globalObjects.has(object)
      )
        globalObjects.set(object, `global ${name}`)
    }
  }
  const global = globalObjects.get(value)
  if (global !== undefined || !modules) return global
  if (nodeModules === undefined) {
    nodeModules = new WeakMap()
    const load = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule
    for (const id of NODE_MODULES) {
      let exported: unknown
      try {
        exported = load?.call(process, `node:${id}`)
      } catch {
        continue
      }
      if (typeof exported === 'object' && exported !== null) nodeModules.set(exported, `node:${id}`)
    }
  }
  // `import * as util from 'node:util'`: a namespace whose default export is the module's exports.
  if (types.isModuleNamespaceObject(value)) {
    let exported: unknown
    try {
      exported = (value as { default?: unknown }).default
    } catch {
      return undefined // an export not yet initialized: the module is still loading, no module of Node's
    }
    return typeof exported === 'object' && exported !== null ? nodeModules.get(exported) : undefined
  }
  return nodeModules.get(value)
}

/** The contents of an array, a `Map`, a `Set`, a date, a regular expression, bytes or a boxed primitive, of any realm; undefined for any other object. */
function brandedText(value: object, of: (part: unknown) => string): string | undefined {
  if (Array.isArray(value)) return `[${value.map(of).join(',')}]`
  if (types.isMap(value))
    return `Map{${[...(value as Map<unknown, unknown>)].map(([k, v]) => `${of(k)}=>${of(v)}`).join(',')}}`
  if (types.isSet(value)) return `Set{${[...(value as Set<unknown>)].map(of).join(',')}}`
  if (types.isDate(value)) return `Date(${Date.prototype.getTime.call(value)})`
  if (types.isRegExp(value)) return RegExp.prototype.toString.call(value)
  if (ArrayBuffer.isView(value))
    return `${value.constructor?.name}(${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')})`
  if (types.isAnyArrayBuffer(value))
    return `${types.isSharedArrayBuffer(value) ? 'SharedArrayBuffer' : 'ArrayBuffer'}(${Buffer.from(value).toString('hex')})`
  if (types.isBoxedPrimitive(value)) return `Boxed(${of((value as { valueOf(): unknown }).valueOf())})`
  return undefined
}

/** An index of an array or a typed array (its contents are written already), or an array's `length`. */
function isIndexOf(value: object, key: PropertyKey): boolean {
  if (!Array.isArray(value) && !ArrayBuffer.isView(value)) return false
  return key === 'length' || isIndex(key)
}

/** A function's own properties, and its prototype's members but `constructor` (an ES5 class's methods), as {@link membersText} writes them. */
function functionMembers(fn: Function, of: (part: unknown) => string, unread: Unread): string {
  const proto: unknown = (fn as { prototype?: unknown }).prototype
  const members =
    typeof proto === 'object' && proto !== null ? membersText(proto, of, (key) => key === 'constructor') : ''
  return `${membersText(fn, of, (key) => INTRINSIC.has(key), unread)}${members === '' ? '' : `#{${members.slice(1)}}`}`
}

/** `Object.prototype`, of this realm or another (a `vm` context). */
function isObjectPrototype(proto: unknown): boolean {
  if (proto === Object.prototype) return true
  const ctor = (proto as { constructor?: unknown }).constructor
  return (
    typeof ctor === 'function' &&
    ctor.name === 'Object' &&
    ctor.prototype === proto &&
    Object.getPrototypeOf(proto) === null
  )
}

/** An object whose prototype chain holds no class but `Object` (`Object.create(defaults)`). */
function isPlainObject(value: unknown): boolean {
  for (let proto = value; proto !== null; proto = Object.getPrototypeOf(proto)) {
    if (typeof proto !== 'object') return false
    if (isObjectPrototype(proto)) return true
    if (Object.hasOwn(proto, 'constructor')) return false
  }
  return true
}

function isIndex(key: PropertyKey): boolean {
  return typeof key === 'string' && /^(?:0|[1-9]\d*)$/.test(key)
}

/**
 * An object's own members (symbols and non-enumerable ones too, accessors by their text),
 * `,`-led; `skip` leaves some out. With `answers`, a getter counts by what it answers too, read
 * with it: its text is the same in every deploy when what it returns is a module's constant
 * (`get vatRate() { return VAT }`, tsc's CommonJS re-exports, `return rates_1.vatRate`).
 */
function membersText(
  value: object,
  of: (part: unknown) => string,
  skip?: (key: PropertyKey) => boolean,
  answers?: Unread,
): string {
  let text = ''
  for (const key of Reflect.ownKeys(value)) {
    if (skip?.(key)) continue
    const descriptor = Object.getOwnPropertyDescriptor(value, key)!
    const parts = [descriptor.value, descriptor.get, descriptor.set].filter((part) => part !== undefined)
    text += `,${typeof key === 'symbol' ? key.toString() : JSON.stringify(key)}${descriptor.enumerable ? '' : '~'}:${parts.length === 0 ? 'undefined' : parts.map(of).join('|')}`
    if (answers !== undefined && descriptor.get !== undefined)
      text += `=>${getterAnswer(descriptor.get, value, answers)}`
  }
  return text
}

/** Whether an object has an own getter. */
function hasGetter(value: object): boolean {
  for (const key of Reflect.ownKeys(value))
    if (Object.getOwnPropertyDescriptor(value, key)?.get !== undefined) return true
  return false
}

/**
 * What `get` answers on `receiver`, as {@link memberText} writes it with `unread`; one that
 * throws counts as such. A memoized call made while it runs (a lazy singleton whose constructor
 * calls one) is run uncached: see {@link KeyBeingRead}.
 */
function getterAnswer(get: Function, receiver: object, unread: Unread): string {
  // Getters that build what they answer (a lazy tree, a chainable builder) are read so far:
  // deeper, or more of them, count as unread, not followed for ever.
  if (getterDepth === 0) gettersRun = 0
  if (getterDepth >= MOST_GETTER_DEPTH || ++gettersRun > MOST_GETTERS)
    return '[unread: getters nested too deep or too many]'
  getterDepth++
  try {
    let answer: unknown
    try {
      answer = runReading(receiver, () => get.call(receiver))
    } catch (error) {
      if (error instanceof KeyBeingRead) throw error
      return `[threw ${describeError(error)}]`
    }
    return memberText(answer, unread)
  } finally {
    getterDepth--
  }
}

/** Getters read inside one another at most, for one key (see {@link getterAnswer}). */
const MOST_GETTER_DEPTH = 16
/** Getters run at most under one getter a class's key reads first. */
const MOST_GETTERS = 1000
let getterDepth = 0
let gettersRun = 0

/** A function's text (a memoized one's, the text of the function it memoizes); a built-in's name; a bound one refused. */
function functionText(fn: Function, unread: Unread): string {
  const own = sourceOf(originalOf(fn))
  if (own !== undefined) return own
  // A built-in of this realm's globals is known by its name (`Map`, `parseInt`); any other native
  // text (a bound function, a Proxy, `JSON.parse` beside `Date.parse`) cannot tell one function
  // from another.
  if ((globalThis as Record<string, unknown>)[fn.name] !== fn)
    return unread('a function whose text cannot be read: bound, a Proxy, or native and no global', fn)
  return `[built-in ${fn.name}]`
}

/**
 * What a value that cannot be read counts as, read leniently (a class a decorated class
 * extends): a native function by its name (`Math.floor` apart from `Math.ceil`), anything
 * else as unread.
 */
const leniently: Unread = (_why, value) =>
  typeof value === 'function' ? `[unread ${value.name}]` : '[unread]'

/** What a value that cannot be read counts as (read leniently), or the refusal of it (thrown). */
type Unread = (why: string, value: unknown) => string

/**
 * A class's text, with what was put on it outside that text: the methods and values of an ES5
 * class (`function Repo() {}`, TypeScript's `target: ES5`, `util.inherits`) are written on its
 * prototype after it, and so are its statics; a compiler for a target before ES2022 writes static
 * fields after the class (`Repo.config = { … }`), and one of ES2022 may declare one in it and
 * assign it after (`static config;`); a method may be assigned to a prototype later. Every member
 * of the prototype and the class is added with its name: a function by its text, a value (a
 * static field's too: what it holds is what counts) as {@link valueText} writes it, a static
 * getter also by what it answers. What cannot be read is refused through `unreadable`, naming the
 * member, or (`lenient`, a class a decorated class extends) counts as unread. Undefined when the
 * class's own text cannot be read.
 */
function classText(cls: Function, unreadable: Unreadable, lenient = false): string | undefined {
  const text = sourceOf(cls)
  if (text === undefined) return undefined
  const parts = [text]
  const holders: [object | undefined, string][] = [
    [cls.prototype as object | undefined, '#'],
    [cls, '.'],
  ]
  for (const [holder, mark] of holders) {
    if ((typeof holder !== 'object' && typeof holder !== 'function') || holder === null) continue
    for (const key of Reflect.ownKeys(holder)) {
      if (INTRINSIC.has(key) || key === METADATA) continue
      const descriptor = Object.getOwnPropertyDescriptor(holder, key)!
      const name = String(key)
      const member = `${mark === '.' ? 'its static' : "its prototype's"} \`${name}\``
      const cannot: (why: string) => never = (why) => unreadable(`${member} (${why})`)
      const read = (value: unknown) => memberText(value, lenient ? leniently : cannot)
      for (const part of [descriptor.value, descriptor.get, descriptor.set]) {
        // Every function counts by its text, the class's own methods too: one of the member's
        // name whose text is elsewhere in the class (a static object's method assigned to the
        // prototype, a static choosing one of two methods) is not told apart by its text.
        if (typeof part === 'function') parts.push(`${mark}${name}: ${read(part)}`)
        else if (part !== undefined || Object.hasOwn(descriptor, 'value'))
          parts.push(`${mark}${name} = ${read(part)}`)
      }
      // A static getter counts by what it answers too: a static auto-accessor (`static accessor
      // rate = RATE`) keeps its value in a #private field behind one. One that throws counts as such.
      if (mark === '.' && descriptor.get !== undefined)
        parts.push(`${mark}${name} => ${getterAnswer(descriptor.get, cls, lenient ? leniently : cannot)}`)
    }
  }
  return parts.join('\n')
}

/** The objects whose getters are running for a key being read (see {@link KeyBeingRead}). */
const reading = new Set<object>()

/**
 * Runs `read` (a getter of `holder`) for a key being read. A getter that leads back to reading a
 * key that runs it again (`static get instance() { return this.i ??= new Rates() }`, whose
 * constructor calls a memoized method of `Rates`) would never end: that call gets
 * {@link KeyBeingRead} instead, and runs uncached.
 */
function runReading<T>(holder: object, read: () => T): T {
  if (reading.has(holder)) throw new KeyBeingRead()
  reading.add(holder)
  try {
    return read()
  } finally {
    reading.delete(holder)
  }
}

/** Thrown to a memoized call made while a getter its key reads runs (see {@link runReading}): it runs uncached. */
class KeyBeingRead extends CacheConfigError {
  constructor() {
    super(
      'key',
      '@cache(): a memoized method was called from a getter its own key reads (a lazy singleton built as the key is read): that call runs uncached',
    )
  }
}

/**
 * A member of a class, or what a static getter answers, as its key holds it: a function by its
 * text (a memoized one by the text of the function it memoizes), any other value as
 * {@link valueText} writes it. `unread` refuses what cannot be read, or ({@link leniently}) says
 * what it counts as; an error reading it is refused, or counts as such.
 */
function memberText(value: unknown, unread: Unread): string {
  if (typeof value === 'function') {
    const text = functionText(value, unread)
    if (originalOf(value) !== value || sourceOf(value) === undefined) return text
    // Its own properties, and an ES5 class's prototype members, read leniently: a library's
    // function object (an HTTP client instance) holds bound functions of its own.
    const of = (part: unknown): string => {
      try {
        return valueText(part, leniently)
      } catch (error) {
        return `[threw ${describeError(error)}]`
      }
    }
    return `${text}${functionMembers(value, of, leniently)}`
  }
  try {
    return valueText(value, unread)
  } catch (error) {
    // A getter of a plain object that throws, a Proxy whose traps throw, a value nested too deep
    // or too large for a string: what it holds cannot be read.
    if (error instanceof CacheConfigError) throw error
    const threw = describeError(error)
    return unread === leniently ? `[threw ${threw}]` : unread(`reading it threw ${threw}`, value)
  }
}

/** The function a memoized one memoizes (a method an override memoized: its text is what differs); any other as it is. */
function originalOf(fn: Function): Function {
  const original = (fn as { [ORIGINAL]?: unknown })[ORIGINAL]
  return typeof original === 'function' ? original : fn
}
