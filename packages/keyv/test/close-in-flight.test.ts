import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type CacheBackend, CacheClosedError, type CacheEvent } from '@cache/core'
import { type RedisServer, startRedis } from '@cache/test-servers'
import KeyvRedis from '@keyv/redis'
import KeyvSqlite from '@keyv/sqlite'
import { Keyv } from 'keyv'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { keyvBackend } from '../src/index.js'

/**
 * With `closeStore: true`, close() disconnects the store. A call issued before close() has
 * already reached the store: it settles with the store's real answer, never with the error of a
 * handle closed under it (which would be counted and emitted as an outage).
 */
let redis: RedisServer
let dir: string
beforeAll(async () => {
  redis = await startRedis()
  dir = mkdtempSync(join(tmpdir(), 'keyv-close-'))
})
afterAll(async () => {
  await redis?.stop()
  rmSync(dir, { recursive: true, force: true })
})

const stores = [
  ['@keyv/sqlite on a file', () => new KeyvSqlite(`sqlite://${join(dir, 'cache.sqlite')}`)],
  ['@keyv/redis on a real Redis', () => new KeyvRedis(redis.url)],
  [
    'a Keyv instance over @keyv/sqlite',
    () => new Keyv({ store: new KeyvSqlite(`sqlite://${join(dir, 'keyv.sqlite')}`), namespace: 'inst' }),
  ],
] as const

const calls: [string, (backend: CacheBackend) => Promise<unknown>, unknown, Record<string, unknown>][] = [
  ['set', (b) => b.set('k', 'new'), undefined, { k: 'new', d: 'old' }],
  ['delete', (b) => b.delete('d'), true, { k: 'old', d: undefined }],
  ['setMany', (b) => b.setMany([{ key: 'k', value: 'new' }]), undefined, { k: 'new', d: 'old' }],
  ['deleteMany', (b) => b.deleteMany(['d', 'none']), 1, { k: 'old', d: undefined }],
  ['get', (b) => b.get('k'), 'old', { k: 'old', d: 'old' }],
  ['getMany', (b) => b.getMany(['k', 'none']), ['old', undefined], { k: 'old', d: 'old' }],
  ['has', (b) => b.has('k'), true, { k: 'old', d: 'old' }],
  ['clear', (b) => b.clear(), undefined, { k: undefined, d: undefined }],
]

describe('keyv with closeStore: calls issued before close() settle with their real result', () => {
  describe.each(stores)('on %s', (_name, open) => {
    it.each(calls)('%s', async (_call, run, answer, after) => {
      const seed = keyvBackend(open(), { namespace: 'app', closeStore: true })
      await seed.clear()
      await seed.setMany([
        { key: 'k', value: 'old' },
        { key: 'd', value: 'old' },
      ])
      await seed.close()
      const backend = keyvBackend(open(), { namespace: 'app', closeStore: true })
      const events: CacheEvent[] = []
      backend.on('error', (event) => events.push(event))
      const outcome = run(backend).then(
        (value) => ({ value }),
        (error: Error) => ({ error: `${error.name}: ${error.message}` }),
      )
      await backend.close()
      expect(await outcome).toEqual({ value: answer })
      expect(backend.stats.errors).toBe(0)
      expect(events).toEqual([])
      await expect(backend.get('k')).rejects.toBeInstanceOf(CacheClosedError)
      const check = keyvBackend(open(), { namespace: 'app', closeStore: true })
      expect({ k: await check.get('k'), d: await check.get('d') }).toEqual(after)
      await check.close()
    })
  })
})
