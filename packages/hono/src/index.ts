export {
  type CacheResponseOptions,
  cacheResponse,
  cacheResponse as cache,
  type ResponseCacheMiddleware,
} from './cache-response.js'
export {
  type InvalidateOptions,
  invalidateResponse,
  invalidateResponsePrefix,
  invalidateTags,
  noteArrivals,
  type ResponseIndexEntry,
  type ResponseIndexOptions,
  type StoredResponse,
  setResponseCaching,
} from '@cache/http'
