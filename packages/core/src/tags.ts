import type { CacheBackend } from './backend.js'
import { getBackend } from './default-cache.js'
import { generationKey, renewGenerations } from './generations.js'

/**
 * Tag invalidation by generations: an entry remembers the generation of each of its tags when
 * its computation started, and is a miss once any of them has been renewed. Invalidating a tag
 * is one write, whatever the number of entries, and works across processes sharing the backend.
 */
export function tagVersionKey(tag: string): string {
  return generationKey(`tag:${tag}`)
}

let tagInvalidations = 0

/** How many times this process has invalidated tags: calls in flight started before a change are not joined. */
export function tagInvalidationCount(): number {
  return tagInvalidations
}

/**
 * Invalidates every entry (memoized result or cached response) carrying any of `tags`, in every
 * process sharing the backend. Resolves once the backend has taken the change; rejects if it
 * did not.
 */
export async function invalidateTags(
  tags: readonly string[],
  options: { backend?: CacheBackend } = {},
): Promise<void> {
  const backend = options.backend ?? getBackend()
  tagInvalidations++
  await renewGenerations(backend, tags.map(tagVersionKey))
}
