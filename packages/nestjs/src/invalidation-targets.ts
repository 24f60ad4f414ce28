import type { CacheBackend, MinimalBackend } from '@cache/core'
import { registerInvalidationTarget, toBackend } from '@cache/core/backend'

/**
 * `invalidateTags()` and the response invalidations called without `backend` reach the default
 * cache and the backends registered as invalidation targets. A response cache registers its own
 * backend when it is built, which for a Nest handler is on its first request: a process that never
 * served the handler (a replica taking the write, one just restarted) would miss its entries.
 * So the backends are registered here when the application is defined instead.
 */

/** The backend each `@CacheResponse` options object names, registered (held as long as the options). */
const handlerTargets = new WeakMap<object, CacheBackend>()

/**
 * Registers the `backend` of a `@CacheResponse`'s options, when the controller is defined. A
 * backend of `get`/`set`/`delete` alone is wrapped here, and the wrapper is kept alive with the
 * options (the handler's metadata), as the registry holds its targets weakly.
 */
export function registerHandlerBackend(options: { backend?: CacheBackend | MinimalBackend }): void {
  if (options.backend === undefined || handlerTargets.has(options)) return
  const target = toBackend(options.backend)
  handlerTargets.set(options, target)
  registerInvalidationTarget(target)
}

/**
 * A `CacheModule`'s backend, registered when the module is built: the default cache is the last
 * module's, and an earlier application's handlers keep storing in their own module's backend.
 */
export function moduleBackendTarget(backend: CacheBackend): CacheBackend {
  registerInvalidationTarget(backend)
  return backend
}
