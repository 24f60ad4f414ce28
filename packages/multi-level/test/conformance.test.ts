import { type MapRow, mapBackend, runConformance } from '@cache/testing'
import { memoryBackend } from '@cache/memory'
import { multiLevel } from '../src/index.js'

/**
 * A shared level outside the chain's process in miniature: one Map shared by every namespace,
 * with expiry and listing, like a server would be.
 */
const shared = new Map<string, MapRow>()
const sharedLevel = (namespace: string) =>
  mapBackend({ name: 'shared-map', store: shared, namespace, listsKeys: true })

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
