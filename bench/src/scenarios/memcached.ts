import type { Contestant, Driver, Environment, Scenario } from '../contestant.js'
import { TTL_MS, TTL_SECONDS } from '../data.js'
import { IN_FLIGHT, NETWORK_PLAN } from './redis.js'

const RW = ['get-hit', 'set', 'mixed'] as const

/** memjs used bare, with JSON for the values. */
async function rawMemjs(env: Environment): Promise<Driver> {
  const { default: memjs } = await import('memjs')
  const client = memjs.Client.create(env.memcached, { retries: 0 })
  return {
    get: async (key) => {
      const { value } = await client.get(key)
      return value === null ? undefined : JSON.parse(value.toString())
    },
    set: (key, value) => client.set(key, JSON.stringify(value), { expires: TTL_SECONDS }),
    close: () => client.close(),
  }
}

async function ours(env: Environment): Promise<Driver> {
  const { memcachedBackend } = await import('@cache/memcached')
  const backend = memcachedBackend(env.memcached)
  return {
    get: (key) => backend.get(key),
    set: (key, value) => backend.set(key, value, TTL_SECONDS),
    close: () => backend.close(),
  }
}

const contestants: Contestant[] = [
  {
    id: 'memjs',
    label: 'memjs (raw, JSON)',
    role: 'limit',
    packages: ['memjs'],
    workloads: [...RW],
    note: 'memjs `get` / `set` with `JSON.stringify`/`JSON.parse`.',
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
    id: 'keyv-memcache',
    label: 'keyv + @keyv/memcache',
    role: 'peer',
    packages: ['keyv', '@keyv/memcache'],
    workloads: [...RW],
    create: async (env) => {
      const { Keyv } = await import('keyv')
      const { KeyvMemcache } = await import('@keyv/memcache')
      const keyv = new Keyv({ store: new KeyvMemcache(env.memcached) })
      return {
        get: (key) => keyv.get(key),
        set: (key, value) => keyv.set(key, value, TTL_MS),
        close: () => keyv.disconnect(),
      }
    },
  },
  {
    id: 'cache-memcached',
    label: '@cache/memcached',
    role: 'ours',
    packages: ['@cache/memcached', '@cache/core'],
    needs: '@cache/memcached',
    workloads: [...RW],
    create: ours,
  },
  {
    id: 'cache-memcached-64',
    label: `@cache/memcached ×${IN_FLIGHT}`,
    role: 'ours',
    packages: ['@cache/memcached', '@cache/core'],
    needs: '@cache/memcached',
    workloads: [...RW],
    concurrency: IN_FLIGHT,
    create: ours,
  },
]

export const memcached: Scenario = {
  id: 'memcached',
  title: 'memcached (loopback)',
  servers: ['memcached'],
  plan: NETWORK_PLAN,
  contestants,
}
