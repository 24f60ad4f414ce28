export { RedisBackend, redisBackend } from './backend.js'
export type { RedisBackendOptions } from './options.js'
export {
  type ConnectionSettings,
  type FailFastSettings,
  failFastOptions,
  isRedisClient,
  type RedisClient,
  type RedisClusterConnection,
  type RedisConnection,
} from './client.js'
export { CacheReplicationError } from './replication.js'
export { type ParsedRedisUrl, parseRedisUrl, type RedisHost, redactUrl } from '@cache/core/backend'
