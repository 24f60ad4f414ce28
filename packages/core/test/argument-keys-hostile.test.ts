import { describe, expect, it } from 'vitest'
import { argumentsKey, CacheArgumentError, cached } from '../src/index.js'
import { mapBackend } from './map-backend.js'

/** The key for one argument, or the error keying it threw. */
function keyOrError(value: unknown): string | Error {
  try {
    return argumentsKey([value])
  } catch (error) {
    return error as Error
  }
}

/** Two values a function can tell apart must get two keys, or at least one must be refused. */
function expectApart(a: unknown, b: unknown): void {
  const ka = keyOrError(a)
  const kb = keyOrError(b)
  if (ka instanceof Error || kb instanceof Error) {
    for (const k of [ka, kb]) if (k instanceof Error) expect(k).toBeInstanceOf(CacheArgumentError)
    return
  }
  expect(ka).not.toBe(kb)
}

describe('arguments a function can tell apart never share a key', () => {
  it('keeps Map and Set insertion order', async () => {
    const first = cached(async (m: Map<string, number>) => [...m.keys()][0], {
      backend: mapBackend(),
      name: 'firstKey',
    })
    expect(
      await first(
        new Map([
          ['a', 1],
          ['b', 2],
        ]),
      ),
    ).toBe('a')
    expect(
      await first(
        new Map([
          ['b', 2],
          ['a', 1],
        ]),
      ),
    ).toBe('b')
    expectApart(new Set(['x', 'y']), new Set(['y', 'x']))
  })

  it('keys or refuses own properties on built-in objects, the same way for every kind', () => {
    const withProp = <T extends object>(make: () => T) => [
      Object.assign(make(), { tz: 'UTC' }),
      Object.assign(make(), { tz: 'Asia/Tokyo' }),
      make(),
    ]
    const makers: (() => object)[] = [
      () => new Date(0),
      () => Buffer.from('hi'),
      () => new Uint8Array([1, 2]),
      () => new Float64Array([1.5]),
      () => new Map([['a', 1]]),
      () => new Set([1]),
      () => new URL('https://example.com/'),
      () => new URLSearchParams('a=1'),
      () => new String('x'),
      () => new Number(1),
      () => new Boolean(false),
      () => /a/g,
      () => new ArrayBuffer(2),
      () => new DataView(new ArrayBuffer(2)),
      () => [1, 2],
    ]
    const verdicts = new Set<string>()
    for (const make of makers) {
      const [a, b, plain] = withProp(make)
      expectApart(a, b)
      expectApart(a, plain)
      verdicts.add(keyOrError(a) instanceof Error ? 'refused' : 'keyed')
    }
    // One rule for every built-in kind.
    expect(verdicts.size).toBe(1)
  })

  it('keys or refuses own properties on a large typed array too', () => {
    const big = new Uint8Array(1 << 20)
    const tagged = Object.assign(new Uint8Array(1 << 20), { encoding: 'hex' })
    const hidden = Object.defineProperty(new Float64Array(1 << 16), 'unit', { value: 'ms' })
    expectApart(big, tagged)
    expectApart(new Float64Array(1 << 16), hidden)
    expect(keyOrError(big)).not.toBeInstanceOf(Error)
    expect(keyOrError(Buffer.alloc(1 << 16))).not.toBeInstanceOf(Error)
  })

  it('keeps non-enumerable properties apart from enumerable ones (or refuses them)', () => {
    expectApart(Object.defineProperty({}, 'secret', { value: 1, enumerable: false }), { secret: 1 })
    expectApart(Object.defineProperty({}, 'secret', { value: 1, enumerable: false }), {})
  })

  it('refuses objects as Map keys: their identity cannot be keyed', () => {
    const o = { id: 1 }
    const error = keyOrError(new Map([[o, 'found']]))
    expect(error).toBeInstanceOf(CacheArgumentError)
    expect((error as Error).message).toMatch(/`key`/)
    expect(keyOrError(new Map([['id', 1]]))).not.toBeInstanceOf(Error)
  })

  it('keeps a resizable ArrayBuffer apart from a fixed one', () => {
    const Resizable = ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer
    expectApart(new Resizable(2, { maxByteLength: 8 }), new ArrayBuffer(2))
    expectApart(new Resizable(2, { maxByteLength: 8 }), new Resizable(2, { maxByteLength: 16 }))
  })

  it('keeps views of the same bytes apart when they sit differently in their buffers', async () => {
    const offsetOf = cached(async (view: Uint8Array) => view.byteOffset, {
      backend: mapBackend(),
      name: 'offsetOf',
    })
    const whole = new Uint8Array([1, 2, 3])
    const windowed = new Uint8Array(new Uint8Array([9, 9, 1, 2, 3]).buffer, 2, 3)
    expect(await offsetOf(whole)).toBe(0)
    expect(await offsetOf(windowed)).toBe(2)
    expectApart(whole, windowed)
    expectApart(new DataView(new ArrayBuffer(4), 0, 2), new DataView(new ArrayBuffer(4), 2, 2))
    expectApart(new Uint8Array(new ArrayBuffer(2)), new Uint8Array(new ArrayBuffer(4), 0, 2))
    expectApart(new Uint8Array(new SharedArrayBuffer(2)), new Uint8Array(new ArrayBuffer(2)))
    // The same window of the same bytes is the same key.
    expect(argumentsKey([windowed])).toBe(
      argumentsKey([new Uint8Array(new Uint8Array([0, 0, 1, 2, 3]).buffer, 2, 3)]),
    )
  })

  it('refuses a view of a resizable buffer: whether it tracks the length cannot be seen', () => {
    const buffer = new (ArrayBuffer as any)(2, { maxByteLength: 8 }) as ArrayBuffer
    expect(keyOrError(new Uint8Array(buffer))).toBeInstanceOf(CacheArgumentError)
  })

  it('keys array items by the same rules as properties: getters refused, non-enumerable apart', () => {
    const hidden = [1, 2]
    Object.defineProperty(hidden, 0, { value: 1, enumerable: false })
    expectApart([1, 2], hidden)
    expect(argumentsKey([[1, 2]])).not.toBe(argumentsKey([hidden]))
    const computed = [0, 2]
    Object.defineProperty(computed, 0, { get: () => Math.random(), enumerable: true })
    expect(keyOrError(computed)).toBeInstanceOf(CacheArgumentError)
    const sparse: unknown[] = []
    sparse[5] = 1
    Object.defineProperty(sparse, 9, { get: () => 1, enumerable: true })
    expect(keyOrError(sparse)).toBeInstanceOf(CacheArgumentError)
  })

  it('refuses an `arguments` object with CacheArgumentError pointing at `key`', () => {
    const args = (function (..._a: unknown[]) {
      // biome-ignore lint/complexity/noArguments: the argument under test
      return arguments
    })(1, 2)
    const error = keyOrError(args)
    expect(error).toBeInstanceOf(CacheArgumentError)
    expect((error as Error).message).toMatch(/`key`/)
    const sloppy = new Function('return arguments')(1, 2)
    expect(keyOrError(sloppy)).toBeInstanceOf(CacheArgumentError)
  })

  it('keys a huge sparse array without walking its length', () => {
    const sparse: number[] = []
    sparse[2 ** 32 - 2] = 1
    const other: number[] = []
    other[2 ** 32 - 2] = 2
    const start = performance.now()
    expectApart(sparse, other)
    expectApart(sparse, [1])
    // A hang guard, not a speed test: walking the length took minutes.
    expect(performance.now() - start).toBeLessThan(5000)
    // A hole is still not undefined.
    // biome-ignore lint/suspicious/noSparseArray: a hole is the case under test
    expectApart([, 1], [undefined, 1])
    // biome-ignore lint/suspicious/noSparseArray: a hole is the case under test
    expectApart([1, ,], [1, undefined])
  })
})
