import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { promisify } from 'node:util'
import type { Contestant, Driver, Environment, ExternalResult, Scenario, Workload } from '../contestant.js'
import { KEY_COUNT, TTL_SECONDS, values } from '../data.js'
import { medianOf } from '../measure.js'
import { withJsonSerializer } from './peers.js'

const run = promisify(execFile)
const RW = ['get-hit', 'set', 'mixed'] as const
export const IN_FLIGHT = 64
/** Round trips to a server: longer rounds than in-process rows. */
export const NETWORK_PLAN = { rounds: 15, roundMs: 300 }

/** ioredis used bare, with JSON for the values: what a hand-rolled cache would do. */
async function rawIoredis(env: Environment): Promise<Driver> {
  const { Redis } = await import('ioredis')
  const client = new Redis({ host: env.redisHost, port: env.redisPort, db: env.redisDb })
  return {
    get: async (key) => {
      const text = await client.get(key)
      return text === null ? undefined : JSON.parse(text)
    },
    set: (key, value, _index, ttl) => client.set(key, JSON.stringify(value), 'EX', ttl.seconds),
    getMany: async (keys) => {
      const texts = await client.mget(keys)
      return texts.map((text) => (text === null ? undefined : JSON.parse(text)))
    },
    close: () => void client.disconnect(),
  }
}

type RedisOptions = NonNullable<Parameters<typeof import('@cache/redis').redisBackend>[1]>

/** `@cache/redis` with the settings every redis row shares, and any more `options`. */
export async function ourRedis(env: Environment, options?: RedisOptions) {
  const { redisBackend } = await import('@cache/redis')
  return redisBackend(env.redisUrl, options)
}

/**
 * An `@cache/redis` row. A batching path is one more line in the list below, e.g.
 * `cacheRedis({ id: 'cache-redis-64-batched', label: '…', concurrency: IN_FLIGHT, options: { … } })`.
 */
function cacheRedis(row: {
  id: string
  label: string
  concurrency?: number
  options?: RedisOptions
  note?: string
}): Contestant {
  return {
    id: row.id,
    label: row.label,
    role: 'ours',
    packages: ['@cache/redis', '@cache/core'],
    needs: '@cache/redis',
    workloads: row.concurrency ? [...RW] : [...RW, 'get-many'],
    ...(row.concurrency ? { concurrency: row.concurrency } : {}),
    ...(row.note ? { note: row.note } : {}),
    create: async (env) => {
      const backend = await ourRedis(env, row.options)
      return {
        get: (key) => backend.get(key),
        set: (key, value, _index, ttl) => backend.set(key, value, ttl.seconds),
        getMany: (keys) => backend.getMany(keys),
        close: () => backend.close(),
      }
    },
  }
}

/**
 * keyv + @keyv/redis. Default: `new Keyv({ store: new KeyvRedis(url) })`. Fast: `createKeyv(url)`
 * (@keyv/redis README: no Keyv key prefix, no namespace) with `JSON.stringify`/`JSON.parse` as the
 * serializer (keyv README, "Custom Serializers").
 */
async function keyvRedis(env: Environment, fast: boolean) {
  if (fast) {
    const { createKeyv } = await import('@keyv/redis')
    return withJsonSerializer(createKeyv(env.redisUrl))
  }
  const { Keyv } = await import('keyv')
  const { default: KeyvRedis } = await import('@keyv/redis')
  return new Keyv({ store: new KeyvRedis(env.redisUrl) })
}

const BENCH_BINARY = '/usr/bin/redis-benchmark'

/**
 * redis-benchmark (C, one process) running the same GET / SET EX commands on keys shaped like
 * ours. It cannot report hits, so the server's keyspace_hits/misses counters are checked instead.
 */
function redisBenchmark(concurrency: number) {
  return async (
    env: Environment,
    workload: Workload,
    plan: { rounds: number; quick: boolean },
  ): Promise<ExternalResult> => {
    const { Redis } = await import('ioredis')
    const client = new Redis({ host: env.redisHost, port: env.redisPort, db: env.redisDb })
    try {
      const body = JSON.stringify(values[1])
      if (workload === 'get-hit') {
        // redis-benchmark writes __rand_int__ as 12 zero-padded digits.
        const pipeline = client.pipeline()
        for (let i = 0; i < KEY_COUNT; i++)
          pipeline.set(`user:${String(i).padStart(12, '0')}:profile`, body, 'EX', TTL_SECONDS)
        await pipeline.exec()
      }
      const command =
        workload === 'get-hit'
          ? ['GET', 'user:__rand_int__:profile']
          : ['SET', 'user:__rand_int__:profile', body, 'EX', String(TTL_SECONDS)]
      const requests = plan.quick ? 2000 : concurrency === 1 ? 10_000 : 30_000
      const before = await keyspace(client)
      const rates: number[] = []
      const p50: number[] = []
      const p99: number[] = []
      for (let r = 0; r < plan.rounds + 1; r++) {
        const { stdout } = await run(BENCH_BINARY, [
          '-h',
          env.redisHost!,
          '-p',
          String(env.redisPort),
          '-c',
          String(concurrency),
          '-n',
          String(requests),
          '--dbnum',
          String(env.redisDb ?? 0),
          '-r',
          String(KEY_COUNT),
          '--csv',
          ...command,
        ])
        // The first run is the warm-up.
        // The test name (the command, with the JSON body) has commas of its own: count from the end.
        const fields = stdout.trim().split('\n')[1]!.split('","')
        // Fields from the end: rps, avg, min, p50, p95, p99, max (latencies in ms).
        if (r > 0) {
          rates.push(Number(fields[fields.length - 7]))
          p50.push(Number(fields[fields.length - 4]))
          p99.push(Number(fields[fields.length - 2]))
        }
      }
      const after = await keyspace(client)
      const gets = workload === 'get-hit' ? after.hits + after.misses - before.hits - before.misses : 0
      const hits = workload === 'get-hit' ? after.hits - before.hits : 0
      const median = (values: number[]) => medianOf([...values].sort((a, b) => a - b))
      return {
        rates,
        gets,
        hits,
        latency: { p50: median(p50) * 1000, p99: median(p99) * 1000 },
        ...(hits !== gets ? { failure: `only ${hits} of ${gets} GETs hit` } : {}),
      }
    } finally {
      client.disconnect()
    }
  }
}

async function keyspace(client: import('ioredis').Redis): Promise<{ hits: number; misses: number }> {
  const info = await client.info('stats')
  const field = (name: string) => Number(new RegExp(`${name}:(\\d+)`).exec(info)?.[1] ?? Number.NaN)
  return { hits: field('keyspace_hits'), misses: field('keyspace_misses') }
}

const contestants: Contestant[] = [
  {
    id: 'ioredis',
    label: 'ioredis (raw, JSON)',
    role: 'limit',
    packages: ['ioredis'],
    workloads: [...RW, 'get-many'],
    note: 'ioredis `GET` / `SET EX` / `MGET` with `JSON.stringify`/`JSON.parse`, default client options.',
    create: rawIoredis,
  },
  {
    id: 'ioredis-64',
    label: `ioredis (raw, JSON) ×${IN_FLIGHT}`,
    role: 'limit',
    packages: ['ioredis'],
    workloads: [...RW],
    concurrency: IN_FLIGHT,
    create: rawIoredis,
  },
  ...(existsSync(BENCH_BINARY)
    ? ([1, IN_FLIGHT] as const).map(
        (c): Contestant => ({
          id: c === 1 ? 'redis-benchmark' : `redis-benchmark-${c}`,
          label: c === 1 ? 'redis-benchmark (C)' : `redis-benchmark (C) ×${c}`,
          role: 'limit',
          packages: [],
          workloads: ['get-hit', 'set'],
          concurrency: c,
          note: 'redis-benchmark: the server and loopback ceiling, without any JavaScript client (it picks keys at random itself).',
          external: redisBenchmark(c),
        }),
      )
    : []),
  ...[false, true].map(
    (fast): Contestant => ({
      id: fast ? 'keyv-redis-fast' : 'keyv-redis',
      label: fast ? 'keyv + @keyv/redis (`createKeyv`, JSON serializer)' : 'keyv + @keyv/redis',
      role: 'peer',
      packages: ['keyv', '@keyv/redis'],
      workloads: [...RW, 'get-many'],
      note: fast
        ? '`createKeyv(url)` (@keyv/redis README: no key prefix or namespace) with `serialize: JSON.stringify, deserialize: JSON.parse` (keyv README, "Custom Serializers").'
        : 'Default `new Keyv({ store: new KeyvRedis(url) })`.',
      create: async (env) => {
        const keyv = await keyvRedis(env, fast)
        return {
          get: (key) => keyv.get(key),
          set: (key, value, _index, ttl) => keyv.set(key, value, ttl.ms),
          getMany: (keys) => keyv.getMany(keys),
          close: () => keyv.disconnect(),
        }
      },
    }),
  ),
  ...[false, true].map(
    (fast): Contestant => ({
      id: fast ? 'cache-manager-redis-fast' : 'cache-manager-redis',
      label: fast
        ? 'cache-manager + @keyv/redis (`createKeyv`, JSON serializer)'
        : 'cache-manager + @keyv/redis',
      role: 'peer',
      packages: ['cache-manager', 'keyv', '@keyv/redis'],
      workloads: [...RW, 'get-many'],
      note: fast
        ? '`createCache({ stores: [createKeyv(url)] })` (cache-manager README) with the JSON serializer.'
        : '`createCache({ stores: [new Keyv({ store: new KeyvRedis(url) })] })`.',
      create: async (env) => {
        const { createCache } = await import('cache-manager')
        const cache = createCache({ stores: [await keyvRedis(env, fast)] })
        return {
          get: (key) => cache.get(key),
          set: (key, value, _index, ttl) => cache.set(key, value, ttl.ms),
          getMany: (keys) => cache.mget(keys),
          close: () => cache.disconnect(),
        }
      },
    }),
  ),
  {
    id: 'bentocache-redis',
    label: 'bentocache (redis driver)',
    role: 'peer',
    packages: ['bentocache', 'ioredis'],
    workloads: [...RW],
    note: 'bentocache with only its redis driver (no memory L1), so every read goes to Redis. Its docs name no faster setting for a lone L2; it has no getMany.',
    create: async (env) => {
      const { BentoCache, bentostore } = await import('bentocache')
      const { redisDriver } = await import('bentocache/drivers/redis')
      const bento = new BentoCache({
        default: 'redis',
        stores: {
          redis: bentostore().useL2Layer(
            redisDriver({ connection: { host: env.redisHost, port: env.redisPort, db: env.redisDb } }),
          ),
        },
      })
      return {
        get: (key) => bento.get({ key }),
        set: (key, value, _index, ttl) => bento.set({ key, value, ttl: ttl.ms }),
        close: () => bento.disconnectAll(),
      }
    },
  },
  cacheRedis({ id: 'cache-redis', label: '@cache/redis' }),
  cacheRedis({ id: 'cache-redis-64', label: `@cache/redis ×${IN_FLIGHT}`, concurrency: IN_FLIGHT }),
  cacheRedis({
    id: 'cache-redis-64-alone',
    label: `@cache/redis ×${IN_FLIGHT}, \`coalesce: false\``,
    concurrency: IN_FLIGHT,
    options: { coalesce: false },
    note: 'Every call its own command: what coalescing the calls of one tick buys.',
  }),
]

export const redis: Scenario = {
  id: 'redis',
  title: 'Redis (loopback)',
  servers: ['redis'],
  plan: NETWORK_PLAN,
  contestants,
}
