import { defineBackend, type MinimalBackend, ttlToMs } from '@cache/core'
import { runConformance } from '@cache/testing'
import { memoryBackend } from '@cache/memory'
import { multiLevel } from '../src/index.js'

/**
 * A shared level outside the chain's process in miniature: one Map shared by every namespace,
 * with expiry, like a server would be.
 */
const shared = new Map<string, { value: unknown; expiresAt?: number }>()
function sharedLevel(namespace: string) {
  const prefix = `${namespace}:`
  const backend: MinimalBackend = {
    name: 'shared-map',
    async get(key) {
      return (await this.getEntry!(key))?.value as never
    },
    async getEntry(key) {
      const entry = shared.get(prefix + key)
      if (entry === undefined) return undefined
      if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
        shared.delete(prefix + key)
        return undefined
      }
      return entry as never
    },
    async set(key, value, ttl) {
      const ms = ttlToMs(ttl)
      shared.set(prefix + key, { value, ...(ms === undefined ? {} : { expiresAt: Date.now() + ms }) })
    },
    async delete(key) {
      return (await this.getEntry!(key)) !== undefined && shared.delete(prefix + key)
    },
    async clear() {
      for (const key of [...shared.keys()]) if (key.startsWith(prefix)) shared.delete(key)
    },
    async *keys(options) {
      const wanted = prefix + (options?.prefix ?? '')
      for (const [key, entry] of [...shared.entries()]) {
        const live = entry.expiresAt === undefined || entry.expiresAt > Date.now()
        if (live && key.startsWith(wanted) && !key.startsWith(`${prefix}__`)) yield key.slice(prefix.length)
      }
    },
  }
  return defineBackend(backend)
}

runConformance('multi-level (memory, memory)', {
  create: ({ namespace }) => multiLevel(memoryBackend({ namespace }), memoryBackend({ namespace })),
  serializes: false,
  ttlMs: 100,
  sharesStore: false,
})

runConformance('multi-level (memory, shared map)', {
  create: ({ namespace }) => multiLevel(memoryBackend({ namespace }), sharedLevel(namespace)),
  serializes: false,
  ttlMs: 100,
})

runConformance('multi-level (memory, memory, memory with clone)', {
  create: ({ namespace }) =>
    multiLevel({
      levels: [
        memoryBackend({ namespace }),
        memoryBackend({ namespace }),
        memoryBackend({ namespace, clone: true }),
      ],
    }),
  serializes: false,
  ttlMs: 100,
  sharesStore: false,
})
