import { type CacheBackend, type Duration, type SetManyItem, ttlToMs } from '@cache/core'

/** What {@link ttlLeft} answers for a TTL that ran out before the level was written. */
export const EXPIRED: unique symbol = Symbol('expired')

/**
 * What is left, now, of a write's TTL counted from the call made at `calledAt` (epoch ms): the
 * TTL itself when no time has passed or it has no end (`undefined` is the level's default), else
 * the whole milliseconds left. A level written after another answered (the faster ones wait for
 * the shared one, which may wait for another process's lock) gets what is left, so that no level
 * keeps the entry past the expiry the caller asked for.
 */
export function ttlLeft(
  ttl: Duration | undefined,
  calledAt: number,
  now: number,
): Duration | undefined | typeof EXPIRED {
  const elapsed = now - calledAt
  if (elapsed <= 0) return ttl
  const ms = ttlToMs(ttl)
  if (ms === undefined) return ttl
  const left = ms - elapsed
  return left < 1 ? EXPIRED : `${left}ms`
}

/**
 * The TTL `backend`, one of a chain's levels, is written with for a write that asked for `ttl`.
 * With none, the shared level gives the entry its `defaultTtl`: a faster level gets the shorter of
 * its own default and the shared level's, as a TTL counted from the call (a level written late,
 * after the shared one answered, would otherwise count its own default from then), so that it
 * keeps no copy past the shared level's expiry
 * (a bare `memoryBackend()` over `redisBackend(url, { defaultTtl: '1h' })`). A shared level that
 * does not tell its default (a custom backend) leaves each level its own.
 */
export function levelTtl(
  ttl: Duration | undefined,
  backend: CacheBackend,
  shared: CacheBackend,
): Duration | undefined {
  if (ttl !== undefined || backend === shared) return ttl
  const sharedMs = shared.defaultTtlMs
  if (typeof sharedMs !== 'number') return undefined
  const own = backend.defaultTtlMs
  // Given as a TTL (not left to the level's default), so that it counts from the call too.
  return `${typeof own === 'number' && own < sharedMs ? own : sharedMs}ms`
}

/**
 * `set` on one level (`shared` is the chain's shared level) with what is left of the write's TTL
 * (see {@link levelTtl}); a TTL that ran out deletes the key there instead.
 */
export async function setLeft(
  backend: CacheBackend,
  shared: CacheBackend,
  key: string,
  value: unknown,
  ttl: Duration | undefined,
  calledAt: number,
  now: number,
): Promise<void> {
  const left = ttlLeft(levelTtl(ttl, backend, shared), calledAt, now)
  if (left === EXPIRED) await backend.delete(key)
  else await backend.set(key, value, left)
}

/** `setMany` on one level with what is left of each TTL; the items whose TTL ran out are deleted there. */
export async function setManyLeft(
  backend: CacheBackend,
  shared: CacheBackend,
  items: readonly SetManyItem[],
  calledAt: number,
  now: number,
): Promise<void> {
  const live: SetManyItem[] = []
  const gone: string[] = []
  for (const item of items) {
    const ttl = levelTtl(item.ttl, backend, shared)
    const left = ttlLeft(ttl, calledAt, now)
    if (left === EXPIRED) gone.push(item.key)
    else live.push(left === item.ttl ? item : { ...item, ttl: left })
  }
  await Promise.all([
    live.length > 0 ? backend.setMany(live) : undefined,
    gone.length > 0 ? backend.deleteMany(gone) : undefined,
  ])
}
