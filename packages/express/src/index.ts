export { cacheResponse, cacheResponse as cache, type ResponseCacheHandler } from './cache-response.js'
export type { CacheResponseOptions } from './options.js'
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
