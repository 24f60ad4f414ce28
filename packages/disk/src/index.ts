export { DiskBackend, diskBackend } from './backend.js'
export type { DiskBackendOptions } from './options.js'
export { defaultCachePath } from './paths.js'
