export { HttpCache, storedValue } from './http-cache.js'
export type {
  BypassResult,
  HeadAdvice,
  HeaderList,
  HitResult,
  HttpRequestView,
  LookupContext,
  LookupResult,
  MissResult,
  NotModifiedResult,
  Refresh,
  ResponseHead,
  ResponseRecorder,
} from './view.js'
export {
  HTTP_CACHE_OPTION_NAMES,
  type HttpCacheOptions,
  type HttpCacheSettings,
  type KnownOptions,
  prefixVersionKey,
  prefixVersionKeys,
  resolveHttpCacheOptions,
  resolveSkippedOnHits,
  SKIPPED_MIDDLEWARE_OPTION_NAMES,
  type SkippedMiddlewareOptions,
  urlVersionKey,
} from './options.js'
export { optionsArgument } from './option-arguments.js'
export { type InvalidateOptions, invalidateResponse, invalidateResponsePrefix } from './invalidate.js'
export { invalidateTags } from '@cache/core'
export type { ResponseIndexEntry, ResponseIndexOptions } from './response-index.js'
export { type StoredResponse, isStoredResponse, unstorableReason } from './stored-response.js'
export { responseCachingEnabled, responseCachingFromEnv, setResponseCaching } from './switch.js'
export {
  type RequestKey,
  protohostOf,
  requestKey,
  hostKeyPart,
  lineValue,
  sentHostPart,
  siteKey,
  splitAuthority,
  urlKeys,
} from './request-key.js'
export { seenSites } from './sites.js'
export {
  type ExpressQueryRequest,
  type ExpressRoutedRequest,
  expressArrivedAsRouted,
  expressQueryParserBypass,
  expressQueryReplaced,
  expressRoutedAsSent,
  frontSeesAsSent,
  isServerListener,
  noteFrontOf,
  refreshRefusal,
} from './express-routing.js'
export { offerCacheControl, parseCacheControl } from './cache-control.js'
export {
  answerFromResult,
  CONDITIONAL_REQUEST_HEADERS,
  headAsWritten,
  listeningAt,
  nodeRequestView,
  recordNodeResponse,
  refreshRequestHeaders,
  setRefreshHeaders,
} from './node.js'
export {
  DiscardingSocket,
  type InProcessRefresh,
  type RefreshEntry,
  refreshInProcess,
} from './node-refresh.js'
export {
  describeFunction,
  fastifyInstanceOptions,
  HANDLER_ERROR,
  type HandlerErrorReason,
  onHandlerError,
} from './adapter-kit.js'
export { type Arrival, arrivalOf, emitsUntouched, noteArrivals, notesArrivals } from './arrivals.js'
export {
  type FastifyTargetNote,
  fastifyHostKeyPart,
  fastifyParsesQueriesItself,
  fastifyQueryReplaced,
  fastifyRewrite,
  fastifyHookNoted,
  fastifyTarget,
  fastifyArrivedLines,
  injectRefresh,
  fastifyRefreshId,
  takeFastifyRefresh,
  lendFastifyConnection,
  refreshArrivedLines,
  noteFastifyArrivals,
  noteFastifyQueryBeforeValidation,
  noteFastifyTargets,
  trackFastifyReplyHeaders,
} from './fastify-requests.js'
export {
  declareFastifyAppPrefixes,
  fastifyServerCallsAlone,
  fastifyServerShared,
  fastifySharedServerBypass,
  noteFastifyApp,
  noteFastifyAppPrefix,
} from './fastify-servers.js'
