export { MemcachedBackend, type MemcachedBackendOptions, memcachedBackend } from './backend.js'
