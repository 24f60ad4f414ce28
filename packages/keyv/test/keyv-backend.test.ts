import { CacheSerializationError, CacheUnavailableError, CacheConfigError } from '@cache/core'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { diskBackend } from '@cache/disk'
import { memoryBackend } from '@cache/memory'
import { multiLevel } from '@cache/multi-level'
import { startRedis } from '@cache/test-servers'
import KeyvRedis from '@keyv/redis'
import KeyvSqlite from '@keyv/sqlite'
import { LRUCache } from 'lru-cache'
import { Keyv } from 'keyv'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { chainOf } from '@cache/core/backend'
import { keyvBackend, toKeyvStore } from '../src/index.js'

afterEach(() => {
  vi.useRealTimers()
})

describe('keyvBackend', () => {
  it('reports expiresAt from Keyv’s { value, expires } envelope', async () => {
    vi.useFakeTimers({ now: 1_700_000_000_000 })
    const cache = keyvBackend(new Map())
    await cache.set('k', 'v', 30)
    expect(await cache.getEntry('k')).toEqual({ value: 'v', expiresAt: 1_700_000_030_000 })
    vi.advanceTimersByTime(30_001)
    expect(await cache.getEntry('k')).toBeUndefined()
  })

  it('keeps a counter’s original expiry across increments', async () => {
    vi.useFakeTimers({ now: 1_700_000_000_000 })
    const cache = keyvBackend(new Map())
    await cache.incr('n', 1, 10)
    vi.advanceTimersByTime(6000)
    expect(await cache.incr('n', 1, 3600)).toBe(2)
    expect((await cache.getEntry('n'))!.expiresAt).toBe(1_700_000_010_000)
  })

  it('applies defaultTtl when set is called without a TTL', async () => {
    vi.useFakeTimers({ now: 1_700_000_000_000 })
    const cache = keyvBackend(new Map(), { defaultTtl: '1m' })
    await cache.set('k', 1)
    expect((await cache.getEntry('k'))!.expiresAt).toBe(1_700_000_060_000)
  })

  it('writes plain values that a plain Keyv on the same store reads', async () => {
    const store = new Map()
    const cache = keyvBackend(store, { namespace: 'keyv' })
    await cache.set('user', { name: 'Ada', n: 1 })
    const plain = new Keyv({ store })
    expect(await plain.get('user')).toEqual({ name: 'Ada', n: 1 })
  })

  it('uses a Keyv instance as it is: its namespace and serializer', async () => {
    const store = new Map()
    const keyv = new Keyv({ store, namespace: 'app' })
    await keyv.set('written-by-keyv', [1, 2])
    const cache = keyvBackend(keyv)
    expect(cache.namespace).toBe('app')
    expect(await cache.get('written-by-keyv')).toEqual([1, 2])
    await cache.set('k', 'v')
    expect(await keyv.get('k')).toBe('v')
    store.set('other:x', 'kept')
    await cache.clear()
    expect(await keyv.get('k')).toBeUndefined()
    expect(store.get('other:x')).toBe('kept') // clear() of a Map removes this namespace only
  })

  it('never lets a Keyv instance mangle a value silently: exact round trip, or CacheSerializationError', async () => {
    class Money {
      constructor(readonly cents: number) {}
    }
    class When extends Date {}
    const cache = keyvBackend(new Keyv())
    for (const [label, value] of [
      ['a class instance', { price: new Money(150) }],
      ['an Error', { error: new Error('boom') }],
      ['a Date subclass', { at: new When(0) }],
    ] as const) {
      const error = await cache.set(label, value).catch((e) => e)
      expect(error, label).toBeInstanceOf(CacheSerializationError)
      expect(await cache.has(label)).toBe(false)
    }
    const rich = { at: new Date(5), map: new Map([['a', 1]]), set: new Set([1]), big: 1n, none: undefined }
    await cache.set('rich', rich)
    expect(await cache.get('rich')).toEqual(rich)
    await cache.set('plain', { a: [1, 'x'] })
    expect(await cache.keyv.get('plain')).toEqual({ a: [1, 'x'] })
  })

  it('reports what a Keyv instance cannot serialize or read back as the caller’s error: a chain keeps that level in use', async () => {
    // The Keyv's own serializer refuses a value (as JSON.stringify refuses a BigInt), and another
    // client left an entry it cannot parse (text that is not JSON) in the shared store.
    const store = new Map<string, unknown>([['keyv:foreign', 'written by another client, not JSON']])
    const keyv = new Keyv({
      store,
      serialize: (data) => {
        if (JSON.stringify(data).includes('"huge"'))
          throw new TypeError('Do not know how to serialize a BigInt')
        return JSON.stringify(data)
      },
      deserialize: (text) => JSON.parse(text),
    })
    const level = keyvBackend(keyv)
    const chain = multiLevel({
      levels: [memoryBackend(), level],
      breaker: { failureThreshold: 2, openFor: '1m' },
    })
    const downs: unknown[] = []
    chain.on('level-down', (event) => downs.push(event))
    for (let i = 0; i < 3; i++) {
      expect(await chain.set('v', { kind: 'huge' }).catch((e) => e)).toBeInstanceOf(CacheSerializationError)
      expect(await chain.get('foreign').catch((e) => e)).toBeInstanceOf(CacheSerializationError)
    }
    expect(await level.set('v', { kind: 'huge' }).catch((e) => e)).toBeInstanceOf(CacheSerializationError)
    expect(level.stats.errors).toBe(0) // not counted as the store being down
    expect(downs).toEqual([])
    expect(chain.levelStats()[1]).toMatchObject({ state: 'closed', errors: 0, opened: 0 })
    // The level still serves everything else.
    await chain.set('fine', 1)
    expect(await level.get('fine')).toBe(1)
    await chain.close()
  })

  it('counts the errors of a Keyv that swallows them', async () => {
    const broken = {
      opts: {},
      get: async () => undefined,
      set: async () => {
        throw new Error('store down')
      },
      delete: async () => false,
      clear: async () => {},
    }
    const keyv = new Keyv({ store: broken as never })
    const cache = keyvBackend(keyv)
    const events: unknown[] = []
    cache.on('error', (e) => events.push(e))
    await cache.set('k', 1) // Keyv turns the failure into an event, not an exception
    expect(cache.stats.errors).toBe(1)
    expect(events).toHaveLength(1)
  })

  it('rejects what is neither a Keyv, a store nor a Map', () => {
    expect(() => keyvBackend({} as never)).toThrow(TypeError)
    expect(() => keyvBackend(new Map(), { timeout: -1 })).toThrow(CacheConfigError)
  })

  it('fails fast with CacheUnavailableError when the Redis behind @keyv/redis is down', async () => {
    const redis = await startRedis({ spawn: true })
    const cache = keyvBackend(new KeyvRedis(redis.url), {
      namespace: 'down',
      timeout: '500ms',
      closeStore: true,
    })
    try {
      await cache.set('k', 1)
      expect(await cache.get('k')).toBe(1)
      await redis.process!.kill()
      const started = Date.now()
      const error = await cache.get('k').catch((e) => e)
      expect(error).toBeInstanceOf(CacheUnavailableError)
      expect(Date.now() - started).toBeLessThan(3000)
      expect(cache.stats.errors).toBeGreaterThan(0)
    } finally {
      await redis.stop()
      await cache.close().catch(() => {})
    }
  })
})

describe('namespaces that nest, or hold pattern characters, on one store', () => {
  // Namespace 'a' with key 'b:x' and namespace 'a:b' with key 'x' once made one stored key.
  // A Map is shared as it is; a Redis server through one @keyv/redis adapter per backend (an
  // adapter holds the namespace of the Keyv that uses it).
  const stores = [
    [
      'a Map',
      async () => {
        const map = new Map()
        return { store: () => map, stop: async () => {} }
      },
    ],
    [
      '@keyv/redis',
      async () => {
        const redis = await startRedis()
        return { store: () => new KeyvRedis(redis.url), stop: () => redis.stop() }
      },
    ],
  ] as const

  it.each(stores)(
    'on %s: each namespace keeps its own entries, and clear() removes its own only',
    async (_name, open) => {
      const { store, stop } = await open()
      const backend = (namespace: string) => keyvBackend(store(), { namespace, closeStore: true })
      const [a, ab, star, kept] = [backend('a'), backend('a:b'), backend('a*'), backend('app')]
      try {
        await a.set('b:x', 'of a')
        await ab.set('x', 'of a:b')
        await star.set('b:x', 'of a*')
        await kept.set('x', 'of app')
        expect(await a.get('b:x')).toBe('of a')
        expect(await ab.get('x')).toBe('of a:b')
        expect(await star.get('b:x')).toBe('of a*')
        await ab.set('y', 1)
        await a.clear()
        expect(await a.get('b:x')).toBeUndefined()
        expect(await ab.get('y')).toBe(1)
        expect(await ab.get('x')).toBe('of a:b')
        expect(await star.get('b:x')).toBe('of a*')
        // A namespace with pattern characters clears itself, not every namespace the pattern matches.
        await star.clear()
        expect(await star.get('b:x')).toBeUndefined()
        expect(await kept.get('x')).toBe('of app')
        expect(await ab.get('x')).toBe('of a:b')
      } finally {
        await Promise.all([a.close(), ab.close(), star.close(), kept.close()])
        await stop()
      }
    },
  )
})

describe('a keyv backend over a store of this process, last in a chain', () => {
  it('is refused behind a shared level, as memory is: its counters and invalidations would stay in this process', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'keyv-last-'))
    const disk = diskBackend({ path: dir })
    try {
      const inProcess = [
        keyvBackend(new Map()),
        keyvBackend(new Keyv()),
        keyvBackend(new Keyv({ store: new Map() })),
      ]
      for (const level of inProcess) {
        expect(level.shared).toBe(false)
        // Before: accepted, and two processes' increments were counted apart.
        expect(() => multiLevel(disk, level)).toThrow(CacheConfigError)
        expect(() => multiLevel(disk, level)).toThrow(/keyv.*last/s)
      }
      // lru-cache (its class name is minified), a plain object over a Map, SQLite in memory: this
      // process's, or not known to be shared. Before: taken for shared, and processes counted apart.
      const rows = new Map<string, unknown>()
      const plain = {
        get: async (key: string) => rows.get(key),
        set: async (key: string, value: unknown) => void rows.set(key, value),
        delete: async (key: string) => rows.delete(key),
        clear: async () => rows.clear(),
      }
      const memorySqlite = new KeyvSqlite('sqlite://:memory:')
      // An empty file name (`'sqlite://' + process.env.UNSET ?? ''`): SQLite's private temporary
      // database. Before: taken for shared.
      const unnamedSqlite = new KeyvSqlite('sqlite://')
      for (const level of [
        keyvBackend(new LRUCache<string, object>({ max: 100 }) as never),
        keyvBackend(plain as never),
        keyvBackend(new Keyv({ store: memorySqlite })),
        keyvBackend(new Keyv({ store: unnamedSqlite })),
      ]) {
        expect(level.shared).not.toBe(true)
        expect(() => multiLevel(disk, level)).toThrow(CacheConfigError)
      }
      expect(() => multiLevel(disk, keyvBackend(plain as never))).toThrow(/shared: true/)
      // Said by the application: shared.
      expect(keyvBackend(plain as never, { shared: true }).shared).toBe(true)
      expect(() => keyvBackend(plain as never, { shared: 'yes' as never })).toThrow(CacheConfigError)
      // `closeStore: 'false'` would read as true, and close() would disconnect the caller's store.
      expect(() => keyvBackend(plain as never, { closeStore: 'false' as never })).toThrow(
        /closeStore: expected true or false/,
      )
      await memorySqlite.disconnect()
      await unnamedSqlite.disconnect()
      // Over a store other processes reach: shared, and fine last.
      const sqlite = keyvBackend(new Keyv({ store: new KeyvSqlite(`sqlite://${join(dir, 'kv.sqlite')}`) }))
      expect(sqlite.shared).toBe(true)
      const chain = multiLevel(memoryBackend(), sqlite)
      expect(await chain.incr('n')).toBe(1)
      await chain.close()
      // Only this machine's processes see a SQLite file, a subclass's too, and a @cache backend
      // that says so given through toKeyvStore: refused last behind a level other machines share.
      // Before: a subclass, or a disk through toKeyvStore told `shared: true`, was accepted.
      const network = keyvBackend(new Map(), { shared: true })
      class OwnSqlite extends KeyvSqlite {}
      const subclassed = new OwnSqlite(`sqlite://${join(dir, 'own.sqlite')}`)
      const onDisk = diskBackend({ path: join(dir, 'through-keyv') })
      for (const level of [
        keyvBackend(new Keyv({ store: subclassed })),
        keyvBackend(toKeyvStore(onDisk)),
        keyvBackend(new Map(), { shared: true, hostOnly: true }),
      ]) {
        expect(level.hostOnly).toBe(true)
        expect(() => multiLevel(network, level)).toThrow(/only this machine's processes see, is last/)
      }
      expect(keyvBackend(toKeyvStore(memoryBackend())).shared).toBe(false)
      // A keyv level over a chain is seen through by the chain that takes it: its levels count (a
      // memory level last in it is refused as one given directly; a bus over it needs its own).
      const wrapped = multiLevel(memoryBackend(), memoryBackend())
      expect(chainOf(keyvBackend(toKeyvStore(wrapped)))).toBe(wrapped)
      expect(() => multiLevel(disk, keyvBackend(toKeyvStore(wrapped)))).toThrow(
        /memory, which holds its entries in this process, is last/,
      )
      expect(() => keyvBackend(new Map(), { hostOnly: 'true' as never })).toThrow(
        /hostOnly: expected true or false/,
      )
      // r67: one store under two keyv levels (one Map, one Keyv, adapters of one backend), the
      // faster level of two tenants' chains: tenant b read tenant a's entries. Before: accepted.
      const rowsLast = (name: string) => keyvBackend(new Map(), { shared: true, namespace: name })
      const l1 = memoryBackend()
      const adapter = toKeyvStore(l1)
      const map = new Map()
      const keyv = new Keyv({ store: new Map() })
      for (const [name, make] of [
        ['adapters of one backend', () => keyvBackend(toKeyvStore(l1))],
        ['one adapter', () => keyvBackend(adapter)],
        ['a Keyv over an adapter', () => keyvBackend(new Keyv({ store: toKeyvStore(l1) }))],
        ['one Map', () => keyvBackend(map)],
        ['one Keyv', () => keyvBackend(keyv)],
      ] as const) {
        const tenantA = multiLevel(make(), rowsLast('a'))
        expect(() => multiLevel(make(), rowsLast('b')), name).toThrow(
          /already a faster level of another chain/,
        )
        await tenantA.close()
      }
      // Another namespace of one store holds other entries: accepted.
      await multiLevel(keyvBackend(map, { namespace: 'a' }), rowsLast('a')).close()
      await multiLevel(keyvBackend(map, { namespace: 'b' }), rowsLast('b')).close()
      // r67: toKeyvStore(fn) makes its backends later, per namespace: a chain with a bus cannot
      // check that none is a chain without a bus. Before: accepted, and its L1 kept old values.
      const bus = {
        publish: async () => {},
        subscribe: () => () => {},
        ready: async () => {},
        close: async () => {},
      }
      expect(() =>
        multiLevel({
          levels: [memoryBackend(), keyvBackend(toKeyvStore(() => wrapped)), rowsLast('c')],
          bus,
        }),
      ).toThrow(/made per Keyv namespace by a function/)
      await subclassed.disconnect()
      await onDisk.close()
    } finally {
      await disk.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
