import { defineBackend, type MinimalBackend, ttlToMs } from '@cache/core'
import { runConformance } from '@cache/testing'
import { memoryBackend } from '@cache/memory'
import { multiLevel } from '../src/index.js'

type Row = { value: unknown; expiresAt?: number }

/**
 * A shared level outside the chain's process in miniature: one store shared by every namespace,
 * with expiry, like a server would be. A Map per namespace: a `namespace:key` string would let
 * namespace `a` with key `b:x` and namespace `a:b` with key `x` share an entry.
 */
const shared = new Map<string, Map<string, Row>>()
function sharedLevel(namespace: string) {
  const rows = () => {
    let own = shared.get(namespace)
    if (own === undefined) shared.set(namespace, (own = new Map()))
    return own
  }
  const backend: MinimalBackend = {
    name: 'shared-map',
    async get(key) {
      return (await this.getEntry!(key))?.value as never
    },
    async getEntry(key) {
      const entry = rows().get(key)
      if (entry === undefined) return undefined
      if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
        rows().delete(key)
        return undefined
      }
      return entry as never
    },
    async set(key, value, ttl) {
      const ms = ttlToMs(ttl)
      rows().set(key, { value, ...(ms === undefined ? {} : { expiresAt: Date.now() + ms }) })
    },
    async delete(key) {
      return (await this.getEntry!(key)) !== undefined && rows().delete(key)
    },
    async clear() {
      shared.delete(namespace)
    },
    async *keys(options) {
      const wanted = options?.prefix ?? ''
      for (const [key, entry] of [...rows()]) {
        const live = entry.expiresAt === undefined || entry.expiresAt > Date.now()
        if (live && key.startsWith(wanted) && !key.startsWith('__')) yield key
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
