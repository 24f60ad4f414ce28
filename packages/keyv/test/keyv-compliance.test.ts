import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CacheBackend } from '@cache/core'
import { diskBackend } from '@cache/disk'
import { memcachedBackend } from '@cache/memcached'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type MemcachedServer, type RedisServer, startMemcached, startRedis } from '@cache/test-servers'
import keyvTestSuite, { keyvIteratorTests } from '@keyv/test-suite'
import { Keyv } from 'keyv'
import * as vitest from 'vitest'
import { type BackendForNamespace, toKeyvStore } from '../src/index.js'

/*
 * Keyv's own compliance suite, run against toKeyvStore() of every @cache backend. The suite makes
 * a new adapter for every Keyv it builds; like an application with one backend per Keyv
 * namespace, all of them share one backend per namespace, on one server (one SQLite file).
 */

let redis: RedisServer
let memcached: MemcachedServer
let dir: string
const opened: CacheBackend[] = []

vitest.beforeAll(async () => {
  ;[redis, memcached] = await Promise.all([startRedis(), startMemcached()])
  dir = mkdtempSync(join(tmpdir(), 'cache-keyv-compliance-'))
})
vitest.afterAll(async () => {
  await Promise.all(opened.map((backend) => backend.close()))
  await Promise.all([redis?.stop(), memcached?.stop()])
  if (dir) rmSync(dir, { recursive: true, force: true })
})

/** Keeps this run's keys apart from anything else on a server given by REDIS_URL / MEMCACHED_SERVERS. */
const run = `compliance-${process.pid}-${Date.now().toString(36)}`

/** One backend per Keyv namespace, shared by every adapter (as one server is). */
function onePerNamespace(create: (namespace: string) => CacheBackend): BackendForNamespace {
  const backends = new Map<string, CacheBackend>()
  return (namespace) => {
    const name = `${run}-${namespace ?? 'none'}`
    let backend = backends.get(name)
    if (!backend) {
      backend = create(name)
      backends.set(name, backend)
      opened.push(backend)
    }
    return backend
  }
}

const backends: Record<string, BackendForNamespace> = {
  memory: onePerNamespace((namespace) => memoryBackend({ namespace })),
  disk: onePerNamespace((namespace) => diskBackend({ path: dir, namespace })),
  redis: onePerNamespace((namespace) => redisBackend(redis.url, { namespace })),
  memcached: onePerNamespace((namespace) => memcachedBackend(memcached.server, { namespace })),
}

/** Backends that list keys: Keyv offers `iterator()` on them, and the suite's iterator cases run. */
const listing = new Set(['memory', 'disk', 'redis'])

for (const [name, forNamespace] of Object.entries(backends)) {
  vitest.describe(`@keyv/test-suite on toKeyvStore(${name})`, () => {
    keyvTestSuite(vitest, Keyv, () => toKeyvStore(forNamespace, { closeOnDisconnect: false }))
    if (listing.has(name))
      keyvIteratorTests(vitest, Keyv, () => toKeyvStore(forNamespace, { closeOnDisconnect: false }))
  })
}

vitest.describe('Keyv iterator() on toKeyvStore()', () => {
  vitest.it('is offered for a backend that lists keys, and not for memcached, which cannot', () => {
    const store = (name: string) => toKeyvStore(backends[name]!, { closeOnDisconnect: false })
    for (const name of listing)
      vitest.expect(typeof new Keyv({ store: store(name) }).iterator).toBe('function')
    vitest.expect(new Keyv({ store: store('memcached') }).iterator).toBeUndefined()
  })
})
