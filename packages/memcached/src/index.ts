export {
  MemcachedBackend,
  type MemcachedBackendOptions,
  type MemcachedEvent,
  type MemcachedEventName,
  memcachedBackend,
} from './backend.js'
export type { EjectOptions, ServerReport, ServerState } from './pool.js'
