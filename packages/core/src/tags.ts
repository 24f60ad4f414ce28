import type { CacheBackend } from './backend.js'
import { getBackend } from './default-cache.js'
import { invalidatedHere } from './flights.js'
import { renewGenerations } from './generations.js'
import { generationKey } from './internal-keys.js'

/**
 * Tag invalidation by generations: an entry remembers the generation of each of its tags when
 * its computation started, and is a miss once any of them has been renewed. Invalidating a tag
 * is one write, whatever the number of entries, and works across processes sharing the backend.
 */
export function tagVersionKey(tag: string): string {
  return generationKey('tag', tag)
}

/**
 * Invalidates every entry (memoized result or cached response) carrying any of `tags`, in every
 * process sharing the backend. Resolves once the backend has taken the change; rejects if it
 * did not. Calls in flight in this process that carry one of the tags are not joined by later
 * calls, and their results are not stored.
 */
export async function invalidateTags(
  tags: readonly string[],
  options: { backend?: CacheBackend } = {},
): Promise<void> {
  const backend = options.backend ?? getBackend()
  const keys = tags.map(tagVersionKey)
  invalidatedHere(keys)
  await renewGenerations(backend, keys)
}
