import { createHash } from 'node:crypto'
import { CacheKeyError, CacheSerializationError } from './errors.js'

/** A short, collision-resistant digest of a string: SHA-256, base64url, 43 characters. */
export function hashKey(text: string): string {
  return createHash('sha256').update(text).digest('base64url')
}

/** Throws a {@link CacheKeyError} unless `key` is a string. Empty strings are valid keys. */
export function assertKey(key: unknown): asserts key is string {
  if (typeof key !== 'string') {
    throw new CacheKeyError(`cache keys are strings, got ${key === null ? 'null' : typeof key}`)
  }
}

/** Throws a {@link CacheKeyError} for a namespace that is not a non-empty string. */
export function assertNamespace(namespace: unknown, what = 'namespace'): asserts namespace is string {
  if (typeof namespace !== 'string' || namespace.length === 0) {
    throw new CacheKeyError(`${what}: expected a non-empty string, got ${JSON.stringify(namespace)}`)
  }
}

/** `namespace:key`, or `key` when there is no namespace. */
export function namespacedKey(namespace: string | undefined, key: string): string {
  return namespace === undefined ? key : `${namespace}:${key}`
}

/**
 * A deterministic text for a list of arguments: object keys sorted, so `{a, b}` and `{b, a}`
 * give the same text; types kept apart, so `1` and `'1'` do not. Used to build memoize keys.
 * Functions, symbols and circular structures throw a {@link CacheSerializationError}.
 */
export function stableStringify(value: unknown): string {
  return write(value, '$', new Set())
}

function write(value: unknown, path: string, seen: Set<object>): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value)
    case 'number':
      return Number.isFinite(value) ? (Object.is(value, -0) ? '-0' : String(value)) : `#${value}`
    case 'boolean':
      return value ? 'true' : 'false'
    case 'undefined':
      return 'undefined'
    case 'bigint':
      return `${value}n`
    case 'function':
    case 'symbol':
      throw new CacheSerializationError(`cannot build a cache key from a ${typeof value} at ${path}`, path)
  }
  if (value === null) return 'null'
  const object = value as object
  if (seen.has(object))
    throw new CacheSerializationError(`cannot build a cache key from a circular reference at ${path}`, path)
  seen.add(object)
  try {
    if (Array.isArray(object)) return `[${object.map((v, i) => write(v, `${path}[${i}]`, seen)).join(',')}]`
    if (object instanceof Date) return `D(${object.getTime()})`
    if (object instanceof Uint8Array)
      return `B(${Buffer.from(object.buffer, object.byteOffset, object.byteLength).toString('base64')})`
    if (object instanceof Map) {
      const entries = [...object].map(
        ([k, v], i) => `${write(k, `${path}<key ${i}>`, seen)}=>${write(v, `${path}.get(${i})`, seen)}`,
      )
      return `Map{${entries.sort().join(',')}}`
    }
    if (object instanceof Set)
      return `Set{${[...object]
        .map((v, i) => write(v, `${path}<item ${i}>`, seen))
        .sort()
        .join(',')}}`
    if (object instanceof RegExp || object instanceof URL)
      return `${object.constructor.name}(${String(object)})`
    const keys = Object.keys(object).sort()
    const parts = keys.map(
      (k) => `${JSON.stringify(k)}:${write((object as Record<string, unknown>)[k], `${path}.${k}`, seen)}`,
    )
    const proto = Object.getPrototypeOf(object)
    const tag = proto === Object.prototype || proto === null ? '' : (proto?.constructor?.name ?? '')
    return `${tag}{${parts.join(',')}}`
  } finally {
    seen.delete(object)
  }
}

/** Argument lists whose stable text is longer than this are hashed instead of inlined. */
const INLINE_LIMIT = 64

/**
 * The key part for a list of arguments: short argument texts are kept readable
 * (`user:42` style debugging), longer ones are replaced by their SHA-256.
 */
export function argumentsKey(args: readonly unknown[]): string {
  if (args.length === 0) return '()'
  if (args.length === 1) {
    const only = args[0]
    if (typeof only === 'string' && only.length <= INLINE_LIMIT && !only.includes(':'))
      return JSON.stringify(only)
    if (typeof only === 'number' && Number.isFinite(only)) return String(only)
  }
  const text = stableStringify(args)
  return text.length <= INLINE_LIMIT ? text : `#${hashKey(text)}`
}
