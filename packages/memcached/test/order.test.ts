import { startMemcached } from '@cache/test-servers'
import memjs from 'memjs'
import { afterAll, describe, expect, it } from 'vitest'
import { memcachedBackend } from '../src/index.js'
import { serverKeys } from './raw.js'

const server = await startMemcached({ spawn: true })
const second = await startMemcached({ spawn: true })
afterAll(() => Promise.all([server.stop(), second.stop()]))

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
let namespaces = 0
const fresh = (servers: string | string[] = server.server) =>
  memcachedBackend(servers, { namespace: `order${namespaces++}`, logger: false })

describe('calls that take more than one round trip keep call order for their key', () => {
  it('incr then set in one tick: the set, called last, is what stays', async () => {
    const cache = fresh()
    try {
      await cache.set('d', 2)
      const [counted, , read] = await Promise.all([cache.incr('d', -1), cache.set('d', 7), cache.get('d')])
      expect(counted).toBe(1)
      expect(read).toBe(7)
      expect(await cache.get('d')).toBe(7)
    } finally {
      await cache.close()
    }
  })

  it('an incr that creates the counter, then get and has in one tick: they read it', async () => {
    const cache = fresh()
    try {
      const [counted, read, present] = await Promise.all([cache.incr('n'), cache.get('n'), cache.has('n')])
      expect([counted, read, present]).toEqual([1, 1, true])
    } finally {
      await cache.close()
    }
  })

  it('atomicUpdate, delete, add in one tick apply in that order', async () => {
    const cache = fresh()
    try {
      await cache.set('k', 3)
      const [updated, removed, added] = await Promise.all([
        cache.atomicUpdate<number>('k', (v) => (v ?? 0) + 1),
        cache.delete('k'),
        cache.add('k', 10),
      ])
      expect([updated, removed, added]).toEqual([4, true, true])
      expect(await cache.get('k')).toBe(10)
    } finally {
      await cache.close()
    }
  })

  it('add over an item past its expiry (still held by memcached), then get and has in one tick: they read it', async () => {
    const cache = fresh()
    try {
      await cache.set('e', 'old', 1)
      const deadline = Date.now() + 3000
      while ((await cache.get('e')) !== undefined && Date.now() < deadline) await sleep(20)
      const [added, read, present] = await Promise.all([
        cache.add('e', 'new'),
        cache.get('e'),
        cache.has('e'),
      ])
      expect([added, read, present]).toEqual([true, 'new', true])
    } finally {
      await cache.close()
    }
  })

  it('a call that fails while waiting behind an incr does not stop later calls on its key', async () => {
    const namespace = `order${namespaces++}`
    const cache = memcachedBackend(server.server, { namespace, logger: false })
    const client = memjs.Client.create(server.server)
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown) => unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    try {
      await cache.set('bad', 'placeholder')
      const stored = (await serverKeys(server.port)).find(
        (key) => key.startsWith(`${namespace}#`) && key.endsWith(':bad'),
      )!
      await client.set(stored, '{not json', {})
      // The incr refuses the text; the get, sent once the incr settled, cannot decode it.
      const [counted, read] = await Promise.allSettled([cache.incr('bad'), cache.get('bad')])
      expect(counted).toMatchObject({ status: 'rejected', reason: { name: 'CacheNotANumberError' } })
      expect(read).toMatchObject({ status: 'rejected', reason: { name: 'CacheSerializationError' } })
      // Later calls on the key go out (they used to wait for a call that had failed, then time out).
      await cache.set('bad', 5)
      expect(await Promise.all([cache.incr('bad'), cache.get('bad')])).toEqual([6, 6])
      await sleep(20)
      expect(unhandled).toEqual([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
      client.close()
      await cache.close()
    }
  })

  it('a getMany and a setMany called after an incr of one of their keys wait for it; other keys do not', async () => {
    const cache = fresh()
    try {
      await cache.set('c', 1)
      const [counted, many, , after] = await Promise.all([
        cache.incr('c', 5),
        cache.getMany(['other', 'c']),
        cache.setMany([{ key: 'c', value: 'replaced' }]),
        cache.getEntry('c'),
      ])
      expect(counted).toBe(6)
      expect(many).toEqual([undefined, 6])
      expect(after).toEqual({ value: 'replaced' })
    } finally {
      await cache.close()
    }
  })

  it('a long model run of mixed calls in one tick, on two servers, matches calls applied in order', async () => {
    const cache = fresh([server.server, second.server])
    try {
      const keys = ['a', 'b', 'c']
      for (let round = 0; round < 20; round++) {
        const model = new Map<string, number>()
        await Promise.all(keys.map((key) => cache.delete(key)))
        const calls: Promise<unknown>[] = []
        const expected: unknown[] = []
        let seed = round * 7919 + 1
        const random = (n: number) => {
          seed = (seed * 48271) % 2147483647
          return seed % n
        }
        for (let i = 0; i < 40; i++) {
          const key = keys[random(keys.length)]!
          const current = model.get(key)
          switch (random(7)) {
            case 0:
              calls.push(cache.set(key, i))
              model.set(key, i)
              expected.push(undefined)
              break
            case 1:
              calls.push(cache.get(key))
              expected.push(current)
              break
            case 2:
              calls.push(cache.incr(key, 2))
              model.set(key, (current ?? 0) + 2)
              expected.push((current ?? 0) + 2)
              break
            case 3:
              calls.push(cache.delete(key))
              model.delete(key)
              expected.push(current !== undefined)
              break
            case 4:
              calls.push(cache.add(key, 100 + i))
              if (current === undefined) model.set(key, 100 + i)
              expected.push(current === undefined)
              break
            case 5:
              calls.push(cache.atomicUpdate<number>(key, (v) => (v ?? 0) * 2 + 1))
              model.set(key, (current ?? 0) * 2 + 1)
              expected.push((current ?? 0) * 2 + 1)
              break
            default:
              calls.push(cache.getMany(keys))
              expected.push(keys.map((k) => model.get(k)))
          }
        }
        expect(await Promise.all(calls)).toEqual(expected)
      }
    } finally {
      await cache.close()
    }
  })
})

describe("after another process's clear(), the calls of the next tick keep call order", () => {
  async function afterForeignClear<T>(
    run: (cache: ReturnType<typeof fresh>) => Promise<T>,
    servers?: string[],
  ) {
    const cache = fresh(servers)
    const other = memcachedBackend(servers ?? server.server, {
      namespace: `order${namespaces - 1}`,
      logger: false,
    })
    try {
      await cache.set('k', 'old')
      await other.clear()
      return await run(cache)
    } finally {
      await Promise.all([cache.close(), other.close()])
    }
  }

  it('setMany then get', async () => {
    const [, read] = await afterForeignClear((cache) =>
      Promise.all([cache.setMany([{ key: 'k', value: 'new' }]), cache.get('k')]),
    )
    expect(read).toBe('new')
  })

  it('add then get', async () => {
    const [added, read] = await afterForeignClear((cache) =>
      Promise.all([cache.add('k', 'new'), cache.get('k')]),
    )
    expect([added, read]).toEqual([true, 'new'])
  })

  it('setMany, deleteMany, add: the last write wins', async () => {
    const result = await afterForeignClear(async (cache) => {
      const [, removed, added] = await Promise.all([
        cache.setMany([{ key: 'k', value: 3 }]),
        cache.deleteMany(['k']),
        cache.add('k', 4),
      ])
      return [removed, added, await cache.get('k')]
    })
    expect(result).toEqual([1, true, 4])
  })

  it('getMany then set: the read does not see the later write', async () => {
    const [many] = await afterForeignClear((cache) =>
      Promise.all([cache.getMany(['k']), cache.set('k', 'later')]),
    )
    expect(many).toEqual([undefined])
  })

  it('setMany of 8 keys then 8 gets, on two servers', async () => {
    const keys = Array.from({ length: 8 }, (_, i) => `m${i}`)
    const reads = await afterForeignClear(
      async (cache) => {
        const [, ...gets] = await Promise.all([
          cache.setMany(keys.map((key) => ({ key, value: key }))),
          ...keys.map((key) => cache.get(key)),
        ])
        return gets
      },
      [server.server, second.server],
    )
    expect(reads).toEqual(keys)
  })
})

describe('a call waiting behind a multi-step call on its key', () => {
  it('gives up unsent at its timeout (nothing written), and calls on other keys do not wait', async () => {
    const cache = memcachedBackend(server.server, {
      namespace: `order${namespaces++}`,
      logger: false,
      timeout: 0.3,
    })
    try {
      await cache.set('other', 'o')
      const start = performance.now()
      const slow = cache.atomicUpdate<number>('k', async () => {
        await sleep(800)
        return 1
      })
      const waiting = cache.set('k', 2).then(
        () => 'written',
        (error: unknown) => [(error as Error).name, Math.round(performance.now() - start)],
      )
      const behind = cache.get('k').then(
        () => 'read',
        (error: unknown) => (error as Error).message,
      )
      expect(await cache.get('other')).toBe('o')
      expect(performance.now() - start).toBeLessThan(200)
      const [name, ms] = (await waiting) as [string, number]
      expect(name).toBe('CacheTimeoutError')
      expect(ms).toBeGreaterThanOrEqual(250)
      expect(ms).toBeLessThan(700)
      expect(await slow).toBe(1)
      // The get called after the set waited for the set's turn, and then for the update.
      expect(await behind).toContain('still waiting for an earlier call on the same key')
      expect(await cache.get('k')).toBe(1)
      expect(cache.stats.timeouts).toBe(2)
    } finally {
      await cache.close()
    }
  })

  it('a queue of calls on one key that takes longer than the timeout drains: each waits only while nothing moves', async () => {
    const cache = memcachedBackend(server.server, {
      namespace: `order${namespaces++}`,
      logger: false,
      timeout: 0.3,
    })
    try {
      const start = performance.now()
      // 80 updates of 5 ms each: about 400 ms in all, each one's turn within 5 ms of the last.
      const updates = Array.from({ length: 80 }, (_, i) =>
        cache.atomicUpdate<number[]>('hot', async (list = []) => {
          await sleep(5)
          return [...list, i]
        }),
      )
      const outcomes = await Promise.allSettled(updates)
      expect(performance.now() - start).toBeGreaterThan(300)
      expect(outcomes.filter((outcome) => outcome.status === 'rejected')).toEqual([])
      // In call order, none lost.
      expect(await cache.get('hot')).toEqual(Array.from({ length: 80 }, (_, i) => i))
      expect(cache.stats.timeouts).toBe(0)
    } finally {
      await cache.close()
    }
  })

  it('settles within its timeout when the server is frozen (SIGSTOP)', async () => {
    const frozen = await startMemcached({ spawn: true })
    const cache = memcachedBackend(frozen.server, { namespace: 'frozen', logger: false, timeout: 0.3 })
    try {
      await cache.set('k', 1)
      await frozen.process!.freeze()
      const start = performance.now()
      const outcomes = await Promise.allSettled([
        cache.incr('k'),
        cache.get('k'),
        cache.set('k', 2),
        cache.incr('k'),
      ])
      expect(performance.now() - start).toBeLessThan(1000)
      expect(outcomes.map((outcome) => outcome.status)).toEqual([
        'rejected',
        'rejected',
        'rejected',
        'rejected',
      ])
    } finally {
      process.kill(frozen.process!.pid!, 'SIGCONT')
      await cache.close()
      await frozen.stop()
    }
  })
})
