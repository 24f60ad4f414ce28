import { join } from 'node:path'
import type { Contestant, Driver, Environment, Scenario, Ttl } from '../contestant.js'
import { BATCH_SIZE } from '../data.js'
import { withJsonSerializer } from './peers.js'

const RW = ['get-hit', 'set', 'mixed'] as const
/** Operations in flight in the ×64 rows, as a server handling concurrent requests has. */
const IN_FLIGHT = 64

/**
 * The journal every SQLite contestant's fast configuration runs with, as @cache/disk does:
 * WAL (better-sqlite3's docs/performance.md: "it is highly recommended that you turn on WAL
 * mode") and `synchronous = NORMAL`, which SQLite documents as safe from corruption in WAL mode.
 */
const SQLITE_FAST_PRAGMAS = ['journal_mode = WAL', 'synchronous = NORMAL']

/** A better-sqlite3 database in the fast configuration. */
async function sqliteDatabase(path: string) {
  const { default: Database } = await import('better-sqlite3')
  const db = new Database(path)
  for (const pragma of SQLITE_FAST_PRAGMAS) db.pragma(pragma)
  return db
}

/** better-sqlite3 used bare: prepared statements, one statement an operation, called synchronously. */
async function rawSqlite(env: Environment): Promise<Driver> {
  const db = await sqliteDatabase(join(env.dir, 'raw.db'))
  db.exec('CREATE TABLE cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires INTEGER NOT NULL)')
  type Row = { key: string; value: string; expires: number }
  const select = db.prepare<[string], Row>('SELECT key, value, expires FROM cache WHERE key = ?')
  const selectMany = db.prepare<string[], Row>(
    `SELECT key, value, expires FROM cache WHERE key IN (${Array(BATCH_SIZE).fill('?').join(', ')})`,
  )
  const upsert = db.prepare(
    'INSERT INTO cache (key, value, expires) VALUES (?, ?, ?) ' +
      'ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires',
  )
  const live = (row: Row | undefined, now: number) =>
    row === undefined || row.expires <= now ? undefined : JSON.parse(row.value)
  return {
    get: (key) => live(select.get(key), Date.now()),
    set: (key, value, _index, ttl) => upsert.run(key, JSON.stringify(value), Date.now() + ttl.ms),
    getMany: (keys) => {
      const now = Date.now()
      const found = new Map(selectMany.all(...keys).map((row) => [row.key, row]))
      return keys.map((key) => live(found.get(key), now))
    },
    close: () => void db.close(),
  }
}

/** A bentocache store with only a database driver (L2), every operation going to SQLite. */
async function bentoDatabase(
  driver: Parameters<ReturnType<typeof import('bentocache')['bentostore']>['useL2Layer']>[0],
) {
  const { BentoCache, bentostore } = await import('bentocache')
  const bento = new BentoCache({ default: 'sql', stores: { sql: bentostore().useL2Layer(driver) } })
  return {
    get: (key: string) => bento.get({ key }),
    set: (key: string, value: Record<string, unknown>, _index: number, ttl: Ttl) =>
      bento.set({ key, value, ttl: ttl.ms }),
    close: () => bento.disconnectAll(),
  } satisfies Driver
}

/**
 * An `@cache/disk` row. A batching path (e.g. group commit of concurrent sets) is one more line
 * in the list below: `cacheDisk({ id: 'cache-disk-64', label: '…', concurrency: 64, options: { … } })`.
 */
function cacheDisk(row: {
  id: string
  label: string
  concurrency?: number
  options?: Omit<NonNullable<Parameters<typeof import('@cache/disk').diskBackend>[0]>, 'path'>
  note?: string
}): Contestant {
  return {
    id: row.id,
    label: row.label,
    role: 'ours',
    packages: ['@cache/disk', '@cache/core'],
    needs: '@cache/disk',
    workloads: row.concurrency ? [...RW] : [...RW, 'get-many'],
    ...(row.concurrency ? { concurrency: row.concurrency } : {}),
    ...(row.note ? { note: row.note } : {}),
    create: async (env) => {
      const { diskBackend } = await import('@cache/disk')
      const backend = diskBackend({ ...row.options, path: join(env.dir, 'cache-disk') })
      return {
        get: (key) => backend.get(key),
        set: (key, value, _index, ttl) => backend.set(key, value, ttl.seconds),
        getMany: (keys) => backend.getMany(keys),
        close: () => backend.close(),
      }
    },
  }
}

const contestants: Contestant[] = [
  {
    id: 'better-sqlite3',
    label: 'better-sqlite3 (raw, sync)',
    role: 'limit',
    packages: ['better-sqlite3'],
    workloads: [...RW, 'get-many'],
    sync: true,
    note:
      'better-sqlite3 in WAL mode (`synchronous = NORMAL`), prepared statements: a primary-key select with the expiry checked, ' +
      'an upsert (one statement, its own implicit transaction), a 100-key `IN (…)` select; JSON values; called synchronously.',
    create: rawSqlite,
  },
  ...[false, true].map(
    (fast): Contestant => ({
      id: fast ? 'keyv-sqlite-fast' : 'keyv-sqlite',
      label: fast ? 'keyv + @keyv/sqlite (WAL, JSON serializer)' : 'keyv + @keyv/sqlite',
      role: 'peer',
      packages: ['keyv', '@keyv/sqlite'],
      workloads: [...RW, 'get-many'],
      note: fast
        ? '@keyv/sqlite (node-sqlite3) has no journal option: its public `query` runs the same WAL + `synchronous = NORMAL` PRAGMAs on its one connection; `serialize: JSON.stringify, deserialize: JSON.parse` (keyv README, "Custom Serializers").'
        : 'Default `new Keyv({ store: new KeyvSqlite(uri) })`: rollback journal, `synchronous = FULL`.',
      create: async (env) => {
        const { Keyv } = await import('keyv')
        const { KeyvSqlite } = await import('@keyv/sqlite')
        const store = new KeyvSqlite(`sqlite://${join(env.dir, 'keyv.sqlite')}`)
        if (fast) for (const pragma of SQLITE_FAST_PRAGMAS) await store.query(`PRAGMA ${pragma}`)
        const keyv = new Keyv({ store })
        if (fast) withJsonSerializer(keyv)
        return {
          get: (key) => keyv.get(key),
          set: (key, value, _index, ttl) => keyv.set(key, value, ttl.ms),
          getMany: (keys) => keyv.getMany(keys),
          close: () => keyv.disconnect(),
        }
      },
    }),
  ),
  {
    id: 'bentocache-file',
    label: 'bentocache (file driver)',
    role: 'peer',
    packages: ['bentocache'],
    workloads: [...RW],
    note: 'bentocache’s dependency-free disk driver with its defaults (one file a key). bentocache has no getMany.',
    create: async (env) => {
      const { BentoCache, bentostore } = await import('bentocache')
      const { fileDriver } = await import('bentocache/drivers/file')
      const bento = new BentoCache({
        default: 'file',
        stores: { file: bentostore().useL2Layer(fileDriver({ directory: join(env.dir, 'bento') })) },
      })
      return {
        get: (key) => bento.get({ key }),
        set: (key, value, _index, ttl) => bento.set({ key, value, ttl: ttl.ms }),
        close: () => bento.disconnectAll(),
      }
    },
  },
  {
    id: 'bentocache-knex',
    label: 'bentocache (knex driver, better-sqlite3, WAL)',
    role: 'peer',
    packages: ['bentocache', 'knex'],
    workloads: [...RW],
    note: 'bentocache `knexDriver` (bentocache docs, Cache drivers → Databases) over knex’s `better-sqlite3` client, each pooled connection in WAL with `synchronous = NORMAL`.',
    create: async (env) => {
      const { default: knex } = await import('knex')
      const { knexDriver } = await import('bentocache/drivers/knex')
      const db = knex({
        client: 'better-sqlite3',
        connection: { filename: join(env.dir, 'bento-knex.db') },
        useNullAsDefault: true,
        pool: {
          afterCreate: (connection: { pragma(source: string): unknown }, done: (error?: Error) => void) => {
            for (const pragma of SQLITE_FAST_PRAGMAS) connection.pragma(pragma)
            done()
          },
        },
      })
      return bentoDatabase(knexDriver({ connection: db }))
    },
  },
  ...[1, IN_FLIGHT].map(
    (concurrency): Contestant => ({
      id: concurrency === 1 ? 'bentocache-kysely' : `bentocache-kysely-${concurrency}`,
      label: `bentocache (kysely driver, better-sqlite3, WAL)${concurrency === 1 ? '' : ` ×${concurrency}`}`,
      role: 'peer',
      packages: ['bentocache', 'kysely'],
      workloads: concurrency === 1 ? [...RW] : ['set', 'mixed'],
      ...(concurrency === 1 ? {} : { concurrency }),
      note: 'bentocache `kyselyDriver` over Kysely’s `SqliteDialect` on a better-sqlite3 database in WAL with `synchronous = NORMAL`.',
      create: async (env) => {
        const { Kysely, SqliteDialect } = await import('kysely')
        const { kyselyDriver } = await import('bentocache/drivers/kysely')
        const database = await sqliteDatabase(join(env.dir, 'bento-kysely.db'))
        const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database }) })
        return bentoDatabase(kyselyDriver({ connection: db as never }))
      },
    }),
  ),
  {
    id: 'cacache',
    label: 'cacache',
    role: 'peer',
    packages: ['cacache'],
    workloads: [...RW],
    note: 'cacache has no TTL: entries are stored without one. Values are JSON bytes. No getMany.',
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
  cacheDisk({ id: 'cache-disk', label: '@cache/disk' }),
  cacheDisk({
    id: `cache-disk-${IN_FLIGHT}`,
    label: `@cache/disk ×${IN_FLIGHT}`,
    concurrency: IN_FLIGHT,
    note: `${IN_FLIGHT} operations in flight: the writes issued in one tick commit in one transaction (group commit); each set resolves once its transaction has committed.`,
  }),
]

export const disk: Scenario = { id: 'disk', title: 'Disk (local SQLite / files)', contestants }
