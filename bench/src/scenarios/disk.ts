import { join } from 'node:path'
import type { Contestant, Scenario } from '../contestant.js'
import { TTL_MS, TTL_SECONDS } from '../data.js'

const RW = ['get-hit', 'set', 'mixed'] as const

const contestants: Contestant[] = [
  {
    id: 'better-sqlite3',
    label: 'better-sqlite3 (raw, sync)',
    role: 'limit',
    packages: ['better-sqlite3'],
    workloads: [...RW],
    sync: true,
    note:
      'better-sqlite3 in WAL mode (`synchronous = NORMAL`): a primary-key select with the expiry checked, ' +
      'an upsert, JSON values; called synchronously.',
    create: async (env) => {
      const { default: Database } = await import('better-sqlite3')
      const db = new Database(join(env.dir, 'raw.db'))
      db.pragma('journal_mode = WAL')
      db.pragma('synchronous = NORMAL')
      db.exec('CREATE TABLE cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires INTEGER NOT NULL)')
      const select = db.prepare<[string], { value: string; expires: number }>(
        'SELECT value, expires FROM cache WHERE key = ?',
      )
      const upsert = db.prepare(
        'INSERT INTO cache (key, value, expires) VALUES (?, ?, ?) ' +
          'ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires',
      )
      return {
        get: (key) => {
          const row = select.get(key)
          return row === undefined || row.expires <= Date.now() ? undefined : JSON.parse(row.value)
        },
        set: (key, value) => upsert.run(key, JSON.stringify(value), Date.now() + TTL_MS),
        close: () => void db.close(),
      }
    },
  },
  {
    id: 'keyv-sqlite',
    label: 'keyv + @keyv/sqlite',
    role: 'peer',
    packages: ['keyv', '@keyv/sqlite'],
    workloads: [...RW],
    create: async (env) => {
      const { Keyv } = await import('keyv')
      const { KeyvSqlite } = await import('@keyv/sqlite')
      const keyv = new Keyv({ store: new KeyvSqlite(`sqlite://${join(env.dir, 'keyv.sqlite')}`) })
      return {
        get: (key) => keyv.get(key),
        set: (key, value) => keyv.set(key, value, TTL_MS),
        close: () => keyv.disconnect(),
      }
    },
  },
  {
    id: 'bentocache-file',
    label: 'bentocache (file driver)',
    role: 'peer',
    packages: ['bentocache'],
    workloads: [...RW],
    create: async (env) => {
      const { BentoCache, bentostore } = await import('bentocache')
      const { fileDriver } = await import('bentocache/drivers/file')
      const bento = new BentoCache({
        default: 'file',
        stores: { file: bentostore().useL2Layer(fileDriver({ directory: join(env.dir, 'bento') })) },
      })
      return {
        get: (key) => bento.get({ key }),
        set: (key, value) => bento.set({ key, value, ttl: TTL_MS }),
        close: () => bento.disconnectAll(),
      }
    },
  },
  {
    id: 'cacache',
    label: 'cacache',
    role: 'peer',
    packages: ['cacache'],
    workloads: [...RW],
    note: 'cacache has no TTL: entries are stored without one. Values are JSON bytes.',
    create: async (env) => {
      const { default: cacache } = await import('cacache')
      const dir = join(env.dir, 'cacache')
      return {
        get: async (key) => {
          try {
            return JSON.parse((await cacache.get(dir, key)).data.toString())
          } catch (error) {
            if ((error as { code?: string }).code === 'ENOENT') return undefined
            throw error
          }
        },
        set: (key, value) => cacache.put(dir, key, JSON.stringify(value)),
      }
    },
  },
  {
    id: 'cache-disk',
    label: '@cache/disk',
    role: 'ours',
    packages: ['@cache/disk', '@cache/core'],
    needs: '@cache/disk',
    workloads: [...RW],
    create: async (env) => {
      const { diskBackend } = await import('@cache/disk')
      const backend = diskBackend({ path: join(env.dir, 'cache-disk') })
      return {
        get: (key) => backend.get(key),
        set: (key, value) => backend.set(key, value, TTL_SECONDS),
        close: () => backend.close(),
      }
    },
  },
]

export const disk: Scenario = { id: 'disk', title: 'Disk (local SQLite / files)', contestants }
