import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { argumentsKey, CacheKeyError, stableStringify } from '../src/index.js'
import { assertItemList, assertKey, assertKeyList, copyItemList, copyKeyList, hashKey } from '../src/kit.js'

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
  it('the list checks look at every index: a hole, null or a non-string key is refused, naming the index and what was there', () => {
    const holeFirst: unknown[] = new Array(2)
    holeFirst[1] = 'user:2'
    const holeLast: unknown[] = [{ key: 'a', value: 1 }]
    holeLast.length = 2
    const refused: [() => unknown, string][] = [
      [
        () => assertKeyList(holeFirst, 'getMany'),
        'getMany: keys[0] is a hole (the list is sparse): cache keys are strings',
      ],
      [
        () => copyKeyList(holeFirst, 'deleteMany'),
        'deleteMany: keys[0] is a hole (the list is sparse): cache keys are strings',
      ],
      [
        () => copyKeyList(['a', undefined], 'getMany'),
        'getMany: keys[1] is undefined: cache keys are strings',
      ],
      [() => copyKeyList(['a', 'b', null], 'getMany'), 'getMany: keys[2] is null: cache keys are strings'],
      [() => assertKeyList([7], 'getMany'), 'getMany: keys[0] is 7 (a number): cache keys are strings'],
      [() => copyKeyList([new Map()], 'getMany'), 'getMany: keys[0] is a Map: cache keys are strings'],
      [() => assertItemList([null]), 'setMany: items[0] is null, not a { key, value } item'],
      [
        () => copyItemList(holeLast),
        'setMany: items[1] is a hole (the list is sparse), not a { key, value } item',
      ],
      [
        () => copyItemList([{ key: 'a', value: 1 }, 'k']),
        'setMany: items[1] is the string "k", not a { key, value } item',
      ],
      [() => copyItemList([{ value: 1 }]), 'setMany: items[0].key is undefined: cache keys are strings'],
      [
        () => assertItemList([{ key: 5, value: 1 }]),
        'setMany: items[0].key is 5 (a number): cache keys are strings',
      ],
    ]
    for (const [check, message] of refused) {
      expect(check).toThrow(CacheKeyError)
      expect(check).toThrow(message)
    }
    expect(copyKeyList(['', 'a'], 'getMany')).toEqual(['', 'a'])
  })

  it('copyKeyList and copyItemList answer what the list held at the call, each item read once', () => {
    const keys = ['user:1', 'user:2']
    const keyCopy = copyKeyList(keys, 'getMany')
    keys.reverse()
    keys.push('user:3')
    expect(keyCopy).toEqual(['user:1', 'user:2'])
    // A key that changes each time it is read: the copy holds the one that was checked.
    let reads = 0
    const shifty = {
      get key() {
        return ++reads === 1 ? 'checked' : (42 as unknown as string)
      },
      value: 'v',
    }
    expect(copyItemList([shifty])).toEqual([{ key: 'checked', value: 'v', ttl: undefined }])
    expect(reads).toBe(1)
    const first = { key: 'a', value: 1 }
    const list = [first, { key: 'b', value: 2, ttl: 5 }]
    const itemCopy = copyItemList(list)
    first.key = 'changed'
    list.length = 0
    expect(itemCopy).toEqual([
      { key: 'a', value: 1, ttl: undefined },
      { key: 'b', value: 2, ttl: 5 },
    ])
  })
})

describe('copyItemList: the fields of an item', () => {
  it('refuses a field that is not key, value or ttl, naming the index and the field meant', () => {
    const cases: [object, RegExp][] = [
      [
        { key: 'a', val: 42 },
        /^setMany: items\[1\]\.val is not a field of an item \(key, value, ttl\); did you mean `value`\?$/,
      ],
      [{ key: 'b', value: 1, expires: 60 }, /items\[1\]\.expires .*did you mean `ttl`/],
      [{ key: 'c', value: 1, ttL: 60 }, /items\[1\]\.ttL .*did you mean `ttl`/],
    ]
    for (const [item, message] of cases) {
      const error = (() => {
        try {
          copyItemList([{ key: 'ok', value: 1 }, item])
        } catch (caught) {
          return caught
        }
      })()
      expect(error).toBeInstanceOf(CacheKeyError)
      expect((error as Error).message).toMatch(message)
    }
  })

  it('refuses an item without a value property, and takes one whose value is undefined', () => {
    expect(() => copyItemList([{ key: 'a' }])).toThrow(/items\[0\] has no `value`/)
    expect(copyItemList([{ key: 'a', value: undefined, ttl: 5 }])).toEqual([
      { key: 'a', value: undefined, ttl: 5 },
    ])
  })
})
