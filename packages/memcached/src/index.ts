export { MemcachedBackend, memcachedBackend } from './backend.js'
export type { MemcachedBackendOptions, MemcachedEvent, MemcachedEventName } from './options.js'
export type { EjectOptions, ServerReport, ServerState } from './pool.js'
