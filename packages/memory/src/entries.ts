import { isListedKey } from '@cache/core/backend'
import type { LRUCache } from 'lru-cache'

/**
 * What lru-cache holds for a stored `undefined` (lru-cache takes setting `undefined` as a delete).
 * Every other value is stored as it is, with no wrapper: a set allocates nothing of its own.
 */
export const UNDEFINED: unique symbol = Symbol('undefined')
export type Stored = NonNullable<unknown> | typeof UNDEFINED

/**
 * Expiries live in lru-cache's own TTL storage (two number arrays, no object per entry). An entry
 * that expires at `e` (epoch ms) is stored with `start: e - 1` and `ttl: 1 - EPSILON`: lru-cache
 * calls it stale once `now - start > ttl`, which for whole-millisecond clocks is exactly `now >= e`,
 * the rule of every backend (and within EPSILON of it for a clock with fractions).
 */
const EPSILON = 2 ** -10

/**
 * Fills lru-cache set options with an expiry: `expiresAt` in epoch ms, 0 for never;
 * `keepExpiry`: the entry's own instead (it exists).
 */
export function setExpiry(
  options: LRUCache.SetOptions<string, Stored, unknown>,
  expiresAt: number,
  keepExpiry: boolean,
): void {
  if (keepExpiry) {
    options.noUpdateTTL = true
    return
  }
  options.noUpdateTTL = false
  if (expiresAt === 0) {
    options.ttl = 0
    options.start = 0
  } else {
    // A start of 0 means "no TTL" to lru-cache: possible with an injected clock near 0.
    const start = expiresAt - 1 === 0 ? -1 : expiresAt - 1
    options.start = start
    options.ttl = expiresAt - start - EPSILON
  }
}

/** The expiry (epoch ms) lru-cache reported in `status` for the entry it read; undefined for none. */
export function expiryOf(status: LRUCache.Status<string, Stored>): number | undefined {
  // lru-cache fills in ttl and start only for an entry that has them.
  return status.ttl === 0 ? undefined : status.start! + status.ttl! + EPSILON
}

/**
 * The live keys of a cache, each once (internal `__` keys left out), those that start with
 * `prefix`. Iterates a snapshot of the key list taken at the first step (one array of references,
 * as long as the cache holds entries: the keys themselves are not copied), and checks each key's
 * expiry, and that it is still there, when it is reached.
 */
export async function* liveKeys(
  lru: LRUCache<string, Stored>,
  prefix: string,
): AsyncIterableIterator<string> {
  // A snapshot: lru-cache's own iterator may skip or repeat keys when entries change under it.
  const snapshot = [...lru.keys()]
  for (const key of snapshot) {
    if (!isListedKey(key, prefix)) continue
    // peek answers undefined for an entry that expired, and leaves it where it is.
    if (lru.peek(key) !== undefined) yield key
  }
}
