import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  CacheConfigError,
  type CacheBackend,
  CacheKeyError,
  CacheUnsupportedError,
  cached,
  invalidateTags,
  listKeys,
} from '@cache/core'

/** How to build the backend under test, and what it can do. */
export interface ConformanceOptions {
  /**
   * Builds a backend. Called with a namespace for the isolation tests: backends built with
   * different namespaces must share one store (same server, same directory).
   */
  create(options: { namespace: string }): CacheBackend | Promise<CacheBackend>
  /** The TTL the expiry tests use, in ms; at least the backend's granularity. Default: 100. */
  ttlMs?: number
  /** The backend serializes values (leaves the process): unserializable values must throw. Default: true. */
  serializes?: boolean
  /** Size of the "large value" test in bytes. Default: 512 KB. */
  largeValueBytes?: number
  /**
   * The backend reports `expiresAt` from `getEntry` (so `incr` can keep a counter's original
   * expiry). False only for minimal custom backends completed by `defineBackend`. Default: true.
   */
  reportsExpiry?: boolean
  /** `getEntry` tells a stored `undefined` from a miss. False only for minimal custom backends. Default: true. */
  storesUndefined?: boolean
  /** Test timeout in ms for slow servers. Default: 20 s. */
  timeoutMs?: number
  /**
   * The backend lists its keys (`keys()`); the listing cases run. When false, the suite checks
   * instead that `listKeys()` throws `CacheUnsupportedError`. Default: true.
   */
  listsKeys?: boolean
  /** Keys the "more than one page" listing case writes. Default: 2500. */
  manyKeys?: number
  /**
   * Two backends built by `create` with one namespace share their entries (a server, a directory,
   * a shared map): the use-after-close case reads back through a new one. False for a store each
   * `create` makes anew (an in-process memory backend). Default: true.
   */
  sharesStore?: boolean
  /**
   * Builds the backend against a server that is down (a loopback port nothing listens on), for
   * backends that use a server: the suite checks that every operation fails fast with
   * `CacheUnavailableError`, counted and evented. Default: none (the case does not run).
   */
  createDown?(options: { namespace: string }): CacheBackend | Promise<CacheBackend>
  /** How long an operation against a server that is down may take before it rejects, in ms. Default: 3000. */
  downWithinMs?: number
  /**
   * The character the backend puts between a namespace and a key **by design**, when it documents
   * that namespaces nest (Redis' `namespace:key`: namespace `users` also owns what namespace
   * `users:eu` stores). The hostile-namespace cases then leave out namespaces that contain it; every
   * other pair must still stay apart. Default: none (any two different namespaces stay apart).
   */
  namespaceSeparator?: string
  /**
   * The clock the backend reads (hand `clock.now` to its `now` option), moved forward by the expiry
   * cases instead of sleeping: make one with {@link manualClock}. Only for a backend that decides
   * expiry in the process with that clock; a server's own expiry needs real time. Default: real
   * time (the cases sleep, side by side).
   */
  clock?: ManualClock
}

/** A clock that stands still until it is moved: `now` in epoch ms, `advance(ms)` moves it. */
export interface ManualClock {
  now(): number
  advance(ms: number): void
}

/** A {@link ManualClock} that starts at the real time (so expiry stamps stay plausible). */
export function manualClock(start: number = Date.now()): ManualClock {
  let time = start
  return {
    now: () => time,
    advance(ms: number) {
      if (!(ms >= 0)) throw new RangeError(`advance() takes a positive number of ms, got ${ms}`)
      time += ms
    },
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * The shared conformance suite every @cache backend passes (vitest). Call it at the top level of
 * a test file:
 *
 * ```ts
 * runConformance('memory', { create: ({ namespace }) => memoryBackend({ namespace }), serializes: false })
 * ```
 */
export function runConformance(name: string, options: ConformanceOptions): void {
  const ttlMs = options.ttlMs ?? 100
  const serializes = options.serializes ?? true
  const reportsExpiry = options.reportsExpiry ?? true
  const storesUndefined = options.storesUndefined ?? true
  const timeout = options.timeoutMs ?? 20_000
  const run = randomBytes(4).toString('hex')
  const { clock } = options
  // Time passing for an entry: the clock moved, or a real wait.
  const pass = clock === undefined ? sleep : async (ms: number) => clock.advance(ms)
  const now = clock === undefined ? Date.now : clock.now
  const ns = (label: string) => `conf${run}-${label}`
  let cache: CacheBackend
  let n = 0
  const key = (label = 'k') => `${label}:${++n}`

  describe(`${name} conformance`, { timeout }, () => {
    beforeAll(async () => {
      cache = await options.create({ namespace: ns('main') })
    })
    afterAll(async () => {
      await cache?.close()
    })

    it('returns undefined for a miss', async () => {
      const k = key()
      expect(await cache.get(k)).toBeUndefined()
      expect(await cache.getEntry(k)).toBeUndefined()
      expect(await cache.has(k)).toBe(false)
    })

    it('gets what was set, and the newest value after an overwrite', async () => {
      const k = key()
      await cache.set(k, { name: 'Ada', langs: ['en', 'fr'] })
      expect(await cache.get(k)).toEqual({ name: 'Ada', langs: ['en', 'fr'] })
      await cache.set(k, 'second')
      expect(await cache.get(k)).toBe('second')
    })

    it.each([
      ['empty string', ''],
      ['"0"', '0'],
      ['zero', 0],
      ['false', false],
      ['null', null],
      ['a negative float', -12.5],
      ['unicode', 'zoë 🎉 日本'],
      ['an array with holes of undefined', [1, undefined, null]],
    ])('round-trips %s as itself', async (_label, value) => {
      const k = key()
      await cache.set(k, value)
      expect(await cache.get(k)).toStrictEqual(value)
      const entry = await cache.getEntry(k)
      expect(entry).toBeDefined()
      expect(entry!.value).toStrictEqual(value)
    })

    if (storesUndefined)
      it('tells a stored undefined from a miss with getEntry', async () => {
        const k = key()
        await cache.set(k, undefined)
        const entry = await cache.getEntry(k)
        expect(entry).toBeDefined()
        expect(entry!.value).toBeUndefined()
        expect(await cache.has(k)).toBe(true)
      })

    it('round-trips binary, Date, Map, Set and BigInt values', async () => {
      const k = key()
      const bytes = randomBytes(256)
      const value = {
        bytes,
        u8: new Uint8Array([0, 1, 254, 255]),
        when: new Date('2024-02-29T12:34:56.789Z'),
        map: new Map<unknown, unknown>([
          ['a', 1],
          [2, { b: true }],
        ]),
        set: new Set(['x', 'y']),
        big: 2n ** 70n,
      }
      await cache.set(k, value)
      const back = (await cache.get<typeof value>(k))!
      expect(Buffer.from(back.bytes).equals(bytes)).toBe(true)
      expect(Buffer.isBuffer(back.bytes)).toBe(true)
      expect(back.u8).toBeInstanceOf(Uint8Array)
      expect([...back.u8]).toEqual([0, 1, 254, 255])
      expect(back.when).toBeInstanceOf(Date)
      expect(back.when.toISOString()).toBe('2024-02-29T12:34:56.789Z')
      expect(back.map).toEqual(value.map)
      expect(back.set).toEqual(value.set)
      expect(back.big).toBe(2n ** 70n)
    })

    it('a set of a zero of the other sign replaces the zero it held (set, setMany)', async () => {
      for (const [first, second] of [
        [0, -0],
        [-0, 0],
      ] as const) {
        const k = key()
        await cache.set(k, first)
        await cache.set(k, second)
        expect(Object.is(await cache.get(k), second), `set ${first} then ${second}`).toBe(true)
        await cache.setMany([{ key: k, value: { z: first } }])
        await cache.setMany([{ key: k, value: { z: second } }])
        expect(Object.is(((await cache.get(k)) as { z: number }).z, second)).toBe(true)
        await cache.setMany([{ key: k, value: first }])
        await cache.setMany([{ key: k, value: second }])
        expect(Object.is(await cache.get(k), second), `setMany ${first} then ${second}`).toBe(true)
      }
    })

    it('stores a large value', async () => {
      const k = key()
      const size = options.largeValueBytes ?? 512 * 1024
      const value = randomBytes(size / 2).toString('hex')
      await cache.set(k, value)
      expect(await cache.get(k)).toBe(value)
    })

    // The tests that wait for a TTL to pass run side by side: each uses its own keys, and the
    // waits (seconds on a server with whole-second TTLs) overlap instead of adding up. With a
    // manual clock one after the other: each one's advance would expire the others' entries.
    ;(clock === undefined ? describe.concurrent : describe)('expiry', () => {
      it('expires an entry after its TTL and keeps one without TTL', async ({ expect }) => {
        const short = key()
        const forever = key()
        const written = now()
        await cache.set(short, 'short', ttlMs / 1000)
        await cache.set(forever, 'forever')
        const early = await cache.get(short)
        // On a loaded machine the read may come after the TTL: only a read within it must hit.
        if (now() - written < ttlMs) expect(early).toBe('short')
        await pass(ttlMs * 2 + 50)
        expect(await cache.get(short)).toBeUndefined()
        expect(await cache.has(short)).toBe(false)
        expect(await cache.get(forever)).toBe('forever')
      })

      it('add() succeeds again once the previous value expired', async ({ expect }) => {
        const k = key()
        expect(await cache.add(k, 'first', ttlMs / 1000)).toBe(true)
        await pass(ttlMs * 2 + 50)
        expect(await cache.add(k, 'second')).toBe(true)
        expect(await cache.get(k)).toBe('second')
      })

      if (reportsExpiry)
        it('incr() sets the TTL only when it creates the counter', async ({ expect }) => {
          // On a loaded machine the second incr may come after the counter expired (it then
          // creates a new one, with the new TTL): that attempt tells nothing, another is made.
          for (let attempt = 1; ; attempt++) {
            const k = key()
            const created = now()
            await cache.incr(k, 1, (ttlMs * 2) / 1000)
            await pass(ttlMs * 1.2)
            const second = await cache.incr(k, 1, 3600)
            if (now() - created >= ttlMs * 2 && attempt < 5) continue
            expect(second).toBe(2)
            await pass(ttlMs * 1.5)
            expect(await cache.get(k)).toBeUndefined()
            return
          }
        })

      it('atomicUpdate() returns the new value and applies the TTL', async ({ expect }) => {
        const k = key()
        expect(await cache.atomicUpdate<number>(k, (v) => (v ?? 10) + 1, ttlMs / 1000)).toBe(11)
        expect(await cache.get(k)).toBe(11)
        await pass(ttlMs * 2 + 50)
        expect(await cache.get(k)).toBeUndefined()
      })
    })

    it('accepts duration strings', async () => {
      const k = key()
      await cache.set(k, 1, '5m')
      expect(await cache.get(k)).toBe(1)
      if (reportsExpiry) {
        const entry = await cache.getEntry(k)
        expect(entry!.expiresAt).toBeGreaterThan(now() + 4 * 60_000)
        expect(entry!.expiresAt).toBeLessThanOrEqual(now() + 5 * 60_000 + 1000)
      }
    })

    it('keeps a value whose TTL is over 2^31 ms (about 25 days)', async () => {
      const k = key()
      const ttlSeconds = (2 ** 31 + 1000) / 1000
      await cache.set(k, 'long', ttlSeconds * 2)
      expect(await cache.get(k)).toBe('long')
      if (reportsExpiry) {
        const entry = await cache.getEntry(k)
        expect(entry!.expiresAt).toBeGreaterThan(now() + 2 ** 31)
      }
    })

    it("keeps entries whose TTL is past a timer's range (30 days, 2^31 + 1 ms) through real time", async () => {
      // A store that expires entries with setTimeout loses these at once: Node fires a delay over
      // 2^31 - 1 ms after 1 ms. Real time (also with a manual clock): it is a real timer that fires.
      const [set, setSeconds, added, many, counter, updated] = [key(), key(), key(), key(), key(), key()]
      const overTimer = (2 ** 31 + 1) / 1000
      await cache.set(set, 'set', '30d')
      await cache.set(setSeconds, 'set', overTimer)
      expect(await cache.add(added, 'added', '30d')).toBe(true)
      await cache.setMany([{ key: many, value: 'many', ttl: overTimer }])
      await cache.incr(counter, 1, '30d')
      await cache.atomicUpdate(updated, () => 'updated', overTimer)
      await sleep(40)
      expect(await cache.getMany([set, setSeconds, added, many, counter, updated])).toEqual([
        'set',
        'set',
        'added',
        'many',
        1,
        'updated',
      ])
    })

    it('accepts the durations people write: seconds as text, words, compounds', async () => {
      for (const ttl of ['300', '2 minutes', '1m30s', '1 hour 30 minutes']) {
        const k = key()
        await cache.set(k, ttl, ttl)
        expect(await cache.get(k), ttl).toBe(ttl)
      }
    })

    it('keeps a value stored with the TTL Infinity without expiry', async () => {
      const k = key()
      await cache.set(k, 'forever', Number.POSITIVE_INFINITY)
      expect(await cache.add(key(), 1, Number.POSITIVE_INFINITY)).toBe(true)
      expect(await cache.get(k)).toBe('forever')
      if (reportsExpiry) expect((await cache.getEntry(k))!.expiresAt).toBeUndefined()
    })

    it.each([[0], [-1], [Number.NaN], ['abc'], ['5 parsecs'], [Number.NEGATIVE_INFINITY]])(
      'rejects the TTL %s with a RangeError',
      async (ttl) => {
        const k = key()
        await expect(cache.set(k, 1, ttl as number)).rejects.toThrow(RangeError)
        await expect(cache.add(k, 1, ttl as number)).rejects.toThrow(RangeError)
        expect(await cache.has(k)).toBe(false)
      },
    )

    it('delete tells whether a key was removed', async () => {
      const k = key()
      await cache.set(k, 1)
      expect(await cache.delete(k)).toBe(true)
      expect(await cache.delete(k)).toBe(false)
      expect(await cache.get(k)).toBeUndefined()
    })

    it('has() sees present keys, stored null included', async () => {
      const k = key()
      await cache.set(k, null)
      expect(await cache.has(k)).toBe(true)
      expect(await cache.has(key())).toBe(false)
    })

    it('add() stores only when the key is absent', async () => {
      const k = key()
      expect(await cache.add(k, 'first')).toBe(true)
      expect(await cache.add(k, 'second')).toBe(false)
      expect(await cache.get(k)).toBe('first')
    })

    it('only one of 50 concurrent add() calls wins', async () => {
      const k = key()
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => cache.add(k, i)))
      expect(results.filter(Boolean)).toHaveLength(1)
    })

    it('compareAndDelete() deletes only a key that holds the expected string', async () => {
      expect(typeof cache.compareAndDelete).toBe('function')
      const k = key()
      await cache.set(k, 'token-a', 60)
      expect(await cache.compareAndDelete!(k, 'token-b')).toBe(false)
      expect(await cache.get(k)).toBe('token-a')
      expect(await cache.compareAndDelete!(k, 'token-a')).toBe(true)
      expect(await cache.has(k)).toBe(false)
      expect(await cache.compareAndDelete!(k, 'token-a')).toBe(false)
      await cache.set(k, { not: 'a string' })
      expect(await cache.compareAndDelete!(k, '[object Object]')).toBe(false)
      expect(await cache.has(k)).toBe(true)
    })

    it('compareAndDelete() never removes what another caller wrote after the expected value', async () => {
      const k = key()
      await cache.set(k, 'mine')
      await cache.set(k, 'theirs')
      const results = await Promise.all(Array.from({ length: 20 }, () => cache.compareAndDelete!(k, 'mine')))
      expect(results.every((removed) => removed === false)).toBe(true)
      expect(await cache.get(k)).toBe('theirs')
      const releases = await Promise.all(
        Array.from({ length: 20 }, () => cache.compareAndDelete!(k, 'theirs')),
      )
      expect(releases.filter(Boolean)).toHaveLength(1)
    })

    it('getMany/setMany/deleteMany keep order and report misses', async () => {
      const [a, b, c, missing] = [key('a'), key('b'), key('c'), key('m')]
      await cache.setMany([
        { key: a, value: 1 },
        { key: b, value: null, ttl: 60 },
        { key: c, value: 'three' },
      ])
      expect(await cache.getMany([c, missing, a, b])).toEqual(['three', undefined, 1, null])
      expect(await cache.getMany([])).toEqual([])
      expect(await cache.deleteMany([a, missing, c])).toBe(2)
      expect(await cache.getMany([a, b, c])).toEqual([undefined, null, undefined])
    })

    it('accepts keys of any shape', async () => {
      const keys = [
        '',
        ' ',
        'a b',
        'line\nbreak',
        'nul\u0000byte',
        '../../etc/passwd',
        'a/b',
        'con',
        'ünïcødé 🔑',
        '__proto__',
        'x'.repeat(1024),
      ]
      for (const k of keys) await cache.set(`${run}${k}`, k)
      for (const k of keys) expect(await cache.get(`${run}${k}`)).toBe(k)
      // 'a' and 'a:b' are distinct keys
      await cache.set(`${run}:a`, 1)
      await cache.set(`${run}:a:b`, 2)
      expect(await cache.get(`${run}:a`)).toBe(1)
    })

    it('keeps keys that are not well-formed UTF-16 (lone surrogates) apart', async () => {
      // UTF-8 cannot encode a lone surrogate: a backend that encodes keys as UTF-8 must not let
      // them all become U+FFFD and share one entry.
      const keys = [`${run}k\ud800`, `${run}k\ud801`, `${run}k\ufffd`, `${run}k\udc00\ud800`, `${run}k\uffff`]
      await cache.set(keys[0]!, 'A')
      for (const other of keys.slice(1)) expect(await cache.get(other)).toBeUndefined()
      for (const [i, k] of keys.entries()) await cache.set(k, i)
      for (const [i, k] of keys.entries()) expect(await cache.get(k)).toBe(i)
    })

    it('isolates namespaces, and clear() removes only its own', async () => {
      const users = await options.create({ namespace: ns('users') })
      const usersAbc = await options.create({ namespace: ns('usersAbc') })
      const other = await options.create({ namespace: ns('other') })
      try {
        await users.set('k', 'users')
        await usersAbc.set('k', 'usersAbc')
        await other.set('k', 'other')
        await users.set('x', 1)
        expect(await users.get('k')).toBe('users')
        expect(await usersAbc.get('k')).toBe('usersAbc')
        expect(await other.get('x')).toBeUndefined()
        await users.clear()
        expect(await users.get('k')).toBeUndefined()
        expect(await users.get('x')).toBeUndefined()
        expect(await usersAbc.get('k')).toBe('usersAbc')
        expect(await other.get('k')).toBe('other')
        await users.set('k', 'again')
        expect(await users.get('k')).toBe('again')
      } finally {
        await Promise.all([users.close(), usersAbc.close(), other.close()])
      }
    })

    it('clear() works on an empty namespace', async () => {
      const empty = await options.create({ namespace: ns('empty') })
      try {
        await empty.clear()
        expect(await empty.get('anything')).toBeUndefined()
      } finally {
        await empty.close()
      }
    })

    it('incr() creates a counter at 0, adds, and accepts negative steps', async () => {
      const k = key()
      expect(await cache.incr(k)).toBe(1)
      expect(await cache.incr(k, 5)).toBe(6)
      expect(await cache.incr(k, -2)).toBe(4)
      expect(await cache.get(k)).toBe(4)
    })

    it('incr() rejects a key that holds a non-integer, and a non-integer step', async () => {
      const k = key()
      await cache.set(k, 'text')
      await expect(cache.incr(k)).rejects.toMatchObject({ code: 'CACHE_NOT_A_NUMBER' })
      await expect(cache.incr(key(), 1.5)).rejects.toThrow(RangeError)
    })

    it('incr() adds to a number written by set()', async () => {
      const k = key()
      await cache.set(k, 123_456_789)
      expect(await cache.incr(k, 2)).toBe(123_456_791)
      expect(await cache.get(k)).toBe(123_456_791)
      const negative = key()
      await cache.set(negative, -5)
      expect(await cache.incr(negative, 3)).toBe(-2)
      expect(await cache.get(negative)).toBe(-2)
    })

    it('incr() past ±Number.MAX_SAFE_INTEGER rejects with a RangeError and leaves the counter', async () => {
      // A counter that went past it would stop counting: 2 ** 53 + 1 is 2 ** 53.
      const high = key()
      await cache.set(high, Number.MAX_SAFE_INTEGER)
      await expect(cache.incr(high)).rejects.toThrow(RangeError)
      expect(await cache.get(high)).toBe(Number.MAX_SAFE_INTEGER)
      const low = key()
      expect(await cache.incr(low, -Number.MAX_SAFE_INTEGER)).toBe(-Number.MAX_SAFE_INTEGER)
      await expect(cache.incr(low, -1)).rejects.toThrow(RangeError)
      expect(await cache.get(low)).toBe(-Number.MAX_SAFE_INTEGER)
      // A stored integer already past it is no exact counter either, whichever way it is written.
      for (const stored of [2 ** 60, -(2 ** 60), 1e21]) {
        const past = key()
        await cache.set(past, stored)
        await expect(cache.incr(past, -1)).rejects.toThrow(RangeError)
        expect(await cache.get(past)).toBe(stored)
      }
    })

    it('incr() adds to a stored -0 as to 0', async () => {
      const k = key()
      await cache.set(k, -0)
      expect(await cache.incr(k)).toBe(1)
      expect(await cache.get(k)).toBe(1)
      // By 0: the counter then holds the 0 it answered, not the -0 it held.
      const zero = key()
      await cache.set(zero, -0)
      expect(await cache.incr(zero, 0)).toBe(0)
      expect(await cache.get(zero)).toBe(0)
    })

    it('200 concurrent incr() calls give the exact total', async () => {
      const k = key()
      await Promise.all(Array.from({ length: 200 }, () => cache.incr(k)))
      expect(await cache.get(k)).toBe(200)
    })

    it('100 concurrent atomicUpdate() calls lose nothing, with an async fn', async () => {
      const k = key()
      await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          cache.atomicUpdate<number[]>(k, async (list = []) => {
            await sleep(0)
            return [...list, i]
          }),
        ),
      )
      const list = (await cache.get<number[]>(k))!
      expect(list).toHaveLength(100)
      expect(new Set(list).size).toBe(100)
    })

    it('atomicUpdate() does not store when fn throws', async () => {
      const k = key()
      await cache.set(k, 'kept')
      await expect(
        cache.atomicUpdate(k, () => {
          throw new Error('boom')
        }),
      ).rejects.toThrow('boom')
      expect(await cache.get(k)).toBe('kept')
    })

    if (serializes) {
      it.each([
        ['a function', { f: () => 1 }],
        ['a symbol', { s: Symbol('x') }],
        ['a class instance', { c: new (class Point {})() }],
        [
          'a circular object',
          (() => {
            const o: Record<string, unknown> = {}
            o.self = o
            return o
          })(),
        ],
      ])('refuses %s with a TypeError naming the path', async (_label, value) => {
        const k = key()
        const error = await cache.set(k, value).catch((e) => e)
        expect(error).toBeInstanceOf(TypeError)
        expect(error.message).toMatch(/\$\.\w/)
        expect(await cache.has(k)).toBe(false)
      })

      class Items extends Array<number> {}
      class When extends Date {}
      it.each([
        ['an Array subclass', { items: Items.from([1, 2]) }],
        ['a Date subclass', { at: new When(0) }],
        ['a symbol-keyed property', { a: { [Symbol.for('meta')]: 'x' } }],
        ['a non-enumerable property', { a: Object.defineProperty({}, 'hidden', { value: 42 }) }],
        ['an array with an extra property', { list: Object.assign([1, 2], { extra: 'x' }) }],
        ['a Date with an extra property', { at: Object.assign(new Date(0), { tz: 'UTC' }) }],
      ])('refuses %s, which would not come back as it was, naming the path', async (_label, value) => {
        const k = key()
        const error = await cache.set(k, value).catch((e) => e)
        expect(error).toBeInstanceOf(TypeError)
        expect(error.code).toBe('CACHE_SERIALIZATION')
        expect(error.message).toMatch(/\$\.\w/)
        expect(await cache.has(k)).toBe(false)
      })

      it('does not pollute prototypes with a __proto__ key', async () => {
        const k = key()
        await cache.set(k, JSON.parse('{"__proto__": {"polluted": 1}, "a": 1}'))
        const back = (await cache.get<Record<string, unknown>>(k))!
        expect(({} as Record<string, unknown>).polluted).toBeUndefined()
        expect(Object.getPrototypeOf(back)).toBe(Object.prototype)
        expect(back.a).toBe(1)
      })
    }

    if (options.listsKeys ?? true) listingCases(options, ns, ttlMs, pass)
    else
      it('listKeys() throws CacheUnsupportedError: this backend cannot list keys', () => {
        expect(cache.keys).toBeUndefined()
        expect(() => listKeys(cache)).toThrow(CacheUnsupportedError)
        expect(() => listKeys(cache, { prefx: 'session:' } as never)).toThrow(
          /^prefx: not an option of keys\(\)/,
        )
      })

    it('setMany with one bad item stores none of them: a bad TTL, an unkeyable key, an unstorable value', async () => {
      const bad: { label: string; item: { key: string; value: unknown; ttl?: number }; error: string }[] = [
        { label: 'ttl', item: { key: key('bad'), value: 2, ttl: -1 }, error: 'RangeError' },
        { label: 'key', item: { key: 5 as unknown as string, value: 2 }, error: 'CacheKeyError' },
      ]
      if (serializes)
        bad.push({
          label: 'value',
          item: { key: key('bad'), value: () => 2 },
          error: 'CacheSerializationError',
        })
      for (const { label, item, error } of bad) {
        const good = key(`good-${label}`)
        const failed = await Promise.resolve()
          .then(() => cache.setMany([{ key: good, value: 1 }, item]))
          .then(
            () => undefined,
            (reason: unknown) => reason,
          )
        expect(failed, `setMany with a bad ${label}`).toBeInstanceOf(Error)
        expect((failed as Error).name, `setMany with a bad ${label}`).toBe(error)
        expect(await cache.has(good), `the good item of a setMany with a bad ${label}`).toBe(false)
      }
    })

    describe('batches take lists only', () => {
      // A string is iterable: read letter by letter, deleteMany('abc') removed `a`, `b`, `c`,
      // resolved 0 and left `abc` served.
      const word = `${run}abc`
      const letters = [...new Set(word)]
      const notLists: [string, (keys: string[]) => unknown][] = [
        ['a string', (keys) => keys[0]],
        ['a Set', (keys) => new Set(keys)],
        ['a plain object', (keys) => ({ key: keys[0], value: 'new' })],
      ]
      const unchanged = async () => {
        expect(await cache.get(word), word).toBe('old')
        for (const letter of letters) expect(await cache.get(letter), letter).toBe(`old ${letter}`)
      }

      it.each(notLists)(
        'getMany, setMany and deleteMany refuse %s with CacheKeyError and change nothing',
        async (_label, make) => {
          await cache.set(word, 'old')
          for (const letter of letters) await cache.set(letter, `old ${letter}`)
          const calls: [string, () => Promise<unknown>][] = [
            ['deleteMany', () => cache.deleteMany(make([word]) as string[])],
            ['setMany', () => cache.setMany(make([word]) as never)],
            ['getMany', () => cache.getMany(make([word]) as string[])],
          ]
          for (const [operation, call] of calls) {
            let pending: Promise<unknown>
            try {
              pending = call()
            } catch (error) {
              // The methods are async: a caller's .catch() must see the refusal.
              throw new Error(`${operation} threw synchronously instead of rejecting: ${error}`)
            }
            const refused = await pending.then(
              (answer) => ({ resolvedWith: answer }),
              (error: unknown) => error,
            )
            expect(refused, operation).toBeInstanceOf(CacheKeyError)
            expect((refused as Error).message, operation).toMatch(
              new RegExp(`^${operation}: expected a list of`),
            )
            await unchanged()
          }
        },
      )

      it('names the fix for a string: deleteMany("abc") says to write ["abc"]', async () => {
        const error = await cache.deleteMany('abc' as unknown as string[]).catch((e: unknown) => e)
        expect(error).toBeInstanceOf(CacheKeyError)
        expect((error as Error).message).toBe(
          'deleteMany: expected a list of keys, got the string "abc" (write ["abc"])',
        )
      })
    })

    describe('batches read every index of the list once, at the call', () => {
      const outcome = (call: () => Promise<unknown>) =>
        Promise.resolve()
          .then(call)
          .then(
            (answer) => ({ resolvedWith: answer }),
            (error: unknown) => error,
          )
      /** A list of `length` with `item` at `at` only: every other index is a hole. */
      const sparse = (length: number, at: number, item: unknown): unknown[] => {
        const list = new Array<unknown>(length)
        list[at] = item
        return list
      }
      const refusedWith = async (
        operation: string,
        call: () => Promise<unknown>,
        message: RegExp,
        label: string,
      ) => {
        const refused = await outcome(call)
        expect(refused, `${operation}(${label})`).toBeInstanceOf(CacheKeyError)
        expect((refused as Error).message, `${operation}(${label})`).toMatch(new RegExp(`^${operation}: `))
        expect((refused as Error).message, `${operation}(${label})`).toMatch(message)
      }

      it('getMany refuses a hole or a non-string key with CacheKeyError naming the index, and answers no value', async () => {
        const secret = key('secret')
        await cache.set(secret, 'secret of user 2')
        // A hole dropped before the lookup moved every later value one index early (redis); one
        // read as "undefined" answered with the entry of that key (memcached).
        await cache.set('undefined', 'entry of the key "undefined"')
        const trailing: unknown[] = [secret]
        trailing.length = 2
        const lists: [string, unknown[], RegExp][] = [
          ['[<hole>, key]', sparse(2, 1, secret), /keys\[0\] is a hole/],
          ['[key, <hole>]', trailing, /keys\[1\] is a hole/],
          ['[key, null]', [secret, null], /keys\[1\] is null/],
          ['[undefined, key]', [undefined, secret], /keys\[0\] is undefined/],
          ['[key, 7]', [secret, 7], /keys\[1\] is 7/],
        ]
        for (const [label, keys, message] of lists)
          await refusedWith('getMany', () => cache.getMany(keys as string[]), message, label)
        await cache.delete('undefined')
      })

      it('deleteMany refuses a hole or a non-string key with CacheKeyError naming the index, and removes nothing', async () => {
        const kept = key('kept')
        await cache.set(kept, 'kept')
        await cache.set('undefined', 'kept too')
        const lists: [string, unknown[], RegExp][] = [
          ['[<hole>, key]', sparse(2, 1, kept), /keys\[0\] is a hole/],
          ['[key, null]', [kept, null], /keys\[1\] is null/],
          ['[key, undefined]', [kept, undefined], /keys\[1\] is undefined/],
        ]
        for (const [label, keys, message] of lists) {
          await refusedWith('deleteMany', () => cache.deleteMany(keys as string[]), message, label)
          expect(await cache.get(kept), `deleteMany(${label})`).toBe('kept')
          expect(await cache.get('undefined'), `deleteMany(${label})`).toBe('kept too')
        }
        await cache.delete('undefined')
      })

      it('setMany refuses a null item, a hole, a string or an item without a string key with CacheKeyError naming the index, and stores nothing', async () => {
        const good = key('good')
        const item = { key: good, value: 'stored' }
        const trailing: unknown[] = [item]
        trailing.length = 2
        const lists: [string, unknown[], RegExp][] = [
          ['[null]', [null], /items\[0\] is null/],
          ['[item, <hole>]', trailing, /items\[1\] is a hole/],
          ['[<hole>, item]', sparse(2, 1, item), /items\[0\] is a hole/],
          ['[item, undefined]', [item, undefined], /items\[1\] is undefined/],
          ['[item, "k"]', [item, 'k'], /items\[1\] is the string "k"/],
          ['[item, { value }]', [item, { value: 1 }], /items\[1\]\.key is undefined/],
          ['[item, { key: null }]', [item, { key: null, value: 1 }], /items\[1\]\.key is null/],
          [
            '[item, { key, val }]',
            [item, { key: key('val'), val: 42 }],
            /items\[1\]\.val is not a field of an item.*`value`/,
          ],
          [
            '[item, { key, value, expires }]',
            [item, { key: key('exp'), value: 1, expires: 60 }],
            /items\[1\]\.expires .*`ttl`/,
          ],
          [
            '[item, { key, value, ttL }]',
            [item, { key: key('ttL'), value: 1, ttL: 60 }],
            /items\[1\]\.ttL .*`ttl`/,
          ],
          ['[item, { key }]', [item, { key: key('novalue') }], /items\[1\] has no `value`/],
        ]
        for (const [label, items, message] of lists) {
          await refusedWith('setMany', () => cache.setMany(items as never), message, label)
          expect(await cache.has(good), `the good item of setMany(${label})`).toBe(false)
        }
      })

      // A getMany or setMany follows a write of the same key not awaited: a backend that queues the
      // batch behind it must not read the caller's array then. The write writes what the key holds
      // once the batch is done, so the outcome does not depend on which lands first.
      it('getMany answers in the order of the keys at the call, whatever the caller does to its array afterwards', async () => {
        const [a, b] = [key('a'), key('b')]
        await cache.set(a, 'a1')
        await cache.set(b, 'b1')
        const changes: [string, (list: string[]) => void][] = [
          ['reverse()', (list) => list.reverse()],
          ['push()', (list) => list.push(b)],
          ['length = 0', (list) => (list.length = 0)],
          ['[0] = another key', (list) => (list[0] = b)],
        ]
        for (const [label, change] of changes) {
          const write = cache.set(a, 'a1')
          const batch = [a, b]
          const pending = cache.getMany(batch)
          change(batch)
          expect(await pending, `getMany then ${label}`).toEqual(['a1', 'b1'])
          await write
        }
      })

      it('setMany stores the items of the call, whatever the caller does to its array or items afterwards', async () => {
        const changes: [string, (list: { key: string; value: unknown }[], other: string) => void][] = [
          ['push()', (list, other) => list.push({ key: other, value: 'pushed' })],
          ['length = 0', (list) => (list.length = 0)],
          ['[0] = another item', (list, other) => (list[0] = { key: other, value: 'replaced' })],
          ['[0].key = another key', (list, other) => (list[0]!.key = other)],
        ]
        for (const [label, change] of changes) {
          const [a, other] = [key('a'), key('other')]
          const write = cache.set(a, 'stored')
          const items = [{ key: a, value: 'stored' }]
          const pending = cache.setMany(items)
          change(items, other)
          expect(await outcome(() => pending), `setMany then ${label}`).toEqual({ resolvedWith: undefined })
          await write
          expect(await cache.getMany([a, other]), `setMany then ${label}`).toEqual(['stored', undefined])
        }
      })

      it('deleteMany removes and counts the keys of the call, whatever the caller does to its array afterwards', async () => {
        const changes: [string, (list: string[], other: string) => void][] = [
          ['push()', (list, other) => list.push(other)],
          ['length = 0', (list) => (list.length = 0)],
          ['[0] = another key', (list, other) => (list[0] = other)],
        ]
        for (const [label, change] of changes) {
          const [a, b, other] = [key('a'), key('b'), key('other')]
          await cache.setMany([
            { key: b, value: 'b' },
            { key: other, value: 'other' },
          ])
          await cache.set(a, 'a')
          const batch = [a, b]
          const pending = cache.deleteMany(batch)
          change(batch, other)
          expect(await pending, `deleteMany then ${label}`).toBe(2)
          expect(await cache.getMany([a, b, other]), `deleteMany then ${label}`).toEqual([
            undefined,
            undefined,
            'other',
          ])
        }
      })
    })

    it('stats count each operation of the caller once: a hit, a miss, a write, a removal', async () => {
      const stats = (cache as { stats?: Record<string, number> }).stats
      expect(stats, 'a @cache backend has stats').toBeDefined()
      const [present, absent, counter, added, updated] = [key('s'), key('s'), key('s'), key('s'), key('s')]
      const counted = async (work: () => Promise<unknown>) => {
        const before = { ...stats! }
        await work()
        const after = stats!
        return {
          hits: after.hits! - before.hits!,
          misses: after.misses! - before.misses!,
          sets: after.sets! - before.sets!,
          deletes: after.deletes! - before.deletes!,
          errors: after.errors! - before.errors!,
        }
      }
      const none = { hits: 0, misses: 0, sets: 0, deletes: 0, errors: 0 }
      expect(await counted(() => cache.set(present, 1)), 'set').toEqual({ ...none, sets: 1 })
      expect(await counted(() => cache.get(present)), 'get of a present key').toEqual({ ...none, hits: 1 })
      expect(await counted(() => cache.get(absent)), 'get of an absent key').toEqual({ ...none, misses: 1 })
      expect(await counted(() => cache.getEntry(present)), 'getEntry').toEqual({ ...none, hits: 1 })
      expect(await counted(() => cache.getMany([present, absent])), 'getMany').toEqual({
        ...none,
        hits: 1,
        misses: 1,
      })
      expect(
        await counted(() =>
          cache.setMany([
            { key: present, value: 2 },
            { key: absent, value: 2 },
          ]),
        ),
        'setMany',
      ).toEqual({ ...none, sets: 2 })
      expect(await counted(() => cache.add(added, 1)), 'add that stores').toEqual({ ...none, sets: 1 })
      expect(await counted(() => cache.incr(counter)), 'incr that creates').toEqual({ ...none, sets: 1 })
      expect(await counted(() => cache.incr(counter)), 'incr').toEqual({ ...none, sets: 1 })
      expect(await counted(() => cache.atomicUpdate(updated, () => 1)), 'atomicUpdate').toEqual({
        ...none,
        sets: 1,
      })
      expect(await counted(() => cache.delete(present)), 'delete of a present key').toEqual({
        ...none,
        deletes: 1,
      })
      expect(await counted(() => cache.delete(present)), 'delete of an absent key').toEqual(none)
      expect(await counted(() => cache.deleteMany([absent, present])), 'deleteMany').toEqual({
        ...none,
        deletes: 1,
      })
    })

    it('after close(), every operation rejects with CacheClosedError, and nothing is written', async () => {
      const extra = await options.create({ namespace: ns('closed') })
      await extra.set('kept', 1)
      await extra.close()
      const operations: [string, () => Promise<unknown>][] = [
        ['get', () => extra.get('kept')],
        ['getEntry', () => extra.getEntry('kept')],
        ['has', () => extra.has('kept')],
        ['set', () => extra.set('written', 1)],
        ['add', () => extra.add('added', 1)],
        ['delete', () => extra.delete('kept')],
        ['incr', () => extra.incr('counter')],
        ['atomicUpdate', () => extra.atomicUpdate('updated', () => 1)],
        ['getMany', () => extra.getMany(['kept'])],
        ['setMany', () => extra.setMany([{ key: 'written', value: 1 }])],
        ['deleteMany', () => extra.deleteMany(['kept'])],
        ['clear', () => extra.clear()],
        // An empty batch has nothing to do, but is refused too: "every operation" means every call.
        ['getMany of no keys', () => extra.getMany([])],
        ['setMany of no items', () => extra.setMany([])],
        ['deleteMany of no keys', () => extra.deleteMany([])],
      ]
      for (const [operation, call] of operations) {
        const outcome = await Promise.resolve()
          .then(call)
          .then(
            (value: unknown) => ({ value }),
            (error: unknown) => ({ error }),
          )
        expect(outcome, `${operation} after close()`).toMatchObject({ error: { name: 'CacheClosedError' } })
      }
      await expect(extra.close()).resolves.toBeUndefined()
      // A backend built again on the same store sees the value kept, and nothing written after close().
      const again = await options.create({ namespace: ns('closed') })
      try {
        if (options.sharesStore ?? true) expect(await again.get('kept')).toBe(1)
        expect(await again.getMany(['written', 'added', 'counter', 'updated'])).toEqual([
          undefined,
          undefined,
          undefined,
          undefined,
        ])
      } finally {
        await again.close()
      }
    })

    if (options.createDown !== undefined) {
      const createDown = options.createDown
      it('a backend whose server is down fails every operation fast with CacheUnavailableError, counted and evented', async () => {
        const down = await createDown({ namespace: ns('down') })
        const seen: unknown[] = []
        const events = down as { on?(name: 'error', listener: (event: unknown) => void): unknown }
        events.on?.('error', (event) => seen.push(event))
        const stats = (down as { stats?: { errors: number } }).stats
        const operations: [string, () => Promise<unknown>][] = [
          ['get', () => down.get('k')],
          ['getEntry', () => down.getEntry('k')],
          ['has', () => down.has('k')],
          ['set', () => down.set('k', 1)],
          ['add', () => down.add('k', 1)],
          ['delete', () => down.delete('k')],
          ['incr', () => down.incr('k')],
          ['atomicUpdate', () => down.atomicUpdate('k', () => 1)],
          ['getMany', () => down.getMany(['k', 'l'])],
          ['setMany', () => down.setMany([{ key: 'k', value: 1 }])],
        ]
        const within = options.downWithinMs ?? 3000
        try {
          for (const [operation, call] of operations) {
            const errorsBefore = stats?.errors ?? 0
            const eventsBefore = seen.length
            const started = performance.now()
            const outcome = await Promise.resolve()
              .then(call)
              .then(
                (value: unknown) => ({ value }),
                (error: unknown) => ({ error }),
              )
            const ms = performance.now() - started
            expect(outcome, `${operation} on a server that is down`).toHaveProperty('error')
            const error = (outcome as { error: { name?: string; code?: string } }).error
            expect(
              ['CacheUnavailableError', 'CacheTimeoutError'],
              `${operation}: ${String(error)}`,
            ).toContain(error.name)
            expect(ms, `${operation} took ${Math.round(ms)} ms`).toBeLessThan(within)
            expect(stats, 'a @cache backend has stats').toBeDefined()
            expect(stats!.errors, `${operation} counted in stats.errors`).toBeGreaterThan(errorsBefore)
            expect(seen.length, `${operation} emitted as an error event`).toBeGreaterThan(eventsBefore)
          }
        } finally {
          await down.close()
        }
      })
    }

    it('close() can be called twice', async () => {
      const extra = await options.create({ namespace: ns('close') })
      await extra.set('k', 1)
      await extra.close()
      await expect(extra.close()).resolves.toBeUndefined()
    })

    it('deleteMany emits one delete event per key it removed, as stats.deletes counts', async () => {
      const observed = cache as {
        stats?: { deletes: number }
        on?(name: 'delete', listener: (event: { key?: string }) => void): unknown
        off?(name: 'delete', listener: (event: { key?: string }) => void): unknown
      }
      const [a, b, absent] = [key('dm'), key('dm'), key('dm')]
      await cache.setMany([
        { key: a, value: 1 },
        { key: b, value: 2 },
      ])
      const deleted: string[] = []
      const listener = (event: { key?: string }) => void deleted.push(event.key!)
      observed.on?.('delete', listener)
      try {
        const before = observed.stats?.deletes ?? 0
        const removed = await cache.deleteMany([a, absent, b])
        expect(removed).toBe(2)
        expect(observed.stats?.deletes ?? 2, 'stats.deletes').toBe(before + 2)
        if (observed.on !== undefined) expect(deleted.sort(), 'delete events').toEqual([a, b].sort())
      } finally {
        observed.off?.('delete', listener)
      }
    })

    it('after close(), refusals are the caller error: neither counted in stats.errors nor evented', async () => {
      const extra = await options.create({ namespace: ns('refused') })
      const observed = extra as {
        stats?: { errors: number }
        on?(name: 'error', listener: (event: unknown) => void): unknown
      }
      const events: unknown[] = []
      observed.on?.('error', (event) => events.push(event))
      await extra.close()
      const before = observed.stats?.errors ?? 0
      for (const call of [
        () => extra.get('k'),
        () => extra.set('k', 1),
        () => extra.incr('k'),
        () => extra.getMany(['k']),
        () => extra.deleteMany(['k']),
      ])
        await Promise.resolve()
          .then(call)
          .catch(() => {})
      expect(observed.stats?.errors ?? before, 'stats.errors').toBe(before)
      expect(events, 'error events').toEqual([])
    })

    it('calls in flight at close() settle with their real result, or reject with CacheClosedError and are not applied', async () => {
      const extra = await options.create({ namespace: ns('inflight') })
      const observed = extra as {
        stats?: { errors: number }
        on?(name: 'error', listener: (event: unknown) => void): unknown
      }
      const events: unknown[] = []
      observed.on?.('error', (event) => events.push(event))
      await extra.set('count', 10)
      const slow = async (current: number | undefined) => {
        await sleep(20)
        return (current ?? 0) + 1
      }
      const calls = [extra.set('written', 'x'), extra.incr('count', 1), extra.atomicUpdate('updated', slow)]
      const settled = Promise.allSettled(calls)
      await extra.close()
      const [set, incr, update] = await settled
      for (const [label, outcome] of [
        ['set', set],
        ['incr', incr],
        ['atomicUpdate', update],
      ] as const)
        if (outcome!.status === 'rejected')
          expect(outcome!.reason, `${label} in flight at close()`).toMatchObject({ name: 'CacheClosedError' })
      expect(observed.stats?.errors ?? 0, 'stats.errors').toBe(0)
      expect(events, 'error events').toEqual([])
      if (!(options.sharesStore ?? true)) return
      const again = await options.create({ namespace: ns('inflight') })
      try {
        const [written, count, updated] = await again.getMany(['written', 'count', 'updated'])
        expect(written, 'the set in flight').toBe(set!.status === 'fulfilled' ? 'x' : undefined)
        expect(count, 'the incr in flight').toBe(incr!.status === 'fulfilled' ? incr!.value : 10)
        expect(updated, 'the atomicUpdate in flight').toBe(update!.status === 'fulfilled' ? 1 : undefined)
      } finally {
        await again.close()
      }
    })
  })

  longKeyCases(name, options, ns, timeout)
  namespaceCases(name, options, ns, timeout)
}

/** Every key `listKeys` yields, in the order given: duplicates kept, so a test can see them. */
async function listAll(backend: CacheBackend, prefix?: string): Promise<string[]> {
  const out: string[] = []
  for await (const key of listKeys(backend, prefix === undefined ? {} : { prefix })) out.push(key)
  return out
}

const sorted = (keys: readonly string[]) => [...keys].sort()

/** The `keys()` cases: each in namespaces of its own, so a listing can be compared exactly. */
function listingCases(
  options: ConformanceOptions,
  ns: (label: string) => string,
  ttlMs: number,
  pass: (ms: number) => Promise<unknown>,
): void {
  const withBackends = async (labels: string[], test: (...backends: CacheBackend[]) => Promise<void>) => {
    const backends = await Promise.all(labels.map((label) => options.create({ namespace: ns(label) })))
    try {
      await test(...backends)
    } finally {
      await Promise.all(backends.map((backend) => backend.close()))
    }
  }

  describe('keys()', () => {
    it('lists the keys that were set, each once, and only those under a prefix', () =>
      withBackends(['list'], async (cache) => {
        const keys = ['user:1', 'user:2', 'user:10', 'users', 'order:1', 'u', '']
        for (const key of keys) await cache.set(key, key)
        await cache.set('user:2', 'again')
        const all = await listAll(cache)
        expect(sorted(all)).toEqual(sorted(keys))
        expect(sorted(await listAll(cache, 'user:'))).toEqual(['user:1', 'user:10', 'user:2'])
        expect(sorted(await listAll(cache, 'user'))).toEqual(['user:1', 'user:10', 'user:2', 'users'])
        expect(await listAll(cache, 'nothing-starts-like-this')).toEqual([])
        expect(sorted(await listAll(cache, ''))).toEqual(sorted(keys))
      }))

    it("refuses { prefx }, a pattern string ('session:*'), null and a Map, listing nothing: a purge loop over it keeps the counters", () =>
      withBackends(['list-refused'], async (cache) => {
        await cache.set('session:a', { user: 1 })
        for (let i = 0; i < 7; i++) await cache.incr('rate:ip1')
        const given: [string, unknown, RegExp][] = [
          ['{ prefx }', { prefx: 'session:' }, /^prefx: not an option of keys\(\); did you mean `prefix`\?$/],
          [
            "'session:*'",
            'session:*',
            /^keys\(\): expected an options object, got the string "session:\*".*\{ prefix: "session:" \}/,
          ],
          ['null', null, /^keys\(\): expected an options object, got null/],
          ['a Map', new Map([['prefix', 'session:']]), /^keys\(\): expected an options object, got a Map/],
        ]
        for (const [label, options, message] of given) {
          for (const [how, list] of [
            ['keys', () => cache.keys!(options as never)],
            ['listKeys', () => listKeys(cache, options as never)],
          ] as const) {
            const refused = await (async () => {
              for await (const key of list()) await cache.delete(key)
            })().then(
              () => undefined,
              (error: unknown) => error,
            )
            expect(refused, `${how}(${label})`).toBeInstanceOf(CacheConfigError)
            expect((refused as Error).message, `${how}(${label})`).toMatch(message)
          }
        }
        expect(await cache.incr('rate:ip1')).toBe(8)
        expect(await cache.get('session:a')).toEqual({ user: 1 })
      }))

    it('lists no expired key and no deleted key', () =>
      withBackends(['list-gone'], async (cache) => {
        await cache.set('short', 1, ttlMs / 1000)
        await cache.set('kept', 2)
        await cache.set('deleted', 3)
        await cache.incr('counter')
        expect(sorted(await listAll(cache))).toEqual(['counter', 'deleted', 'kept', 'short'])
        await cache.delete('deleted')
        await pass(ttlMs * 2 + 50)
        expect(sorted(await listAll(cache))).toEqual(['counter', 'kept'])
        await cache.deleteMany(['counter'])
        expect(await listAll(cache)).toEqual(['kept'])
        await cache.clear()
        expect(await listAll(cache)).toEqual([])
      }))

    it('lists only its own namespace, not one that merely starts the same', () =>
      withBackends(['lns', 'lnsAbc'], async (users, usersAbc) => {
        await users.set('k', 1)
        await usersAbc.set('k', 2)
        await usersAbc.set('only-abc', 2)
        expect(await listAll(users)).toEqual(['k'])
        expect(sorted(await listAll(usersAbc))).toEqual(['k', 'only-abc'])
        await usersAbc.clear()
        expect(await listAll(users)).toEqual(['k'])
        expect(await listAll(usersAbc)).toEqual([])
      }))

    it('matches a prefix literally: glob and LIKE characters * ? [ ] % _ \\ are not patterns', () =>
      withBackends(['list-glob'], async (cache) => {
        const prefix = 'p*?[%_\\]'
        const matching = [`${prefix}`, `${prefix}x`, `${prefix}*`]
        // Each decoy matches the prefix read as a Redis glob or as an SQL LIKE pattern.
        const decoys = [
          'pZZZZZZZ',
          'p*Z[%_\\]',
          'p*?%%_\\]',
          'p*?[ab_\\]',
          'p*?[%Z\\]',
          'p*?[%_Z]',
          'p*?[%_\\Z',
        ]
        for (const key of [...matching, ...decoys]) await cache.set(key, key)
        expect(sorted(await listAll(cache, prefix))).toEqual(sorted(matching))
        expect(sorted(await listAll(cache, '%'))).toEqual([])
        expect(sorted(await listAll(cache, '_'))).toEqual([])
        expect(sorted(await listAll(cache, 'p*?%'))).toEqual(['p*?%%_\\]'])
        expect(sorted(await listAll(cache))).toEqual(sorted([...matching, ...decoys]))
      }))

    it('lists unicode keys and keys with lone surrogates as they were set', () =>
      withBackends(['list-utf'], async (cache) => {
        const keys = [
          'ünïcødé 🔑',
          'k\ud800',
          'k\ud801',
          'k\ufffd',
          'k\udc00\ud800',
          'k\uffff',
          '\uffffk',
          'a b\nc',
          'nul',
          'nul\u0000byte',
          'nul\u0000',
          '日本:語',
        ]
        for (const key of keys) await cache.set(key, key)
        expect(sorted(await listAll(cache))).toEqual(sorted(keys))
        expect(sorted(await listAll(cache, 'k\ud800'))).toEqual(['k\ud800'])
        expect(sorted(await listAll(cache, 'k'))).toEqual(sorted(keys.filter((k) => k.startsWith('k'))))
        expect(sorted(await listAll(cache, '\uffff'))).toEqual(['\uffffk'])
        expect(sorted(await listAll(cache, '日本'))).toEqual(['日本:語'])
        expect(sorted(await listAll(cache, 'nul\u0000'))).toEqual(['nul\u0000', 'nul\u0000byte'])
      }))

    it('lists more keys than one page holds, each exactly once', () =>
      withBackends(['list-many'], async (cache) => {
        const count = options.manyKeys ?? 2500
        const keys = Array.from({ length: count }, (_, i) => `item:${String(i).padStart(5, '0')}`)
        for (let i = 0; i < keys.length; i += 500)
          await cache.setMany(keys.slice(i, i + 500).map((key) => ({ key, value: 1 })))
        await cache.set('other', 1)
        const listed = await listAll(cache, 'item:')
        expect(listed).toHaveLength(count)
        expect(new Set(listed).size).toBe(count)
        expect(sorted(listed)).toEqual(keys)
      }))

    it('stops early without harm, and can list again', () =>
      withBackends(['list-stop'], async (cache) => {
        for (let i = 0; i < 20; i++) await cache.set(`k${i}`, i)
        const iterator = listKeys(cache)
        const first = await iterator.next()
        expect(first.done).toBe(false)
        await iterator.return?.()
        expect(await listAll(cache)).toHaveLength(20)
      }))

    it('never lists internal keys: memoize entries yes, generations and locks no', () =>
      withBackends(['list-memo'], async (cache) => {
        let calls = 0
        const load = cached(async (id: string) => `${id}:${++calls}`, {
          backend: cache,
          name: 'load',
          namespace: 'memo',
          ttl: 60,
          lock: true,
          tags: ['users'],
        })
        await load('a')
        await load('b')
        await load.invalidate('a')
        await load('a')
        await invalidateTags(['users'], { backend: cache })
        await load('c')
        await cache.set('mine', 1)
        const listed = await listAll(cache)
        expect(listed.filter((key) => key.startsWith('__'))).toEqual([])
        expect(listed).toContain('mine')
        expect(listed).toContain(load.keyFor('c'))
        expect(listed.every((key) => key === 'mine' || key.startsWith('memo:'))).toBe(true)
        expect(await listAll(cache, '__')).toEqual([])
        await load.clear()
        expect((await listAll(cache)).filter((key) => key.startsWith('__'))).toEqual([])
      }))

    it('rejects a prefix that is not a string with CacheKeyError', () =>
      withBackends(['list-bad'], async (cache) => {
        expect(() => listKeys(cache, { prefix: 5 as unknown as string })).toThrow(CacheKeyError)
      }))
  })
}

/**
 * Long keys that differ only at their end are distinct keys: a backend that truncates keys (at a
 * number of characters, or of UTF-8 bytes, as a store's key limit invites), or hashes only part of
 * them, would serve one caller's value for another's key.
 */
function longKeyCases(
  name: string,
  options: ConformanceOptions,
  ns: (label: string) => string,
  timeout: number,
): void {
  describe(`${name} conformance: long keys`, { timeout }, () => {
    let cache: CacheBackend
    beforeAll(async () => {
      cache = await options.create({ namespace: ns('long') })
    })
    afterAll(async () => {
      await cache?.close()
    })

    /** Keys of `length` UTF-16 units from `unit`, and their neighbours that differ only at the end. */
    const family = (label: string, unit: string, length: number) => {
      const stem = `${label}:`.padEnd(length - 1, unit).slice(0, length - 1)
      return [`${stem}a`, `${stem}b`, stem, `${stem}aa`, `${stem}\u00e9`]
    }
    const families: [string, string[]][] = [
      ...[100, 250, 251, 1000, 10_000].map((length): [string, string[]] => [
        `${length} characters`,
        family(`ascii${length}`, 'x', length),
      ]),
      // 2 UTF-8 bytes a character: 126 characters are 252 bytes, past a 250-byte key limit.
      ['126 two-byte characters', family('e126', '\u00e9', 126)],
      ['600 two-byte characters', family('e600', '\u00e9', 600)],
      // 2 UTF-16 units (4 UTF-8 bytes) a character; the last key differs from the stem in its last unit only.
      [
        '124 emoji after a short label',
        [...family('emoji', '\u{1F511}', 255), `emoji:${'\u{1F511}'.repeat(123)}\u{1F512}`],
      ],
      ['5000 emoji', [`${'\u{1F511}'.repeat(5000)}`, `${'\u{1F511}'.repeat(4999)}\u{1F512}`]],
    ]

    it.each(families)('keeps keys of %s that differ only at the end apart', async (_label, keys) => {
      await cache.set(keys[0]!, 'alice')
      for (const other of keys.slice(1)) {
        expect(await cache.get(other)).toBeUndefined()
        expect(await cache.has(other)).toBe(false)
      }
      for (const [i, k] of keys.entries()) await cache.set(k, `value ${i}`)
      for (const [i, k] of keys.entries()) expect(await cache.get(k)).toBe(`value ${i}`)
      expect(await cache.getMany(keys)).toEqual(keys.map((_, i) => `value ${i}`))
      expect(await cache.delete(keys[0]!)).toBe(true)
      expect(await cache.getMany(keys)).toEqual(keys.map((_, i) => (i === 0 ? undefined : `value ${i}`)))
      expect(await cache.add(keys[0]!, 'again')).toBe(true)
      expect(await cache.add(keys[1]!, 'not again')).toBe(false)
      expect(await cache.get(keys[1]!)).toBe('value 1')
      await cache.deleteMany(keys)
    })

    it('keeps long keys apart in setMany, incr and compareAndDelete too', async () => {
      const [a, b, stem] = family('batch', 'y', 300)
      await cache.setMany([
        { key: a!, value: 'bob' },
        { key: b!, value: 'carol' },
      ])
      expect(await cache.getMany([a!, b!, stem!])).toEqual(['bob', 'carol', undefined])
      const [x, y] = family('count', 'z', 1000)
      expect(await cache.incr(x!)).toBe(1)
      expect(await cache.incr(y!, 5)).toBe(5)
      expect(await cache.incr(x!)).toBe(2)
      if (cache.compareAndDelete) {
        expect(await cache.compareAndDelete(a!, 'carol')).toBe(false)
        expect(await cache.get(a!)).toBe('bob')
      }
      await cache.deleteMany([a!, b!, x!, y!])
    })
  })
}

/**
 * Namespaces that a store's key layout can merge: one namespace with a key that, joined by a
 * separator, spells another namespace with its key (`a` + `b:x` and `a:b` + `x`); one that is the
 * other's prefix; names that differ in case, or that an encoding or a pattern (a glob, SQL LIKE)
 * would confuse. Each pair must keep its entries apart, and clear() of either leaves the other.
 * Backends that `create` builds on separate stores pass trivially.
 */
function namespaceCases(
  name: string,
  options: ConformanceOptions,
  ns: (label: string) => string,
  timeout: number,
): void {
  // [suffix of one namespace, its key, suffix of the other, its key]: both after one base name.
  const pairs: [string, string, string, string][] = [
    ...[':', '/', '|', '.', '_', '-', '~', ''].map((s): [string, string, string, string] => [
      '',
      `b${s}x`,
      `${s}b`,
      'x',
    ]),
    ['-App', 'k', '-app', 'k'],
    [':b', 'x', '%3Ab', 'x'],
    [':b', 'x', '~003ab', 'x'],
    ['*', 'k', 'x', 'k'],
    ['_', 'k', 'x', 'k'],
    ['%', 'k', 'x', 'k'],
  ]
  const separator = options.namespaceSeparator
  const kept =
    separator === undefined || separator === ''
      ? pairs
      : pairs.filter(([a, , b]) => !a.includes(separator) && !b.includes(separator))
  const listsKeys = options.listsKeys ?? true

  const text = JSON.stringify
  describe(`${name} conformance: namespaces`, { timeout }, () => {
    for (const [i, [suffixA, keyA, suffixB, keyB]] of kept.entries())
      it(`namespace N + ${text(suffixA)} with key ${text(keyA)} and namespace N + ${text(suffixB)} with key ${text(keyB)} are apart, and clear() of either leaves the other`, async () => {
        const base = ns(`hn${String(i).padStart(2, '0')}`)
        const [a, b] = await Promise.all([
          options.create({ namespace: base + suffixA }),
          options.create({ namespace: base + suffixB }),
        ])
        try {
          await b.set(keyB, 'B')
          expect(await a.get(keyA), 'the other namespace reads it').toBeUndefined()
          expect(await a.has(keyA)).toBe(false)
          expect(await a.add(keyA, 'A'), 'add() in the other namespace').toBe(true)
          expect(await b.get(keyB), 'overwritten from the other namespace').toBe('B')
          expect(await a.get(keyA)).toBe('A')
          if (listsKeys) {
            expect(await listAll(a)).toEqual([keyA])
            expect(await listAll(b)).toEqual([keyB])
          }
          await a.clear()
          expect(await b.get(keyB), 'after clear() of the other namespace').toBe('B')
          expect(await a.get(keyA)).toBeUndefined()
          await a.set(keyA, 'A')
          await b.clear()
          expect(await a.get(keyA), 'after clear() of the other namespace').toBe('A')
          expect(await b.delete(keyB), 'delete() in the other namespace').toBe(false)
          expect(await a.get(keyA), 'after delete() in the other namespace').toBe('A')
        } finally {
          await Promise.all([a.close(), b.close()])
        }
      })
  })
}
