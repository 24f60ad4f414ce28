import { CacheSerializationError } from '@cache/core'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RedisBackend, type RedisBackendOptions, redisBackend } from '../src/index.js'

/*
 * The README's "Order" where an answer needs more than the first reply: a batch of gets the
 * server refuses as a whole (an ACL), and values a default reader gets as text but must decode
 * from their bytes (compressed, or written by another serializer). A get then a write of its key
 * in one tick still reads what the key held before the write.
 */

let server: RedisServer
let raw: Redis
const open: RedisBackend[] = []
let users = 0

function backend(namespace: string, options: RedisBackendOptions = {}, url = server.url): RedisBackend {
  const cache = redisBackend(url, { namespace, logger: false, ...options })
  open.push(cache)
  return cache
}

/** A backend logged in as a new ACL user with the given rules (besides `on` and its password). */
async function limited(namespace: string, ...rules: string[]): Promise<RedisBackend> {
  const user = `order${process.pid}u${users++}`
  await raw.call('ACL', 'SETUSER', user, 'on', '>secret', 'resetkeys', ...rules)
  const cache = backend(namespace, {}, server.url.replace('redis://', `redis://${user}:secret@`))
  await cache.ready()
  return cache
}

function outcome<T>(call: Promise<T>): Promise<{ value: T } | { error: unknown }> {
  return call.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
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

describe('a batch of gets the server refuses for one key (NOPERM)', () => {
  it('reads what a key held before a set called after the get in the same tick', async () => {
    const ns = `ok${process.pid}`
    const cache = await limited(ns, `~${ns}:a*`, '+@all')
    for (let i = 0; i < 5; i++) {
      await cache.set('ak', `old${i}`)
      const first = cache.get('awarm')
      const read = cache.get('ak')
      const refused = outcome(cache.get('bforbidden'))
      const write = cache.set('ak', `new${i}`)
      const [, value, denied] = await Promise.all([first, read, refused, write])
      expect(value).toBe(`old${i}`)
      expect((denied as { error: Error }).error.message).toMatch(/NOPERM/)
      expect(await cache.get('ak')).toBe(`new${i}`)
    }
  })

  it('reads what a key held before a delete called after the get in the same tick', async () => {
    const ns = `okd${process.pid}`
    const cache = await limited(ns, `~${ns}:a*`, '+@all')
    await cache.set('ak', 'old')
    const [, denied, value] = await Promise.all([
      cache.get('awarm'),
      outcome(cache.get('bforbidden')),
      cache.get('ak'),
      cache.delete('ak'),
    ])
    expect(value).toBe('old')
    expect((denied as { error: Error }).error.message).toMatch(/NOPERM/)
    expect(await cache.get('ak')).toBeUndefined()
  })
})

describe('a batch of gets the server refuses as a whole (EVAL denied)', () => {
  it('never answers a get with the value of a set called after it in the same tick', async () => {
    const ns = `noeval${process.pid}`
    const cache = await limited(ns, `~${ns}:*`, '+@all', '-eval')
    await cache.set('k', 'old')
    const [, read, other] = await Promise.all([
      cache.get('first'),
      outcome(cache.get('k')),
      outcome(cache.get('other')),
      cache.set('k', 'new'),
    ])
    expect(read).not.toEqual({ value: 'new' })
    // Refused, not answered with a value from after the set: the error says what to change.
    expect((other as { error: Error }).error.message).toMatch(/NOPERM.*coalesce: false/)
    // Later ticks still answer every get.
    await cache.set('k2', 'two')
    expect(await Promise.all([cache.get('k'), cache.get('k2'), cache.get('none')])).toEqual([
      'new',
      'two',
      undefined,
    ])
  })
})

describe('getMany for a user the server refuses scripts (-@scripting)', () => {
  it('reads hits and misses, and still refuses a key of another type with WRONGTYPE', async () => {
    const ns = `noevalmany${process.pid}`
    const cache = await limited(ns, `~${ns}:*`, '+@all', '-@scripting')
    await cache.setMany([{ key: 'a', value: 'A' }])
    expect(await cache.getMany(['a', 'none'])).toEqual(['A', undefined])
    await raw.rpush(`${ns}:list`, 'job')
    await expect(cache.getMany(['a', 'list'])).rejects.toThrow(/WRONGTYPE/)
  })
})

describe('values a default reader must decode from their bytes', () => {
  const big = (i: number) => ({ i, text: 'lorem ipsum '.repeat(50) })

  async function compressed(ns: string): Promise<{ writer: RedisBackend; reader: RedisBackend }> {
    const writer = backend(ns, { compressThreshold: 64 })
    const reader = backend(ns)
    await Promise.all([writer.ready(), reader.ready()])
    return { writer, reader }
  }

  it('a get first of its tick reads a compressed value from before a delete called after it', async () => {
    const { writer, reader } = await compressed(`cz1${process.pid}`)
    for (let i = 0; i < 3; i++) {
      await writer.set('k', big(i))
      const [value] = await Promise.all([reader.get('k'), reader.delete('k')])
      expect(value).toEqual(big(i))
    }
  })

  it('a batched get reads a compressed value from before a set called after it', async () => {
    const { writer, reader } = await compressed(`cz2${process.pid}`)
    for (let i = 0; i < 3; i++) {
      await writer.set('k', big(i))
      const [, value] = await Promise.all([reader.get('x'), reader.get('k'), reader.set('k', 'new')])
      expect(value).toEqual(big(i))
      expect(await reader.get('k')).toBe('new')
    }
  })

  it('getMany reads a compressed value from before a set called after it', async () => {
    const { writer, reader } = await compressed(`cz3${process.pid}`)
    await writer.set('j', big(7))
    const [values] = await Promise.all([reader.getMany(['none', 'j']), reader.set('j', 'new')])
    expect(values).toEqual([undefined, big(7)])
  })

  it('a value written by another serializer fails to parse rather than reading a delete called after it', async () => {
    const ns = `v8w${process.pid}`
    const writer = backend(ns, { serializer: 'v8' })
    const reader = backend(ns)
    await writer.set('k', { v8: true })
    const [read] = await Promise.all([outcome(reader.get('k')), reader.delete('k')])
    expect((read as { error: unknown }).error).toBeInstanceOf(CacheSerializationError)
    await writer.set('k', { v8: true })
    const [, batched] = await Promise.all([reader.get('x'), outcome(reader.get('k')), reader.delete('k')])
    expect((batched as { error: unknown }).error).toBeInstanceOf(CacheSerializationError)
  })
})
