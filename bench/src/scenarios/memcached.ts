import type { Contestant, Driver, Environment, Scenario } from '../contestant.js'
import { withJsonSerializer } from './peers.js'
import { IN_FLIGHT, NETWORK_PLAN } from './redis.js'

const RW = ['get-hit', 'set', 'mixed'] as const

/** memjs used bare, with JSON for the values. */
async function rawMemjs(env: Environment): Promise<Driver> {
  const { default: memjs } = await import('memjs')
  const client = memjs.Client.create(env.memcached, { retries: 0 })
  const get = async (key: string) => {
    const { value } = await client.get(key)
    return value === null ? undefined : JSON.parse(value.toString())
  }
  return {
    get,
    set: (key, value, _index, ttl) => client.set(key, JSON.stringify(value), { expires: ttl.seconds }),
    // memjs has no multi-get: the requests go out together on its one connection.
    getMany: (keys) => Promise.all(keys.map(get)),
    close: () => client.close(),
  }
}

/**
 * memjs sending, with each operation, the read @cache/memcached sends with it by default: the
 * namespace's generation counter (`generationTtl: 0`, so that a `clear()` by another process is
 * seen by the next operation). The two requests go out together on its one connection. What the
 * same guarantee costs a client that adds nothing else: the ceiling of the awaited rows.
 */
async function memjsWithGeneration(env: Environment): Promise<Driver> {
  const { default: memjs } = await import('memjs')
  const client = memjs.Client.create(env.memcached, { retries: 0 })
  await client.set('bench#g', '1', {})
  const generation = () => client.get('bench#g')
  const get = async (key: string) => {
    const [, { value }] = await Promise.all([generation(), client.get(key)])
    return value === null ? undefined : JSON.parse(value.toString())
  }
  return {
    get,
    set: async (key, value, _index, ttl) => {
      await Promise.all([generation(), client.set(key, JSON.stringify(value), { expires: ttl.seconds })])
    },
    close: () => client.close(),
  }
}

type MemcachedOptions = NonNullable<Parameters<typeof import('@cache/memcached').memcachedBackend>[1]>

/**
 * An `@cache/memcached` row. A batching path is one more line in the list below, e.g.
 * `cacheMemcached({ id: 'cache-memcached-64-batched', label: '…', concurrency: IN_FLIGHT, options: { … } })`.
 */
function cacheMemcached(row: {
  id: string
  label: string
  concurrency?: number
  options?: MemcachedOptions
  note?: string
}): Contestant {
  return {
    id: row.id,
    label: row.label,
    role: 'ours',
    packages: ['@cache/memcached', '@cache/core'],
    needs: '@cache/memcached',
    workloads: row.concurrency ? [...RW] : [...RW, 'get-many'],
    ...(row.concurrency ? { concurrency: row.concurrency } : {}),
    ...(row.note ? { note: row.note } : {}),
    create: async (env) => {
      const { memcachedBackend } = await import('@cache/memcached')
      const backend = memcachedBackend(env.memcached, row.options)
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
    id: 'memjs',
    label: 'memjs (raw, JSON)',
    role: 'limit',
    packages: ['memjs'],
    workloads: [...RW, 'get-many'],
    note: 'memjs `get` / `set` with `JSON.stringify`/`JSON.parse`; its getMany is 100 `get`s issued at once (memjs has no multi-get).',
    create: rawMemjs,
  },
  {
    id: 'memjs-64',
    label: `memjs (raw, JSON) ×${IN_FLIGHT}`,
    role: 'limit',
    packages: ['memjs'],
    workloads: [...RW],
    concurrency: IN_FLIGHT,
    create: rawMemjs,
  },
  {
    id: 'memjs-generation',
    label: 'memjs (raw, JSON) + a generation read per operation',
    role: 'limit',
    packages: ['memjs'],
    workloads: [...RW],
    note: 'As memjs (raw, JSON), each `get` / `set` sent together with a `get` of a generation counter, as @cache/memcached sends by default (`generationTtl: 0`): the ceiling of the awaited rows for that guarantee.',
    create: memjsWithGeneration,
  },
  ...[false, true].map(
    (fast): Contestant => ({
      id: fast ? 'keyv-memcache-fast' : 'keyv-memcache',
      label: fast ? 'keyv + @keyv/memcache (JSON serializer)' : 'keyv + @keyv/memcache',
      role: 'peer',
      packages: ['keyv', '@keyv/memcache'],
      workloads: [...RW, 'get-many'],
      note: fast
        ? '`serialize: JSON.stringify, deserialize: JSON.parse` (keyv README, "Custom Serializers"); @keyv/memcache documents no other option.'
        : 'Default `new Keyv({ store: new KeyvMemcache(servers) })`.',
      create: async (env) => {
        const { Keyv } = await import('keyv')
        const { KeyvMemcache } = await import('@keyv/memcache')
        const keyv = new Keyv({ store: new KeyvMemcache(env.memcached) })
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
  cacheMemcached({ id: 'cache-memcached', label: '@cache/memcached' }),
  cacheMemcached({
    id: 'cache-memcached-generation-ttl',
    label: "@cache/memcached (`generationTtl: '1s'`)",
    options: { generationTtl: '1s' },
    note: "`generationTtl: '1s'`: the namespace's generation is read at most once a second instead of with every operation, so a `clear()` by another process may take up to a second to be seen here (README, \"How `clear()` works\").",
  }),
  cacheMemcached({
    id: 'cache-memcached-64',
    label: `@cache/memcached ×${IN_FLIGHT}`,
    concurrency: IN_FLIGHT,
  }),
]

export const memcached: Scenario = {
  id: 'memcached',
  title: 'memcached (loopback)',
  servers: ['memcached'],
  plan: NETWORK_PLAN,
  contestants,
}
