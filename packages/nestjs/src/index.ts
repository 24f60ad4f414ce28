export {
  type CacheModuleAsyncOptions,
  type CacheModuleOptions,
  CacheModule,
} from './cache-module.js'
export {
  type CacheResponseOptions,
  CACHE_RESPONSE_OPTIONS,
  CacheResponse,
  CacheResponseInterceptor,
} from './cache-response.js'
export { CACHE_BACKEND, InjectCache } from './tokens.js'
export { invalidateResponse, invalidateResponsePrefix, invalidateTags } from '@cache/http'
