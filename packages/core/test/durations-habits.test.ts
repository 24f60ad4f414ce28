import { afterEach, describe, expect, it } from 'vitest'
import {
  type CacheLogger,
  cache,
  cacheSet,
  cached,
  configureCache,
  defineBackend,
  parseDuration,
  resetCache,
  setCacheLogger,
  ttlToMs,
} from '../src/index.js'

/** A logger that keeps what it is told. */
function recorder(): CacheLogger & { lines: string[] } {
  const lines: string[] = []
  return {
    lines,
    warn: (message: string) => void lines.push(`warn ${message}`),
    error: (message: string) => void lines.push(`error ${message}`),
  }
}

afterEach(() => setCacheLogger(undefined))

describe('durations as people write them', () => {
  it.each([
    ['300', 300_000],
    ['7200', 7_200_000],
    [' 90 ', 90_000],
    ['1.5', 1_500],
    ['1 minute', 60_000],
    ['1 Minute', 60_000],
    ['2 minutes', 120_000],
    ['2 mins', 120_000],
    ['1m30s', 90_000],
    ['1m 30s', 90_000],
    ['1h30m', 5_400_000],
    ['1 hour 30 minutes', 5_400_000],
    ['2 hours', 7_200_000],
    ['2 hrs', 7_200_000],
    ['90 seconds', 90_000],
    ['10 secs', 10_000],
    ['500 milliseconds', 500],
    ['3 days', 259_200_000],
    ['1 week', 604_800_000],
    ['1d12h', 129_600_000],
    ['1.5 hours', 5_400_000],
  ])('reads %j as %d ms', (input, ms) => {
    expect(parseDuration(input, 'ttl')).toBe(ms)
    expect(ttlToMs(input)).toBe(ms)
  })

  it.each([
    '1m 30', // a number without a unit inside a compound: seconds or minutes?
    '1 parsec',
    'minute',
    '1 month', // months and years have no fixed length
    '1y',
    '1.2.3s',
    '1m-30s',
    '- 5s',
    '0',
    '0 minutes',
    '1e3',
  ])('rejects %j with a RangeError naming it', (input) => {
    expect(() => parseDuration(input, 'ttl')).toThrow(RangeError)
    expect(() => parseDuration(input, 'ttl')).toThrow(`ttl: ${JSON.stringify(input)}`)
  })

  it('says which forms it takes', () => {
    expect(() => parseDuration('1 month', 'ttl')).toThrow(
      `ttl: "1 month" is not a duration (use seconds, or e.g. '250ms', '30s', '5m', '1h30m', '2 hours', '7d')`,
    )
  })
})

describe('TTLs that never expire', () => {
  it('reads ttl: Infinity as "no expiry", whatever the default TTL', () => {
    expect(ttlToMs(Number.POSITIVE_INFINITY)).toBeUndefined()
  })

  it('keeps Infinity out of the other durations (timeouts, waits)', () => {
    expect(() => parseDuration(Number.POSITIVE_INFINITY, 'timeout')).toThrow(RangeError)
  })
})

describe('the milliseconds habit', () => {
  it('warns once, through the logger, that ttl: 60000 is read as 16h40m of seconds', () => {
    const logger = recorder()
    setCacheLogger(logger)
    expect(ttlToMs(60_000, 'ttl')).toBe(60_000_000)
    expect(ttlToMs(60_000, 'ttl')).toBe(60_000_000)
    expect(parseDuration(60_000, 'ttl')).toBe(60_000_000)
    expect(logger.lines).toEqual([
      "warn [@cache] ttl: 60000 is read as seconds (16h40m). If you meant milliseconds, write 60 or '60s'; to keep 16h40m, write '16h40m' and this warning goes away.",
    ])
  })

  it('warns for a numeric string too, naming where it came from', () => {
    const logger = recorder()
    setCacheLogger(logger)
    expect(parseDuration('300000', 'CACHE_DEFAULT_TTL')).toBe(300_000_000)
    expect(logger.lines).toHaveLength(1)
    expect(logger.lines[0]).toMatch(
      /^warn \[@cache\] CACHE_DEFAULT_TTL: 300000 is read as seconds \(3d11h20m\)/,
    )
  })

  it.each([60, 300, 3600, 86_400, 604_800, 1500, 999, 2_592_000])(
    'stays quiet for %d seconds, a common number of seconds',
    (seconds) => {
      const logger = recorder()
      setCacheLogger(logger)
      ttlToMs(seconds, 'ttl')
      parseDuration(String(seconds), 'ttl')
      expect(logger.lines).toEqual([])
    },
  )

  it('catches it where people write TTLs: cached(), the decorator, cacheSet(), a backend option', async () => {
    const logger = recorder()
    setCacheLogger(logger)
    const rows = new Map<string, unknown>()
    const backend = defineBackend({
      get: (k: string) => rows.get(k),
      set: (k: string, v: unknown) => void rows.set(k, v),
      delete: (k: string) => rows.delete(k),
    })
    cached(async (n: number) => n, { backend, name: 'ms-habit', ttl: 120_000 })
    class Reports {
      @cache({ backend, ttl: 180_000 })
      async monthly(month: string) {
        return month
      }
    }
    void Reports
    configureCache(backend)
    await cacheSet('k', 1, 240_000)
    await resetCache()
    expect(logger.lines.map((line) => line.split(' is read')[0])).toEqual([
      'warn [@cache] ttl: 120000',
      'warn [@cache] ttl: 180000',
      'warn [@cache] ttl: 240000',
    ])
  })

  it('stays quiet for TTLs that code computed and hands to a backend (18000 s is 5h)', async () => {
    const logger = recorder()
    setCacheLogger(logger)
    ttlToMs(18_000)
    const rows = new Map<string, unknown>()
    const backend = defineBackend({
      get: (k: string) => rows.get(k),
      set: (k: string, v: unknown) => void rows.set(k, v),
      delete: (k: string) => rows.delete(k),
    })
    const report = cached(async (n: number) => n, { backend, name: 'five-hours', ttl: '5h' })
    await report(1)
    await backend.set('x', 1, 36_000)
    expect(logger.lines).toEqual([])
  })

  it('stays quiet for a duration with a unit', () => {
    const logger = recorder()
    setCacheLogger(logger)
    parseDuration('7000s', 'ttl')
    parseDuration('5000ms', 'ttl')
    expect(logger.lines).toEqual([])
  })
})
