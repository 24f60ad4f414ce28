export { DiskBackend, type DiskBackendOptions, diskBackend } from './backend.js'
export { defaultCachePath } from './paths.js'
