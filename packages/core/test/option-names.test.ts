import { describe, expect, it } from 'vitest'
import { CacheConfigError } from '../src/errors.js'
import { assertKnownOptions, optionNames, readOptions } from '../src/option-checks.js'

interface Shape {
  namespace?: string
  defaultTtl?: number
  maxKeys?: number
}

const KNOWN = optionNames<Shape>({ namespace: true, defaultTtl: true, maxKeys: true })

function refusal(options: object, hints?: Record<string, string>): CacheConfigError {
  try {
    assertKnownOptions(options, KNOWN, 'exampleBackend()', hints)
  } catch (error) {
    expect(error).toBeInstanceOf(CacheConfigError)
    return error as CacheConfigError
  }
  throw new Error('accepted')
}

describe('assertKnownOptions', () => {
  it('accepts the known names, given or left out', () => {
    expect(() => assertKnownOptions({}, KNOWN, 'exampleBackend()')).not.toThrow()
    expect(() => assertKnownOptions({ namespace: 'a', maxKeys: 3 }, KNOWN, 'exampleBackend()')).not.toThrow()
  })

  it('refuses a misspelt name, naming it and the option meant', () => {
    const error = refusal({ namespace: 'a', namspace: 'b' })
    expect(error.setting).toBe('namspace')
    expect(error.message).toBe('namspace: not an option of exampleBackend(); did you mean `namespace`?')
    expect(refusal({ maxkeys: 3 }).message).toMatch(/did you mean `maxKeys`/)
    expect(refusal({ defualtTtl: 3 }).message).toMatch(/did you mean `defaultTtl`/)
  })

  it('refuses a name given with an undefined value too (the same config fails the same way whatever the environment)', () => {
    expect(refusal({ namspace: undefined }).setting).toBe('namspace')
  })

  it('suggests nothing for a name far from every option, and a given hint over a guess', () => {
    expect(refusal({ url: 'redis://x' }).message).toBe('url: not an option of exampleBackend()')
    expect(refusal({ url: 'redis://x' }, { url: ': give the URL as the first argument' }).message).toBe(
      'url: not an option of exampleBackend(): give the URL as the first argument',
    )
  })
})

describe('assertKnownOptions: what the options are given as', () => {
  it('refuses null, a number, a string, an array, a Map and a Set: "expected an options object"', () => {
    for (const given of [
      null,
      42,
      'shop',
      [['namespace', 'shop']],
      new Map([['namespace', 'shop']]),
      new Set(),
    ]) {
      const error = refusal(given as object)
      expect(error.setting).toBe('exampleBackend()')
      expect(error.message).toMatch(/^exampleBackend\(\): expected an options object, got /)
    }
    expect(refusal(new Map() as object).message).toMatch(/Object\.fromEntries/)
  })

  it('checks the getters of a settings class, and refuses a misspelt one', () => {
    class Settings {
      get namespace() {
        return 'shop'
      }
      get defaultTTL() {
        return 60
      }
    }
    const error = refusal(new Settings())
    expect(error.setting).toBe('defaultTTL')
    expect(error.message).toMatch(/did you mean `defaultTtl`/)
  })

  it('checks every prototype below Object.prototype, and accepts a class whose names are all options', () => {
    class Base {
      get namspace() {
        return 'a'
      }
    }
    class Derived extends Base {
      get maxKeys() {
        return 3
      }
    }
    expect(refusal(new Derived()).setting).toBe('namspace')
    class Good {
      maxKeys = 3
      get namespace() {
        return 'shop'
      }
    }
    expect(() => assertKnownOptions(new Good(), KNOWN, 'exampleBackend()')).not.toThrow()
    expect(() => assertKnownOptions(Object.create(null), KNOWN, 'exampleBackend()')).not.toThrow()
  })
})

describe('readOptions', () => {
  it('gives a plain object of the values, of a plain object and of a settings class', () => {
    const plain = { namespace: 'a' }
    expect(readOptions(plain, KNOWN, 'exampleBackend()')).toEqual(plain)
    class Settings {
      get namespace() {
        return 'shop'
      }
      get defaultTtl() {
        return 60
      }
    }
    const read = readOptions(new Settings(), KNOWN, 'exampleBackend()')
    expect({ ...read }).toEqual({ namespace: 'shop', defaultTtl: 60 })
  })
  it('reads every known name by name: non-enumerable, inherited, frozen, through a Proxy', () => {
    const hidden = {}
    Object.defineProperty(hidden, 'namespace', { value: 'hidden' })
    const hiddenGetter = {}
    Object.defineProperty(hiddenGetter, 'namespace', { get: () => 'getter' })
    const values: Record<string | symbol, unknown> = { namespace: 'proxied' }
    const shapes: [object, string][] = [
      [hidden, 'hidden'],
      [hiddenGetter, 'getter'],
      [Object.create({ namespace: 'inherited' }), 'inherited'],
      [Object.create(Object.assign(Object.create(null), { namespace: 'null-proto' })), 'null-proto'],
      [Object.freeze({ namespace: 'frozen' }), 'frozen'],
      [new Proxy({}, { get: (_, name) => values[name] }), 'proxied'],
    ]
    for (const [options, namespace] of shapes)
      expect({ ...readOptions(options, KNOWN, 'exampleBackend()') }).toEqual({ namespace })
  })

  it('refuses a misspelt name given as a non-enumerable property', () => {
    const options = {}
    Object.defineProperty(options, 'namspace', { value: 'a' })
    expect(() => readOptions(options, KNOWN, 'exampleBackend()')).toThrow(
      'namspace: not an option of exampleBackend(); did you mean `namespace`?',
    )
  })
})
