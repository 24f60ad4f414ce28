export {
  type CacheBackend,
  type CacheEntry,
  type ListKeysOptions,
  type MinimalBackend,
  type SetManyItem,
  type SyncAccess,
  assertIncrement,
  compareAndDelete,
  defineBackend,
  isCacheBackend,
  isMinimalBackend,
  listKeys,
  listPrefix,
  toBackend,
} from './backend.js'
export {
  type BackendName,
  type BaseBackendOptions,
  type CacheConfig,
  type PackageLoader,
  BACKEND_NAMES,
  ENV_DEFAULTS,
  configFromEnv,
  createBackendFromConfig,
  loadInstalledPackage,
  parseBackendList,
  parseServerList,
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
  prepareDefaultCache,
  resetCache,
} from './default-cache.js'
export { type Duration, expiryFor, formatDuration, parseDuration, ttlToMs } from './durations.js'
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
export { KeyedQueue } from './key-queue.js'
export {
  currentGenerations,
  currentGenerationsSync,
  isGeneration,
  newGeneration,
  renewGenerations,
  sameGenerations,
} from './generations.js'
export {
  assertMemoNamespace,
  GENERATION_PREFIX,
  generationKey,
  INTERNAL_PREFIX,
  isGenerationKey,
  isInternalKey,
  isListedKey,
  keySegment,
  lockKey,
} from './internal-keys.js'
export {
  argumentsKey,
  assertKey,
  assertNamespace,
  hashKey,
  keyFromWellFormed,
  namespacedKey,
  stableStringify,
  wellFormedKey,
} from './keys.js'
export {
  type DurationOptionRules,
  checkOption,
  countOption,
  durationOption,
  fromMilliseconds,
  renamedOption,
  ttlOption,
} from './option-checks.js'
export { forgetMemoizedNames, sourceFingerprint } from './identity.js'
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
export {
  type Codec,
  type CodecOptions,
  type Serializer,
  assertSerializable,
  assertStructuredClonable,
  createCodec,
  fromTaggedJson,
  jsonSerializer,
  MAX_VALUE_DEPTH,
  parseTagged,
  resolveSerializer,
  stringifyTagged,
  toTaggedJson,
  v8Serializer,
} from './serializer.js'
export {
  type ParsedRedisUrl,
  type RedisHost,
  type RedisUrlQuery,
  type SentinelClientOptions,
  parseRedisUrl,
  redactUrl,
  sentinelConnection,
} from './redis-url.js'
export { type Size, parseSize } from './sizes.js'
export {
  type CacheEvent,
  type CacheEventName,
  type CacheStats,
  type GraceReason,
  type MemoEventName,
  type MemoStats,
  type Observable,
  CacheObserver,
  ObservedBackend,
  emptyStats,
} from './stats.js'
export { invalidateTags, tagVersionKey } from './tags.js'
export {
  invalidationTargets,
  onInvalidationTargets,
  registerInvalidationTarget,
} from './invalidation-targets.js'
export {
  type CacheLogger,
  type LoggerOption,
  IncidentLog,
  SlowServerWatch,
  checkLogger,
  processLogger,
  setCacheLogger,
  warnOnce,
} from './logger.js'
export { unrefRedisClient } from './unref.js'
