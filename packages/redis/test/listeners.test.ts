import { CacheError, CacheSerializationError, CacheTimeoutError, CacheUnavailableError } from '@cache/core'
import { freePort, type RedisServer, recorder, startRedis, until } from '@cache/test-servers'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type RedisBackend, redisBackend } from '../src/index.js'

/*
 * Listeners are the application's code: whatever they do, every call settles (within its timeout)
 * and nothing escapes the call as an uncaught exception or an unhandled rejection. An `error`
 * listener that throws is reported through the logger, once; the caller gets the failure itself.
 */

const opened: RedisBackend[] = []
afterEach(async () => {
  await Promise.all(opened.splice(0).map((backend) => backend.close().catch(() => {})))
})

/** Counts what escapes to the process while `run` runs (and a little after). */
async function escapes(run: () => Promise<void>): Promise<string[]> {
  const seen: string[] = []
  const onUncaught = (error: Error) => void seen.push(`uncaughtException: ${error.message}`)
  const onUnhandled = (error: unknown) => void seen.push(`unhandledRejection: ${(error as Error)?.message}`)
  // vitest's own handlers would fail the run: ours replace them for the time of the check.
  const uncaught = process.listeners('uncaughtException')
  const unhandled = process.listeners('unhandledRejection')
  process.removeAllListeners('uncaughtException').removeAllListeners('unhandledRejection')
  process.on('uncaughtException', onUncaught).on('unhandledRejection', onUnhandled)
  try {
    await run()
    await new Promise((resolve) => setTimeout(resolve, 100))
  } finally {
    process.off('uncaughtException', onUncaught).off('unhandledRejection', onUnhandled)
    for (const listener of uncaught) process.on('uncaughtException', listener)
    for (const listener of unhandled) process.on('unhandledRejection', listener as () => void)
  }
  return seen
}

/** What `promise` settled with, or 'pending' if it did not within `ms`. */
function outcome(promise: Promise<unknown>, ms: number): Promise<unknown> {
  return Promise.race([
    promise.then(
      (value) => ({ value }),
      (error: unknown) => error,
    ),
    new Promise((resolve) => setTimeout(() => resolve('pending'), ms)),
  ])
}

describe('a throwing error listener while Redis is frozen', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis({ spawn: true })
  })
  afterAll(async () => {
    server?.process?.thaw()
    await server?.stop()
  })

  it('fails every get of a tick with CacheTimeoutError within the timeout, the coalesced ones too, and reports the listener once', async () => {
    const logger = recorder()
    const cache = redisBackend(server.url, { namespace: 'listeners', logger, timeout: '300ms' })
    opened.push(cache)
    await cache.ready('5s')
    cache.on('error', () => {
      throw new Error('listener boom')
    })
    let results: unknown[] = []
    const seen = await escapes(async () => {
      await server.process!.freeze()
      try {
        const started = Date.now()
        // The first goes alone; the others wait for the end of the tick and go as one batch.
        const calls = [
          cache.get('a'),
          cache.get('b'),
          cache.get('c'),
          cache.getMany(['d']),
          cache.set('e', 1),
        ]
        results = await Promise.all(calls.map((call) => outcome(call, 2_000)))
        expect(Date.now() - started).toBeLessThan(1_500)
      } finally {
        server.process!.thaw()
      }
    })
    expect(seen).toEqual([])
    for (const result of results) expect(result).toBeInstanceOf(CacheTimeoutError)
    expect(cache.stats.timeouts).toBeGreaterThanOrEqual(5)
    const reports = logger.lines.filter((line) => line.includes('listener boom'))
    expect(reports).toEqual([
      expect.stringMatching(/^error \[@cache\] redis: an 'error' listener threw: listener boom\b/),
    ])
  })

  it('still tells the other error listeners, and the backend serves once Redis answers', async () => {
    const cache = redisBackend(server.url, { namespace: 'listeners', logger: false, timeout: '300ms' })
    opened.push(cache)
    await cache.set('k', 'v')
    const heard: string[] = []
    cache.on('error', () => {
      throw new Error('first listener')
    })
    cache.on('error', (event) => void heard.push(`${event.operation} ${event.key}`))
    const seen = await escapes(async () => {
      await server.process!.freeze()
      try {
        const results = await Promise.all(
          [cache.get('a'), cache.get('b'), cache.get('c')].map((call) => outcome(call, 2_000)),
        )
        for (const result of results) expect(result).toBeInstanceOf(CacheTimeoutError)
      } finally {
        server.process!.thaw()
      }
    })
    expect(seen).toEqual([])
    expect(heard.sort()).toEqual(['get a', 'get b', 'get c'])
    await cache.ready('5s')
    expect(await cache.get('k')).toBe('v')
  })
})

describe('listeners that throw in a coalesced batch', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis()
  })
  afterAll(async () => {
    await server?.stop()
  })

  it('a hit or miss listener that throws rejects each of its callers and settles every get of the batch', async () => {
    const cache = redisBackend(server.url, { namespace: 'listeners-hit', logger: false })
    opened.push(cache)
    await cache.set('a', 1)
    await cache.set('b', 2)
    cache.on('hit', () => {
      throw new Error('hit listener')
    })
    cache.on('miss', () => {
      throw new Error('miss listener')
    })
    const results = await Promise.all(
      [cache.get('a'), cache.get('b'), cache.get('x'), cache.get('y')].map((call) => outcome(call, 2_000)),
    )
    expect(results.map((result) => (result as Error).message)).toEqual([
      'hit listener',
      'hit listener',
      'miss listener',
      'miss listener',
    ])
  })

  it("an error listener that throws on one key's WRONGTYPE leaves the other gets of the batch their values", async () => {
    const raw = new Redis(server.url)
    try {
      await raw.rpush('listeners-wt:list', 'x')
      const cache = redisBackend(server.url, { namespace: 'listeners-wt', logger: false })
      opened.push(cache)
      await cache.set('a', 1)
      await cache.set('c', 3)
      cache.on('error', () => {
        throw new Error('listener boom')
      })
      const seen = await escapes(async () => {
        const results = await Promise.all(
          [cache.get('a'), cache.get('list'), cache.get('c'), cache.get('a')].map((call) =>
            outcome(call, 2_000),
          ),
        )
        expect(results[0]).toEqual({ value: 1 })
        expect(results[1]).toBeInstanceOf(CacheError)
        expect((results[1] as Error).message).toMatch(/WRONGTYPE/)
        expect(results[2]).toEqual({ value: 3 })
        expect(results[3]).toEqual({ value: 1 })
      })
      expect(seen).toEqual([])
    } finally {
      raw.disconnect()
    }
  })
})

describe('a throwing error listener while Redis is unreachable', () => {
  it('never crashes the process: connection errors are counted, the call rejects, the listener is reported once', async () => {
    const port = await freePort()
    const logger = recorder()
    const cache = redisBackend(`redis://127.0.0.1:${port}`, { namespace: 'x', logger, timeout: '200ms' })
    opened.push(cache)
    cache.on('error', (event) => {
      throw new Error(`listener boom (${event.operation})`)
    })
    let result: unknown
    const seen = await escapes(async () => {
      result = await outcome(cache.get('a'), 2_000)
      await until(() => cache.stats.errors >= 3)
    })
    expect(seen).toEqual([])
    expect(result).toBeInstanceOf(CacheUnavailableError)
    const reports = logger.lines.filter((line) => line.includes('listener boom'))
    expect(reports).toHaveLength(1)
    expect(reports[0]).toMatch(
      /^error \[@cache\] redis: an 'error' listener threw: listener boom \((connection|get)\)/,
    )
  })
})

describe('reads that fail are not counted as hits', () => {
  let server: RedisServer
  let raw: Redis
  beforeAll(async () => {
    server = await startRedis()
    raw = new Redis(server.url)
    await raw.set('hits:foreign', 'not json{')
    await raw.set('hits:ok', '"ok"')
  })
  afterAll(async () => {
    raw?.disconnect()
    await server?.stop()
  })

  it('get, getEntry and getMany of a value that does not parse reject with CacheSerializationError, counting no hit', async () => {
    for (const coalesce of [true, false]) {
      const cache = redisBackend(server.url, { namespace: 'hits', logger: false, coalesce })
      opened.push(cache)
      await cache.ready('5s')
      const events: string[] = []
      cache.on('hit', (event) => void events.push(`hit ${event.key}`))
      cache.on('miss', (event) => void events.push(`miss ${event.key}`))
      await expect(cache.get('foreign')).rejects.toBeInstanceOf(CacheSerializationError)
      await expect(cache.getEntry('foreign')).rejects.toBeInstanceOf(CacheSerializationError)
      await expect(cache.getMany(['ok', 'foreign', 'absent'])).rejects.toBeInstanceOf(CacheSerializationError)
      // In a coalesced batch: the failed key counts nothing, the others their hit or miss.
      const batch = await Promise.all(
        [cache.get('ok'), cache.get('foreign'), cache.get('absent')].map((call) => outcome(call, 2_000)),
      )
      expect(batch[0]).toEqual({ value: 'ok' })
      expect(batch[1]).toBeInstanceOf(CacheSerializationError)
      expect(batch[2]).toEqual({ value: undefined })
      expect(events.sort()).toEqual(['hit ok', 'miss absent'])
      expect(cache.stats).toMatchObject({ hits: 1, misses: 1, errors: 0 })
    }
  })
})

describe('getMany on a client your code left with a WATCH', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis()
  })
  afterAll(async () => {
    await server?.stop()
  })

  it('reads, and leaves the WATCH guarding your own transaction', async () => {
    const client = new Redis(server.url)
    const other = new Redis(server.url)
    try {
      const cache = redisBackend(client, { namespace: 'wt', logger: false })
      opened.push(cache)
      await cache.set('a', 'A')
      await client.watch('wt:x')
      await other.set('wt:x', '1')
      // Before: rejected (our own MULTI/EXEC was aborted by your WATCH), and that EXEC ended it.
      expect(await cache.getMany(['a', 'b'])).toEqual(['A', undefined])
      expect(cache.stats).toMatchObject({ hits: 1, misses: 1, errors: 0 })
      // Your transaction is still refused: the watched key changed.
      expect(await client.multi().set('wt:y', '1').exec()).toBeNull()
      expect(await other.exists('wt:y')).toBe(0)
    } finally {
      client.disconnect()
      other.disconnect()
    }
  })
})
