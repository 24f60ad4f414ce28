import {
  CacheClosedError,
  CacheError,
  CacheSerializationError,
  CacheTimeoutError,
  CacheUnavailableError,
  v8Serializer,
} from '@cache/core'
import { type FaultProxy, type RedisServer, startFaultProxy, startRedis } from '@cache/test-servers'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RedisBackend, type RedisBackendOptions, redisBackend } from '../src/index.js'

let server: RedisServer
let raw: Redis
const open: RedisBackend[] = []
let namespaces = 0

function backend(options: RedisBackendOptions = {}, url = server.url): RedisBackend {
  const cache = redisBackend(url, { namespace: `co${process.pid}n${namespaces++}`, ...options })
  open.push(cache)
  return cache
}

/** Counts the commands `cache` sends from now on, by name; `take()` returns them and starts again. */
function countCommands(cache: RedisBackend): { take(): Record<string, number> } {
  let sent: Record<string, number> = {}
  const client = cache.client as Redis
  const send = client.sendCommand.bind(client)
  client.sendCommand = (command, stream) => {
    sent[command.name] = (sent[command.name] ?? 0) + 1
    return send(command, stream)
  }
  return {
    take() {
      const taken = sent
      sent = {}
      return taken
    },
  }
}

/** Counts the writes to the socket of `cache`'s client from now on; `take()` returns them and starts again. */
function countSocketWrites(cache: RedisBackend): { take(): number } {
  let writes = 0
  const stream = (
    cache.client as unknown as { stream: Record<'_write' | '_writev', (...args: unknown[]) => void> }
  ).stream
  for (const method of ['_write', '_writev'] as const) {
    const original = stream[method]!.bind(stream)
    stream[method] = (...args: unknown[]) => {
      writes++
      original(...args)
    }
  }
  return {
    take() {
      const taken = writes
      writes = 0
      return taken
    },
  }
}

/** Every outcome, as a value or the error, without throwing. */
function settle<T>(calls: Promise<T>[]): Promise<({ value: T } | { error: unknown })[]> {
  return Promise.all(
    calls.map((call) =>
      call.then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
    ),
  )
}

beforeAll(async () => {
  server = await startRedis()
  raw = new Redis(server.url)
})
afterAll(async () => {
  await Promise.all(open.map((cache) => cache.close()))
  raw?.disconnect()
  await server?.stop()
})

describe('calls issued in the same tick', () => {
  it('each get of a batch gets its own value, hit or miss', async () => {
    const cache = backend()
    await Promise.all(Array.from({ length: 40 }, (_, i) => cache.set(`k${i}`, { i, text: `v${i}` })))
    const values = await Promise.all(Array.from({ length: 60 }, (_, i) => cache.get(`k${i}`)))
    expect(values).toEqual(Array.from({ length: 60 }, (_, i) => (i < 40 ? { i, text: `v${i}` } : undefined)))
  })

  it('fails only the caller whose key holds another type (WRONGTYPE), not the rest of the batch, counting nothing', async () => {
    const cache = backend()
    await cache.set('a', 'A')
    await cache.set('c', 'C')
    await raw.rpush(`${cache.namespace}:b`, 'x')
    const errorsBefore = cache.stats.errors
    const [a, b, c, d] = await settle([cache.get('a'), cache.get('b'), cache.get('c'), cache.get('d')])
    expect(a).toEqual({ value: 'A' })
    expect(c).toEqual({ value: 'C' })
    expect(d).toEqual({ value: undefined })
    const error = (b as { error: unknown }).error
    expect(error).toBeInstanceOf(CacheError)
    expect(String((error as Error).message)).toMatch(/WRONGTYPE/)
    // The caller's error (a key another program wrote), not an outage.
    expect(cache.stats.errors - errorsBefore).toBe(0)
  })

  it('fails a get of a key of another type with WRONGTYPE even when a set later in the tick replaces the key', async () => {
    const cache = backend()
    await cache.set('a', 'A')
    await raw.rpush(`${cache.namespace}:b`, 'x')
    // The get of `b` is called before the set: it reads the list (WRONGTYPE), never the set's value.
    const [first, a, b, set, after] = await settle([
      cache.get('a'),
      cache.get('a'),
      cache.get('b'),
      cache.set('b', 'B'),
      cache.get('b'),
    ])
    expect(first).toEqual({ value: 'A' })
    expect(a).toEqual({ value: 'A' })
    expect(String(((b as { error: unknown }).error as Error)?.message)).toMatch(/WRONGTYPE/)
    expect(set).toEqual({ value: undefined })
    expect(after).toEqual({ value: 'B' })
  })

  it('fails only the caller whose stored value is not valid JSON', async () => {
    const cache = backend()
    await cache.set('good', 1)
    await raw.set(`${cache.namespace}:bad`, '{not json')
    const [good, bad] = await settle([cache.get('good'), cache.get('bad')])
    expect(good).toEqual({ value: 1 })
    expect((bad as { error: unknown }).error).toBeInstanceOf(CacheSerializationError)
  })

  it('reads what a set issued earlier in the same tick wrote, and a delete after it', async () => {
    const cache = backend()
    await cache.set('x', 'old')
    const calls = [
      cache.get('x'),
      cache.set('x', 'new'),
      cache.get('x'),
      cache.get('x'),
      cache.delete('x'),
      cache.get('x'),
      cache.set('x', 'last'),
      cache.set('y', 'other'),
      cache.has('x'),
      cache.get('x'),
    ]
    expect(await Promise.all(calls)).toEqual([
      'old',
      undefined,
      'new',
      'new',
      true,
      undefined,
      undefined,
      undefined,
      true,
      'last',
    ])
  })

  it('keeps each set its own TTL and value', async () => {
    const cache = backend()
    await Promise.all([cache.set('short', 1, 10), cache.set('long', 2, 1000), cache.set('none', 3)])
    const ns = cache.namespace
    expect(await raw.pttl(`${ns}:short`)).toBeLessThanOrEqual(10_000)
    expect(await raw.pttl(`${ns}:short`)).toBeGreaterThan(9_000)
    expect(await raw.pttl(`${ns}:long`)).toBeGreaterThan(999_000)
    expect(await raw.pttl(`${ns}:none`)).toBe(-1)
    expect(await Promise.all([cache.get('short'), cache.get('long'), cache.get('none')])).toEqual([1, 2, 3])
  })

  it('counts hits, misses, sets and latencies exactly, one per call', async () => {
    const cache = backend()
    await Promise.all(Array.from({ length: 30 }, (_, i) => cache.set(`s${i}`, i)))
    await Promise.all(Array.from({ length: 50 }, (_, i) => cache.get(`s${i}`)))
    const stats = cache.stats
    expect(stats.sets).toBe(30)
    expect(stats.hits).toBe(30)
    expect(stats.misses).toBe(20)
    expect(stats.errors).toBe(0)
    expect(stats.operations).toBe(80)
  })

  it('reads values of a binary serializer and of a differently configured writer', async () => {
    const binary = backend({ serializer: v8Serializer })
    const values = [new Map([[1, 'one']]), new Date(5), 7n]
    await Promise.all(values.map((value, i) => binary.set(`b${i}`, value)))
    expect(await Promise.all(values.map((_, i) => binary.get(`b${i}`)))).toEqual(values)

    const text = backend()
    const compressing = redisBackend(server.url, { namespace: text.namespace, compressThreshold: 64 })
    open.push(compressing)
    const big = 'x'.repeat(5000)
    await compressing.set('big', big)
    await text.set('small', 's')
    expect(await Promise.all([text.get('small'), text.get('big'), text.get('small')])).toEqual([
      's',
      big,
      's',
    ])
  })

  it('sends the gets of one tick after the first as one command, sets and a lone get as themselves', async () => {
    const cache = backend()
    await cache.ready()
    const commands = countCommands(cache)
    // Sets go alone; the first get of a tick goes alone, the other 49 share one script.
    await Promise.all(Array.from({ length: 50 }, (_, i) => cache.set(`m${i}`, i)))
    expect(commands.take()).toEqual({ set: 50 })
    await Promise.all(Array.from({ length: 50 }, (_, i) => cache.get(`m${i}`)))
    expect(commands.take()).toEqual({ get: 1, eval: 1 })

    await cache.get('m1')
    await cache.set('m1', 1)
    expect(commands.take()).toEqual({ get: 1, set: 1 })
  })

  it('sends the first set of a tick at once and the rest of the tick in one socket write, each still its own SET', async () => {
    const cache = backend()
    await cache.ready()
    const commands = countCommands(cache)
    const writes = countSocketWrites(cache)
    await Promise.all(Array.from({ length: 50 }, (_, i) => cache.set(`w${i}`, i)))
    expect(writes.take()).toBe(2)
    expect(commands.take()).toEqual({ set: 50 })
    expect(await raw.mget(Array.from({ length: 50 }, (_, i) => `${cache.namespace}:w${i}`))).toEqual(
      Array.from({ length: 50 }, (_, i) => String(i)),
    )
    // A lone set of a later tick is one write of its own, sent before set() returns.
    const lone = cache.set('w0', 'again')
    expect(writes.take()).toBe(1)
    await lone
    expect(writes.take()).toBe(0)
  })

  it('sends the commands of a tick that follow a set in the same socket write, in call order', async () => {
    const cache = backend()
    await cache.ready()
    await cache.set('g', 'old')
    const writes = countSocketWrites(cache)
    const calls = [cache.get('g'), cache.get('g'), cache.set('g', 'new'), cache.get('g'), cache.get('h')]
    // The first get, and the second (sent when the set comes after it), went at once; the set
    // and the batch of the last two gets wait for the end of the tick, and leave together.
    expect(writes.take()).toBe(2)
    expect(await Promise.all(calls)).toEqual(['old', 'old', undefined, 'new', undefined])
    expect(writes.take()).toBe(1)
  })

  it('sends a set and the gets after it in one tick in two socket writes: the set, then the rest at the end of the tick', async () => {
    const cache = backend()
    await cache.ready()
    await cache.set('t', 'old')
    const writes = countSocketWrites(cache)
    const commands = countCommands(cache)
    const calls = [cache.set('t', 'new'), cache.get('t'), cache.get('t'), cache.get('u')]
    expect(writes.take()).toBe(1)
    expect(await Promise.all(calls)).toEqual([undefined, 'new', 'new', undefined])
    // The first get and the batch of the other two left with the end of the tick, together.
    expect(writes.take()).toBe(1)
    expect(commands.take()).toEqual({ set: 1, get: 1, eval: 1 })
  })

  it("measures a set's latency from its own tick, not from an earlier one", async () => {
    const cache = backend()
    await cache.ready()
    await cache.set('l', 1)
    await new Promise((resolve) => setTimeout(resolve, 400))
    await Promise.all([cache.set('l', 2), cache.set('l', 3)])
    const stats = cache.stats
    expect(stats.operations).toBe(3)
    expect(stats.maxLatencyMs).toBeLessThan(300)
  })

  it('with coalesce: false writes every set to the socket by itself', async () => {
    const cache = backend({ coalesce: false })
    await cache.ready()
    const writes = countSocketWrites(cache)
    await Promise.all(Array.from({ length: 20 }, (_, i) => cache.set(`w${i}`, i)))
    expect(writes.take()).toBeGreaterThan(1)
  })

  it('fails only the get the server refuses (NOPERM), not the others batched with it', async () => {
    const ns = `co${process.pid}aclget`
    await raw.call('ACL', 'SETUSER', `reader${process.pid}`, 'on', '>secret', `~${ns}:ok*`, '+@all')
    await raw.set(`${ns}:ok1`, '"one"')
    await raw.set(`${ns}:ok2`, '"two"')
    const cache = backend(
      { namespace: ns },
      server.url.replace('redis://', `redis://reader${process.pid}:secret@`),
    )
    await cache.ready()
    const [a, b, c] = await settle([cache.get('ok1'), cache.get('secret'), cache.get('ok2')])
    expect(a).toEqual({ value: 'one' })
    expect((b as { error: Error }).error.message).toMatch(/NOPERM/)
    expect(c).toEqual({ value: 'two' })
    await cache.close()
  })

  it('fails only the set the server refuses (NOPERM), not the others written with it, and counts only those stored', async () => {
    const ns = `co${process.pid}acl`
    await raw.call('ACL', 'SETUSER', `limited${process.pid}`, 'on', '>secret', `~${ns}:ok*`, '+@all')
    const cache = backend(
      { namespace: ns },
      server.url.replace('redis://', `redis://limited${process.pid}:secret@`),
    )
    await cache.ready()
    const writes = countSocketWrites(cache)
    const [a, b, c] = await settle([
      cache.set('ok1', 1),
      cache.set('no', 2),
      cache.set('ok2', 3),
      cache.set('ok3', 4),
    ])
    expect(writes.take()).toBe(2)
    expect(a).toEqual({ value: undefined })
    expect(c).toEqual({ value: undefined })
    expect((b as { error: unknown }).error).toBeInstanceOf(CacheError)
    expect(String((b as { error: Error }).error.message)).toMatch(/NOPERM/)
    expect(await raw.mget(`${ns}:ok1`, `${ns}:no`, `${ns}:ok2`, `${ns}:ok3`)).toEqual(['1', null, '3', '4'])
    expect(cache.stats.sets).toBe(3)
  })

  it('with coalesce: false sends every get as its own command', async () => {
    const cache = backend({ coalesce: false })
    await cache.ready()
    const commands = countCommands(cache)
    await Promise.all(Array.from({ length: 20 }, (_, i) => cache.get(`m${i}`)))
    expect(commands.take()).toEqual({ get: 20 })
  })

  it('refuses a coalesce option that is not a boolean', () => {
    expect(() => redisBackend(server.url, { coalesce: 'yes' as unknown as boolean })).toThrow(/coalesce/)
  })

  it('rejects a batch pending at close() with the outcome each call would have alone, and close resolves', async () => {
    const cache = redisBackend(server.url, { namespace: `co${process.pid}close` })
    await cache.ready()
    await cache.set('v', 'kept')
    const calls = [cache.get('v'), cache.get('v'), cache.set('w', 1), cache.get('w')]
    await cache.close()
    const outcomes = await settle(calls)
    for (const outcome of outcomes) {
      if ('error' in outcome) expect(outcome.error).toBeInstanceOf(CacheError)
    }
    expect(outcomes[0]).toEqual({ value: 'kept' })
    expect(outcomes[1]).toEqual({ value: 'kept' })
    await expect(cache.get('v')).rejects.toBeInstanceOf(CacheClosedError)
  })
})

describe('a batch whose link fails', () => {
  let proxy: FaultProxy
  beforeAll(async () => {
    proxy = await startFaultProxy(server)
  })
  afterAll(async () => {
    await proxy?.close()
  })

  it('times out every caller of a batch with CacheTimeoutError, each counted', async () => {
    const cache = backend({ timeout: '200ms' }, `redis://${proxy.host}:${proxy.port}`)
    await cache.set('t', 1)
    proxy.setMode('blackhole')
    try {
      const before = cache.stats.timeouts
      const outcomes = await settle([
        ...Array.from({ length: 10 }, (_, i) => cache.get(`t${i}`)),
        ...Array.from({ length: 10 }, (_, i) => cache.set(`t${i}`, i)),
      ])
      for (const outcome of outcomes)
        expect((outcome as { error: unknown }).error).toBeInstanceOf(CacheTimeoutError)
      expect(cache.stats.timeouts - before).toBe(20)
    } finally {
      proxy.setMode('pass')
      proxy.dropAll()
    }
  })

  it('settles every caller when the link drops after the server answered', async () => {
    const cache = backend({ timeout: '500ms' }, `redis://${proxy.host}:${proxy.port}`)
    await Promise.all(Array.from({ length: 10 }, (_, i) => cache.set(`d${i}`, i)))
    const dropped = proxy.dropAfterNextReply()
    const outcomes = await settle(Array.from({ length: 10 }, (_, i) => cache.get(`d${i}`)))
    await dropped
    outcomes.forEach((outcome, i) => {
      if ('error' in outcome) expect(outcome.error).toBeInstanceOf(CacheUnavailableError)
      else expect(outcome.value).toBe(i)
    })
  })
  it('settles every set of a tick when the link drops after the server answered, and a set that resolved is stored', async () => {
    const cache = backend({ timeout: '500ms' }, `redis://${proxy.host}:${proxy.port}`)
    await cache.ready()
    const dropped = proxy.dropAfterNextReply()
    const outcomes = await settle(Array.from({ length: 20 }, (_, i) => cache.set(`s${i}`, i)))
    await dropped
    const stored = await raw.mget(Array.from({ length: 20 }, (_, i) => `${cache.namespace}:s${i}`))
    outcomes.forEach((outcome, i) => {
      if ('error' in outcome) expect(outcome.error).toBeInstanceOf(CacheUnavailableError)
      else expect(stored[i]).toBe(String(i))
    })
  })
})

describe('getMany on one node', () => {
  it('reads hits, misses, a binary serializer and a compressing writer, each counted', async () => {
    const text = backend()
    const compressing = redisBackend(server.url, { namespace: text.namespace, compressThreshold: 64 })
    open.push(compressing)
    const big = 'y'.repeat(5000)
    await compressing.set('big', big)
    await text.setMany([
      { key: 'a', value: { a: 1 } },
      { key: 'b', value: new Date(3) },
    ])
    const before = { ...text.stats }
    expect(await text.getMany(['a', 'missing', 'big', 'b'])).toEqual([{ a: 1 }, undefined, big, new Date(3)])
    expect(text.stats.hits - before.hits).toBe(3)
    expect(text.stats.misses - before.misses).toBe(1)

    const binary = backend({ serializer: v8Serializer })
    await binary.setMany([{ key: 'm', value: new Map([[1, 2]]) }])
    expect(await binary.getMany(['m', 'none'])).toEqual([new Map([[1, 2]]), undefined])
  })
})

describe('getMany on one node: commands and socket writes', () => {
  it('reads keys that are all found with one MGET in one write', async () => {
    const cache = backend()
    await cache.setMany([
      { key: 'a', value: 'A' },
      { key: 'b', value: 'B' },
    ])
    const writes = countSocketWrites(cache)
    const commands = countCommands(cache)
    const read = cache.getMany(['a', 'b'])
    expect(writes.take()).toBe(1)
    expect(await read).toEqual(['A', 'B'])
    // Before: MULTI, MGET, EXISTS and EXEC for every call.
    expect(commands.take()).toEqual({ mget: 1 })
    expect(writes.take()).toBe(0)
  })

  it('asks the types of the keys MGET answered nil after it, in one write', async () => {
    const cache = backend()
    await cache.setMany([
      { key: 'a', value: 'A' },
      { key: 'b', value: 'B' },
    ])
    const writes = countSocketWrites(cache)
    const commands = countCommands(cache)
    expect(await cache.getMany(['a', 'nope', 'b', 'none'])).toEqual(['A', undefined, 'B', undefined])
    expect(commands.take()).toEqual({ mget: 1, type: 2 })
    expect(writes.take()).toBe(2)
  })

  it('in a tick with sets, sends its MGET between the sets called before and after it', async () => {
    const cache = backend()
    await cache.ready()
    const writes = countSocketWrites(cache)
    const calls = [cache.set('c', 'C'), cache.getMany(['c', 'd']), cache.set('d', 'D')] as const
    // The first set, then the MGET; the set after it waits for the tick's end.
    expect(writes.take()).toBe(2)
    const [, many] = await Promise.all(calls)
    // d is read as the miss MGET saw, though a string when its type is asked.
    expect(many).toEqual(['C', undefined])
    expect(writes.take()).toBe(2)
    expect(await cache.getMany(['c', 'd'])).toEqual(['C', 'D'])
  })
})
