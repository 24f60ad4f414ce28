import { describe, expect, it } from 'vitest'
import { parseDuration, parseSize, ttlToMs } from '../src/index.js'

describe('parseDuration', () => {
  it.each([
    [60, 60_000],
    [0.25, 250],
    [0.0001, 1],
    ['250ms', 250],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['7d', 604_800_000],
    ['1.5h', 5_400_000],
    [' 2 m ', 120_000],
    [2 ** 32, 2 ** 32 * 1000],
  ])('reads %j as %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms)
  })

  it.each([
    0,
    -1,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    '',
    'abc',
    '5 parsecs',
    '-5s',
    '0s',
    '1e3s',
    null,
    {},
    true,
  ])('rejects %j with a RangeError that names the value', (input) => {
    expect(() => parseDuration(input as never, 'ttl')).toThrow(RangeError)
    expect(() => parseDuration(input as never, 'ttl')).toThrow(/^ttl: /)
  })

  it('names the bad value in the message', () => {
    expect(() => parseDuration('5 parsecs', 'ttl')).toThrow('ttl: "5 parsecs" is not a duration')
    expect(() => parseDuration(-1, 'ttl')).toThrow('ttl: -1 is not a positive, finite duration')
  })

  it('never rounds a tiny TTL down to 0 (which some stores read as "forever")', () => {
    expect(ttlToMs(0.000001)).toBe(1)
  })

  it('keeps undefined as "no TTL"', () => {
    expect(ttlToMs(undefined)).toBeUndefined()
  })
})

describe('parseSize', () => {
  it.each([
    [1, 1],
    ['512KB', 512 * 1024],
    ['1GB', 1024 ** 3],
    ['1.5MB', 1.5 * 1024 ** 2],
    ['10gb', 10 * 1024 ** 3],
    ['100', 100],
    ['64k', 64 * 1024],
  ])('reads %j as %d bytes', (input, bytes) => {
    expect(parseSize(input)).toBe(bytes)
  })

  it.each(['1XB', '', 'GB', '-1KB', 0, -5, Number.NaN, '1 2 KB'])('rejects %j with a RangeError', (input) => {
    expect(() => parseSize(input as never, 'maxSize')).toThrow(RangeError)
    expect(() => parseSize(input as never, 'maxSize')).toThrow(/^maxSize: /)
  })
})
