/**
 * Every backend under test, built the way a user builds it, with what each one promises about
 * values it cannot serialize. Backends that leave the process serialize (functions, symbols,
 * class instances and cycles throw); memory keeps references unless `clone` is on.
 */
import type { CacheBackend } from '@cache/core'
import { memoryBackend } from '@cache/memory'

export interface BackendUnderTest {
  name: string
  /** `reference`: stores the object itself. `serialize`: stores bytes through core's codec. */
  storage: 'reference' | 'clone' | 'serialize'
  /** Largest value the backend accepts, when it has a hard limit (memcached: 1 MB). */
  maxValueBytes?: number
  create(): Promise<CacheBackend>
  /** Stops servers and removes files this entry started; called once after its tests. */
  cleanup?(): Promise<void>
}

export function backendsUnderTest(): BackendUnderTest[] {
  return [
    { name: 'memory', storage: 'reference', create: async () => memoryBackend({ maxKeys: 1000 }) },
    {
      name: 'memory (clone)',
      storage: 'clone',
      create: async () => memoryBackend({ maxKeys: 1000, clone: true }),
    },
  ]
}
