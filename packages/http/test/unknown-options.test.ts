import { CacheConfigError } from '@cache/core'
import { describe, expect, it } from 'vitest'
import {
  HttpCache,
  type HttpCacheOptions,
  invalidateResponse,
  invalidateResponsePrefix,
  resolveHttpCacheOptions,
} from '../src/index.js'
import { memoryBackend } from '@cache/memory'

const memoryStore = () => memoryBackend()

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

describe('an HTTP cache option name that is not an option', () => {
  it('new HttpCache({ varyy }) is refused: the header it meant would not be keyed', async () => {
    const error = await refusal(
      () => new HttpCache({ backend: memoryStore(), varyy: ['x-user'] } as HttpCacheOptions),
    )
    expect(error.setting).toBe('varyy')
    expect(error.message).toBe('varyy: not an option of HttpCache; did you mean `vary`?')
  })

  it('a misspelt directive of cacheControl, or of ttl from the response, is refused', async () => {
    const control = await refusal(() =>
      resolveHttpCacheOptions({ backend: memoryStore(), cacheControl: { privte: true } as never }),
    )
    expect(control.setting).toBe('privte')
    expect(control.message).toMatch(/^privte: not an option of `cacheControl`/)
    const ttl = await refusal(() =>
      resolveHttpCacheOptions({ backend: memoryStore(), ttl: { fromResponse: true, maxx: 60 } as never }),
    )
    expect(ttl.setting).toBe('maxx')
    expect(ttl.message).toMatch(/did you mean `max`/)
  })

  it('an adapter names itself and adds its own option names', async () => {
    const known = { names: new Set(['ttl', 'backend', 'own']), where: 'adapter()' }
    expect(() =>
      resolveHttpCacheOptions({ backend: memoryStore(), own: 1 } as HttpCacheOptions, known),
    ).not.toThrow()
    const error = await refusal(() =>
      resolveHttpCacheOptions({ backend: memoryStore(), onw: 1 } as HttpCacheOptions, known),
    )
    expect(error.message).toBe('onw: not an option of adapter(); did you mean `own`?')
  })

  it('invalidateResponse({ keyPrefx }) and invalidateResponsePrefix({ backnd }) reject', async () => {
    const backend = memoryStore()
    const prefix = await refusal(() =>
      invalidateResponse('https://a.test/x', { backend, keyPrefx: 'api' } as never),
    )
    expect(prefix.message).toMatch(
      /^keyPrefx: not an option of invalidateResponse\(\); did you mean `keyPrefix`/,
    )
    const other = await refusal(() => invalidateResponsePrefix('api', { backnd: backend } as never))
    expect(other.setting).toBe('backnd')
  })

  it('cache.invalidate(url, { hots }) and cache.responseIndex({ batchsize }) reject', async () => {
    const cache = new HttpCache({ backend: memoryStore() })
    expect((await refusal(() => cache.invalidate('/x', { hots: 'a.test' } as never))).message).toMatch(
      /did you mean `host`/,
    )
    const index = await refusal(() => cache.responseIndex({ batchsize: 10 } as never).next())
    expect(index.message).toMatch(/did you mean `batchSize`/)
  })
})

describe('every documented HTTP cache option', () => {
  it('is accepted by new HttpCache()', () => {
    const all = {
      ttl: { fromResponse: true, default: 30, max: '1h' },
      backend: memoryStore(),
      keyPrefix: 'all',
      vary: ['accept-language'],
      key: () => 'k',
      statuses: [200],
      maxBodySize: '512KB',
      allowAuthorized: false,
      allowCookies: false,
      staleWhileRevalidate: 10,
      revalidateTimeout: '10s',
      collapseTimeout: '2s',
      tags: ['t'],
      statusHeader: 'x-cache',
      cacheName: 'edge',
      etag: true,
      now: Date.now,
      bypass: () => false,
      cacheControl: { maxAge: 10, sMaxAge: 20, staleWhileRevalidate: 5, public: true },
    } satisfies Required<HttpCacheOptions>
    expect(new HttpCache(all).settings.keyPrefix).toBe('all')
  })
})

describe('timeouts longer than a timer can wait', () => {
  it('are refused, naming the option, rather than run as 1 ms', () => {
    // r70-c: `collapseTimeout: '30d'` was accepted and Node ran the timer after 1 ms: every
    // concurrent first request ran the handler, and every refresh was abandoned at once.
    for (const option of ['collapseTimeout', 'revalidateTimeout'] as const) {
      for (const value of ['30d', 2_592_000])
        expect(
          () => new HttpCache({ backend: memoryStore(), [option]: value }),
          `${option} ${value}`,
        ).toThrow(expect.objectContaining({ code: 'CACHE_CONFIG', setting: option }))
      // The longest a timer waits is accepted.
      expect(new HttpCache({ backend: memoryStore(), [option]: '24d' }).settings.keyPrefix).toBeDefined()
    }
  })
})
