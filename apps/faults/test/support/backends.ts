/**
 * Every backend under test, built the way a user builds it, with what each one promises about
 * values it cannot serialize. Backends that leave the process serialize (functions, symbols,
 * class instances and cycles throw); memory refuses the same values outside production, and
 * keeps references in production (`checkValues: false`) unless `clone` is on.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CacheBackend } from '@cache/core'
import { diskBackend } from '@cache/disk'
import { memcachedBackend } from '@cache/memcached'
import { memoryBackend } from '@cache/memory'
import { multiLevel } from '@cache/multi-level'
import { redisBackend } from '@cache/redis'
import { type MemcachedServer, type RedisServer, startMemcached, startRedis } from '@cache/test-servers'

export interface BackendUnderTest {
  name: string
  /** `reference`: stores the object itself. `clone`: a structured clone. `serialize`: bytes through core's codec. */
  storage: 'reference' | 'clone' | 'serialize'
  /** Largest value the backend accepts, when it has a hard limit (memcached: 1 MB). */
  maxValueBytes?: number
  /** The directory of a disk cache: keys must never become paths outside it. */
  directory?: string
  create(): Promise<CacheBackend>
  /** Stops servers and removes files this entry started; called once after its tests. */
  cleanup?(): Promise<void>
}

const MEMCACHED_LIMIT = 1024 * 1024 - 512

/** One redis-server and one memcached for a test file, started on first use. */
export class SharedServers {
  private redis?: Promise<RedisServer>
  private memcached?: Promise<MemcachedServer>
  redisUrl = async () => (await (this.redis ??= startRedis())).url
  memcachedServer = async () => (await (this.memcached ??= startMemcached())).server
  async stop(): Promise<void> {
    await Promise.all([this.redis?.then((s) => s.stop()), this.memcached?.then((s) => s.stop())])
  }
}

export function backendsUnderTest(servers: SharedServers): BackendUnderTest[] {
  const diskRoot = mkdtempSync(join(tmpdir(), 'cache-faults-disk-'))
  const diskDir = join(diskRoot, 'a', 'b', 'cache')
  const ns = `faults${process.pid}`
  return [
    // Outside production memory refuses what the serializing backends refuse, the same way.
    { name: 'memory', storage: 'serialize', create: async () => memoryBackend({ maxKeys: 1000 }) },
    {
      name: 'memory (checkValues: false, as in production)',
      storage: 'reference',
      create: async () => memoryBackend({ maxKeys: 1000, checkValues: false }),
    },
    {
      name: 'memory (clone)',
      storage: 'clone',
      create: async () => memoryBackend({ maxKeys: 1000, clone: true }),
    },
    {
      name: 'disk',
      storage: 'serialize',
      directory: diskDir,
      create: async () => diskBackend({ path: diskDir, namespace: ns }),
      cleanup: async () => rmSync(diskRoot, { recursive: true, force: true }),
    },
    {
      name: 'redis',
      storage: 'serialize',
      create: async () => redisBackend(await servers.redisUrl(), { namespace: `${ns}-r` }),
    },
    {
      name: 'memcached',
      storage: 'serialize',
      maxValueBytes: MEMCACHED_LIMIT,
      create: async () => memcachedBackend(await servers.memcachedServer(), { namespace: `${ns}-m` }),
    },
    {
      name: 'multi-level (memory → redis)',
      storage: 'serialize',
      create: async () =>
        multiLevel(
          memoryBackend({ maxKeys: 1000 }),
          redisBackend(await servers.redisUrl(), { namespace: `${ns}-mr` }),
        ),
    },
    {
      name: 'multi-level (memory → memcached)',
      storage: 'serialize',
      maxValueBytes: MEMCACHED_LIMIT,
      create: async () =>
        multiLevel(
          memoryBackend({ maxKeys: 1000 }),
          memcachedBackend(await servers.memcachedServer(), { namespace: `${ns}-mm` }),
        ),
    },
  ]
}
