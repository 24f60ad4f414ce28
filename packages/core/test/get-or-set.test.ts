import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  type CacheBackend,
  CacheConfigError,
  CacheFunctionTimeoutError,
  CacheKeyError,
  cached,
  cacheGetOrSet,
  configureCache,
  defineBackend,
  getOrSet,
  invalidateKeys,
  invalidateTags,
} from '../src/index.js'
import { mapBackend } from './map-backend.js'

afterEach(() => {
  vi.useRealTimers()
})

/** A backend that remembers the TTL of every write, on top of a Map. */
function recordingBackend() {
  const rows = new Map<string, unknown>()
  const ttls = new Map<string, unknown>()
  const backend = defineBackend({
    name: 'recording',
    get: async <T>(key: string) => rows.get(key) as T | undefined,
    set: async (key: string, value: unknown, ttl?: unknown) => {
      rows.set(key, value)
      ttls.set(key, ttl)
    },
    delete: async (key: string) => rows.delete(key),
    clear: async () => rows.clear(),
  })
  return { backend, rows, ttls }
}

const invalidateTagsOf = (backend: CacheBackend, tags: string[]) => invalidateTags(tags, { backend })

/** A backend that is down: every operation fails, as a server that refuses connections. */
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
  } as never)
}

const BAD_OPTIONS: [string, Record<string, unknown>][] = [
  ['grace', { grace: 60 }],
  ['grace', { ttl: 10, grace: 'a while' }],
  ['graceBackoff', { ttl: 10, graceBackoff: 5 }],
  ['graceBackoff', { ttl: 10, grace: 60, graceBackoff: 0 }],
  ['timeout', { ttl: 10, timeout: '200ms' }],
  ['hardTimeout', { ttl: 10, grace: 60, timeout: 2, hardTimeout: 1 }],
  ['hardTimeout', { hardTimeout: -1 }],
  ['refreshAhead', { refreshAhead: '20%' }],
  ['refreshAhead', { ttl: 10, refreshAhead: '120%' }],
  ['refreshAhead', { ttl: 10, refreshAhead: '0%' }],
  ['refreshAhead', { ttl: 10, refreshAhead: 10 }],
  ['maxTtl', { ttl: 10, maxTtl: '1h' }],
  ['maxTtl', { ttl: () => 5, maxTtl: 'forever' }],
  // Before: a string was read letter by letter (tags `p`, `r`, `o`…: invalidating `products` reached nothing).
  ['tags', { tags: 'products' }],
  ['tags', { tags: ['products', 7] }],
]

describe('options', () => {
  it.each(BAD_OPTIONS)('cached() refuses a bad %s with a CacheConfigError naming it', (setting, options) => {
    let thrown: unknown
    try {
      cached(async () => 1, { ...options, name: `bad-${setting}` })
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(CacheConfigError)
    expect(thrown).toMatchObject({ setting })
  })

  it.each(BAD_OPTIONS)(
    'getOrSet() rejects a bad %s with a CacheConfigError naming it',
    async (setting, options) => {
      await expect(getOrSet(mapBackend(), 'k', async () => 1, options as never)).rejects.toMatchObject({
        name: 'CacheConfigError',
        setting,
      })
    },
  )
})

describe('tags from a function', () => {
  it('a memoized call whose tags function answers a string rejects with CacheConfigError, and runs nothing', async () => {
    let runs = 0
    const lookUp = cached(async (id: number) => ++runs + id, {
      name: 'tags-as-string',
      backend: mapBackend(),
      tags: ((id: number) => `product:${id}`) as never,
    })
    await expect(lookUp(1)).rejects.toMatchObject({ name: 'CacheConfigError', setting: 'tags' })
    expect(runs).toBe(0)
  })
})

describe('getOrSet()', () => {
  it('refuses keys that are not strings or that are @cache’s own', async () => {
    const backend = mapBackend()
    await expect(getOrSet(backend, 42 as never, async () => 1)).rejects.toBeInstanceOf(CacheKeyError)
    await expect(getOrSet(backend, '__v:fn:memo:x', async () => 1)).rejects.toBeInstanceOf(CacheKeyError)
    await expect(invalidateKeys(['__lock:x'], { backend })).rejects.toBeInstanceOf(CacheKeyError)
    await expect(getOrSet(backend, 'k', 'value' as never)).rejects.toBeInstanceOf(TypeError)
    expect(backend.rows.size).toBe(0)
  })

  it.each([
    ['a string', 'user:1'],
    ['a Set', new Set(['user:1'])],
  ])(
    'invalidateKeys() refuses %s with CacheKeyError naming it, and invalidates nothing',
    async (_label, keys) => {
      // Before: a raw TypeError (`keys.map is not a function`) after reading a string letter by letter.
      const backend = mapBackend()
      let runs = 0
      const load = async () => ++runs
      for (const key of ['user:1', 'u', '1']) await getOrSet(backend, key, load, { ttl: 60 })
      const error = await invalidateKeys(keys as never, { backend }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(CacheKeyError)
      expect((error as Error).message).toMatch(
        /^invalidateKeys: expected a list of keys, got (the string "user:1" \(write \["user:1"\]\)|a Set)/,
      )
      for (const [key, value] of [
        ['user:1', 1],
        ['u', 2],
        ['1', 3],
      ] as const)
        expect(await getOrSet(backend, key, load, { ttl: 60 }), key).toBe(value)
    },
  )

  it('shares one run between concurrent calls on a plain object backend', async () => {
    const rows = new Map<string, unknown>()
    const plain = {
      get: async (key: string) => rows.get(key),
      set: async (key: string, value: unknown) => void rows.set(key, value),
      delete: async (key: string) => rows.delete(key),
      clear: async () => rows.clear(),
    }
    let runs = 0
    const load = async () => {
      runs++
      await new Promise((resolve) => setTimeout(resolve, 5))
      return 'row'
    }
    const results = await Promise.all(Array.from({ length: 20 }, () => getOrSet(plain as never, 'k', load)))
    expect(results).toEqual(Array(20).fill('row'))
    expect(runs).toBe(1)
    expect(await getOrSet(plain as never, 'k', load)).toBe('row')
    expect(runs).toBe(1)
  })

  it('cacheGetOrSet uses the default cache', async () => {
    const backend = configureCache(mapBackend())
    let runs = 0
    const load = async () => ++runs
    expect(await cacheGetOrSet('visits', load, { ttl: 60 })).toBe(1)
    expect(await cacheGetOrSet('visits', load, { ttl: 60 })).toBe(1)
    await invalidateKeys(['visits'])
    expect(await cacheGetOrSet('visits', load, { ttl: 60 })).toBe(2)
    expect(await backend.has('visits')).toBe(true)
  })

  it('reads options again when a reused options object or its tags change', async () => {
    const backend = mapBackend()
    const options: { ttl: number; tags: string[]; grace?: number } = { ttl: 60, tags: ['a'] }
    await getOrSet(backend, 'reused', async () => 1, options)
    options.tags.push('b')
    await invalidateTagsOf(backend, ['b'])
    let runs = 0
    await getOrSet(backend, 'reused-2', async () => ++runs, options)
    await invalidateTagsOf(backend, ['b'])
    await getOrSet(backend, 'reused-2', async () => ++runs, options)
    expect(runs).toBe(2)
    options.grace = -1
    await expect(getOrSet(backend, 'reused', async () => 1, options)).rejects.toMatchObject({
      setting: 'grace',
    })
  })

  it('keeps a stored null and undefined apart from a miss', async () => {
    const backend = mapBackend()
    let runs = 0
    const nothing = async () => {
      runs++
      return undefined
    }
    const none = async () => {
      runs++
      return null
    }
    expect(await getOrSet(backend, 'nothing', nothing)).toBeUndefined()
    expect(await getOrSet(backend, 'nothing', nothing)).toBeUndefined()
    expect(await getOrSet(backend, 'null', none)).toBeNull()
    expect(await getOrSet(backend, 'null', none)).toBeNull()
    expect(runs).toBe(2)
  })
})

describe('ttl from the result', () => {
  it('is called with the result and the arguments, and its duration goes to the backend', async () => {
    const { backend, ttls } = recordingBackend()
    const ttl = vi.fn((result: { ttl: number }, _id: string) => result.ttl)
    const token = cached(async (id: string) => ({ id, ttl: 42 }), { name: 'tokenFor', backend, ttl })
    await token('a')
    expect(ttl).toHaveBeenCalledWith({ id: 'a', ttl: 42 }, 'a')
    expect(ttls.get(token.keyFor('a'))).toBe(42)
  })

  it('rejects a duration that is not one, naming the ttl function, and stores nothing', async () => {
    const { backend, rows } = recordingBackend()
    const f = cached(async () => 'x', { name: 'badTtlResult', backend, ttl: () => 'soon' })
    await expect(f()).rejects.toThrow(/ttl.*"soon"/)
    await expect(f()).rejects.toBeInstanceOf(RangeError)
    expect([...rows.keys()].filter((key) => !key.startsWith('__'))).toEqual([])
  })
})

describe('timeouts', () => {
  it('bound a pass-through call when the backend is down', async () => {
    vi.useFakeTimers()
    const f = cached(() => new Promise(() => {}), {
      name: 'hangsWhileDown',
      backend: downBackend(),
      hardTimeout: 1,
    })
    const call = f().then(
      () => 'resolved',
      (error: unknown) => error,
    )
    await vi.advanceTimersByTimeAsync(1_000)
    expect(await call).toBeInstanceOf(CacheFunctionTimeoutError)
    expect(f.stats.errors).toBe(1)
    expect(f.stats.functionTimeouts).toBe(1)
  })

  it('count and event a failure that comes after the caller timed out', async () => {
    vi.useFakeTimers()
    let fail: (error: Error) => void = () => {}
    const f = cached(() => new Promise((_, reject) => (fail = reject)), {
      name: 'failsLate',
      backend: mapBackend(),
      hardTimeout: 1,
    })
    const errors: unknown[] = []
    f.on('error', (event) => errors.push(event))
    const call = f().catch((error: unknown) => error)
    await vi.advanceTimersByTimeAsync(1_000)
    expect(await call).toBeInstanceOf(CacheFunctionTimeoutError)
    const late = new Error('upstream gave up')
    fail(late)
    await vi.advanceTimersByTimeAsync(0)
    expect(errors).toEqual([expect.objectContaining({ operation: 'function', error: late })])
    expect(f.stats.errors).toBe(1)
  })
})

describe('lock with grace', () => {
  it('makes a waiter wait for the holder’s result, not answer with the kept value', async () => {
    vi.useFakeTimers()
    const store = mapBackend()
    // The same store seen from another process: another backend object, so no flight is shared.
    const other = defineBackend({
      name: 'other process',
      get: (key) => store.get(key),
      getMany: (keys) => store.getMany(keys),
      set: (key, value, ttl) => store.set(key, value, ttl),
      add: (key, value, ttl) => store.add(key, value, ttl),
      delete: (key) => store.delete(key),
      clear: () => store.clear(),
    })
    let version = 1
    let open: () => void = () => {}
    const load = async () => {
      const value = `v${version}`
      if (version > 1) await new Promise<void>((resolve) => (open = resolve))
      return value
    }
    const options = { ttl: 10, grace: 60, lock: { poll: '50ms' } }
    expect(await getOrSet(store, 'locked', load, options)).toBe('v1')
    await vi.advanceTimersByTimeAsync(11_000)
    version = 2
    const holder = getOrSet(store, 'locked', load, options)
    await vi.advanceTimersByTimeAsync(0)
    let waited: unknown
    const waiter = getOrSet(other, 'locked', load, options).then((value) => (waited = value))
    await vi.advanceTimersByTimeAsync(500)
    expect(waited).toBeUndefined()
    open()
    expect(await holder).toBe('v2')
    await vi.advanceTimersByTimeAsync(100)
    await waiter
    expect(waited).toBe('v2')
  })
})

describe('refresh ahead as a duration', () => {
  it('refreshes in the last part it names, or the last half of a shorter ttl', async () => {
    vi.useFakeTimers()
    const backend = mapBackend()
    let runs = 0
    const load = async () => ++runs
    await getOrSet(backend, 'fixed', load, { ttl: 10, refreshAhead: '3s' })
    await vi.advanceTimersByTimeAsync(6_900)
    await getOrSet(backend, 'fixed', load, { ttl: 10, refreshAhead: '3s' })
    expect(runs).toBe(1)
    await vi.advanceTimersByTimeAsync(200)
    await getOrSet(backend, 'fixed', load, { ttl: 10, refreshAhead: '3s' })
    await vi.advanceTimersByTimeAsync(0)
    expect(runs).toBe(2)

    // A 2 s result with a 3 s refreshAhead: refreshed in its last second.
    const short = { ttl: () => 2, refreshAhead: '3s' } as const
    await getOrSet(backend, 'short', load, short)
    await vi.advanceTimersByTimeAsync(900)
    await getOrSet(backend, 'short', load, short)
    expect(runs).toBe(3)
    await vi.advanceTimersByTimeAsync(200)
    await getOrSet(backend, 'short', load, short)
    await vi.advanceTimersByTimeAsync(0)
    expect(runs).toBe(4)
  })
})
