export { MemoryBackend, type MemoryBackendOptions, memoryBackend } from './backend.js'
export { estimateSize } from './size.js'
