/**
 * The typed error family shared by every @cache package.
 *
 * Each error carries a stable `code` and, where it wraps a lower-level failure, a `cause`.
 * `instanceof CacheError` works across the ESM and CJS builds (and across two copies of
 * @cache/core in one process) because it checks a brand, not a prototype chain.
 */
const BRAND = Symbol.for('@cache/core:CacheError')

export type CacheErrorCode =
  | 'CACHE_ERROR'
  | 'CACHE_UNAVAILABLE'
  | 'CACHE_TIMEOUT'
  | 'CACHE_VALUE_TOO_LARGE'
  | 'CACHE_SERIALIZATION'
  | 'CACHE_ARGUMENT'
  | 'CACHE_CONFIG'
  | 'CACHE_MISSING_PACKAGE'
  | 'CACHE_KEY'
  | 'CACHE_NOT_A_NUMBER'
  | 'CACHE_CONFLICT'
  | 'CACHE_CLOSED'
  | 'CACHE_FUNCTION_TIMEOUT'
  | 'CACHE_UNSUPPORTED'

function brand(error: Error, code: CacheErrorCode): void {
  Object.defineProperty(error, BRAND, { value: true })
  Object.defineProperty(error, 'code', { value: code, enumerable: true, writable: true })
}

function isBranded(value: unknown): boolean {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true
}

/** Base class of every error thrown by @cache packages. */
export class CacheError extends Error {
  declare readonly code: CacheErrorCode
  constructor(message: string, options?: { cause?: unknown }, code: CacheErrorCode = 'CACHE_ERROR') {
    super(message, options)
    this.name = new.target.name
    brand(this, code)
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    // The base class itself (named without referring to it: a class naming itself in its body is
    // renamed by the bundler).
    if (Object.getPrototypeOf(this) === Error) return isBranded(value)
    return Function.prototype[Symbol.hasInstance].call(this, value) || sameNamedBrand(this, value)
  }
}

function sameNamedBrand(ctor: Function, value: unknown): boolean {
  // A subclass from another copy of @cache/core: match by brand and class name.
  if (!isBranded(value)) return false
  for (let proto = Object.getPrototypeOf(value); proto; proto = Object.getPrototypeOf(proto)) {
    if (proto.constructor?.name === ctor.name) return true
  }
  return false
}

/** What an unavailable error may say besides its message. */
export interface UnavailableOptions {
  cause?: unknown
  /** The server that failed (`host:port`), for backends that spread keys over several. */
  server?: string
  /**
   * Only the keys on `server` fail: the backend's other servers answer, and the backend repairs
   * that server (forgets what it held) before using it again. Default: false.
   */
  partial?: boolean
  /**
   * The call was never sent: it gave up waiting behind an earlier call of this process on the
   * same key, so it says nothing about the server. Default: false.
   */
  unsent?: boolean
}

/** The server is down, unreachable, or did not answer within the operation timeout. */
export class CacheUnavailableError extends CacheError {
  /** Name of the backend that failed, e.g. `redis`. */
  readonly backend: string
  /** The server that failed (`host:port`), when the backend has several. */
  readonly server: string | undefined
  /**
   * True when the failure is limited to one server of a pool whose other servers answer (see
   * {@link UnavailableOptions.partial}): the backend as a whole is up. A multi-level chain keeps
   * such a level in use instead of counting the failure towards its circuit breaker.
   */
  readonly partial: boolean
  /**
   * True when the call was never sent (see {@link UnavailableOptions.unsent}): a multi-level chain
   * does not count it towards the level's circuit breaker either.
   */
  readonly unsent: boolean
  constructor(
    backend: string,
    message: string,
    options?: UnavailableOptions,
    code: CacheErrorCode = 'CACHE_UNAVAILABLE',
  ) {
    super(message, options, code)
    this.backend = backend
    this.server = options?.server
    this.partial = options?.partial ?? false
    this.unsent = options?.unsent ?? false
  }
}

/** The operation did not complete within its timeout. A kind of {@link CacheUnavailableError}. */
export class CacheTimeoutError extends CacheUnavailableError {
  readonly timeoutMs: number
  constructor(backend: string, operation: string, timeoutMs: number, options?: UnavailableOptions) {
    super(backend, `${backend}: ${operation} timed out after ${timeoutMs} ms`, options, 'CACHE_TIMEOUT')
    this.timeoutMs = timeoutMs
  }
}

/**
 * A cached function (memoize, `getOrSet`) did not return within its `hardTimeout`, and no value
 * within its grace period could be served instead. The function goes on in the background; its
 * result is stored when it completes. Not a {@link CacheUnavailableError}: the cache answered,
 * the function did not.
 */
export class CacheFunctionTimeoutError extends CacheError {
  /** The cache key of the call. */
  readonly key: string
  readonly timeoutMs: number
  constructor(label: string, key: string, timeoutMs: number, option = 'hardTimeout') {
    super(
      `${label}: the function did not return within ${timeoutMs} ms (${option}) for key "${truncate(key)}"`,
      undefined,
      'CACHE_FUNCTION_TIMEOUT',
    )
    this.key = key
    this.timeoutMs = timeoutMs
  }
}

/**
 * A value is larger than the backend can store: over its `limit` (thrown before anything is
 * sent), or, with `refusedBy`, refused by the server for a limit of its own.
 */
export class CacheValueTooLargeError extends CacheError {
  readonly size: number
  readonly limit: number
  readonly key: string
  constructor(key: string, size: number, limit: number, refusedBy?: string) {
    super(
      refusedBy === undefined
        ? `value for key "${truncate(key)}" is ${size} bytes, over the limit of ${limit} bytes`
        : `value for key "${truncate(key)}" is ${size} bytes, refused by ${refusedBy} as too large`,
      undefined,
      'CACHE_VALUE_TOO_LARGE',
    )
    this.key = key
    this.size = size
    this.limit = limit
  }
}

/** Bad configuration: an option or environment variable with a value that cannot be used. */
export class CacheConfigError extends CacheError {
  /** The option or environment variable at fault, e.g. `CACHE_MAX_KEYS`. */
  readonly setting: string
  constructor(
    setting: string,
    message: string,
    options?: { cause?: unknown },
    code: CacheErrorCode = 'CACHE_CONFIG',
  ) {
    super(`${setting}: ${message}`, options, code)
    this.setting = setting
  }
}

/** A backend named in configuration is not installed. */
export class CacheMissingPackageError extends CacheConfigError {
  readonly packageName: string
  constructor(setting: string, backendName: string, packageName: string, options?: { cause?: unknown }) {
    super(setting, `install ${packageName} to use "${backendName}"`, options, 'CACHE_MISSING_PACKAGE')
    this.packageName = packageName
  }
}

/** A key that is not a string. */
export class CacheKeyError extends CacheError {
  constructor(message: string) {
    super(message, undefined, 'CACHE_KEY')
  }
}

/** `incr` on a key that holds something other than an integer. */
export class CacheNotANumberError extends CacheError {
  readonly key: string
  constructor(key: string) {
    super(
      `cannot incr key "${truncate(key)}": it holds a value that is not an integer`,
      undefined,
      'CACHE_NOT_A_NUMBER',
    )
    this.key = key
  }
}

/** `atomicUpdate` gave up after too many conflicting writers. */
export class CacheConflictError extends CacheError {
  readonly key: string
  constructor(key: string, attempts: number) {
    super(
      `atomicUpdate of key "${truncate(key)}" gave up after ${attempts} conflicting attempts`,
      undefined,
      'CACHE_CONFLICT',
    )
    this.key = key
  }
}

/** An operation on a backend that was closed. */
export class CacheClosedError extends CacheError {
  constructor(backend: string) {
    super(`${backend}: the backend is closed`, undefined, 'CACHE_CLOSED')
  }
}

/** An operation the backend does not implement (a custom backend without `clear`). */
export class CacheUnsupportedError extends CacheError {
  /** Name of the backend. */
  readonly backend: string
  /** The operation it lacks, e.g. `clear`. */
  readonly operation: string
  constructor(backend: string, operation: string, hint: string) {
    super(`${backend}: ${operation}() is not supported: ${hint}`, undefined, 'CACHE_UNSUPPORTED')
    this.backend = backend
    this.operation = operation
  }
}

/**
 * A value cannot be serialized (function, symbol, class instance, circular reference) or
 * stored bytes cannot be decoded. It is also a `TypeError`, and `instanceof CacheError` holds.
 */
export class CacheSerializationError extends TypeError {
  declare readonly code: 'CACHE_SERIALIZATION'
  /** Where in the value the problem is, e.g. `$.user.callback`. */
  readonly path: string
  constructor(message: string, path = '$', options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'CacheSerializationError'
    this.path = path
    brand(this, 'CACHE_SERIALIZATION')
  }
}

/**
 * An argument of a memoized function cannot be keyed by its full value (a class instance whose
 * state a key cannot see, a function, an unregistered symbol…). It is also a `TypeError`, and
 * `instanceof CacheError` holds. The fix is a `key` option that builds the key from what the
 * result depends on.
 */
export class CacheArgumentError extends TypeError {
  declare readonly code: 'CACHE_ARGUMENT'
  /** The position of the argument at fault (0 for the first). */
  readonly argument: number
  /** Where in that argument the problem is, e.g. `$[1].user`. */
  readonly path: string
  constructor(message: string, argument: number, path: string) {
    super(message)
    this.name = 'CacheArgumentError'
    this.argument = argument
    this.path = path
    brand(this, 'CACHE_ARGUMENT')
  }
}

/** True for any error of the family, from any copy of @cache/core. */
export function isCacheError(value: unknown): value is CacheError {
  return isBranded(value)
}

/** True when the error means "the store could not be reached" (down, timed out, closed). */
export function isUnavailable(value: unknown): boolean {
  if (!isBranded(value)) return false
  const code = (value as { code?: string }).code
  return code === 'CACHE_UNAVAILABLE' || code === 'CACHE_TIMEOUT' || code === 'CACHE_CLOSED'
}

export function truncate(text: string, max = 80): string {
  return text.length > max ? `${text.slice(0, max)}…` : text
}
