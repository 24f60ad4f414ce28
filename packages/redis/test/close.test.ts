import { CacheClosedError, type CacheEvent, CacheSerializationError, CacheTimeoutError } from '@cache/core'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { type Cluster, Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type RedisBackend, type RedisBackendOptions, redisBackend } from '../src/index.js'
import { openWithRaw, useSingleAndCluster } from './servers.js'

const servers = useSingleAndCluster()

const topologies = [
  { name: 'one node', url: servers.singleUrl, keys: 20_000 },
  { name: 'cluster', url: servers.clusterUrl, keys: 6_000 },
]

describe.each(topologies)('calls in flight at close() ($name)', ({ name, url, keys: many }) => {
  let n = 0
  const opened: { cache: RedisBackend; raw: Redis | Cluster }[] = []
  afterEach(async () => {
    for (const { cache, raw } of opened.splice(0)) {
      await cache.close()
      raw.disconnect()
    }
  })

  /** A backend in a namespace of its own (small SCAN pages, so a sweep takes many round trips), watched for errors. */
  const open = async (options: RedisBackendOptions = {}) => {
    const namespace = `close-${name.replace(/\W+/g, '-')}-${process.pid}-${n++}`
    const pair = await openWithRaw(url(), namespace, { timeout: '5s', scanCount: 100, ...options })
    opened.push(pair)
    const errors: CacheEvent[] = []
    pair.cache.on('error', (event) => errors.push(event))
    return { ...pair, namespace, errors }
  }

  /** Writes `count` keys of the namespace with the raw client, 1000 at a time. */
  const fill = async (raw: Redis | Cluster, namespace: string, count: number) => {
    for (let i = 0; i < count; i += 1000) {
      const batch = Array.from({ length: Math.min(count, i + 1000) - i }, (_, j) => `${namespace}:k${i + j}`)
      await Promise.all(batch.map((key) => raw.set(key, '1')))
    }
  }

  /** How many keys of the namespace the server holds (every master of a cluster). */
  const stored = async (raw: Redis | Cluster, namespace: string) => {
    const nodes = 'nodes' in raw ? (raw as Cluster).nodes('master') : [raw as Redis]
    let count = 0
    for (const node of nodes) {
      let cursor = '0'
      do {
        const [next, found] = await node.scan(cursor, 'MATCH', `${namespace}:*`, 'COUNT', 1000)
        cursor = next
        count += found.length
      } while (cursor !== '0')
    }
    return count
  }

  it('lets a clear() under way finish: it resolves, the namespace is empty, nothing is counted', async () => {
    const { cache, raw, namespace, errors } = await open()
    await fill(raw, namespace, many)
    let finished = false
    const clearing = cache.clear().then(() => {
      finished = true
    })
    await new Promise((resolve) => setTimeout(resolve, 5))
    expect(finished, 'the clear was still under way when close() was called').toBe(false)
    await cache.close()
    await expect(clearing).resolves.toBeUndefined()
    expect(await stored(raw, namespace)).toBe(0)
    expect(cache.stats.errors).toBe(0)
    expect(errors).toEqual([])
  })

  it('refuses calls made while a clear() finishes, with CacheClosedError, and counts none', async () => {
    const { cache, raw, namespace, errors } = await open()
    await fill(raw, namespace, many)
    const clearing = cache.clear()
    await new Promise((resolve) => setTimeout(resolve, 5))
    const closing = cache.close()
    const late = [cache.set('late', 1), cache.incr('late-count'), cache.get('k1'), cache.clear()]
    for (const call of late) await expect(call).rejects.toBeInstanceOf(CacheClosedError)
    await closing
    await clearing
    expect(await raw.exists(`${namespace}:late`)).toBe(0)
    expect(await raw.exists(`${namespace}:late-count`)).toBe(0)
    expect(cache.stats.errors).toBe(0)
    expect(errors).toEqual([])
  })

  it('lets batches of many keys under way finish with their real results', async () => {
    const { cache, raw, namespace, errors } = await open()
    const keys = Array.from({ length: many }, (_, i) => `b${i}`)
    await cache.setMany(keys.map((key, i) => ({ key, value: i })))
    const half = keys.slice(0, many / 2)
    const calls = [
      cache.getMany(keys),
      cache.deleteMany(half),
      cache.setMany(keys.map((key) => ({ key: `${key}-new`, value: key }))),
    ]
    await cache.close()
    const [read, removed, written] = await Promise.all(calls)
    expect(read).toEqual(keys.map((_, i) => i))
    expect(removed).toBe(half.length)
    expect(written).toBeUndefined()
    expect(await stored(raw, namespace)).toBe(many - half.length + many)
    expect(cache.stats.errors).toBe(0)
    expect(errors).toEqual([])
  })

  it('lets a get that reads its value twice (stored compressed by another client) finish', async () => {
    const { cache, namespace, errors } = await open()
    const other = redisBackend(url(), { namespace, compressThreshold: 64 })
    const big = 'x'.repeat(10_000)
    try {
      await other.set('packed', big)
    } finally {
      await other.close()
    }
    const reads = Promise.allSettled([cache.get('packed'), cache.get('packed'), cache.get('packed')])
    await cache.close()
    const fulfilled = { status: 'fulfilled', value: big }
    expect(await reads).toEqual([fulfilled, fulfilled, fulfilled])
    expect(cache.stats.errors).toBe(0)
    expect(errors).toEqual([])
  })

  it('closes once lone gets are answered, also one whose stored value does not parse', async () => {
    const { cache, raw, namespace, errors } = await open()
    await raw.set(`${namespace}:bad`, '{not json')
    await raw.set(`${namespace}:good`, '"G"')
    await cache.ready()
    const bad = cache.get('bad').then(
      () => undefined,
      (error: unknown) => error,
    )
    expect(await bad).toBeInstanceOf(CacheSerializationError)
    const good = cache.get('good')
    await cache.close()
    expect(await good).toBe('G')
    expect(cache.stats.errors).toBe(0)
    expect(errors).toEqual([])
  }, 10_000)

  it('rejects the next page of a keys() listing under way with CacheClosedError, counted nowhere', async () => {
    const { cache, raw, namespace, errors } = await open()
    await fill(raw, namespace, 2_000)
    const listed: string[] = []
    const listing = (async () => {
      for await (const key of cache.keys()) {
        listed.push(key)
        if (listed.length === 1) await cache.close()
      }
    })()
    await expect(listing).rejects.toBeInstanceOf(CacheClosedError)
    expect(listed.length).toBeLessThan(2_000)
    expect(cache.stats.errors).toBe(0)
    expect(errors).toEqual([])
  })
})

describe('close() after an incr or atomicUpdate reported failed against a frozen server', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis({ spawn: true })
  })
  afterAll(async () => {
    server?.process?.thaw()
    await server?.stop()
  })

  /** A backend with a 200 ms timeout whose error events are kept, and a direct link to check Redis. */
  function watched(namespace: string): { cache: RedisBackend; raw: Redis; events: CacheEvent[] } {
    const cache = redisBackend(server.url, { namespace, timeout: '200ms', logger: false })
    const events: CacheEvent[] = []
    cache.on('error', (event) => events.push(event))
    return { cache, raw: new Redis(server.url), events }
  }

  const applied = /applied although it was reported failed/
  const cases = [
    { call: 'incr', when: 'after the failure' },
    { call: 'incr', when: 'while the call is in flight' },
    { call: 'atomicUpdate', when: 'after the failure' },
    { call: 'atomicUpdate', when: 'while the call is in flight' },
  ] as const

  it.each(cases)(
    'never lets a failed $call that Redis runs once it resumes go unreported (close() $when)',
    async ({ call, when }) => {
      const namespace = `late-${call}-${when.split(' ')[0]}`
      const { cache, raw, events } = watched(namespace)
      try {
        await cache.set('c', 1)
        await cache.incr('c')
        // Redis freezes with the write sent: an incr is sent frozen, an atomicUpdate's write
        // once its fn (which freezes Redis after the read) returns.
        let fnReturned = Promise.resolve()
        const update = (): Promise<unknown> => {
          if (call === 'incr') return cache.incr('c')
          let returned = (): void => {}
          fnReturned = new Promise((resolve) => (returned = resolve))
          return cache.atomicUpdate<number>('c', async (n) => {
            await server.process!.freeze()
            setTimeout(returned, 20)
            return (n ?? 0) + 1
          })
        }
        if (call === 'incr') await server.process!.freeze()
        let closed: Promise<void> | undefined
        try {
          const failed = update().then(
            () => undefined,
            (error: unknown) => error,
          )
          await fnReturned
          if (when === 'while the call is in flight') closed = cache.close()
          expect(await failed).toBeInstanceOf(CacheTimeoutError)
          closed ??= cache.close()
          await closed
        } finally {
          server.process!.thaw()
        }
        // Redis runs the command it held when it resumes.
        const deadline = Date.now() + 3000
        while (Number(await raw.get(`${namespace}:c`)) !== 3 && Date.now() < deadline)
          await new Promise((resolve) => setTimeout(resolve, 20))
        expect(Number(await raw.get(`${namespace}:c`))).toBe(3)
        const said = events.filter((event) => event.operation === call && applied.test(String(event.error)))
        expect(said.map((event) => event.key)).toEqual(['c'])
      } finally {
        server.process!.thaw()
        await cache.close()
        raw.disconnect()
      }
    },
  )

  it.each(['settled in the background', 'settled by close()'])(
    'reports nothing as applied for an incr Redis refused past the safe integers once it resumed (%s)',
    async (how) => {
      const namespace = `refused-${how.split(' ')[2]}`
      const { cache, raw, events } = watched(namespace)
      try {
        await cache.set('c', 1)
        await raw.set(`${namespace}:c`, String(Number.MAX_SAFE_INTEGER))
        await server.process!.freeze()
        let failed: unknown
        try {
          failed = await cache.incr('c').then(
            () => undefined,
            (error: unknown) => error,
          )
        } finally {
          server.process!.thaw()
        }
        expect(failed).toBeInstanceOf(CacheTimeoutError)
        if (how === 'settled in the background') {
          // The settle retries every 100–200 ms once Redis answers again.
          await new Promise((resolve) => setTimeout(resolve, 1500))
        }
        await cache.close()
        expect(await raw.get(`${namespace}:c`)).toBe(String(Number.MAX_SAFE_INTEGER))
        expect(events.filter((event) => /applied/.test(String(event.error)))).toEqual([])
      } finally {
        server.process!.thaw()
        await cache.close()
        raw.disconnect()
      }
    },
  )
})
