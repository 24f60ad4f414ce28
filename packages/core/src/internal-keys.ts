import { CacheConfigError } from './errors.js'

/*
 * Keys @cache writes for its own bookkeeping: invalidation state (`__v:…`), memoize locks
 * (`__lock:…`). Every one starts with `__`, and no memoized function's key can: a memoize
 * namespace may not start with `__`, and its segments are written with `segment()`, which never
 * produces one. Keys you write yourself with `backend.set()` are yours: do not start them with
 * `__`.
 *
 * Keys are made of segments joined by `:`. A segment that contains `:` or `%` is written with
 * those two percent-encoded, so a segment never contains a bare `:` and two different lists of
 * segments never give the same key (`{ namespace: 'a:b', name: 'c' }` and `{ namespace: 'a',
 * name: 'b:c' }` stay apart).
 */

/** Every internal key starts with this. */
export const INTERNAL_PREFIX = '__'

/** Every invalidation-state key starts with this. `@cache/multi-level` reads such keys from its shared level. */
export const GENERATION_PREFIX = '__v:'

const SEPARATORS = /[%:]/g

/** `text` as one key segment: `%` and `:` percent-encoded, everything else as it is. */
export function keySegment(text: string): string {
  return text.includes(':') || text.includes('%')
    ? text.replace(SEPARATORS, (c) => (c === '%' ? '%25' : '%3A'))
    : text
}

/**
 * The key holding the generation of a scope: `kind` says whose (`fn` for a memoized function,
 * `tag` for a tag, `http` for the HTTP cache's prefixes…), `scope` which one. Every segment is
 * encoded, so two different (kind, scope) lists never share a key.
 */
export function generationKey(kind: string, ...scope: string[]): string {
  let key = GENERATION_PREFIX + keySegment(kind)
  for (const part of scope) key += `:${keySegment(part)}`
  return key
}

/** True for a key that holds invalidation state (see {@link GENERATION_PREFIX}). */
export function isGenerationKey(key: string): boolean {
  return typeof key === 'string' && key.charCodeAt(0) === 95 && key.startsWith(GENERATION_PREFIX)
}

/** True for any key @cache writes for itself (generations, locks). */
export function isInternalKey(key: string): boolean {
  return typeof key === 'string' && key.startsWith(INTERNAL_PREFIX)
}

/** The key of memoize's `lock` for an entry key (which is never internal itself). */
export function lockKey(entry: string): string {
  return `${INTERNAL_PREFIX}lock:${entry}`
}

/**
 * Throws a {@link CacheConfigError} naming `namespace` unless it is a non-empty string outside the
 * internal key space.
 */
export function assertMemoNamespace(namespace: unknown): asserts namespace is string {
  if (typeof namespace !== 'string' || namespace.length === 0)
    throw new CacheConfigError('namespace', `expected a non-empty string, got ${JSON.stringify(namespace)}`)
  if (namespace.startsWith(INTERNAL_PREFIX))
    throw new CacheConfigError(
      'namespace',
      `${JSON.stringify(namespace)} starts with "${INTERNAL_PREFIX}", which @cache keeps for its own keys (invalidation state, locks)`,
    )
}

/**
 * True for a key that a backend's `keys()` lists under `prefix`: not internal, and starting
 * with `prefix`.
 */
export function isListedKey(key: string, prefix: string): boolean {
  return !key.startsWith(INTERNAL_PREFIX) && key.startsWith(prefix)
}
