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
