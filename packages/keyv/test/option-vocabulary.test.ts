import { CacheConfigError, setCacheLogger } from '@cache/core'
import { recorder } from '@cache/test-servers'
import { afterEach, describe, expect, it } from 'vitest'
import { type KeyvBackendOptions, keyvBackend } from '../src/index.js'

/**
 * The option vocabulary shared by every @cache package: a duration is a Duration (1 is one second,
 * `'250ms'` works), a bad option throws CacheConfigError naming it, and the old `timeoutMs` still
 * works for one minor version, with one warning naming `timeout`.
 */

const timeoutOf = (options: KeyvBackendOptions) =>
  (keyvBackend(new Map(), options) as unknown as { timeoutMs: number }).timeoutMs
afterEach(() => setCacheLogger(undefined))

describe('keyv options speak the one vocabulary', () => {
  it('timeout: 1 is one second and "250ms" is 250 ms; false turns it off', () => {
    expect(timeoutOf({ timeout: 1 })).toBe(1000)
    expect(timeoutOf({ timeout: '250ms' })).toBe(250)
    expect(timeoutOf({ timeout: false })).toBe(0)
  })

  it.each(['timeout', 'defaultTtl'])('%s: a bad value throws CacheConfigError naming it', (option) => {
    expect(() => keyvBackend(new Map(), { [option]: 'soon' })).toThrow(CacheConfigError)
    expect(() => keyvBackend(new Map(), { [option]: 'soon' })).toThrow(
      expect.objectContaining({ setting: option }) as never,
    )
  })

  it('timeoutMs still works (ms), with one warning naming timeout', () => {
    const logger = recorder({ levels: false })
    setCacheLogger(logger)
    expect(timeoutOf({ timeoutMs: 250 })).toBe(250)
    expect(timeoutOf({ timeoutMs: 0 })).toBe(0)
    expect(logger.lines).toHaveLength(1)
    expect(logger.lines[0]).toContain('timeoutMs is deprecated: use timeout')
    expect(() => keyvBackend(new Map(), { timeoutMs: -1 })).toThrow(
      expect.objectContaining({ name: 'CacheConfigError', setting: 'timeoutMs' }) as never,
    )
  })
})
