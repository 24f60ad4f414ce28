import { createServer, type Server } from 'node:net'
import { CacheConfigError } from '@cache/core'
import { freePort } from '@cache/test-servers'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  type FailFastSettings,
  type RedisBackend,
  type RedisBackendOptions,
  type RedisConnection,
  failFastOptions,
  redisBackend,
} from '../src/index.js'

/**
 * A misspelt or misplaced option is refused at once (synchronously, before any client exists),
 * instead of the backend running without it: without its namespace, or connected to
 * 127.0.0.1:6379 instead of the server the URL named. Nothing listens on 6379 here; a counting
 * listener stands where a connection would go.
 */

let listener: Server
let port: number
let connections: number
beforeEach(async () => {
  port = await freePort()
  connections = 0
  listener = createServer((socket) => {
    connections++
    socket.destroy()
  })
  await new Promise<void>((resolve) => listener.listen(port, '127.0.0.1', resolve))
})
const made: RedisBackend[] = []
afterEach(async () => {
  await Promise.all(made.splice(0).map((b) => b.close()))
  await new Promise((resolve) => listener.close(resolve))
})

/** The error `redisBackend(...args)` throws synchronously, once no connection was tried. */
async function refusal(connection: unknown, options?: unknown): Promise<CacheConfigError> {
  let thrown: unknown
  try {
    made.push(redisBackend(connection as RedisConnection, options as RedisBackendOptions))
  } catch (error) {
    thrown = error
  }
  // A client made anyway would have connected within this time.
  await new Promise((resolve) => setTimeout(resolve, 100))
  expect(connections).toBe(0)
  expect(thrown).toBeInstanceOf(CacheConfigError)
  return thrown as CacheConfigError
}

describe('redisBackend option names', () => {
  it('refuses a misspelt namespace instead of writing to the shared default namespace', async () => {
    const error = await refusal(`redis://127.0.0.1:${port}`, { namspace: 'shop' })
    expect(error.setting).toBe('namspace')
    expect(error.message).toBe('namspace: not an option of redisBackend(); did you mean `namespace`?')
  })

  it('refuses { url, namespace } as the connection (node-redis habit) instead of connecting to 127.0.0.1:6379', async () => {
    const error = await refusal({ url: 'redis://cache.internal:6379', namespace: 'shop' })
    expect(error.setting).toBe('url')
    expect(error.message).toMatch(
      /give the URL itself as the first argument: redisBackend\('redis:\/\/…', \{ namespace \}\)/,
    )
  })

  it('refuses a @cache/redis option given in the ioredis options of the first argument', async () => {
    const error = await refusal({ host: '127.0.0.1', port, namespace: 'shop' })
    expect(error.setting).toBe('namespace')
    expect(error.message).toMatch(/an option of @cache\/redis: give it in the second argument/)
    for (const name of ['defaultTtl', 'timeout', 'serializer', 'maxAttempts', 'nearCache', 'redisOptions'])
      expect((await refusal({ host: '127.0.0.1', port, [name]: 1 })).setting).toBe(name)
  })

  it('refuses the same mistakes in a cluster connection object', async () => {
    const error = await refusal({ cluster: [{ host: '127.0.0.1', port }], namespace: 'shop' })
    expect(error.setting).toBe('namespace')
    expect((await refusal({ cluster: [{ host: '127.0.0.1', port }], url: 'redis://x' })).setting).toBe('url')
  })

  it("refuses a @cache/redis option inside redisOptions, clusterOptions and a cluster object's redisOptions", async () => {
    const url = `redis://127.0.0.1:${port}`
    const nested = await refusal(url, { redisOptions: { namespace: 'shop', db: 0 } })
    expect(nested.setting).toBe('namespace')
    expect(nested.message).toBe(
      "namespace: not an ioredis option (redisBackend()'s redisOptions, where ioredis ignores it): an option of @cache/redis: give it in the second argument, redisBackend(connection, { namespace })",
    )
    expect((await refusal(url, { clusterOptions: { namespace: 'shop' } })).message).toMatch(
      /redisBackend\(\)'s clusterOptions, where ioredis ignores it/,
    )
    expect((await refusal(url, { clusterOptions: { redisOptions: { defaultTtl: 60 } } })).message).toMatch(
      /^defaultTtl: not an ioredis option \(redisBackend\(\)'s clusterOptions's redisOptions/,
    )
    const inCluster = await refusal({
      cluster: [{ host: '127.0.0.1', port }],
      redisOptions: { namespace: 'shop' },
    })
    expect(inCluster.message).toMatch(
      /^namespace: not an ioredis option \(redisBackend\(\)'s first argument's redisOptions/,
    )
    expect((await refusal(url, { redisOptions: { database: 2 } })).message).toMatch(/ioredis calls it `db`/)
  })

  it('refuses options that are not an options object: null, a Map', async () => {
    const url = `redis://127.0.0.1:${port}`
    expect((await refusal(url, null)).message).toBe('redisBackend(): expected an options object, got null')
    expect((await refusal(url, new Map([['namespace', 'shop']]))).message).toMatch(
      /^redisBackend\(\): expected an options object, got a Map/,
    )
    expect((await refusal(url, { redisOptions: 'db=2' })).message).toMatch(
      /redisOptions: expected an options object/,
    )
  })

  it('refuses a misspelt nearCache setting', async () => {
    const error = await refusal(`redis://127.0.0.1:${port}`, { nearCache: { maxkeys: 10 } })
    expect(error.setting).toBe('maxkeys')
    expect(error.message).toMatch(/did you mean `maxKeys`\?/)
  })

  it('failFastOptions refuses a misspelt setting instead of keeping the default timeout', () => {
    expect(() => failFastOptions({ timout: '50ms' } as FailFastSettings)).toThrow(
      expect.objectContaining({
        setting: 'timout',
        message: expect.stringMatching(/did you mean `timeout`\?/),
      }) as never,
    )
  })

  it('accepts every documented option at once, and ioredis options in the first argument', async () => {
    const all: Required<RedisBackendOptions> = {
      namespace: 'all',
      defaultTtl: 60,
      logger: false,
      serializer: 'json',
      compressThreshold: false,
      timeout: '300ms',
      connectTimeout: '2s',
      maxReconnectDelay: '2s',
      maxAttempts: 10,
      scanCount: 100,
      exactlyOnceWindow: false,
      replicas: 0,
      nearCache: { maxKeys: 10, heartbeat: '500ms' },
      tls: {},
      coalesce: true,
      redisOptions: { connectionName: 'all' },
      clusterOptions: { slotsRefreshTimeout: 1000 },
    }
    made.push(redisBackend(`redis://127.0.0.1:${port}`, all))
    made.push(
      redisBackend(
        { host: '127.0.0.1', port, db: 1, connectTimeout: 2000, tls: undefined },
        { logger: false },
      ),
    )
    made.push(
      redisBackend(
        { cluster: [{ host: '127.0.0.1', port }], redisOptions: {}, lazyConnect: true },
        { logger: false },
      ),
    )
    const settings: Required<FailFastSettings> = {
      timeout: undefined as never,
      connectTimeout: undefined as never,
      maxReconnectDelay: undefined as never,
      // The current names given as undefined, the deprecated ones with values (both is refused).
      timeoutMs: 100,
      connectTimeoutMs: 1000,
      maxReconnectDelayMs: 1000,
    }
    expect(failFastOptions(settings).commandTimeout).toBe(100)
  })
})
