import { randomBytes } from 'node:crypto'
import type { CacheBackend, SyncAccess } from './backend.js'
import type { Duration } from './durations.js'
import { CacheError } from './errors.js'

/*
 * Invalidation state. A scope (a memoized function, one set of its arguments, a tag, a prefix of
 * HTTP responses) has a *generation*: a random token stored under a key that starts with
 * `__v:` (built by `generationKey()`). An entry remembers the generations of its scopes when its
 * computation started, and is served only while every one of them is still current. Invalidating a scope writes a new random
 * token; a scope whose token is missing (never written, expired, evicted, deleted by a repair)
 * gets a fresh one on its next read. So no state ever reads as "the oldest generation": an entry
 * matches only the exact tokens it was written under.
 *
 * Tokens are random integers in [1, 2^52]: numbers, so that code which still `incr`s a
 * generation key keeps working (any change is a new generation), and far enough from
 * Number.MAX_SAFE_INTEGER that `incr` never overflows.
 */

/** A fresh generation token: a random integer in [1, 2^52], never reused in practice. */
export function newGeneration(): number {
  return Number(randomBytes(8).readBigUInt64BE(0) >> 12n) + 1
}

/** True for a value that can be a generation (older versions stored counters; any number is one). */
export function isGeneration(value: unknown): value is number {
  return typeof value === 'number'
}

/** True when an entry's generations are exactly the current ones. */
export function sameGenerations(stored: readonly unknown[] | undefined, current: readonly number[]): boolean {
  if (!Array.isArray(stored) || stored.length !== current.length) return false
  for (let i = 0; i < current.length; i++) if (stored[i] !== current[i]) return false
  return true
}

/**
 * The current generations of `keys`. `values` are what a read already returned for them (say,
 * from the same `getMany` as the entry, so a hit costs one round trip); a key without a
 * generation gets a fresh one, created with `add` so that concurrent readers in every process
 * agree on it. `ttls[i]` is the lifetime of a generation created for `keys[i]`: a duration,
 * `undefined` for the backend's default TTL, and for keys past the end of `ttls` no expiry
 * (`Infinity`) whatever the backend's default. Expiring is always safe (it only turns entries
 * into misses), but a generation that expires before the entries written under it costs them
 * their remaining life.
 */
export async function currentGenerations(
  backend: CacheBackend,
  keys: readonly string[],
  values?: readonly unknown[],
  ttls?: readonly (Duration | undefined)[],
): Promise<number[]> {
  const found = values ?? (await backend.getMany(keys))
  const out = new Array<number>(keys.length)
  let missing: Promise<void>[] | undefined
  for (let i = 0; i < keys.length; i++) {
    const value = found[i]
    if (isGeneration(value)) out[i] = value
    else
      (missing ??= []).push(
        createGeneration(backend, keys[i]!, lifetime(ttls, i)).then((g) => {
          out[i] = g
        }),
      )
  }
  if (missing !== undefined) await Promise.all(missing)
  return out
}

/**
 * {@link currentGenerations} for an in-process backend, synchronously. A sync backend lives in
 * one process, where a read followed by a write cannot be interleaved. `ttls` as there.
 */
export function currentGenerationsSync(
  sync: SyncAccess,
  keys: readonly string[],
  ttls?: readonly (Duration | undefined)[],
): number[] {
  const out = new Array<number>(keys.length)
  for (let i = 0; i < keys.length; i++) {
    const value = sync.getEntry(keys[i]!)?.value
    if (isGeneration(value)) out[i] = value
    else {
      const fresh = newGeneration()
      sync.set(keys[i]!, fresh, lifetime(ttls, i))
      out[i] = fresh
    }
  }
  return out
}

/**
 * Starts a new generation for each key: every entry written under the old ones stops matching,
 * in every process sharing the backend. Resolves once the backend has taken the new tokens,
 * rejects if it did not (the invalidation may not have happened). `ttl`: their lifetime; none
 * (`Infinity`) unless given, whatever the backend's default TTL.
 */
export async function renewGenerations(
  backend: CacheBackend,
  keys: readonly string[],
  ttl: Duration = Number.POSITIVE_INFINITY,
): Promise<void> {
  if (keys.length === 0) return
  if (keys.length === 1) return backend.set(keys[0]!, newGeneration(), ttl)
  await backend.setMany(keys.map((key) => ({ key, value: newGeneration(), ttl })))
}

function lifetime(ttls: readonly (Duration | undefined)[] | undefined, i: number): Duration | undefined {
  return ttls !== undefined && i < ttls.length ? ttls[i] : Number.POSITIVE_INFINITY
}

async function createGeneration(
  backend: CacheBackend,
  key: string,
  ttl: Duration | undefined,
): Promise<number> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const fresh = newGeneration()
    if (await backend.add(key, fresh, ttl)) return fresh
    // Another reader created it first: use theirs (unless it vanished again meanwhile).
    const existing = await backend.get(key)
    if (isGeneration(existing)) return existing
  }
  throw new CacheError(`could not read or create the generation "${key}": it keeps disappearing`)
}
