import { Inject } from '@nestjs/common'

/**
 * The injection token of the backend {@link CacheModule} provides: `@Inject(CACHE_BACKEND)`, or
 * {@link InjectCache}. The counterpart of `CACHE_MANAGER` in `@nestjs/cache-manager`.
 */
export const CACHE_BACKEND = Symbol.for('@cache/nestjs:backend')

/** The metadata key under which `@CacheResponse` keeps its options on a handler or controller. */
export const CACHE_RESPONSE_OPTIONS = '@cache/nestjs:cache-response'

/**
 * Injects the module's `CacheBackend` into a constructor parameter or property:
 * `constructor(@InjectCache() private readonly cache: CacheBackend) {}`.
 */
export function InjectCache(): PropertyDecorator & ParameterDecorator {
  return Inject(CACHE_BACKEND)
}
