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

/** `set` on one level with what is left of `ttl`; a TTL that ran out deletes the key there instead. */
export async function setLeft(
  backend: CacheBackend,
  key: string,
  value: unknown,
  ttl: Duration | undefined,
  calledAt: number,
  now: number,
): Promise<void> {
  const left = ttlLeft(ttl, calledAt, now)
  if (left === EXPIRED) await backend.delete(key)
  else await backend.set(key, value, left)
}

/** `setMany` on one level with what is left of each TTL; the items whose TTL ran out are deleted there. */
export async function setManyLeft(
  backend: CacheBackend,
  items: readonly SetManyItem[],
  calledAt: number,
  now: number,
): Promise<void> {
  if (now <= calledAt) return backend.setMany(items)
  const live: SetManyItem[] = []
  const gone: string[] = []
  for (const item of items) {
    const left = ttlLeft(item.ttl, calledAt, now)
    if (left === EXPIRED) gone.push(item.key)
    else live.push(left === item.ttl ? item : { ...item, ttl: left })
  }
  await Promise.all([
    live.length > 0 ? backend.setMany(live) : undefined,
    gone.length > 0 ? backend.deleteMany(gone) : undefined,
  ])
}
