import type { CacheBackend } from './backend.js'
import { getBackend } from './default-cache.js'
import { isCacheError } from './errors.js'

/*
 * The backends an invalidation without a `backend` option reaches. Tags and response URLs are
 * not tied to one backend: `cached(fn, { backend, tags })` and a response cache given its own
 * `backend` store entries outside the default cache, and `invalidateTags(['products'])` must still
 * reach them. So every cache built with its own backend registers it here, and such an
 * invalidation renews its generations on the default cache and on every registered backend that
 * is still alive. Held on `globalThis`, like the default cache, so that every copy of this
 * package in the process shares one list.
 */
const STATE = Symbol.for('@cache/core:invalidation-targets@1')
const state = ((globalThis as Record<symbol, unknown>)[STATE] ??= {
  registered: new Set<WeakRef<CacheBackend>>(),
  known: new WeakSet<CacheBackend>(),
}) as { registered: Set<WeakRef<CacheBackend>>; known: WeakSet<CacheBackend> }
const { registered, known } = state

/**
 * Registers a backend that a cache (a memoized function, a response cache) was given explicitly,
 * so that `invalidateTags()` and the response invalidations called without a `backend` reach it.
 * Idempotent; holds the backend weakly. For backend and adapter authors.
 */
export function registerInvalidationTarget(backend: CacheBackend): void {
  if (known.has(backend)) return
  known.add(backend)
  registered.add(new WeakRef(backend))
}

/**
 * Where an invalidation goes: `[backend]` when one is given; otherwise the default cache and every
 * registered backend still alive, each once.
 */
export function invalidationTargets(backend?: CacheBackend): CacheBackend[] {
  if (backend !== undefined) return [backend]
  const all = new Set<CacheBackend>([getBackend()])
  for (const ref of registered) {
    const target = ref.deref()
    if (target === undefined) registered.delete(ref)
    else all.add(target)
  }
  return [...all]
}

/**
 * Runs `renew` on every target of an invalidation, together. Resolves once each has taken it;
 * rejects with the first failure. A registered backend that was closed since is dropped, not a
 * failure: nothing can read its entries any more.
 */
export async function onInvalidationTargets(
  backend: CacheBackend | undefined,
  renew: (target: CacheBackend) => Promise<unknown>,
): Promise<void> {
  const list = invalidationTargets(backend)
  const explicit = backend !== undefined
  const primary = explicit ? backend : list[0]
  await Promise.all(
    list.map(async (target) => {
      try {
        await renew(target)
      } catch (error) {
        if (target !== primary && isCacheError(error) && error.code === 'CACHE_CLOSED') {
          forget(target)
          return
        }
        throw error
      }
    }),
  )
}

function forget(backend: CacheBackend): void {
  for (const ref of registered) if (ref.deref() === backend) registered.delete(ref)
}
