import { CacheConfigError } from '@cache/core'
import { expect } from 'vitest'

/**
 * The {@link CacheConfigError} `act` throws (a constructor or factory given bad options); fails
 * the test when `act` returns instead, or throws anything else.
 */
export function configErrorOf(act: () => unknown): CacheConfigError {
  try {
    act()
  } catch (error) {
    expect(error).toBeInstanceOf(CacheConfigError)
    return error as CacheConfigError
  }
  throw new Error('the options were accepted')
}

/** {@link configErrorOf} for an `act` that may also reject (an async setup, a framework's start). */
export async function configErrorOfAsync(act: () => unknown): Promise<CacheConfigError> {
  try {
    await act()
  } catch (error) {
    expect(error).toBeInstanceOf(CacheConfigError)
    return error as CacheConfigError
  }
  throw new Error('the options were accepted')
}
