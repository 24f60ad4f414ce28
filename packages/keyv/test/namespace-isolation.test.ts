import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CacheConfigError, listKeys } from '@cache/core'
import { startRedis } from '@cache/test-servers'
import KeyvRedis from '@keyv/redis'
import KeyvSqlite from '@keyv/sqlite'
import { Keyv } from 'keyv'
import { describe, expect, it } from 'vitest'
import { keyvBackend } from '../src/index.js'

/**
 * Adapters clear a namespace by matching its prefix: Redis with the glob `namespace:*`, SQLite
 * with `LIKE 'namespace:%'`, which ignores ASCII case and reads `_` and `%` as wildcards. However
 * the namespaces are spelled, clearing one must leave every other one's entries.
 */
const namespaces = [
  'app',
  'App',
  'APP',
  'user_1',
  'userX1',
  'user%1',
  'a',
  'a:b',
  'a%3Ab',
  'a~003ab',
  'a*',
  'a?',
  'a[b]',
  'a.b',
  'aXb',
  'a\\b',
  'a-b',
  'é',
  'É',
  'e',
]
// Keys that spell (part of) another namespace's prefix as the store writes it.
const keys = ['k', 'x3Ab:y', 'b:x', '~003ab:y', '_', '%']

const stores = [
  [
    'a Map',
    async () => {
      const map = new Map()
      return { store: () => map, stop: async () => {} }
    },
  ],
  [
    '@keyv/redis on a real Redis',
    async () => {
      const redis = await startRedis()
      return { store: () => new KeyvRedis(redis.url), stop: () => redis.stop() }
    },
  ],
  [
    '@keyv/sqlite on a file',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'keyv-sqlite-'))
      const file = join(dir, 'cache.sqlite')
      return {
        store: () => new KeyvSqlite(`sqlite://${file}`),
        stop: async () => rmSync(dir, { recursive: true, force: true }),
      }
    },
  ],
] as const

describe('keyv: clear() of one namespace never reaches another, whatever the store matches with', () => {
  it.each(stores)('on %s', async (_name, open) => {
    const { store, stop } = await open()
    const backends = namespaces.map((namespace) => keyvBackend(store(), { namespace, closeStore: true }))
    try {
      for (const [i, backend] of backends.entries())
        await backend.setMany(keys.map((key) => ({ key, value: `${namespaces[i]} ${key}` })))
      const cleared = new Set<number>()
      const wrong: string[] = []
      for (const [i, backend] of backends.entries()) {
        await backend.clear()
        cleared.add(i)
        for (const [j, other] of backends.entries()) {
          const values = await other.getMany(keys)
          const expected = keys.map((key) => (cleared.has(j) ? undefined : `${namespaces[j]} ${key}`))
          if (JSON.stringify(values) !== JSON.stringify(expected))
            wrong.push(
              `clear() of ${JSON.stringify(namespaces[i])} left ${JSON.stringify(namespaces[j])} with ${JSON.stringify(values)}`,
            )
        }
        if (wrong.length > 0) break
      }
      expect(wrong).toEqual([])
    } finally {
      await Promise.all(backends.map((backend) => backend.close()))
      await stop()
    }
  })

  it('lists, on @keyv/sqlite, the keys of its own namespace only: not those of a namespace that differs in case', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'keyv-sqlite-'))
    const file = join(dir, 'cache.sqlite')
    const upper = keyvBackend(new KeyvSqlite(`sqlite://${file}`), { namespace: 'App', closeStore: true })
    const lower = keyvBackend(new KeyvSqlite(`sqlite://${file}`), { namespace: 'app', closeStore: true })
    try {
      await upper.set('mine', 1)
      await lower.set('theirs', 2)
      const listed: string[] = []
      for await (const key of listKeys(upper)) listed.push(key)
      expect(listed).toEqual(['mine'])
    } finally {
      await Promise.all([upper.close(), lower.close()])
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('keyv: no namespace means the whole store, which clear() never empties', () => {
  it.each(stores)(
    "refuses namespace '' at construction with CacheConfigError naming namespace (on %s), so nothing reaches a store-wide clear",
    async (_name, open) => {
      const { store, stop } = await open()
      const app = keyvBackend(store(), { namespace: 'app', closeStore: true })
      const bare = store()
      try {
        await app.set('user:1', 'Ada')
        let thrown: unknown
        try {
          const empty = keyvBackend(bare, { namespace: '' })
          await empty.set('x', 1)
          await empty.clear()
        } catch (error) {
          thrown = error
        }
        expect(await app.get('user:1')).toBe('Ada')
        expect(thrown).toBeInstanceOf(CacheConfigError)
        expect((thrown as CacheConfigError).setting).toBe('namespace')
      } finally {
        await app.close()
        await (bare as { disconnect?: () => Promise<void> }).disconnect?.()
        await stop()
      }
    },
  )

  it('refuses every namespace that is not a string, naming namespace; undefined is the default keyv', () => {
    for (const namespace of [0, 1, true, {}, [], Symbol('ns')])
      expect(() => keyvBackend(new Map(), { namespace: namespace as never })).toThrow(CacheConfigError)
    expect(keyvBackend(new Map(), { namespace: undefined }).namespace).toBe('keyv')
    expect(keyvBackend(new Map()).namespace).toBe('keyv')
  })

  it.each(stores)(
    'refuses clear() of a Keyv instance without a namespace with CacheConfigError (on %s): its keys are the whole store',
    async (_name, open) => {
      const { store, stop } = await open()
      const app = keyvBackend(store(), { namespace: 'app', closeStore: true })
      const keyvs = [
        new Keyv({ store: store(), namespace: '' }),
        new Keyv({ store: store(), namespace: undefined }),
      ]
      const bare = keyvs.map((keyv) => keyvBackend(keyv, { closeStore: true }))
      try {
        await app.set('user:1', 'Ada')
        for (const backend of bare) {
          await backend.set('mine', 1)
          const events: unknown[] = []
          backend.on('error', (event) => events.push(event))
          await expect(backend.clear()).rejects.toMatchObject({
            name: 'CacheConfigError',
            setting: 'namespace',
          })
          expect(backend.stats.errors).toBe(0)
          expect(events).toEqual([])
          expect(await backend.get('mine')).toBe(1)
        }
        expect(await app.get('user:1')).toBe('Ada')
      } finally {
        await Promise.all([app.close(), ...bare.map((backend) => backend.close())])
        await stop()
      }
    },
  )
})
