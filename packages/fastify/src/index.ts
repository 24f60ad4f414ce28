export {
  type CachePluginOptions,
  cachePlugin,
  cachePlugin as default,
  type FastifyResponseCache,
  type RouteCacheConfig,
  type RouteCacheOptions,
} from './plugin.js'
export { invalidateResponse, invalidateResponsePrefix, invalidateTags } from '@cache/http'
