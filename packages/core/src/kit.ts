/**
 * `@cache/core/backend`: what an author of a backend or of an HTTP adapter builds with — the
 * observer behind stats and events, option checks, codecs, internal keys and generations, key
 * queues, logging helpers. An application needs none of it: its API is `@cache/core`.
 */
export {
  type SyncAccess,
  addToCounter,
  assertIncrement,
  compareAndDelete,
  listPrefix,
} from './backend.js'
export {
  CHAIN,
  chainOf,
  hostOnlyOption,
  isLruCache,
  isMinimalBackend,
  sharedOption,
  toBackend,
} from './define-backend.js'
export {
  type BaseBackendOptions,
  type PackageLoader,
  loadInstalledPackage,
  parseServerList,
} from './config.js'
export { CONFIGURE_OPTION_HINTS, CONFIGURE_OPTION_NAMES, prepareDefaultCache } from './default-cache.js'
export {
  type RetryConflictsOptions,
  CONFLICT,
  retryConflicts,
  waitAtMost,
  withTimeout,
} from './deadlines.js'
export { expiryFor } from './durations.js'
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
  assertItemList,
  assertKey,
  assertKeyList,
  assertNamespace,
  copyItemList,
  copyKeyList,
  describeGiven,
  hashKey,
  keyFromWellFormed,
  namespacedKey,
  wellFormedKey,
} from './keys.js'
export {
  type DurationOptionRules,
  type OptionNames,
  assertKnownOptions,
  booleanOption,
  checkOption,
  countOption,
  durationOption,
  fromMilliseconds,
  isOptionsObject,
  notAnOptionsObject,
  nearestName,
  optionNames,
  optionValue,
  readOptions,
  settingNames,
  renamedOption,
  ttlOption,
} from './option-checks.js'
export { sourceFingerprint } from './identity.js'
export {
  type Codec,
  type CodecOptions,
  assertSerializable,
  assertStructuredClonable,
  createCodec,
  fromTaggedJson,
  MAX_VALUE_DEPTH,
  parseTagged,
  resolveSerializer,
  stringifyTagged,
  toTaggedJson,
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
export { CacheObserver, ObservedBackend, emptyStats, STORE, storeOf, storeToken } from './stats.js'
export { tagList, tagVersionKey } from './tags.js'
export { invalidatedSince, tick } from './flights.js'
export {
  invalidationTargets,
  onInvalidationTargets,
  registerInvalidationTarget,
} from './invalidation-targets.js'
export { IncidentLog, SlowServerWatch, checkLogger, processLogger, warnOnce } from './logger.js'
export { unrefRedisClient } from './unref.js'
