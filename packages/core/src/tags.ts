import type { CacheBackend } from './backend.js'
import { getBackend } from './default-cache.js'

/**
 * Tag invalidation by version counters: an entry remembers the version of each of its tags when
 * it was written, and is a miss once any of them has moved on. Invalidating a tag is one `incr`,
 * whatever the number of entries, and works across processes sharing the backend.
 */
export function tagVersionKey(tag: string): string {
  return `__tag:${tag}`
}

/** Invalidates every entry (memoized result or cached response) carrying any of `tags`. */
export async function invalidateTags(
  tags: readonly string[],
  options: { backend?: CacheBackend } = {},
): Promise<void> {
  const backend = options.backend ?? getBackend()
  await Promise.all(tags.map((tag) => backend.incr(tagVersionKey(tag))))
}

/** Current versions for a list of version keys (a missing counter is version 0). */
export function versionsOf(values: readonly unknown[], from: number): number[] {
  const out = new Array<number>(values.length - from)
  for (let i = from; i < values.length; i++) {
    const v = values[i]
    out[i - from] = typeof v === 'number' ? v : 0
  }
  return out
}

export function sameVersions(stored: readonly number[] | undefined, current: readonly number[]): boolean {
  if (stored === undefined || stored.length !== current.length) return false
  for (let i = 0; i < current.length; i++) if (stored[i] !== current[i]) return false
  return true
}
