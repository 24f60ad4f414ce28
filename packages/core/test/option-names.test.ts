import { describe, expect, it } from 'vitest'
import { CacheConfigError } from '../src/errors.js'
import { assertKnownOptions, optionNames } from '../src/option-checks.js'

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
