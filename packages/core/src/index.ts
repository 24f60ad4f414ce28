export {
  type CacheBackend,
  type CacheEntry,
  type ListKeysOptions,
  type SetManyItem,
  listKeys,
} from './backend.js'
export { type MinimalBackend, defineBackend, isCacheBackend } from './define-backend.js'
export {
  type BackendName,
  type CacheConfig,
  BACKEND_NAMES,
  ENV_DEFAULTS,
  configFromEnv,
  createBackendFromConfig,
  parseBackendList,
} from './config.js'
export {
  type ConfigureOptions,
  cacheAtomicUpdate,
  cacheDelete,
  cacheFlush,
  cacheGet,
  cacheIncr,
  cacheSet,
  configureCache,
  getBackend,
  resetCache,
} from './default-cache.js'
export { type Duration, formatDuration, parseDuration, ttlToMs } from './durations.js'
export {
  type CacheErrorCode,
  type UnavailableOptions,
  CacheClosedError,
  CacheConfigError,
  CacheConflictError,
  CacheError,
  CacheFunctionTimeoutError,
  CacheKeyError,
  CacheMissingPackageError,
  CacheNotANumberError,
  CacheSerializationError,
  CacheArgumentError,
  CacheTimeoutError,
  CacheUnavailableError,
  CacheUnsupportedError,
  CacheValueTooLargeError,
  isCacheError,
  isUnavailable,
} from './errors.js'
export {
  type GetOrSet,
  type GetOrSetOptions,
  cacheGetOrSet,
  getOrSet,
  invalidateKeys,
} from './get-or-set.js'
export { argumentsKey, stableStringify } from './keys.js'
export { forgetMemoizedNames } from './identity.js'
export type { LoadOptions } from './load-options.js'
export {
  type CacheDecorator,
  type CacheOptions,
  type CacheOptionsDoNotFitMethod,
  type Memoized,
  type MethodName,
  cache,
  cached,
  memoized,
} from './memoize.js'
export { type Serializer, jsonSerializer, v8Serializer } from './serializer.js'
export { type Size, parseSize } from './sizes.js'
export type {
  CacheEvent,
  CacheEventName,
  CacheStats,
  GraceReason,
  MemoEventName,
  MemoStats,
  Observable,
} from './stats.js'
export { invalidateTags } from './tags.js'
export { type CacheLogger, type LoggerOption, setCacheLogger } from './logger.js'
