import type { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RedisBackend, type RedisBackendOptions, redisBackend } from '../src/index.js'
import { openWithRaw, useSingleAndCluster } from './servers.js'

/*
 * The README's "Order": commands reach the server in the order they were called. Each write-ish
 * operation is followed, in the same tick, by a read of its key; the read must see the write.
 * Run on one node with and without `coalesce`, and on a 3-master cluster, also with a get issued
 * before the write in the same tick (so the read after it is one of a batch).
 */

const servers = useSingleAndCluster()

/** A write of `k` in a state set up by `before`, and what the key holds once it is applied. */
interface Writer {
  name: string
  before: unknown
  write(cache: RedisBackend, k: string): Promise<unknown>
  after: unknown
}

const writers: Writer[] = [
  { name: 'set', before: 'old', write: (c, k) => c.set(k, 'new'), after: 'new' },
  { name: 'add', before: undefined, write: (c, k) => c.add(k, 'new'), after: 'new' },
  { name: 'delete', before: 'old', write: (c, k) => c.delete(k), after: undefined },
  { name: 'incr', before: 5, write: (c, k) => c.incr(k), after: 6 },
  { name: 'incr creating the counter', before: undefined, write: (c, k) => c.incr(k, 3, 60), after: 3 },
  { name: 'incr by a negative step', before: 5, write: (c, k) => c.incr(k, -7), after: -2 },
  {
    name: 'setMany',
    before: 'old',
    write: (c, k) =>
      c.setMany([
        { key: `${k}:other`, value: 1 },
        { key: k, value: 'new' },
      ]),
    after: 'new',
  },
  { name: 'deleteMany', before: 'old', write: (c, k) => c.deleteMany([`${k}:other`, k]), after: undefined },
  {
    name: 'compareAndDelete',
    before: 'old',
    write: (c, k) => c.compareAndDelete(k, 'old'),
    after: undefined,
  },
]

/** A read of `k` and what it returns for a key holding `value` (undefined: absent). */
interface Reader {
  name: string
  read(cache: RedisBackend, k: string): Promise<unknown>
  expected(value: unknown): unknown
}

const readers: Reader[] = [
  { name: 'get', read: (c, k) => c.get(k), expected: (v) => v },
  { name: 'getMany', read: (c, k) => c.getMany([`${k}:none`, k]), expected: (v) => [undefined, v] },
  { name: 'has', read: (c, k) => c.has(k), expected: (v) => v !== undefined },
  {
    name: 'getEntry',
    read: (c, k) => c.getEntry(k).then((entry) => entry?.value),
    expected: (v) => v,
  },
]

const modes: { name: string; url: () => string; options: RedisBackendOptions }[] = [
  { name: 'one node, coalesce on', url: servers.singleUrl, options: {} },
  { name: 'one node, coalesce off', url: servers.singleUrl, options: { coalesce: false } },
  { name: 'cluster', url: servers.clusterUrl, options: {} },
  { name: 'one node, exactlyOnceWindow off', url: servers.singleUrl, options: { exactlyOnceWindow: false } },
  // Numbers written by set in the v8 format are counters incr adds to in one step, as with JSON.
  { name: 'one node, v8 serializer', url: servers.singleUrl, options: { serializer: 'v8' } },
  { name: 'cluster, v8 serializer', url: servers.clusterUrl, options: { serializer: 'v8' } },
]

describe.each(modes)('commands reach the server in call order ($name)', ({ name, url, options }) => {
  let cache: RedisBackend
  let raw: Redis | Cluster
  let n = 0
  const namespace = `order-${name.replace(/\W+/g, '-')}`
  beforeAll(async () => {
    ;({ cache, raw } = await openWithRaw(url(), namespace, options))
  })
  afterAll(async () => {
    await cache?.close()
    raw?.disconnect()
  })

  /** A fresh key holding `value` (undefined: absent). */
  async function prepare(value: unknown): Promise<string> {
    const k = `k${n++}`
    if (value !== undefined) await cache.set(k, value, 60)
    return k
  }

  it.each(writers)('a read issued after $name in the same tick sees the write', async (writer) => {
    const wrong: string[] = []
    for (const reader of readers) {
      for (const batched of [false, true]) {
        const k = await prepare(writer.before)
        const first = batched ? cache.get(`${k}:earlier`) : undefined
        const [, seen] = await Promise.all([writer.write(cache, k), reader.read(cache, k), first])
        const expected = reader.expected(writer.after)
        if (JSON.stringify(seen) !== JSON.stringify(expected))
          wrong.push(
            `${writer.name} then ${reader.name}${batched ? ' (after a get)' : ''}: read ${JSON.stringify(seen)}, expected ${JSON.stringify(expected)}`,
          )
      }
    }
    expect(wrong).toEqual([])
  })

  it.each(writers.filter((w) => w.name.startsWith('incr') || w.name.endsWith('Many')))(
    'a set issued after $name in the same tick is the last write',
    async (writer) => {
      const k = await prepare(writer.before)
      await Promise.all([writer.write(cache, k), cache.set(k, 'last')])
      expect(await cache.get(k)).toBe('last')
    },
  )

  it.each(writers.filter((w) => w.name.startsWith('incr')))(
    'a delete issued after $name in the same tick is the last write',
    async (writer) => {
      const k = await prepare(writer.before)
      const [, removed] = await Promise.all([writer.write(cache, k), cache.delete(k)])
      expect(removed).toBe(true)
      expect(await cache.has(k)).toBe(false)
    },
  )

  it('a get or getMany of a value written compressed reads what the key held before a write called after it', async () => {
    // Written by another backend (compressed: NUL first), read by this one: no second read of its
    // bytes goes out behind the write.
    const writer = redisBackend(url(), { namespace, ...options, compressThreshold: 64 })
    const big = { text: 'lorem ipsum '.repeat(50) }
    const wrong: string[] = []
    try {
      for (const reader of readers.slice(0, 2)) {
        for (const batched of [false, true]) {
          for (const [name, write] of [
            ['delete', (k: string) => cache.delete(k)],
            ['set', (k: string) => cache.set(k, 'new')],
          ] as const) {
            const k = `k${n++}`
            await writer.set(k, big, 60)
            const first = batched ? cache.get(`${k}:earlier`) : undefined
            const [, seen] = await Promise.all([first, reader.read(cache, k), write(k)])
            if (JSON.stringify(seen) !== JSON.stringify(reader.expected(big)))
              wrong.push(
                `${reader.name}${batched ? ' (after a get)' : ''} then ${name}: read ${JSON.stringify(seen)}`,
              )
          }
        }
      }
    } finally {
      await writer.close()
    }
    expect(wrong).toEqual([])
  })

  it('keeps the order when the server has forgotten the scripts (SCRIPT FLUSH)', async () => {
    const k = await prepare(1)
    const d = await prepare('old')
    const nodes = cache.client.isCluster ? (raw as Cluster).nodes('master') : [raw as Redis]
    await Promise.all(nodes.map((node) => node.script('FLUSH')))
    const [, count, , gone] = await Promise.all([
      cache.incr(k),
      cache.get(k),
      cache.compareAndDelete(d, 'old'),
      cache.has(d),
    ])
    expect([count, gone]).toEqual([2, false])
  })
})
