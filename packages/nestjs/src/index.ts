export {
  type CacheModuleAsyncOptions,
  type CacheModuleFactoryResult,
  type CacheModuleOptions,
  CacheModule,
} from './cache-module.js'
export {
  type CacheResponseOptions,
  CacheResponse,
  CacheResponseInterceptor,
} from './cache-response.js'
export { CACHE_BACKEND, CACHE_RESPONSE_OPTIONS, InjectCache } from './tokens.js'
export { invalidateResponse, invalidateResponsePrefix, invalidateTags, noteArrivals } from '@cache/http'
