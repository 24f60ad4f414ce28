import { afterEach, describe, expect, it } from 'vitest'
import {
  type CacheOptions,
  type ConfigureOptions,
  type GetOrSetOptions,
  CacheConfigError,
  cache,
  cached,
  configureCache,
  defineBackend,
  getOrSet,
  invalidateKeys,
  invalidateTags,
  resetCache,
} from '../src/index.js'
import type { PackageLoader } from '../src/config.js'
import type { DefineBackendOptions } from '../src/define-backend.js'
import { CacheObserver } from '../src/stats.js'
import { mapBackend } from './map-backend.js'

afterEach(async () => {
  await resetCache()
})

/** The CacheConfigError `act` throws (or rejects with). */
async function refusal(act: () => unknown): Promise<CacheConfigError> {
  try {
    await act()
  } catch (error) {
    expect(error).toBeInstanceOf(CacheConfigError)
    return error as CacheConfigError
  }
  throw new Error('the options were accepted')
}

const store = () => ({
  get: () => undefined,
  set: () => {},
  delete: () => false,
})

describe('an option name that is not an option', () => {
  it('cached(fn, { ttll }) is refused when the function is memoized, naming ttl', async () => {
    let calls = 0
    const error = await refusal(() => cached(async () => ++calls, { name: 'f', ttll: 60 } as CacheOptions))
    expect(error.setting).toBe('ttll')
    expect(error.message).toBe('ttll: not an option of cached(); did you mean `ttl`?')
    expect(calls).toBe(0)
  })

  it('@cache({ tag }) is refused where the method is decorated, naming tags', async () => {
    const error = await refusal(() => cache({ tag: ['x'] } as CacheOptions))
    expect(error.setting).toBe('tag')
    expect(error.message).toBe('tag: not an option of @cache(); did you mean `tags`?')
  })

  it('a misspelt name inside lock is refused too', async () => {
    const error = await refusal(() =>
      cached(async () => 1, { name: 'g', ttl: 60, lock: { wiat: 1 } as never }),
    )
    expect(error.setting).toBe('wiat')
    expect(error.message).toMatch(/did you mean `wait`/)
  })

  it('getOrSet(…, { staleWhileRevalidat }) rejects, and the function never runs', async () => {
    let calls = 0
    const error = await refusal(() =>
      getOrSet(mapBackend(), 'k', async () => ++calls, {
        ttl: 60,
        staleWhileRevalidat: 10,
      } as GetOrSetOptions),
    )
    expect(error.message).toBe(
      'staleWhileRevalidat: not an option of getOrSet(); did you mean `staleWhileRevalidate`?',
    )
    expect(calls).toBe(0)
  })

  it('getOrSet refuses the misspelt name even when the same known values were used before', async () => {
    const backend = mapBackend()
    expect(await getOrSet(backend, 'k1', async () => 1, { ttl: 60 })).toBe(1)
    const error = await refusal(() =>
      getOrSet(backend, 'k2', async () => 2, { ttl: 60, tgas: ['a'] } as never),
    )
    expect(error.setting).toBe('tgas')
  })

  it('configureCache({ namespce }) is refused, and `backends` is pointed to `backend`', async () => {
    const error = await refusal(() =>
      configureCache({ backend: 'memory', namespce: 'app' } as ConfigureOptions),
    )
    expect(error.message).toBe('namespce: not an option of configureCache(); did you mean `namespace`?')
    const plural = await refusal(() => configureCache({ backends: 'memory' } as ConfigureOptions))
    expect(plural.setting).toBe('backends')
    expect(plural.message).toMatch(/did you mean `backend`/)
  })

  it('defineBackend(store, { timout }) is refused', async () => {
    const error = await refusal(() => defineBackend(store(), { timout: '50ms' } as DefineBackendOptions))
    expect(error.message).toBe('timout: not an option of defineBackend(); did you mean `timeout`?')
  })
})

describe('options that are not an options object', () => {
  class Settings {
    get ttl() {
      return 60
    }
    get tgas() {
      return ['x']
    }
  }

  it('cached, @cache, getOrSet, configureCache and defineBackend refuse null, a Map and an array', async () => {
    for (const given of [null, new Map([['ttl', 60]]), [60]]) {
      for (const [where, act] of [
        ['cached()', () => cached(async () => 1, given as never)],
        ['@cache()', () => cache(given as never)],
        ['getOrSet()', () => getOrSet(mapBackend(), 'k', async () => 1, given as never)],
        ['configureCache()', () => configureCache(given as never)],
        ['defineBackend()', () => defineBackend(store(), given as never)],
      ] as const) {
        const error = await refusal(act)
        expect(error.message).toMatch(
          new RegExp(`^${where.replace(/[()@]/g, '\\$&')}: expected an options object, got `),
        )
      }
    }
  })

  it('a settings class with a misspelt getter is refused by cached, getOrSet and defineBackend', async () => {
    expect((await refusal(() => cached(async () => 1, new Settings() as never))).setting).toBe('tgas')
    let calls = 0
    const error = await refusal(() =>
      getOrSet(mapBackend(), 'k', async () => ++calls, new Settings() as never),
    )
    expect(error.message).toMatch(/tgas: not an option of getOrSet\(\); did you mean `tags`/)
    expect(calls).toBe(0)
    class Timeouts {
      get timout() {
        return '1s'
      }
    }
    expect((await refusal(() => defineBackend(store(), new Timeouts() as never))).setting).toBe('timout')
  })

  it('a settings class whose getters are all options is read through its getters', async () => {
    class Good {
      get name() {
        return 'fromClass'
      }
      get ttl() {
        return 60
      }
      get backend() {
        return backend
      }
    }
    const backend = mapBackend()
    let calls = 0
    const fn = cached(async () => ++calls, new Good() as never)
    await fn()
    await fn()
    expect(calls).toBe(1)
    const entry = await backend.getEntry(fn.keyFor())
    expect(entry).toBeDefined()
    expect(entry?.expiresAt).toBeGreaterThan(Date.now())
  })

  it("a settings class's key() reading its own state through `this` keys each user apart", async () => {
    // A symbol field, a #private field and a WeakMap keyed by the instance: state a copy of the
    // options holding only the option names would not carry.
    const FIELD = Symbol('field')
    const tenants = new WeakMap<object, string>()
    class PerUser {
      readonly [FIELD] = 'user'
      readonly #suffix = '!'
      constructor(readonly backend: ReturnType<typeof mapBackend>) {
        tenants.set(this, 'acme')
      }
      get name() {
        return 'perUserGreeting'
      }
      key(request: Record<string | symbol, string>) {
        return `${tenants.get(this)}:${request[this[FIELD]]}${this.#suffix}`
      }
    }
    const backend = mapBackend()
    const greet = cached(
      async (request: Record<string, string>) => `hello ${request.user}`,
      new PerUser(backend) as never,
    )
    // Before: key() ran on a copy of the options, every call keyed `undefined:undefined…`, bob got alice's greeting.
    expect(await greet({ user: 'alice' })).toBe('hello alice')
    expect(await greet({ user: 'bob' })).toBe('hello bob')
    expect(greet.keyFor({ user: 'bob' })).toMatch(/:acme:bob!$/)
  })

  it("lock: 'on' is refused as a wrong type, and lock: { ttl: 'abc' } as a CacheConfigError naming lock.ttl", async () => {
    const on = await refusal(() => cached(async () => 1, { name: 'l1', lock: 'on' as never }))
    expect(on.message).toMatch(/^lock: expected true, false or \{ ttl, wait, poll \}, got the string "on"$/)
    const ttl = await refusal(() => cached(async () => 1, { name: 'l2', lock: { ttl: 'abc' } }))
    expect(ttl.setting).toBe('lock.ttl')
  })

  it('lock: 0, null or an empty string, and strict: text or a number, are refused (before: read as off)', async () => {
    // A boxed boolean too (before: "toString: not an option of `lock`", read as options).
    for (const [i, lock] of [0, null, '', Object(false)].entries()) {
      const error = await refusal(() => cached(async () => 1, { name: `l0-${i}`, lock: lock as never }))
      expect(error.message).toMatch(/^lock: expected true, false or \{ ttl, wait, poll \}/)
    }
    for (const [i, strict] of ['true', 1, Object(true)].entries()) {
      const error = await refusal(() => cached(async () => 1, { name: `s0-${i}`, strict: strict as never }))
      expect(error.message).toMatch(/^strict: expected true or false, got /)
    }
  })
})

describe('invalidateKeys and invalidateTags options', () => {
  it('refuse a misspelt backend, and leave the entry meant (and the default cache) as they were', async () => {
    configureCache(mapBackend())
    const backend = mapBackend()
    let price = 10
    const getPrice = cached(async (_id: string) => price, {
      name: 'getPrice',
      backend,
      ttl: '1h',
      tags: (id) => [`product:${id}`],
    })
    let stock = 5
    const getStock = () => getOrSet(backend, 'stock:p1', async () => stock, { ttl: '1h' })
    await getPrice('p1')
    await getStock()
    price = 20
    stock = 0
    const tags = await refusal(() => invalidateTags(['product:p1'], { backnd: backend } as never))
    expect(tags.message).toBe('backnd: not an option of invalidateTags(); did you mean `backend`?')
    const keys = await refusal(() => invalidateKeys(['stock:p1'], { backnd: backend } as never))
    expect(keys.message).toBe('backnd: not an option of invalidateKeys(); did you mean `backend`?')
    for (const given of [null, 'shop', new Map()]) {
      await refusal(() => invalidateTags(['product:p1'], given as never))
      await refusal(() => invalidateKeys(['stock:p1'], given as never))
    }
    // Refused, so the caller knows the values are still the old ones; spelt right, it works.
    expect(await getPrice('p1')).toBe(10)
    await invalidateTags(['product:p1'], { backend })
    await invalidateKeys(['stock:p1'], { backend })
    expect(await getPrice('p1')).toBe(20)
    expect(await getStock()).toBe(0)
  })
})

describe('configureCache with a backend instance', () => {
  it('refuses the options that only apply when @cache builds the backend, saying where they go', async () => {
    for (const [name, value] of [
      ['namespace', 'shop'],
      ['defaultTtl', '1s'],
      ['redisUrl', 'redis://127.0.0.1:1'],
      ['maxKeys', 10],
      ['loader', () => ({})],
    ] as const) {
      const error = await refusal(() => configureCache({ backend: mapBackend(), [name]: value }))
      expect(error.setting).toBe(name)
      expect(error.message).toMatch(/beside a backend instance it would be ignored: give it to the factory/)
    }
    expect(() => configureCache({ backend: mapBackend(), logger: false })).not.toThrow()
  })

  it('refuses a non-enumerable namespace beside an instance too: two apps sharing it would read each other’s keys', async () => {
    const shared = mapBackend()
    const options = { backend: shared } as ConfigureOptions
    Object.defineProperty(options, 'namespace', { get: () => 'billing' })
    // Before: accepted and dropped, the instance writing under no namespace.
    const error = await refusal(() => configureCache(options))
    expect(error.setting).toBe('namespace')
  })

  it('applies a non-enumerable or inherited namespace when it builds the backend', async () => {
    const given: Record<string, unknown>[] = []
    const loader: PackageLoader = () => ({
      memoryBackend: (options: Record<string, unknown>) => {
        given.push(options)
        return mapBackend()
      },
    })
    const hidden = { backend: 'memory', loader } as ConfigureOptions
    Object.defineProperty(hidden, 'namespace', { value: 'billing' })
    configureCache(hidden)
    configureCache(Object.create({ backend: 'memory', loader, namespace: 'shop' }))
    expect(given).toMatchObject([{ namespace: 'billing' }, { namespace: 'shop' }])
  })

  it('reads a settings class through its getters when it builds the backend', async () => {
    const given: Record<string, unknown>[] = []
    const loader: PackageLoader = () => ({
      memoryBackend: (options: Record<string, unknown>) => {
        given.push(options)
        return mapBackend()
      },
    })
    class Settings {
      get backend() {
        return 'memory'
      }
      get namespace() {
        return 'shop'
      }
      get defaultTtl() {
        return 60
      }
      get loader() {
        return loader
      }
    }
    configureCache(new Settings() as never)
    expect(given).toMatchObject([{ namespace: 'shop', defaultTtl: 60 }])
  })
})

describe('every documented option', () => {
  it('is accepted by cached() and @cache()', async () => {
    const all = {
      ttl: () => 60,
      maxTtl: '1h',
      condition: () => true,
      unless: () => false,
      staleWhileRevalidate: 10,
      grace: 30,
      graceBackoff: 5,
      timeout: 1,
      hardTimeout: 2,
      refreshAhead: '20%',
      lock: { ttl: 10, wait: 2, poll: '20ms' },
      strict: false,
      backend: mapBackend(),
      key: (id: number) => String(id),
      namespace: 'all',
      name: 'everyOption',
      tags: ['t'],
    } satisfies Required<CacheOptions<[number], Promise<number>>>
    const fn = cached(async (id: number) => id * 2, all)
    expect(await fn(21)).toBe(42)
    expect(() => cache({ ...all, name: 'everyOptionMethod' })).not.toThrow()
  })

  it('is accepted by getOrSet()', async () => {
    const all = {
      ttl: 60,
      maxTtl: undefined,
      condition: () => true,
      unless: () => false,
      staleWhileRevalidate: 10,
      grace: 30,
      graceBackoff: 5,
      timeout: 1,
      hardTimeout: 2,
      refreshAhead: '20s',
      lock: true,
      strict: false,
      tags: ['t'],
    } satisfies { [K in keyof Required<GetOrSetOptions>]: unknown }
    expect(await getOrSet(mapBackend(), 'all', async () => 7, all as GetOrSetOptions)).toBe(7)
  })

  it('is accepted by configureCache()', async () => {
    const given: Record<string, unknown>[] = []
    const loader: PackageLoader = () => ({
      memoryBackend: (options: Record<string, unknown>) => {
        given.push(options)
        return mapBackend()
      },
    })
    const all = {
      backend: 'memory',
      loader,
      logger: false,
      maxKeys: 10,
      maxSize: '1MB' as never,
      diskPath: '/tmp/unused',
      diskMaxSize: '1GB' as never,
      redisUrl: 'redis://127.0.0.1:6379',
      memcachedServers: '127.0.0.1:11211',
      defaultTtl: 30,
      namespace: 'all',
    } satisfies Required<ConfigureOptions>
    configureCache(all)
    expect(given).toEqual([{ maxKeys: 10, namespace: 'all', defaultTtl: 30 }])
  })

  it('is accepted by defineBackend()', async () => {
    const all = {
      timeout: '1s',
      classifyError: (error: unknown) => error as Error,
      observer: new CacheObserver('all'),
    } satisfies Required<DefineBackendOptions>
    const backend = defineBackend(store(), all)
    expect(await backend.get('k')).toBeUndefined()
  })
})
