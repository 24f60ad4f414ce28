import { isDeepStrictEqual } from 'node:util'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { argumentsKey, cached } from '../src/index.js'

// A plain Map is enough: these tests look at keys and results only.
function mapBackend() {
  const store = new Map<string, unknown>()
  return {
    get: async <T>(key: string) => store.get(key) as T | undefined,
    set: async (key: string, value: unknown) => void store.set(key, value),
    delete: async (key: string) => store.delete(key),
    clear: async () => store.clear(),
  }
}

/** The key for one argument, or the error keying it threw. */
function keyOrError(value: unknown): string | Error {
  try {
    return argumentsKey([value])
  } catch (error) {
    return error as Error
  }
}

class WithPrivate {
  #secret: string
  constructor(secret: string) {
    this.#secret = secret
  }
  reveal() {
    return this.#secret
  }
}

const state = Symbol('state')

describe('memoize keys never collapse two different arguments', () => {
  it('keeps -0 apart from 0 (1/x is -Infinity, not Infinity)', async () => {
    const inverse = cached(async (x: number) => 1 / x, { backend: mapBackend(), name: 'inverse' })
    expect(await inverse(0)).toBe(Number.POSITIVE_INFINITY)
    expect(await inverse(-0)).toBe(Number.NEGATIVE_INFINITY)
    expect(await inverse(-0)).toBe(Number.NEGATIVE_INFINITY)
    expect(inverse.keyFor(0)).not.toBe(inverse.keyFor(-0))
  })

  it('keys URLSearchParams, Headers, buffers and boxed values by their content', async () => {
    const echo = cached(async (x: unknown) => String(x instanceof ArrayBuffer ? new Uint8Array(x) : x), {
      backend: mapBackend(),
      name: 'echo',
    })
    const pairs: [unknown, unknown][] = [
      [new URLSearchParams('q=a'), new URLSearchParams('q=b')],
      [new URLSearchParams('a=1&b=2'), new URLSearchParams('b=2&a=1')],
      [new Headers({ accept: 'text/html' }), new Headers({ accept: 'application/json' })],
      [new Uint8Array([1]).buffer, new Uint8Array([2]).buffer],
      [new Int32Array([1]), new Int32Array([2])],
      [new Float64Array([0]), new Float64Array([-0])],
      [new Uint8Array([1]), Buffer.from([1])],
      [new DataView(new Uint8Array([1]).buffer), new DataView(new Uint8Array([2]).buffer)],
      [new Boolean(false), new Boolean(true)],
      [new Number(1), new Number(2)],
      [new String('a'), new String('b')],
      [Object(1n), Object(2n)],
      [/a/g, /a/i],
    ]
    for (const [a, b] of pairs) {
      const keys = [keyOrError(a), keyOrError(b)]
      expect(keys.some((k) => k instanceof Error)).toBe(false)
      expect(keys[0]).not.toBe(keys[1])
      expect(echo.keyFor(a)).not.toBe(echo.keyFor(b))
    }
    // Through a real call: the second argument gets its own result.
    expect(await echo(new URLSearchParams('q=a'))).toBe('q=a')
    expect(await echo(new URLSearchParams('q=b'))).toBe('q=b')
  })

  it('rejects state it cannot see with a TypeError that names the argument and points at `key`', async () => {
    const reveal = cached(async (_n: number, x: { reveal?: () => string }) => x.reveal?.() ?? 'none', {
      backend: mapBackend(),
      name: 'reveal',
    })
    const hidden: unknown[] = [
      new WithPrivate('a'),
      { [state]: 'a' },
      new (class Point {
        constructor(readonly x = 1) {}
      })(),
      new WeakMap(),
      Promise.resolve(1),
      Symbol('x'),
      () => 1,
    ]
    for (const value of hidden) {
      const error = keyOrError(value)
      expect(error).toBeInstanceOf(TypeError)
      expect((error as Error).message).toMatch(/argument 0/)
      expect((error as Error).message).toMatch(/`key`/)
    }
    await expect(reveal(1, new WithPrivate('a'))).rejects.toThrow(/argument 1.*`key`/s)
    await expect(reveal(1, new WithPrivate('b'))).rejects.toBeInstanceOf(TypeError)
  })

  it('accepts a custom key for arguments the default cannot key', async () => {
    const reveal = cached(async (x: WithPrivate) => x.reveal(), {
      backend: mapBackend(),
      name: 'revealByKey',
      key: (x) => x.reveal(),
    })
    expect(await reveal(new WithPrivate('a'))).toBe('a')
    expect(await reveal(new WithPrivate('b'))).toBe('b')
  })

  it('gives distinct keys to any two arguments that are not deeply equal (property)', () => {
    const extra = fc.oneof(
      fc.constantFrom(0, -0, Number.NaN),
      fc.string().map((s) => new URLSearchParams(s)),
      fc.uint8Array().map((a) => a.buffer),
      fc.uint8Array().map((a) => new DataView(a.buffer)),
      fc.uint8Array().map((a) => Buffer.from(a)),
      fc.uint8Array(),
      fc.float64Array(),
      fc.int32Array(),
      fc.bigInt64Array(),
    )
    const value = fc.oneof(
      fc.anything({
        withBoxedValues: true,
        withMap: true,
        withSet: true,
        withBigInt: true,
        withDate: true,
        withSparseArray: true,
        withNullPrototype: true,
        withObjectString: true,
      }),
      extra,
    )
    fc.assert(
      fc.property(value, value, (a, b) => {
        const ka = keyOrError(a)
        const kb = keyOrError(b)
        // Rejected values are fine: they never share a key with anything.
        if (ka instanceof Error || kb instanceof Error) return
        // util.isDeepStrictEqual finds two Invalid Dates different: not an oracle for those.
        fc.pre(!hasInvalidDate(a) && !hasInvalidDate(b))
        if (sameValue(a, b)) expect(ka).toBe(kb)
        else expect(ka).not.toBe(kb)
      }),
      { numRuns: 2000 },
    )
  })

  it('gives the same key to the same value built twice (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(argumentsKey([value])).toBe(argumentsKey([structuredClone(value)]))
      }),
    )
  })
})

/** Deep equality that sees everything a key must: -0, buffer contents, URLSearchParams order. */
function sameValue(a: unknown, b: unknown): boolean {
  if (ArrayBuffer.isView(a) || ArrayBuffer.isView(b)) {
    if (!ArrayBuffer.isView(a) || !ArrayBuffer.isView(b)) return false
    if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false
    return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
      Buffer.from(b.buffer, b.byteOffset, b.byteLength),
    )
  }
  if (a instanceof URLSearchParams || b instanceof URLSearchParams)
    return a instanceof URLSearchParams && b instanceof URLSearchParams && String(a) === String(b)
  if (a instanceof ArrayBuffer || b instanceof ArrayBuffer)
    return (
      a instanceof ArrayBuffer &&
      b instanceof ArrayBuffer &&
      Buffer.from(a).equals(Buffer.from(b as ArrayBuffer))
    )
  return isDeepStrictEqual(inOrder(a), inOrder(b))
}

/** Maps and Sets as lists of their entries: their order is part of their value (iteration sees it). */
function inOrder(value: unknown, seen = new Map<unknown, unknown>()): unknown {
  if (typeof value !== 'object' || value === null) return value
  if (seen.has(value)) return seen.get(value)
  if (value instanceof Map) return { map: [...value].map(([k, v]) => [inOrder(k, seen), inOrder(v, seen)]) }
  if (value instanceof Set) return { set: [...value].map((v) => inOrder(v, seen)) }
  if (Array.isArray(value)) {
    const out: unknown[] = new Array(value.length)
    seen.set(value, out)
    for (const key of Object.keys(value)) out[Number(key)] = inOrder(value[Number(key)], seen)
    return out
  }
  const proto = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) return value
  const out = Object.create(proto) as Record<string, unknown>
  seen.set(value, out)
  for (const key of Object.keys(value)) out[key] = inOrder((value as Record<string, unknown>)[key], seen)
  return out
}

function hasInvalidDate(value: unknown, seen = new Set<unknown>()): boolean {
  if (value instanceof Date) return Number.isNaN(value.getTime())
  if (typeof value !== 'object' || value === null || seen.has(value)) return false
  seen.add(value)
  const children =
    value instanceof Map ? [...value].flat() : value instanceof Set ? [...value] : Object.values(value)
  return children.some((child) => hasInvalidDate(child, seen))
}
