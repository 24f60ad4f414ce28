import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { CacheBackend } from '@cache/core'
import { type RedisServer, startRedis } from '@cache/test-servers'
import KeyvRedis from '@keyv/redis'
import { Keyv } from 'keyv'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { keyvBackend } from '../src/index.js'

/**
 * An application builds its Keyv once and hands it to several modules, each wrapping it with
 * keyvBackend() (a rate limiter, a metrics module). The read-then-write fallbacks (incr, add,
 * atomicUpdate, compareAndDelete) must be exact across every wrapper of one store in the process,
 * not per wrapper object.
 */
let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
})

/** Two backends over one store, the ways an application ends up with them. */
const pairs: [string, () => [CacheBackend, CacheBackend, () => Promise<void>]][] = [
  [
    'one Keyv instance (its own Map) wrapped twice',
    () => {
      const keyv = new Keyv({ namespace: 'app' })
      return [keyvBackend(keyv), keyvBackend(keyv), async () => {}]
    },
  ],
  [
    'two Keyv instances with one namespace over one Map',
    () => {
      const store = new Map()
      return [
        keyvBackend(new Keyv({ store, namespace: 'app' })),
        keyvBackend(new Keyv({ store, namespace: 'app' })),
        async () => {},
      ]
    },
  ],
  [
    'one Map given twice with one namespace',
    () => {
      const store = new Map()
      return [
        keyvBackend(store, { namespace: 'app' }),
        keyvBackend(store, { namespace: 'app' }),
        async () => {},
      ]
    },
  ],
  [
    'a Keyv instance and its Map given as a store, one namespace',
    () => {
      const store = new Map()
      return [
        keyvBackend(new Keyv({ store, namespace: 'app' })),
        keyvBackend(store, { namespace: 'app' }),
        async () => {},
      ]
    },
  ],
  [
    'one @keyv/redis adapter on a real Redis wrapped twice',
    () => {
      const adapter = new KeyvRedis(redis.url)
      const a = keyvBackend(adapter, { namespace: `shared${Math.random().toString(36).slice(2)}` })
      const b = keyvBackend(adapter, { namespace: a.namespace })
      return [a, b, () => adapter.disconnect()]
    },
  ],
  [
    'one Keyv instance over @keyv/redis wrapped twice',
    () => {
      const keyv = new Keyv({
        store: new KeyvRedis(redis.url),
        namespace: `k${Math.random().toString(36).slice(2)}`,
      })
      return [keyvBackend(keyv), keyvBackend(keyv), () => keyv.disconnect()]
    },
  ],
]

describe.each(pairs)('over %s', (_name, open) => {
  it('counts every one of 100 concurrent increments, 50 through each, with 100 distinct answers', async () => {
    const [rateLimiter, metrics, close] = open()
    try {
      const ops: Promise<number>[] = []
      for (let i = 0; i < 50; i++) ops.push(rateLimiter.incr('hits:1.2.3.4'), metrics.incr('hits:1.2.3.4'))
      const answers = await Promise.all(ops)
      expect(await metrics.get('hits:1.2.3.4')).toBe(100)
      expect(new Set(answers).size).toBe(100)
    } finally {
      await close()
    }
  })

  it('applies every atomicUpdate issued through both, none lost', async () => {
    const [a, b, close] = open()
    try {
      const ops: Promise<unknown>[] = []
      for (let i = 0; i < 20; i++) {
        ops.push(a.atomicUpdate<number[]>('list', (xs = []) => [...xs, i]))
        ops.push(b.atomicUpdate<number[]>('list', (xs = []) => [...xs, 100 + i]))
      }
      await Promise.all(ops)
      const list = (await a.get<number[]>('list'))!
      expect(list).toHaveLength(40)
      expect(new Set(list).size).toBe(40)
    } finally {
      await close()
    }
  })

  it('lets exactly one of two concurrent add calls through different wrappers win', async () => {
    const [a, b, close] = open()
    try {
      const won = await Promise.all([a.add('lock', 'a', 30), b.add('lock', 'b', 30)])
      expect(won.filter(Boolean)).toHaveLength(1)
      expect(await a.get('lock')).toBe(won[0] ? 'a' : 'b')
    } finally {
      await close()
    }
  })

  it('orders a set through one wrapper with increments through the other: never lost between a read and its write', async () => {
    const [a, b, close] = open()
    try {
      const before = Array.from({ length: 10 }, () => a.incr('n'))
      const reset = b.set('n', 1000)
      const after = Array.from({ length: 10 }, () => a.incr('n'))
      await Promise.all([...before, reset, ...after])
      // Issued in this order, the calls end as this serial order would.
      expect(await b.get('n')).toBe(1010)
      expect(await Promise.all(after)).toEqual(Array.from({ length: 10 }, (_, i) => 1001 + i))
    } finally {
      await close()
    }
  })
})

describe('a key Keyv stores under the same name', () => {
  it('is one key to the queue: `app:x` and `x` through a Keyv of namespace app both count on app:x', async () => {
    const keyv = new Keyv({ namespace: 'app' })
    const a = keyvBackend(keyv)
    const b = keyvBackend(keyv)
    const ops: Promise<number>[] = []
    for (let i = 0; i < 20; i++) ops.push(a.incr('x'), b.incr('app:x'))
    await Promise.all(ops)
    expect(await a.get('x')).toBe(40)
  })
})

describe('backends over different stores or namespaces', () => {
  it('do not wait for each other: an increment of one namespace is not held up by a slow atomicUpdate of another', async () => {
    const store = new Map()
    const a = keyvBackend(store, { namespace: 'a' })
    const b = keyvBackend(store, { namespace: 'b' })
    let release!: () => void
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    const slow = a.atomicUpdate('k', async () => {
      await held
      return 1
    })
    expect(await b.incr('k')).toBe(1)
    release()
    expect(await slow).toBe(1)
  })
})

describe('the ESM and CommonJS builds in one process', () => {
  it('share the queue of a store: 100 increments through one backend of each build count 100', () => {
    const esm = pathToFileURL(join(__dirname, '../dist/index.js')).href
    const cjs = join(__dirname, '../dist/index.cjs')
    const script = `
      import { createRequire } from 'node:module'
      const require = createRequire(import.meta.url)
      const fromEsm = await import(${JSON.stringify(esm)})
      const fromCjs = require(${JSON.stringify(cjs)})
      const store = new Map()
      const a = fromEsm.keyvBackend(store, { namespace: 'app' })
      const b = fromCjs.keyvBackend(store, { namespace: 'app' })
      const ops = []
      for (let i = 0; i < 50; i++) ops.push(a.incr('n'), b.incr('n'))
      await Promise.all(ops)
      console.log(JSON.stringify(await a.get('n')))
    `
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: __dirname,
      timeout: 20_000,
      encoding: 'utf8',
    })
    expect(result.stderr).toBe('')
    expect(JSON.parse(result.stdout)).toBe(100)
  })
})
