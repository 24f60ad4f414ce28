/**
 * Hostile and bad input against every backend that exists: bad TTLs, bad sizes, values that
 * cannot be serialized, prototype-pollution payloads, and awkward keys. Every row must end in a
 * clear typed error or a correct round-trip: never a crash, a hang, or a silent wrong answer.
 */
import {
  cached,
  CacheKeyError,
  CacheNotANumberError,
  CacheSerializationError,
  CacheValueTooLargeError,
  type CacheBackend,
  isCacheError,
  parseDuration,
  parseSize,
  CacheConfigError,
} from '@cache/core'
import { diskBackend } from '@cache/disk'
import { memcachedBackend } from '@cache/memcached'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { existsSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { type BackendUnderTest, backendsUnderTest, SharedServers } from './support/backends.js'
import { outcome } from './support/bounded.js'

// Infinity is a valid TTL ("never expires"); -Infinity is not.
const BAD_TTLS: unknown[] = [
  0,
  -1,
  Number.NaN,
  'abc',
  '5 parsecs',
  Number.NEGATIVE_INFINITY,
  '',
  '-5s',
  '1 month',
]

/** How a bad value is named in an error message. */
function shown(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value)
}

class Point {
  constructor(
    readonly x: number,
    readonly y: number,
  ) {}
  norm(): number {
    return Math.hypot(this.x, this.y)
  }
}

function circular(): Record<string, unknown> {
  const node: Record<string, unknown> = { name: 'loop' }
  node.self = node
  return node
}

describe('core parsers name the bad value', () => {
  it.each(BAD_TTLS)('parseDuration(%s) throws a RangeError naming it', (ttl) => {
    expect(() => parseDuration(ttl as never, 'ttl')).toThrow(RangeError)
    expect(() => parseDuration(ttl as never, 'ttl')).toThrow(shown(ttl))
  })

  it.each(['1XB', '-1KB', 'many', '', '0', 0, -5, Number.NaN])(
    'parseSize(%s) throws a RangeError naming it',
    (size) => {
      expect(() => parseSize(size as never, 'maxSize')).toThrow(RangeError)
      expect(() => parseSize(size as never, 'maxSize')).toThrow(/maxSize/)
    },
  )

  it('accepts the good forms, so the rows above can fail', () => {
    expect(parseDuration('250ms')).toBe(250)
    expect(parseDuration(0.25)).toBe(250)
    expect(parseSize('1KB')).toBe(1024)
  })
})

const unusedDir = join(tmpdir(), `cache-faults-never-created-${process.pid}`)

describe('backend options reject bad sizes and durations at construction', () => {
  const rows: [string, () => unknown, RegExp][] = [
    ["memory maxSize '1XB'", () => memoryBackend({ maxSize: '1XB' }), /maxSize.*"1XB"/],
    ['memory maxKeys 0', () => memoryBackend({ maxKeys: 0 }), /maxKeys/],
    ['memory maxKeys NaN', () => memoryBackend({ maxKeys: Number.NaN }), /maxKeys/],
    ["memory defaultTtl 'abc'", () => memoryBackend({ defaultTtl: 'abc' }), /defaultTtl.*"abc"/],
    ['memory defaultTtl -1', () => memoryBackend({ defaultTtl: -1 }), /defaultTtl.*-1/],
    ["disk maxSize '1XB'", () => diskBackend({ path: unusedDir, maxSize: '1XB' }), /maxSize.*"1XB"/],
    ["disk inlineThreshold '1XB'", () => diskBackend({ path: unusedDir, inlineThreshold: '1XB' }), /"1XB"/],
    [
      "disk defaultTtl '5 parsecs'",
      () => diskBackend({ path: unusedDir, defaultTtl: '5 parsecs' }),
      /"5 parsecs"/,
    ],
    ["redis timeout 'abc'", () => redisBackend('redis://127.0.0.1:1', { timeout: 'abc' }), /timeout.*"abc"/],
    ['redis defaultTtl 0', () => redisBackend('redis://127.0.0.1:1', { defaultTtl: 0 }), /defaultTtl/],
    ["memcached maxValueSize '1XB'", () => memcachedBackend('127.0.0.1:1', { maxValueSize: '1XB' }), /"1XB"/],
    ['memcached timeout -1', () => memcachedBackend('127.0.0.1:1', { timeout: -1 }), /timeout.*-1/],
    ["memcached defaultTtl 'abc'", () => memcachedBackend('127.0.0.1:1', { defaultTtl: 'abc' }), /"abc"/],
  ]
  it.each(rows)(
    '%s throws a CacheConfigError naming the option, and creates nothing',
    (_, build, message) => {
      expect(build).toThrow(CacheConfigError)
      expect(build).toThrow(message)
      expect(existsSync(unusedDir)).toBe(false)
    },
  )
})

const servers = new SharedServers()
afterAll(() => servers.stop())

describe.each(backendsUnderTest(servers).map((b) => [b.name, b] as const))(
  '%s',
  (_, target: BackendUnderTest) => {
    let backend: CacheBackend
    beforeAll(async () => {
      backend = await target.create()
    })
    afterAll(async () => {
      await backend?.close()
      await target.cleanup?.()
    })

    describe('bad TTLs: a RangeError naming the value, and nothing stored', () => {
      const ops: [string, (b: CacheBackend, key: string, ttl: never) => Promise<unknown>][] = [
        ['set', (b, k, ttl) => b.set(k, 'v', ttl)],
        ['add', (b, k, ttl) => b.add(k, 'v', ttl)],
        ['incr', (b, k, ttl) => b.incr(k, 1, ttl)],
        ['atomicUpdate', (b, k, ttl) => b.atomicUpdate(k, () => 'v', ttl)],
        ['setMany', (b, k, ttl) => b.setMany([{ key: k, value: 'v', ttl }])],
      ]
      const rows = ops.flatMap(([op, run]) => BAD_TTLS.map((ttl) => [op, shown(ttl), ttl, run] as const))
      it.each(rows)('%s with ttl %s', async (op, _label, ttl, run) => {
        const key = `ttl:${op}:${shown(ttl)}`
        const result = await outcome(() => run(backend, key, ttl as never))
        expect(result.ok).toBe(false)
        const error = (result as { error: Error }).error
        expect(error).toBeInstanceOf(RangeError)
        expect(error.message).toContain(shown(ttl))
        expect(await backend.has(key)).toBe(false)
      })

      it('stores with a good TTL (control row)', async () => {
        await backend.set('ttl:good', 'v', '5m')
        const entry = await backend.getEntry('ttl:good')
        expect(entry?.value).toBe('v')
        expect(entry?.expiresAt).toBeGreaterThan(Date.now() + 250_000)
      })
    })

    describe('values', () => {
      it('a function: stored as the same reference, or a CacheSerializationError naming the path', async () => {
        const fn = () => 42
        const result = await outcome(() => backend.set('v:fn', { deep: { callback: fn } }))
        if (target.storage === 'reference') {
          expect(result.ok).toBe(true)
          expect(((await backend.get('v:fn')) as { deep: { callback: unknown } }).deep.callback).toBe(fn)
          return
        }
        expect(result.ok).toBe(false)
        const error = (result as { error: Error }).error
        expect(error).toBeInstanceOf(CacheSerializationError)
        expect(error).toBeInstanceOf(TypeError)
        expect(isCacheError(error)).toBe(true)
        if (target.storage === 'serialize')
          expect((error as CacheSerializationError).path).toBe('$.deep.callback')
        expect(await backend.has('v:fn')).toBe(false)
      })

      it('a symbol: stored as itself, or a CacheSerializationError', async () => {
        const symbol = Symbol('s')
        const result = await outcome(() => backend.set('v:symbol', { s: symbol }))
        if (target.storage === 'reference') {
          expect(result.ok).toBe(true)
          expect(((await backend.get('v:symbol')) as { s: symbol }).s).toBe(symbol)
          return
        }
        expect(result.ok).toBe(false)
        expect((result as { error: Error }).error).toBeInstanceOf(CacheSerializationError)
        expect(await backend.has('v:symbol')).toBe(false)
      })

      it('a circular object: a faithful cycle, or a CacheSerializationError', async () => {
        const value = circular()
        const result = await outcome(() => backend.set('v:circular', value))
        if (target.storage === 'serialize') {
          expect(result.ok).toBe(false)
          const error = (result as { error: Error }).error
          expect(error).toBeInstanceOf(CacheSerializationError)
          expect(error.message).toMatch(/circular/)
          expect(await backend.has('v:circular')).toBe(false)
          return
        }
        expect(result.ok).toBe(true)
        const got = (await backend.get('v:circular')) as Record<string, unknown>
        expect(got.name).toBe('loop')
        expect(got.self).toBe(got)
      })

      it('a class instance: the instance with its prototype, or a CacheSerializationError', async () => {
        const result = await outcome(() => backend.set('v:class', new Point(3, 4)))
        if (!result.ok) {
          expect(target.storage).not.toBe('reference')
          expect((result as { error: Error }).error).toBeInstanceOf(CacheSerializationError)
          expect(await backend.has('v:class')).toBe(false)
          return
        }
        // Stored: it must come back as a Point, not as a plain object that lost its methods.
        const got = await backend.get('v:class')
        expect(got).toBeInstanceOf(Point)
        expect((got as Point).norm()).toBe(5)
      })

      it('a memoized function returning a class instance: refused the same way, never counted as the backend failing', async () => {
        const area = cached(async (x: number) => new Point(x, x), {
          backend,
          name: `hostile-memo-${target.name}`,
        })
        const result = await outcome(() => area(3))
        expect(area.stats.errors).toBe(0)
        if (target.storage === 'reference') {
          expect(result.ok).toBe(true)
          expect((result as { value: Point }).value).toBeInstanceOf(Point)
          return
        }
        expect(result.ok).toBe(false)
        const error = (result as { error: Error }).error
        expect(error).toBeInstanceOf(CacheSerializationError)
        expect(error.message).toMatch(/Point/)
      })

      it('a JSON payload with "__proto__" round-trips as data and pollutes nothing', async () => {
        const payload = JSON.parse(
          '{"__proto__": {"polluted": 1}, "nested": {"__proto__": {"polluted": 2}}, "constructor": {"prototype": {"polluted": 3}}}',
        )
        await backend.set('v:proto', payload)
        const got = (await backend.get('v:proto')) as Record<string, any>
        expect(({} as Record<string, unknown>).polluted).toBeUndefined()
        expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined()
        expect(Object.getPrototypeOf(got)).toBe(Object.prototype)
        expect(got.polluted).toBeUndefined()
        expect(got.nested.polluted).toBeUndefined()
        expect(Object.hasOwn(got, '__proto__')).toBe(true)
        expect(Object.getOwnPropertyDescriptor(got, '__proto__')?.value).toEqual({ polluted: 1 })
        expect(got.constructor).toEqual({ prototype: { polluted: 3 } })
      })

      it('a 2 MB value: round-trips byte for byte, or a CacheValueTooLargeError before anything is sent', async () => {
        const big = Buffer.alloc(2 * 1024 * 1024)
        for (let i = 0; i < big.length; i += 4096) big[i] = i % 251
        const result = await outcome(() => backend.set('v:2mb', big), 10_000)
        if (target.maxValueBytes !== undefined && big.length > target.maxValueBytes) {
          expect(result.ok).toBe(false)
          const error = (result as { error: Error }).error
          expect(error).toBeInstanceOf(CacheValueTooLargeError)
          expect(await backend.has('v:2mb')).toBe(false)
          return
        }
        expect(result).toEqual({ ok: true, value: undefined })
        const got = (await backend.get('v:2mb')) as Buffer
        expect(Buffer.isBuffer(got)).toBe(true)
        expect(got.equals(big)).toBe(true)
        await backend.delete('v:2mb')
      })

      it('incr on a non-number, or by a non-integer: typed errors, value untouched', async () => {
        await backend.set('v:text', 'hello')
        const notNumber = await outcome(() => backend.incr('v:text'))
        expect((notNumber as { error: Error }).error).toBeInstanceOf(CacheNotANumberError)
        expect(await backend.get('v:text')).toBe('hello')
        for (const by of [1.5, Number.NaN, Number.POSITIVE_INFINITY, '1']) {
          const bad = await outcome(() => backend.incr('v:counter', by as number))
          expect((bad as { error: Error }).error).toBeInstanceOf(RangeError)
        }
        expect(await backend.has('v:counter')).toBe(false)
        expect(await backend.incr('v:counter', 2)).toBe(2)
      })

      it('a throwing atomicUpdate function stores nothing and rethrows', async () => {
        await backend.set('v:au', 1)
        const boom = new Error('boom')
        const result = await outcome(() =>
          backend.atomicUpdate('v:au', () => {
            throw boom
          }),
        )
        expect(result).toEqual({ ok: false, error: boom })
        expect(await backend.get('v:au')).toBe(1)
      })
    })

    describe('keys', () => {
      const keys: [string, string][] = [
        ['empty', ''],
        ['1 KB', 'k'.repeat(1024)],
        ['1 KB + 1 different char', `${'k'.repeat(1023)}j`],
        ['spaces', 'a key with spaces'],
        ['underscores (not spaces)', 'a_key_with_spaces'],
        ['newline', 'line1\nline2'],
        ['CRLF', 'line1\r\nline2'],
        ['NUL', 'a\u0000b'],
        ['NUL-free twin', 'ab'],
        ['path traversal', '../../x'],
        ['absolute path', '/etc/passwd'],
        ['unicode', 'ключ-键-🔑'],
        ['__proto__', '__proto__'],
        ['constructor', 'constructor'],
        ['glob characters', 'user:*?[a]'],
        ['lone surrogate', 'x\ud800y'],
      ]

      it('every awkward key stores, reads, and deletes its own value: no collisions', async () => {
        for (const [label, key] of keys) await backend.set(key, { label })
        for (const [label, key] of keys) {
          expect(await backend.get(key), label).toEqual({ label })
          expect(await backend.has(key), label).toBe(true)
        }
        const many = await backend.getMany(keys.map(([, key]) => key))
        expect(many).toEqual(keys.map(([label]) => ({ label })))
        for (const [label, key] of keys) {
          expect(await backend.delete(key), label).toBe(true)
          expect(await backend.get(key), label).toBeUndefined()
        }
        expect(({} as Record<string, unknown>).label).toBeUndefined()
        if (target.directory) {
          // Keys are data, never paths: nothing named after a key appears outside the cache directory.
          expect(existsSync(resolve(target.directory, '../../x'))).toBe(false)
          expect(readdirSync(dirname(target.directory))).toEqual(['cache'])
        }
      })

      it('counters on awkward keys are exact and independent', async () => {
        for (const [, key] of keys) await backend.incr(`n:${key}`, 1)
        for (const [, key] of keys) await backend.incr(`n:${key}`, 2)
        for (const [label, key] of keys) expect(await backend.get(`n:${key}`), label).toBe(3)
      })

      it.each([
        ['number', 42],
        ['null', null],
        ['undefined', undefined],
        ['object', { id: 1 }],
        ['array', ['a']],
      ])('a %s key is a CacheKeyError for get, set, delete', async (_, key) => {
        for (const run of [
          () => backend.get(key as never),
          () => backend.set(key as never, 1),
          () => backend.delete(key as never),
        ]) {
          const result = await outcome(run)
          expect(result.ok).toBe(false)
          expect((result as { error: Error }).error).toBeInstanceOf(CacheKeyError)
        }
      })
    })
  },
)
