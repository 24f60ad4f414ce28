import { CacheConfigError, CacheError } from '@cache/core'
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { type RedisBackendOptions, redisBackend } from '../src/index.js'
import { useSingleAndCluster } from './servers.js'

/*
 * A client you pass in is used as is: options of it that change what the backend's commands
 * mean are refused at construction (CacheConfigError naming the option), also when they reach a
 * client the backend builds through `redisOptions`/`clusterOptions`; a SET answered with anything
 * but OK (QUEUED: the client is inside MULTI) rejects.
 */

const servers = useSingleAndCluster()

function clusterNodes(): { host: string; port: number }[] {
  return servers
    .clusterUrl()
    .slice('redis+cluster://'.length)
    .split(',')
    .map((node) => ({ host: node.split(':')[0]!, port: Number(node.split(':')[1]) }))
}

/** The CacheConfigError `build` throws (fails the test when it throws none). */
function refusal(build: () => unknown): CacheConfigError {
  try {
    build()
  } catch (error) {
    expect(error).toBeInstanceOf(CacheConfigError)
    return error as CacheConfigError
  }
  throw new Error('accepted')
}

/** Names of the connections the server holds now. */
async function connectionNames(): Promise<string> {
  const raw = new Redis(servers.singleUrl())
  try {
    return String(await raw.client('LIST'))
  } finally {
    raw.disconnect()
  }
}

const refused: [string, RedisOptions, string][] = [
  ['keyPrefix', { keyPrefix: 'pfx:' }, 'namespace "pfx:ns"'],
  ['stringNumbers', { stringNumbers: true }, 'stringNumbers'],
  ['enableAutoPipelining', { enableAutoPipelining: true }, 'enableAutoPipelining'],
]

describe('options of a client that change what commands mean', () => {
  for (const [setting, options, says] of refused) {
    it(`refuses a client passed in with ${setting}, and leaves it to its owner untouched`, async () => {
      const client = new Redis(servers.singleUrl(), options)
      try {
        await new Promise((resolve) => client.once('ready', resolve))
        const listeners = client.listenerCount('error')
        const error = refusal(() => redisBackend(client, { namespace: 'ns', logger: false }))
        expect(error.setting).toBe(setting)
        expect(error.message).toContain(says)
        expect(client.listenerCount('error')).toBe(listeners)
        expect(client.status).toBe('ready')
        expect(await client.ping()).toBe('PONG')
      } finally {
        client.disconnect()
      }
    })

    it(`refuses ${setting} in redisOptions and in connection options, and closes the client it built`, async () => {
      const name = `refused-${setting}`
      const url = new URL(servers.singleUrl())
      const tries: [unknown, RedisBackendOptions][] = [
        [servers.singleUrl(), { redisOptions: { ...options, connectionName: name } }],
        [{ host: url.hostname, port: Number(url.port), connectionName: name, ...options }, {}],
      ]
      for (const [connection, more] of tries) {
        const error = refusal(() =>
          redisBackend(connection as string, { namespace: 'ns', logger: false, ...more }),
        )
        expect(error.setting).toBe(setting)
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
      expect(await connectionNames()).not.toContain(`name=${name}`)
    })
  }

  it('refuses them on a cluster, in its own options and in its redisOptions', async () => {
    const cases: [string, ClusterOptions][] = [
      ['keyPrefix', { keyPrefix: 'pfx:' }],
      ['keyPrefix', { redisOptions: { keyPrefix: 'pfx:' } }],
      ['stringNumbers', { redisOptions: { stringNumbers: true } }],
      ['enableAutoPipelining', { enableAutoPipelining: true }],
      ['enableAutoPipelining', { redisOptions: { enableAutoPipelining: true } }],
      // Before: accepted, and getMany or a memoized call read a replica, from before a write that resolved.
      ['scaleReads', { scaleReads: 'slave' }],
      ['scaleReads', { scaleReads: 'all' }],
      ['scaleReads', { scaleReads: () => [] }],
    ]
    for (const [setting, options] of cases) {
      const cluster = new Cluster(clusterNodes(), { ...options, lazyConnect: true })
      try {
        expect(refusal(() => redisBackend(cluster, { namespace: 'ns', logger: false })).setting).toBe(setting)
      } finally {
        cluster.disconnect()
      }
      expect(
        refusal(() =>
          redisBackend(servers.clusterUrl(), { namespace: 'ns', logger: false, clusterOptions: options }),
        ).setting,
      ).toBe(setting)
    }
  })

  it('accepts a client without them (keyPrefix "" is none)', async () => {
    const client = new Redis(servers.singleUrl(), { keyPrefix: '', stringNumbers: false })
    const cache = redisBackend(client, { namespace: 'plain-client', logger: false })
    try {
      await cache.set('a', 1)
      expect(await cache.has('a')).toBe(true)
      expect(await cache.incr('n', 5)).toBe(5)
      expect(await cache.getEntry('a')).toMatchObject({ value: 1 })
      expect(await cache.delete('a')).toBe(true)
      await cache.clear()
    } finally {
      await cache.close()
      client.disconnect()
    }
  })
})

describe('a shared client left inside MULTI', () => {
  for (const coalesce of [true, false]) {
    it(`rejects set, add, setMany, has, delete, deleteMany, compareAndDelete and incr answered QUEUED (coalesce ${coalesce})`, async () => {
      const raw = new Redis(servers.singleUrl())
      const client = new Redis(servers.singleUrl())
      const cache = redisBackend(client, { namespace: `multi-${coalesce}`, logger: false, coalesce })
      try {
        await cache.ready()
        await raw.del(
          `multi-${coalesce}:s`,
          `multi-${coalesce}:a`,
          `multi-${coalesce}:m`,
          `multi-${coalesce}:n`,
        )
        client.multi({ pipeline: false })
        await new Promise((resolve) => setTimeout(resolve, 20))
        const outcomes = await Promise.allSettled([
          cache.set('s', 1),
          cache.set('s', 2),
          cache.add('a', 1),
          cache.setMany([{ key: 'm', value: 1 }]),
          // Integer replies answered QUEUED: not "absent", "not removed" or a bogus RangeError.
          cache.has('s'),
          cache.delete('s'),
          cache.deleteMany(['s', 'a']),
          cache.compareAndDelete('s', 'x'),
          cache.incr('n'),
          // Script replies: a batch of gets (the first get of a tick goes alone) and getEntry.
          cache.getEntry('s'),
        ])
        const gets = await Promise.allSettled([cache.get('s'), cache.get('a'), cache.get('m')])
        await client.discard()
        // The first get of a tick is a plain GET: "QUEUED" could be a stored value; it fails
        // only if it does not parse. The batch of the ones after it is not a list: each rejects.
        for (const outcome of [...outcomes, ...(coalesce ? gets.slice(1) : [])]) {
          expect(outcome.status).toBe('rejected')
          const reason = (outcome as PromiseRejectedResult).reason
          expect(reason).toBeInstanceOf(CacheError)
          expect(String(reason.message)).toContain('QUEUED')
        }
        expect(
          await raw.exists(
            `multi-${coalesce}:s`,
            `multi-${coalesce}:a`,
            `multi-${coalesce}:m`,
            `multi-${coalesce}:n`,
          ),
        ).toBe(0)
        // Not an outage: the server is fine.
        expect(cache.stats.errors).toBe(0)
        expect(cache.stats.sets).toBe(0)
        await cache.set('s', 3)
        expect(await cache.get('s')).toBe(3)
      } finally {
        await cache.close()
        client.disconnect()
        raw.disconnect()
      }
    })
  }
})
