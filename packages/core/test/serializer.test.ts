import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  CacheConfigError,
  CacheError,
  CacheSerializationError,
  jsonSerializer,
  v8Serializer,
} from '../src/index.js'
import { assertSerializable, assertStructuredClonable, createCodec, MAX_VALUE_DEPTH } from '../src/kit.js'

const roundTrip = (value: unknown) => jsonSerializer.deserialize(jsonSerializer.serialize(value))

/** Values the tagged JSON format promises to round-trip. */
const supported = fc.letrec((tie) => ({
  leaf: fc.oneof(
    fc.string(),
    fc.double(),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.constant(undefined),
    fc.bigInt(),
    fc.date(),
    fc.uint8Array().map((bytes) => Buffer.from(bytes)),
    fc.uint8Array(),
    fc.webUrl().map((url) => new URL(url)),
  ),
  value: fc.oneof({ depthSize: 'small' }, tie('leaf'), tie('array'), tie('object'), tie('map'), tie('set')),
  array: fc.array(tie('value'), { maxLength: 5 }),
  // Null-prototype objects come back as plain objects (documented), so generate plain ones.
  object: fc.dictionary(fc.string(), tie('value'), { maxKeys: 5, noNullPrototype: true }),
  map: fc.array(fc.tuple(tie('leaf'), tie('value')), { maxLength: 4 }).map((entries) => new Map(entries)),
  set: fc.array(fc.oneof(fc.string(), fc.integer()), { maxLength: 5 }).map((items) => new Set(items)),
})).value

describe('jsonSerializer', () => {
  it('round-trips every supported value exactly (property)', () => {
    fc.assert(
      fc.property(supported, (value) => {
        expect(roundTrip(value)).toStrictEqual(value)
      }),
      { numRuns: 300 },
    )
  })

  it('round-trips the types JSON would mangle', () => {
    const value = {
      date: new Date('2020-01-01T00:00:00.000Z'),
      invalidDate: new Date(Number.NaN),
      buf: Buffer.from([0, 255, 10]),
      u8: new Uint8Array([1, 2, 3]),
      map: new Map([[{ a: 1 }, new Set([1n])]]),
      big: -(2n ** 80n),
      undef: undefined,
      nan: Number.NaN,
      inf: Number.POSITIVE_INFINITY,
      ninf: Number.NEGATIVE_INFINITY,
      negZero: -0,
      re: /a+b/gi,
      url: new URL('https://example.com/a?b=c'),
      list: [undefined, null, 1],
    }
    expect(roundTrip(value)).toStrictEqual(value)
    expect(Buffer.isBuffer((roundTrip(value) as typeof value).buf)).toBe(true)
  })

  it('keeps a user object that has the tag key apart from a tag', () => {
    const value = { $c: 'D', v: 'not a date' }
    expect(roundTrip(value)).toStrictEqual(value)
    expect(roundTrip([{ $c: 'u' }])).toStrictEqual([{ $c: 'u' }])
  })

  it('writes plain JSON values as plain JSON', () => {
    expect(jsonSerializer.serialize({ a: [1, 'x', true, null] }).toString()).toBe('{"a":[1,"x",true,null]}')
    expect(jsonSerializer.serialize('0').toString()).toBe('"0"')
    expect(jsonSerializer.serialize(5).toString()).toBe('5')
  })

  it.each([
    ['a function', { a: { b: () => 1 } }, '$.a.b'],
    ['a symbol', { list: [1, Symbol('s')] }, '$.list[1]'],
    ['a class instance', { user: new (class User {})() }, '$.user'],
    ['an Error', { e: new Error('x') }, '$.e'],
    ['a Promise', { p: Promise.resolve(1) }, '$.p'],
  ])('refuses %s with a TypeError naming the path', (_label, value, path) => {
    let error: unknown
    try {
      jsonSerializer.serialize(value)
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(TypeError)
    expect(error).toBeInstanceOf(CacheSerializationError)
    expect(error).toBeInstanceOf(CacheError)
    expect((error as CacheSerializationError).path).toBe(path)
    expect((error as Error).message).toContain(path)
  })

  it('refuses circular references, but allows the same object twice', () => {
    const shared = { x: 1 }
    expect(roundTrip({ a: shared, b: shared })).toStrictEqual({ a: { x: 1 }, b: { x: 1 } })
    const loop: Record<string, unknown> = { a: {} }
    ;(loop.a as Record<string, unknown>).back = loop
    expect(() => jsonSerializer.serialize(loop)).toThrow(/circular reference at \$\.a\.back/)
  })

  it('never pollutes prototypes when parsing', () => {
    const hostile = Buffer.from(
      '{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted2":1}},"m":{"$c":"O","v":{"__proto__":{"p3":1}}}}',
    )
    const parsed = jsonSerializer.deserialize(hostile) as Record<string, unknown>
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(({} as Record<string, unknown>).polluted2).toBeUndefined()
    expect(({} as Record<string, unknown>).p3).toBeUndefined()
    expect(Object.getPrototypeOf(parsed)).toBe(Object.prototype)
    expect(Object.getOwnPropertyNames(parsed)).toContain('__proto__')
  })

  it('round-trips an own __proto__ key as data', () => {
    const value = JSON.parse('{"__proto__": {"polluted": 1}, "d": 1}')
    value.when = new Date(0)
    const back = roundTrip(value) as Record<string, unknown>
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype)
    expect(Object.getOwnPropertyDescriptor(back, '__proto__')?.value).toEqual({ polluted: 1 })
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('throws a CacheSerializationError for bytes that are not its format', () => {
    expect(() => jsonSerializer.deserialize(Buffer.from('{oops'))).toThrow(CacheSerializationError)
    expect(() => jsonSerializer.deserialize(Buffer.from('{"$c":"??"}'))).toThrow(/unknown tag/)
  })
})

describe('v8Serializer', () => {
  it('round-trips structured-clone values, including cycles', () => {
    const value: Record<string, unknown> = { d: new Date(0), m: new Map([[1, 2]]), b: 10n }
    value.self = value
    const back = v8Serializer.deserialize(v8Serializer.serialize(value)) as Record<string, unknown>
    expect(back.self).toBe(back)
    expect(back.m).toEqual(new Map([[1, 2]]))
  })

  it('refuses functions with a CacheSerializationError', () => {
    expect(() => v8Serializer.serialize({ f() {} })).toThrow(CacheSerializationError)
  })
})

describe('createCodec', () => {
  const big = { text: 'abc'.repeat(10_000) }

  it('compresses values above the threshold and reads them back', () => {
    const codec = createCodec({ compressThreshold: '1KB' })
    const bytes = codec.encode(big)
    expect(bytes.length).toBeLessThan(jsonSerializer.serialize(big).length / 10)
    expect(codec.decode(bytes)).toStrictEqual(big)
  })

  it('decodes JSON text given as a string exactly as it decodes the same bytes', () => {
    const codec = createCodec({ compressThreshold: '1KB' })
    const values: unknown[] = [
      { at: new Date(0), count: 10n, tags: new Set(['a']), nothing: undefined, $c: 'user key' },
      ['ü', '😀', 'lone \ud800', -0, Number.NaN],
      'plain',
      42,
      big,
    ]
    for (const value of values) {
      const bytes = codec.encode(value)
      expect(codec.decode(bytes)).toStrictEqual(value)
      // A compressed value (a NUL first) is only ever handed over as bytes.
      if (bytes[0] !== 0) expect(codec.decode(bytes.toString())).toStrictEqual(value)
    }
    // incr writes bare integers; a leading zero is not JSON but still a counter.
    expect(codec.decode('007')).toBe(7)
    expect(codec.decode(Buffer.from('007'))).toBe(7)
    expect(() => codec.decode('{not json')).toThrow(CacheSerializationError)
  })

  it('stores a safe integer as decimal text with the v8 serializer (the counter format), and gives your own serializer every value', () => {
    const v8 = createCodec({ serializer: 'v8' })
    for (const n of [0, 5, -7, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]) {
      expect(v8.encode(n).toString('latin1')).toBe(String(n))
      expect(v8.decode(v8.encode(n))).toBe(n)
    }
    // Not integers, or not safe ones: the serializer's own bytes, read back exactly.
    for (const n of [-0, 2.5, 2 ** 60, Number.NaN]) {
      expect(v8.encode(n).toString('latin1')).not.toBe(String(n))
      expect(v8.decode(v8.encode(n))).toBe(n)
    }
    const seen: unknown[] = []
    const own = createCodec({
      serializer: {
        name: 'own',
        serialize: (value) => {
          seen.push(value)
          return Buffer.from(`x${JSON.stringify(value)}`)
        },
        deserialize: (bytes) => JSON.parse(bytes.toString().slice(1)),
      },
    })
    expect(own.encode(42).toString()).toBe('x42')
    expect(seen).toEqual([42])
  })

  it('never stores a compressed value larger than the original', () => {
    const codec = createCodec({ compressThreshold: 1 })
    const random = Buffer.from(Array.from({ length: 2000 }, () => Math.floor(Math.random() * 256)))
    const plain = jsonSerializer.serialize(random.toString('base64'))
    const bytes = codec.encode(random.toString('base64'))
    expect(bytes.length).toBeLessThanOrEqual(plain.length)
    expect(codec.decode(bytes)).toBe(random.toString('base64'))
  })

  it('leaves values below the threshold alone', () => {
    const codec = createCodec({ compressThreshold: '1MB' })
    expect(codec.encode(big).equals(jsonSerializer.serialize(big))).toBe(true)
  })

  it('reads a bare integer as a counter with any serializer', () => {
    expect(createCodec({ serializer: 'v8' }).decode(Buffer.from('42'))).toBe(42)
    expect(createCodec().decode('-7')).toBe(-7)
    expect(createCodec({ serializer: 'v8' }).decode(createCodec({ serializer: 'v8' }).encode('42'))).toBe(
      '42',
    )
  })

  it('accepts a custom serializer and rejects a malformed one', () => {
    const upper = {
      name: 'upper',
      serialize: (v: unknown) => Buffer.from(String(v).toUpperCase()),
      deserialize: (b: Buffer) => b.toString(),
    }
    expect(createCodec({ serializer: upper }).decode(createCodec({ serializer: upper }).encode('abc'))).toBe(
      'ABC',
    )
    expect(() => createCodec({ serializer: {} as never })).toThrow(CacheConfigError)
  })

  it('rejects a bad compressThreshold', () => {
    expect(() => createCodec({ compressThreshold: '1XB' })).toThrow(/compressThreshold/)
  })
})

describe('values nested very deep', () => {
  const nested = (levels: number) => {
    const root: Record<string, unknown> = {}
    let current = root
    for (let i = 0; i < levels; i++) {
      const next: Record<string, unknown> = {}
      current.a = next
      current = next
    }
    return root
  }

  it.each(['json', 'v8'] as const)(
    '%s: a value deeper than MAX_VALUE_DEPTH is refused with CacheSerializationError, not a stack overflow',
    (serializer) => {
      const codec = createCodec({ serializer })
      let error: unknown
      try {
        codec.encode(nested(20_000))
      } catch (caught) {
        error = caught
      }
      expect(error).toBeInstanceOf(CacheSerializationError)
      expect(String((error as Error).message)).toMatch(/nested more than 1000 levels/)
      // Just within the bound, the value round-trips.
      expect(codec.decode(codec.encode(nested(MAX_VALUE_DEPTH - 2)))).toEqual(nested(MAX_VALUE_DEPTH - 2))
    },
  )

  it('assertSerializable and assertStructuredClonable refuse it the same way', () => {
    expect(() => assertSerializable(nested(20_000))).toThrow(CacheSerializationError)
    expect(() => assertStructuredClonable(nested(20_000))).toThrow(CacheSerializationError)
  })
})

describe('a serializer whose bytes start with a NUL byte', () => {
  // What msgpack writes for 0, or any binary format may start with.
  const binary = {
    name: 'binary',
    serialize: (value: unknown) => Buffer.concat([Buffer.of(0), Buffer.from(JSON.stringify(value))]),
    deserialize: (bytes: Buffer) => JSON.parse(bytes.subarray(1).toString()),
  }

  it.each([false, 1] as const)('round-trips with compressThreshold %s', (compressThreshold) => {
    const codec = createCodec({ serializer: binary, compressThreshold })
    for (const value of [0, 'x', { a: [1, 2] }]) expect(codec.decode(codec.encode(value))).toEqual(value)
  })

  it('reads bytes an earlier version stored uncompressed', () => {
    const codec = createCodec({ serializer: binary })
    expect(codec.decode(binary.serialize({ old: true }))).toEqual({ old: true })
  })
})

describe('a serializer that reuses its output buffer', () => {
  const scratch = Buffer.alloc(256)
  const reusing = {
    name: 'scratch-json',
    serialize: (value: unknown) => scratch.subarray(0, scratch.write(JSON.stringify(value))),
    deserialize: (bytes: Buffer) => JSON.parse(bytes.toString()) as unknown,
  }

  it('gives each value bytes of its own, so a later encode never rewrites an earlier one', () => {
    const codec = createCodec({ serializer: reusing })
    const first = codec.encode({ name: 'alice' })
    const second = codec.encode({ name: 'bobby' })
    expect(codec.decode(first)).toEqual({ name: 'alice' })
    expect(codec.decode(second)).toEqual({ name: 'bobby' })
  })
})
