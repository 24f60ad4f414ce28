import type { CacheBackend } from './backend.js'
import { CacheConfigError } from './errors.js'
import { invalidatedHere } from './flights.js'
import { describeGiven } from './keys.js'
import { renewGenerations } from './generations.js'
import { onInvalidationTargets } from './invalidation-targets.js'
import { generationKey } from './internal-keys.js'
import { assertKnownOptions, optionNames } from './option-checks.js'

/**
 * Tag invalidation by generations: an entry remembers the generation of each of its tags when
 * its computation started, and is a miss once any of them has been renewed. Invalidating a tag
 * is one write, whatever the number of entries, and works across processes sharing the backend.
 */
export function tagVersionKey(tag: string): string {
  return generationKey('tag', tag)
}

/**
 * `tags` as given (an option's value, what a `tags` function answered, `invalidateTags`'s
 * argument) when it is a list of strings; otherwise a `CacheConfigError` naming `setting`. A
 * string alone is refused rather than read letter by letter (`'products'` would tag `p`, `r`…,
 * and invalidating `products` would reach nothing).
 */
export function tagList(tags: unknown, setting = 'tags'): readonly string[] {
  if (Array.isArray(tags)) {
    const bad = tags.findIndex((tag) => typeof tag !== 'string')
    if (bad === -1) return tags
    throw new CacheConfigError(
      setting,
      `expected a list of tag strings, item ${bad} is ${describeGiven(tags[bad])}`,
    )
  }
  const fix = typeof tags === 'string' ? ` (write [${JSON.stringify(tags)}])` : ''
  throw new CacheConfigError(setting, `expected a list of tag strings, got ${describeGiven(tags)}${fix}`)
}

/** The options of {@link invalidateTags} and `invalidateKeys`. */
export const INVALIDATE_OPTION_NAMES = optionNames<{ backend?: unknown }>({ backend: true })

/**
 * Invalidates every entry (memoized result or cached response) carrying any of `tags`, in every
 * process sharing the backend. Without `backend`: on the default cache and on every backend a
 * memoized function, a tagged `getOrSet` call or a response cache of this process was given
 * (`cached(fn, { backend })`, `getOrSet(backend, key, fn, { tags })`, `cacheResponse({ backend })`); with it, on that backend only. Resolves once every one has taken
 * the change; rejects if one did not. Calls in flight in this process that carry one of the tags are not joined by later
 * calls, and their results are not stored.
 */
export async function invalidateTags(
  tags: readonly string[],
  options: { backend?: CacheBackend } = {},
): Promise<void> {
  // A misspelt `backend` would invalidate the default cache instead, and resolve.
  assertKnownOptions(options, INVALIDATE_OPTION_NAMES, 'invalidateTags()')
  const keys = tagList(tags).map(tagVersionKey)
  invalidatedHere(keys)
  await onInvalidationTargets(options.backend, (backend) => renewGenerations(backend, keys))
}
