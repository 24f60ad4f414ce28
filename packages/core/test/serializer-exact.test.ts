import { describe, expect, it } from 'vitest'
import { CacheSerializationError, jsonSerializer, v8Serializer } from '../src/index.js'
import { assertSerializable, createCodec } from '../src/kit.js'

class Items extends Array<number> {}
class When extends Date {}
class Registry extends Map<string, number> {}
class Tags extends Set<string> {}
class Money {
  constructor(readonly cents: number) {}
}

/** Values no serializer round-trips exactly: each must be refused, naming where it is. */
const inexact: [string, () => unknown, RegExp][] = [
  ['an Array subclass', () => ({ items: Items.from([1, 2]) }), /\$\.items/],
  ['a Date subclass', () => ({ at: new When(0) }), /\$\.at/],
  ['a Map subclass', () => [new Registry()], /\$\[0\]/],
  ['a Set subclass', () => [new Tags()], /\$\[0\]/],
  ['a symbol-keyed property', () => ({ a: { [Symbol.for('meta')]: 'x' } }), /\$\.a/],
  ['a non-enumerable property', () => ({ a: Object.defineProperty({}, 'hidden', { value: 42 }) }), /\$\.a/],
  ['a Date with an extra property', () => ({ at: Object.assign(new Date(0), { tz: 'UTC' }) }), /\$\.at/],
  ['a Map with an extra property', () => ({ m: Object.assign(new Map(), { size2: 1 }) }), /\$\.m/],
  [
    'a Buffer with an extra property',
    () => ({ b: Object.assign(Buffer.from('x'), { encoding: 'hex' }) }),
    /\$\.b/,
  ],
  ['a class instance', () => ({ price: new Money(150) }), /\$\.price/],
  ['an Error', () => ({ error: new Error('boom') }), /\$\.error/],
]

/** What JSON loses and V8 keeps. */
const inexactInJson: typeof inexact = [
  ['an array with an extra property', () => ({ list: Object.assign([1, 2], { extra: 'x' }) }), /\$\.list/],
]

it.each(inexactInJson)('json refuses %s, which only JSON would lose', (_label, make, path) => {
  expect(() => jsonSerializer.serialize(make())).toThrow(CacheSerializationError)
  expect(() => jsonSerializer.serialize(make())).toThrow(path)
})

it("v8 keeps an array's holes and enumerable properties", () => {
  // biome-ignore lint/suspicious/noSparseArray: a hole is the case under test
  const list = Object.assign([1, , 3], { extra: 'x' })
  const back = v8Serializer.deserialize(v8Serializer.serialize(list)) as typeof list
  expect(back.extra).toBe('x')
  expect(1 in back).toBe(false)
})

describe.each([
  ['json', jsonSerializer],
  ['v8', v8Serializer],
])('the %s serializer refuses what it cannot round-trip exactly', (_name, serializer) => {
  it.each(inexact)('%s: CacheSerializationError naming the path', (_label, make, path) => {
    const error = (() => {
      try {
        serializer.serialize(make())
      } catch (e) {
        return e as Error
      }
    })()
    expect(error).toBeInstanceOf(CacheSerializationError)
    expect(error!.message).toMatch(path)
  })

  it('still round-trips what it supports', () => {
    const codec = createCodec({ serializer })
    const value = {
      list: [1, 'a', null, { nested: true }],
      at: new Date(5),
      map: new Map([['k', 1]]),
      set: new Set([1]),
      bytes: Buffer.from('hi'),
      big: 10n,
    }
    expect(codec.decode(codec.encode(value))).toEqual(value)
  })
})

describe('assertSerializable, the check memory and keyv use', () => {
  it.each([...inexact, ...inexactInJson])('refuses %s as the serializers do', (_label, make, path) => {
    expect(() => assertSerializable(make())).toThrow(CacheSerializationError)
    expect(() => assertSerializable(make())).toThrow(path)
  })

  it('keeps the fast path for plain JSON values', () => {
    expect(() => assertSerializable({ a: [1, 2, { b: 'c' }], d: null })).not.toThrow()
  })
})

describe('what the json serializer now keeps exactly', () => {
  it('holes (not undefined), a huge sparse array, a null prototype, a RegExp lastIndex', () => {
    const codec = createCodec()
    const round = <T>(value: T) => codec.decode(codec.encode(value)) as T
    // biome-ignore lint/suspicious/noSparseArray: a hole is the case under test
    const holes = round([1, , 3])
    expect(1 in holes).toBe(false)
    expect(holes).toHaveLength(3)
    const sparse: number[] = []
    sparse[2 ** 32 - 2] = 7
    const back = round(sparse)
    expect(back.length).toBe(2 ** 32 - 1)
    expect(back[2 ** 32 - 2]).toBe(7)
    const bare = round(Object.assign(Object.create(null), { a: 1 }))
    expect(Object.getPrototypeOf(bare)).toBe(null)
    expect(bare.a).toBe(1)
    const regex = /a/g
    regex.lastIndex = 3
    expect(round(regex).lastIndex).toBe(3)
  })
})
