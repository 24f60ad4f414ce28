import { Inject } from '@nestjs/common'

/**
 * The injection token of the backend {@link CacheModule} provides: `@Inject(CACHE_BACKEND)`, or
 * {@link InjectCache}. The counterpart of `CACHE_MANAGER` in `@nestjs/cache-manager`. Its
 * description says how a module gets it: Nest prints it when a module that does not import
 * `CacheModule` injects it (the mistake `isGlobal` returned by a `forRootAsync` factory makes:
 * Nest fails there before the factory runs).
 */
export const CACHE_BACKEND = Symbol.for(
  '@cache/nestjs:backend, provided by CacheModule to the modules that import it, or to every module with forRoot({ isGlobal: true }) or forRootAsync({ isGlobal: true, useFactory }) (isGlobal beside useFactory, not in what it returns)',
)

/** The metadata key under which `@CacheResponse` keeps its options on a handler or controller. */
export const CACHE_RESPONSE_OPTIONS = '@cache/nestjs:cache-response'

/**
 * Injects the module's `CacheBackend` into a constructor parameter or property:
 * `constructor(@InjectCache() private readonly cache: CacheBackend) {}`.
 */
export function InjectCache(): PropertyDecorator & ParameterDecorator {
  return Inject(CACHE_BACKEND)
}
