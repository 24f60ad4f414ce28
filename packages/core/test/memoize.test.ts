/**
 * cached() and the @cache decorator on core's own Map backend (test/map-backend.ts): a backend of
 * another process, or with `sync: true` an in-process one. What only the memory backend does
 * (its sync fast path, size limits, eviction, value checks) is tested in @cache/memory.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  type CacheBackend,
  CacheConfigError,
  type CacheEvent,
  cache,
  cached,
  configureCache,
  defineBackend,
  invalidateTags,
  resetCache,
} from '../src/index.js'
import { mapBackend } from './map-backend.js'

const tick = () => new Promise((resolve) => setImmediate(resolve))
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * The same store seen from another process: a different backend object (so no flight is shared
 * with it in this process) whose operations reach the same entries, asynchronously.
 */
function otherProcess(store: CacheBackend): CacheBackend {
  return defineBackend({
    name: 'other process',
    get: (key) => store.get(key),
    getEntry: (key) => store.getEntry(key),
    getMany: (keys) => store.getMany(keys),
    set: (key, value, ttl) => store.set(key, value, ttl),
    add: (key, value, ttl) => store.add(key, value, ttl),
    delete: (key) => store.delete(key),
    deleteMany: (keys) => store.deleteMany(keys),
    compareAndDelete: (key, expected) => store.compareAndDelete!(key, expected),
    clear: () => store.clear(),
  })
}

/** A backend whose every operation fails, like a server that is down. */
function downBackend(): CacheBackend {
  const fail = async () => {
    throw Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' })
  }
  return defineBackend({
    name: 'down',
    get: fail,
    set: fail,
    delete: fail,
    clear: fail,
    getMany: fail,
    incr: fail,
    add: fail,
  } as never)
}

describe('cached()', () => {
  let backend: ReturnType<typeof mapBackend>
  beforeEach(() => {
    backend = mapBackend()
  })

  it('calls the function once per set of arguments', async () => {
    const fn = vi.fn(async (id: string) => ({ id }))
    const getUser = cached(fn, { backend, name: 'getUser', ttl: 60 })
    expect(await getUser('1')).toEqual({ id: '1' })
    expect(await getUser('1')).toEqual({ id: '1' })
    expect(await getUser('2')).toEqual({ id: '2' })
    expect(fn).toHaveBeenCalledTimes(2)
    expect(getUser.stats).toMatchObject({ hits: 1, misses: 2, sets: 2 })
  })

  it('builds the same key whatever the object key order', async () => {
    const fn = vi.fn(async (q: object) => Object.keys(q).length)
    const count = cached(fn, { backend, name: 'count' })
    await count({ a: 1, b: 2 })
    await count({ b: 2, a: 1 })
    expect(fn).toHaveBeenCalledTimes(1)
  })

  it('never shares keys between two functions', async () => {
    const a = cached(async () => 'a', { backend, name: 'a' })
    const b = cached(async () => 'b', { backend, name: 'b' })
    expect(await a()).toBe('a')
    expect(await b()).toBe('b')
    expect(a.keyFor()).not.toBe(b.keyFor())
  })

  it('requires a name for anonymous functions', () => {
    expect(() => cached(async () => 1, { backend })).toThrow(/name/)
  })

  it('uses the key builder and namespace', async () => {
    const getUser = cached(async (id: string) => id, {
      backend,
      name: 'getUser',
      namespace: 'app',
      key: (id) => `user:${id}`,
    })
    await getUser('42')
    expect(getUser.keyFor('42')).toBe('app:getUser:user:42')
    expect(await backend.has('app:getUser:user:42')).toBe(true)
  })

  it('caches null and undefined results and tells them from a miss', async () => {
    const fn = vi.fn(async (x: number) => (x === 0 ? null : undefined))
    const f = cached(fn, { backend, name: 'nullish' })
    expect(await f(0)).toBeNull()
    expect(await f(0)).toBeNull()
    expect(await f(1)).toBeUndefined()
    expect(await f(1)).toBeUndefined()
    expect(fn).toHaveBeenCalledTimes(2)
  })

  it('runs concurrent misses for one key once (single-flight)', async () => {
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const fn = vi.fn(async () => {
      await gate
      return 'done'
    })
    const f = cached(fn, { backend, name: 'slow' })
    const all = Promise.all(Array.from({ length: 50 }, () => f()))
    await tick()
    release()
    expect(await all).toEqual(Array(50).fill('done'))
    expect(fn).toHaveBeenCalledTimes(1)
  })

  it('does not cache errors and delivers them to every waiter', async () => {
    let calls = 0
    const f = cached(
      async () => {
        calls++
        await tick()
        if (calls === 1) throw new Error('boom')
        return 'ok'
      },
      { backend, name: 'flaky' },
    )
    const results = await Promise.allSettled([f(), f(), f()])
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected'])
    expect((results[0] as PromiseRejectedResult).reason.message).toBe('boom')
    expect(await f()).toBe('ok')
    expect(calls).toBe(2)
  })

  it('respects condition and unless', async () => {
    const fn = vi.fn(async (n: number) => n)
    const f = cached(fn, { backend, name: 'cond', condition: (r) => r > 0, unless: (r) => r === 99 })
    await f(-1)
    await f(-1)
    await f(99)
    await f(99)
    await f(5)
    await f(5)
    expect(fn).toHaveBeenCalledTimes(5)
  })

  it('expires results after the TTL', async () => {
    vi.useFakeTimers()
    try {
      const fn = vi.fn(async () => Date.now())
      const f = cached(fn, { backend, name: 'ttl', ttl: 10 })
      await f()
      vi.advanceTimersByTime(9_000)
      await f()
      expect(fn).toHaveBeenCalledTimes(1)
      vi.advanceTimersByTime(2_000)
      await f()
      expect(fn).toHaveBeenCalledTimes(2)
    } finally {
      vi.useRealTimers()
    }
  })

  it('serves a stale result while one caller refreshes it', async () => {
    vi.useFakeTimers()
    try {
      let version = 0
      const fn = vi.fn(async () => {
        await new Promise((resolve) => setTimeout(resolve, 1000))
        return ++version
      })
      const f = cached(fn, { backend, name: 'swr', ttl: 10, staleWhileRevalidate: 60 })
      const first = f()
      await vi.advanceTimersByTimeAsync(1000)
      expect(await first).toBe(1)
      vi.advanceTimersByTime(11_000)
      expect(await f()).toBe(1) // stale, refresh started
      expect(await f()).toBe(1)
      await vi.runAllTimersAsync()
      expect(fn).toHaveBeenCalledTimes(2)
      expect(await f()).toBe(2)
      vi.advanceTimersByTime(71_000)
      const third = f() // past the grace period: a plain miss, waits for the function
      await vi.advanceTimersByTimeAsync(1000)
      expect(await third).toBe(3)
    } finally {
      vi.useRealTimers()
    }
  })

  it('invalidate() removes one set of arguments, clear() every entry of the function', async () => {
    const fn = vi.fn(async (n: number) => n * 2)
    const f = cached(fn, { backend, name: 'double' })
    const other = cached(async () => 'other', { backend, name: 'other' })
    await f(1)
    await f(2)
    await other()
    await f.invalidate(1)
    await f(1)
    await f(2)
    expect(fn).toHaveBeenCalledTimes(3)
    await f.clear()
    await f(1)
    await f(2)
    expect(fn).toHaveBeenCalledTimes(5)
    expect(other.stats.misses).toBe(1)
    await other()
    expect(other.stats.hits).toBe(1)
  })

  it('invalidates by tag across functions', async () => {
    const a = vi.fn(async (id: string) => `a${id}`)
    const b = vi.fn(async (id: string) => `b${id}`)
    const fa = cached(a, { backend, name: 'fa', tags: (id) => [`user:${id}`] })
    const fb = cached(b, { backend, name: 'fb', tags: ['users'] })
    await fa('1')
    await fa('2')
    await fb('1')
    await invalidateTags(['user:1'], { backend })
    await fa('1')
    await fa('2')
    await fb('1')
    expect(a).toHaveBeenCalledTimes(3)
    expect(b).toHaveBeenCalledTimes(1)
    await invalidateTags(['users'], { backend })
    await fb('1')
    expect(b).toHaveBeenCalledTimes(2)
  })

  it('with lock, lets one caller compute while others wait for its result', async () => {
    // Two backend objects over one store stand for two processes: no shared single-flight.
    const fn = vi.fn(async () => {
      await new Promise((resolve) => setTimeout(resolve, 50))
      return 'computed'
    })
    const p1 = cached(fn, { backend: otherProcess(backend), name: 'locked', lock: { wait: 2, poll: '10ms' } })
    const p2 = cached(fn, { backend: otherProcess(backend), name: 'locked', lock: { wait: 2, poll: '10ms' } })
    const results = await Promise.all([p1(), p2()])
    expect(results).toEqual(['computed', 'computed'])
    expect(fn).toHaveBeenCalledTimes(1)
    expect(await backend.has('__lock:memo:locked:()')).toBe(false)
  })

  it('with lock, a holder whose lock expired does not release the lock another caller took', async () => {
    // Two backend objects over one store stand for two processes sharing one backend.
    const gates: (() => void)[] = []
    const slow = async () => {
      await new Promise<void>((resolve) => gates.push(resolve))
      return 'done'
    }
    const lock = { ttl: '100ms', wait: '10s', poll: '10ms' }
    const first = cached(slow, { backend: otherProcess(backend), name: 'expiring', lock })
    const second = cached(slow, { backend: otherProcess(backend), name: 'expiring', lock })
    const lockKey = `__lock:${first.keyFor()}`
    const one = first()
    await sleep(200) // the first holder's lock has expired; it is still computing
    const two = second()
    for (let i = 0; i < 100 && gates.length < 2; i++) await sleep(5)
    expect(gates.length).toBe(2) // the second caller took the expired lock and computes too
    gates[0]!()
    expect(await one).toBe('done')
    // The first holder finished: the lock the second one holds is still there.
    expect(await backend.has(lockKey)).toBe(true)
    gates[1]!()
    expect(await two).toBe('done')
    expect(await backend.has(lockKey)).toBe(false)
  })

  it('with lock, a waiter takes over as soon as the holder fails, not after `wait`', async () => {
    const lock = { wait: '30s', poll: '10ms' }
    const holder = cached(
      async () => {
        await sleep(50)
        throw new Error('holder failed')
      },
      { backend: otherProcess(backend), name: 'takeover', lock },
    )
    const waiter = cached(async () => 'waiter computed', {
      backend: otherProcess(backend),
      name: 'takeover',
      lock,
    })
    const failing = holder().catch((error: Error) => error.message)
    await sleep(10)
    const startedAt = Date.now()
    expect(await waiter()).toBe('waiter computed')
    expect(Date.now() - startedAt).toBeLessThan(10_000)
    expect(await failing).toBe('holder failed')
  })

  it('invalidate() while a call is in flight: later calls run again, and the old result is not stored', async () => {
    let db = 'old'
    const gates: (() => void)[] = []
    const f = cached(
      async (id: number) => {
        const value = `${db} ${id}`
        await new Promise<void>((resolve) => gates.push(resolve))
        return value
      },
      { backend, name: 'inflightMemory' },
    )
    const before = f(1)
    await tick()
    db = 'new'
    await f.invalidate(1)
    const after = f(1)
    for (let i = 0; i < 50 && gates.length < 2; i++) await tick()
    expect(gates.length).toBe(2)
    // The new call finishes first; the old one after it must not overwrite its result.
    gates[1]!()
    expect(await after).toBe('new 1')
    gates[0]!()
    expect(await before).toBe('old 1')
    expect(await f(1)).toBe('new 1')
  })

  it.each([
    ['invalidate()', (f: { invalidate(id: number): Promise<void> }) => f.invalidate(1)],
    ['clear()', (f: { clear(): Promise<void> }) => f.clear()],
  ])(
    '%s through one handle stops the flights and results of every handle sharing the name',
    async (_label, invalidate) => {
      let version = 0
      const load = async (id: number) => {
        const v = version
        await sleep(30)
        return { id, v }
      }
      const reader = cached(load, { name: 'getUserShared', backend, ttl: 60 })
      const admin = cached(load, { name: 'getUserShared', backend, ttl: 60 })
      const inFlight = reader(1)
      await sleep(5)
      version = 1
      await invalidate(admin as never)
      expect(await inFlight).toEqual({ id: 1, v: 0 })
      expect(await reader(1)).toEqual({ id: 1, v: 1 })
      expect(await admin(1)).toEqual({ id: 1, v: 1 })
    },
  )

  it('invalidate() through one handle reaches the results another handle stored for a subclass', async () => {
    const backend = mapBackend({ sync: true }) // the sync method stays sync on an in-process backend
    class Repository {
      get(id: number) {
        return `${this.constructor.name} ${id} v${version}`
      }
    }
    let version = 0
    const descriptor = Object.getOwnPropertyDescriptor(Repository.prototype, 'get')!
    Object.defineProperty(
      Repository.prototype,
      'get',
      cache({ backend, name: 'repo.get' })(Repository.prototype, 'get', descriptor),
    )
    class Users extends Repository {}
    const other = cached((id: number) => `direct ${id} v${version}`, { backend, name: 'repo.get' })
    expect(new Users().get(1)).toBe('Users 1 v0')
    version = 1
    await other.invalidate(1)
    expect(new Users().get(1)).toBe('Users 1 v1')
  })

  it('becomes a pass-through when the backend is down, counted and evented', async () => {
    const errors: CacheEvent[] = []
    const fn = vi.fn(async (n: number) => n + 1)
    const f = cached(fn, { backend: downBackend(), name: 'down' })
    f.on('error', (event) => errors.push(event))
    expect(await f(1)).toBe(2)
    expect(await f(1)).toBe(2)
    expect(fn).toHaveBeenCalledTimes(2)
    expect(f.stats.errors).toBeGreaterThanOrEqual(2)
    expect(errors[0]).toMatchObject({ operation: 'get' })
  })

  it('in strict mode rethrows backend failures', async () => {
    const f = cached(async () => 1, { backend: downBackend(), name: 'strict', strict: true })
    await expect(f()).rejects.toThrow('connection refused')
  })

  /** A backend of another process: no sync access, as redis, memcached or a `memory,disk` chain. */
  const remoteBackend = () => {
    const map = new Map<string, unknown>()
    return defineBackend({
      name: 'remote',
      get: async (k) => map.get(k) as never,
      set: async (k, v) => void map.set(k, v),
      delete: async (k) => map.delete(k),
      clear: async () => map.clear(),
    })
  }

  it('never turns a sync function async on a backend without sync access: CacheConfigError naming it, and nothing stored', async () => {
    const remote = remoteBackend()
    const fn = vi.fn((a: number) => a * 10)
    const times10 = cached(fn, { backend: remote, name: 'times10' })
    // The first call learns that the function is sync (its lookup was already under way).
    const first = (async () => times10(4))()
    await expect(first).rejects.toThrow(CacheConfigError)
    await expect(first).rejects.toThrow(/times10.*sync.*remote.*async/s)
    // Every later call refuses at once, as a sync function: no promise where the type says number.
    expect(() => times10(4)).toThrow(CacheConfigError)
    expect(() => times10(5)).toThrow(/times10/)
    expect(fn).toHaveBeenCalledTimes(1)
    expect(await remote.has(times10.keyFor(4))).toBe(false)
  })

  it('refuses a sync method on a backend without sync access, naming its class and method', async () => {
    const remote = remoteBackend()
    class Geometry {
      square(n: number): number {
        return n * n
      }
    }
    const descriptor = Object.getOwnPropertyDescriptor(Geometry.prototype, 'square')!
    Object.defineProperty(
      Geometry.prototype,
      'square',
      cache({ backend: remote })(Geometry.prototype, 'square', descriptor),
    )
    const g = new Geometry()
    await expect((async () => g.square(4))()).rejects.toThrow(/Geometry\.square.*sync/s)
    expect(() => g.square(4)).toThrow(CacheConfigError)
  })

  it('keeps caching a function that returns a promise without being declared async, on a backend without sync access', async () => {
    const fn = vi.fn((a: number) => Promise.resolve(a * 10))
    const times10 = cached(fn, { backend: remoteBackend(), name: 'times10p' })
    expect(await times10(4)).toBe(40)
    expect(await times10(4)).toBe(40)
    expect(fn).toHaveBeenCalledTimes(1)
  })

  it.each([
    ['lock', { lock: true }],
    ['grace', { ttl: 60, grace: '1m' }],
    ['hardTimeout', { hardTimeout: '1s' }],
  ] as const)(
    'refuses a sync function with %s (it waits asynchronously), even on an in-process backend',
    async (option, extra) => {
      const fn = vi.fn((a: number) => a + 1)
      const plus1 = cached(fn, { backend: mapBackend({ sync: true }), name: `plus1-${option}`, ...extra })
      await expect((async () => plus1(1))()).rejects.toThrow(new RegExp(`^${option}: .*plus1-${option}`, 's'))
      expect(() => plus1(1)).toThrow(CacheConfigError)
    },
  )

  it('rejects a bad TTL when it is defined', () => {
    expect(() => cached(async () => 1, { backend, name: 'bad', ttl: 0 })).toThrow(RangeError)
    expect(() => cached(async () => 1, { backend, name: 'bad', ttl: '5 parsecs' })).toThrow(RangeError)
  })
})

describe('the default cache', () => {
  afterEach(() => resetCache())

  it('is used when no backend is given, and can be swapped by configureCache', async () => {
    const first = mapBackend()
    configureCache(first)
    const f = cached(async (n: number) => n, { name: 'defaulted' })
    await f(1)
    expect(await first.has(f.keyFor(1))).toBe(true)
    const second = mapBackend()
    configureCache(second)
    await f(1)
    expect(await second.has(f.keyFor(1))).toBe(true)
  })
})
