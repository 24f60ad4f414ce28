import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type CacheBackend, type CacheEntry, defineBackend } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { type RedisServer, startRedis } from '@cache/test-servers'
import KeyvRedis from '@keyv/redis'
import KeyvSqlite from '@keyv/sqlite'
import { Keyv } from 'keyv'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { keyvBackend } from '../src/index.js'

/**
 * `stats` mean the same on every backend: a read of a stored `undefined` is a hit (the key is
 * there), whichever read finds it (get, getEntry, getMany), as on memory.
 */
let redis: RedisServer
let dir: string
beforeAll(async () => {
  redis = await startRedis()
  dir = mkdtempSync(join(tmpdir(), 'keyv-stats-'))
})
afterAll(async () => {
  await redis?.stop()
  rmSync(dir, { recursive: true, force: true })
})

/** A store with a native getEntry (and no getMany): defineBackend reads through it. */
function entryStore() {
  const rows = new Map<string, CacheEntry>()
  return defineBackend({
    name: 'rows',
    get: (key: string) => rows.get(key)?.value,
    getEntry: async <T>(key: string) => rows.get(key) as CacheEntry<T> | undefined,
    set: (key: string, value: unknown) => void rows.set(key, { value }),
    delete: (key: string) => rows.delete(key),
    clear: () => rows.clear(),
  })
}

const backends: [string, () => CacheBackend][] = [
  ['keyv over a Map', () => keyvBackend(new Map(), { namespace: 'stats' })],
  [
    'keyv over @keyv/sqlite',
    () =>
      keyvBackend(new KeyvSqlite(`sqlite://${join(dir, 'c.sqlite')}`), {
        namespace: 'stats',
        closeStore: true,
      }),
  ],
  [
    'keyv over @keyv/redis',
    () => keyvBackend(new KeyvRedis(redis.url), { namespace: 'stats', closeStore: true }),
  ],
  ['keyv over a Keyv instance', () => keyvBackend(new Keyv({ store: new Map(), namespace: 'stats' }))],
  ['defineBackend over a store with getEntry', entryStore],
]

async function readStats(backend: CacheBackend) {
  await backend.clear()
  await backend.set('u', undefined)
  await backend.set('n', null)
  await backend.set('v', 1)
  const answers = [
    await backend.get('u'),
    await backend.get('n'),
    await backend.get('none'),
    await backend.getEntry('u'),
    await backend.getMany(['u', 'n', 'v', 'none']),
    await backend.has('u'),
  ]
  const { hits, misses, sets, deletes, errors } = backend.stats!
  await backend.close()
  return { answers, stats: { hits, misses, sets, deletes, errors } }
}

describe('stats of the same reads on memory and on keyv', () => {
  it.each(backends)('%s counts a stored undefined as a hit, as memory does', async (_name, make) => {
    const expected = await readStats(memoryBackend())
    expect(expected.stats).toEqual({ hits: 6, misses: 2, sets: 3, deletes: 0, errors: 0 })
    expect(await readStats(make())).toEqual(expected)
  })
})
