import { createServer, type Server } from 'node:net'
import { CacheConfigError } from '@cache/core'
import { freePort, startMemcached, type MemcachedServer } from '@cache/test-servers'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { type MemcachedBackend, type MemcachedBackendOptions, memcachedBackend } from '../src/index.js'

/**
 * A misspelt option is refused at once, before any connection, instead of the backend running
 * without it (without its namespace: keys shared with every other application on the servers).
 * A counting listener stands where a connection would go.
 */

let listener: Server
let address: string
let connections: number
beforeEach(async () => {
  const port = await freePort()
  address = `127.0.0.1:${port}`
  connections = 0
  listener = createServer((socket) => {
    connections++
    socket.destroy()
  })
  await new Promise<void>((resolve) => listener.listen(port, '127.0.0.1', resolve))
})
const made: MemcachedBackend[] = []
afterEach(async () => {
  await Promise.all(made.splice(0).map((b) => b.close()))
  await new Promise((resolve) => listener.close(resolve))
})

let server: MemcachedServer
beforeAll(async () => {
  server = await startMemcached()
})
afterAll(() => server?.stop())

/** The error `memcachedBackend(...args)` throws synchronously; nothing may have connected. */
async function refusal(servers: unknown, options?: unknown): Promise<CacheConfigError> {
  let thrown: unknown
  try {
    const cache = memcachedBackend(servers as string, options as MemcachedBackendOptions)
    made.push(cache)
    // What the old code did with the options: the first operation connects.
    await cache.get('k').catch(() => {})
  } catch (error) {
    thrown = error
  }
  await new Promise((resolve) => setTimeout(resolve, 100))
  expect(connections).toBe(0)
  expect(thrown).toBeInstanceOf(CacheConfigError)
  return thrown as CacheConfigError
}

describe('memcachedBackend option names', () => {
  it('refuses a misspelt namespace instead of sharing the default namespace with every other app', async () => {
    const error = await refusal(address, { namspace: 'shop' })
    expect(error.setting).toBe('namspace')
    expect(error.message).toBe('namspace: not an option of memcachedBackend(); did you mean `namespace`?')
  })

  it('refuses a misspelt eject setting', async () => {
    const error = await refusal(address, { eject: { failureThreshhold: 5 } })
    expect(error.setting).toBe('failureThreshhold')
    expect(error.message).toMatch(/did you mean `failureThreshold`\?/)
  })

  it('refuses an options object given as the servers, naming the argument', async () => {
    const error = await refusal({ servers: address, namespace: 'shop' })
    expect(error.setting).toBe('servers')
    expect(error.message).toMatch(/memcachedBackend\('host:port', \{ namespace \}\)/)
  })

  it('refuses a client that is not a memjs client, and options that are not an options object', async () => {
    const client = await refusal(address, { client: {} })
    expect(client.message).toMatch(/^client: expected a memjs client/)
    expect((await refusal(address, null)).message).toBe(
      'memcachedBackend(): expected an options object, got null',
    )
    expect((await refusal(address, new Map([['namespace', 'shop']]))).message).toMatch(/got a Map/)
  })

  it('accepts every documented option at once', async () => {
    const all: Required<MemcachedBackendOptions> = {
      namespace: 'all',
      defaultTtl: 60,
      logger: false,
      serializer: 'json',
      compressThreshold: false,
      timeout: '1s',
      maxValueSize: '512KB',
      // No SASL on the test server, no client of our own: these names are given, their values left out.
      username: undefined as never,
      password: undefined as never,
      generationTtl: 0,
      maxAttempts: undefined as never,
      // The current name given as undefined, the deprecated one with a value (both is refused).
      casAttempts: 10,
      flushOnClear: false,
      keepAlive: true,
      weights: { [server.server]: 1 },
      eject: { failureThreshold: 2, retryAfter: '250ms', maxRetryAfter: '10s' },
      client: undefined as never,
      now: Date.now,
    }
    const cache = memcachedBackend(server.server, all)
    made.push(cache)
    await cache.set('k', { v: 1 })
    expect(await cache.get('k')).toEqual({ v: 1 })
  })
})
