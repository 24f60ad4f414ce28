import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { argumentsKey, CacheKeyError, stableStringify } from '../src/index.js'
import { assertItemList, assertKey, assertKeyList, hashKey } from '../src/kit.js'

describe('stableStringify', () => {
  it('ignores object key order, at every depth', () => {
    expect(stableStringify({ a: 1, b: { c: 2, d: 3 } })).toBe(stableStringify({ b: { d: 3, c: 2 }, a: 1 }))
  })

  it('is the same for any permutation of keys (property)', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 8 }), (object) => {
        // Same prototype (fast-check also builds null-prototype dictionaries), keys reversed.
        const reversed = Object.create(Object.getPrototypeOf(object))
        for (const [k, v] of Object.entries(object).reverse())
          Object.defineProperty(reversed, k, {
            value: v,
            enumerable: true,
            writable: true,
            configurable: true,
          })
        expect(stableStringify(reversed)).toBe(stableStringify(object))
      }),
    )
  })

  it('keeps types apart', () => {
    const texts = [
      1,
      '1',
      true,
      'true',
      null,
      'null',
      undefined,
      [1],
      { 0: 1 },
      1n,
      new Date(1),
      new Map([[1, 1]]),
      new Set([1]),
    ].map(stableStringify)
    expect(new Set(texts).size).toBe(texts.length)
  })

  it('refuses functions and cycles with a typed error', () => {
    expect(() => stableStringify([() => 1])).toThrow(TypeError)
    const loop: unknown[] = []
    loop.push(loop)
    expect(() => stableStringify(loop)).toThrow(/circular/)
  })
})

describe('argumentsKey', () => {
  it('gives different keys for different argument lists (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.jsonValue(), { maxLength: 3 }),
        fc.array(fc.jsonValue(), { maxLength: 3 }),
        (a, b) => {
          fc.pre(stableStringify(a) !== stableStringify(b))
          expect(argumentsKey(a)).not.toBe(argumentsKey(b))
        },
      ),
    )
  })

  it('keeps short keys readable and hashes long ones', () => {
    expect(argumentsKey(['42'])).toBe('"42"')
    expect(argumentsKey([42])).toBe('42')
    expect(argumentsKey([])).toBe('()')
    const long = argumentsKey([{ filter: 'x'.repeat(500) }])
    expect(long).toMatch(/^#[\w-]{43}$/)
  })

  it('does not confuse one string argument with two', () => {
    expect(argumentsKey(['a,b'])).not.toBe(argumentsKey(['a', 'b']))
    expect(argumentsKey(['1'])).not.toBe(argumentsKey([1]))
  })
})

describe('keys', () => {
  it('hashKey is a 43-character base64url SHA-256', () => {
    expect(hashKey('x')).toHaveLength(43)
    expect(hashKey('x')).toBe(hashKey('x'))
    expect(hashKey('x')).not.toBe(hashKey('y'))
  })

  it('assertKey accepts strings, the empty one included, and rejects the rest', () => {
    expect(() => assertKey('')).not.toThrow()
    for (const bad of [1, null, undefined, {}, Symbol('k')])
      expect(() => assertKey(bad)).toThrow(CacheKeyError)
  })

  it('assertKeyList and assertItemList accept arrays only, and say what they got and how to fix it', () => {
    expect(() => assertKeyList([], 'getMany')).not.toThrow()
    expect(() => assertItemList([])).not.toThrow()
    const refused: [() => void, string][] = [
      [
        () => assertKeyList('abc', 'deleteMany'),
        'deleteMany: expected a list of keys, got the string "abc" (write ["abc"])',
      ],
      [
        () => assertKeyList(new Set(['a']), 'getMany'),
        'getMany: expected a list of keys, got a Set (spread it into one: [...keys])',
      ],
      [
        () => assertKeyList({ 0: 'a', length: 1 }, 'getMany'),
        'getMany: expected a list of keys, got a plain object',
      ],
      [() => assertKeyList(undefined, 'getMany'), 'getMany: expected a list of keys, got undefined'],
      [
        () => assertItemList({ key: 'a', value: 1 }),
        'setMany: expected a list of { key, value } items, got a plain object (write [item])',
      ],
      [
        () => assertItemList(new Map([['a', 1]])),
        'setMany: expected a list of { key, value } items, got a Map',
      ],
      [() => assertItemList('abc'), 'setMany: expected a list of { key, value } items, got the string "abc"'],
    ]
    for (const [check, message] of refused) {
      expect(check).toThrow(CacheKeyError)
      expect(check).toThrow(message)
    }
  })
})
