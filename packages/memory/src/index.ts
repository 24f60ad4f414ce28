export { MemoryBackend, memoryBackend } from './backend.js'
export type { MemoryBackendOptions } from './options.js'
export { estimateSize } from './size.js'
