import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import * as core from '@cache/core'
import { CacheConfigError, setCacheLogger } from '@cache/core'
import { recorder } from '@cache/test-servers'
import { afterEach, describe, expect, it } from 'vitest'
import { type DiskBackendOptions, type DiskSettings, resolveOptions } from '../src/options.js'

/**
 * The option vocabulary shared by every @cache package: a duration is a Duration (1 is one second,
 * `'250ms'` works), a bad option throws CacheConfigError naming it, and the old `…Ms` names still
 * work for one minor version, with one warning naming the new option.
 */

const PATH = '/nonexistent/cache-option-vocabulary'
const resolved = (options: DiskBackendOptions) => resolveOptions({ path: PATH, ...options })
afterEach(() => setCacheLogger(undefined))

const durations: [keyof DiskBackendOptions, keyof DiskSettings][] = [
  ['busyTimeout', 'busyTimeoutMs'],
  ['lockTimeout', 'lockTimeoutMs'],
  ['accessResolution', 'accessResolutionMs'],
  ['pruneInterval', 'pruneIntervalMs'],
]

describe('disk options speak the one vocabulary', () => {
  it.each(durations)('%s: 1 is one second and "250ms" is 250 ms', (option, setting) => {
    expect(resolved({ [option]: 1 })[setting]).toBe(1000)
    expect(resolved({ [option]: '250ms' })[setting]).toBe(250)
  })

  it('keeps pruneInterval: false (never)', () => {
    expect(resolved({ pruneInterval: false }).pruneIntervalMs).toBe(false)
  })

  it.each([
    ...durations.map(([option]) => option),
    'maxAttempts',
    'maxSize',
    'inlineThreshold',
    'defaultTtl',
    'namespace',
  ])('%s: a bad value throws CacheConfigError naming it', (option) => {
    const bad = option === 'namespace' ? '' : -1
    expect(() => resolved({ [option]: bad })).toThrow(CacheConfigError)
    expect(() => resolved({ [option]: bad })).toThrow(expect.objectContaining({ setting: option }) as never)
  })

  it.each(durations)(
    'the old name %sMs still works (ms), with one warning naming the new one',
    (option, setting) => {
      const logger = recorder({ levels: false })
      setCacheLogger(logger)
      const old = `${option}Ms`
      expect(resolved({ [old]: 250 })[setting]).toBe(250)
      expect(resolved({ [old]: 250 })[setting]).toBe(250)
      expect(logger.lines).toHaveLength(1)
      expect(logger.lines[0]).toContain(`${old} is deprecated: use ${option}`)
      expect(() => resolved({ [old]: 250, [option]: 1 })).toThrow(CacheConfigError)
    },
  )
})

describe('the README tells the error a bad option throws', () => {
  const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8')
  const options = readme.slice(
    readme.indexOf('## Options'),
    readme.indexOf('\n## ', readme.indexOf('## Options') + 1),
  )

  // Before: the section's first paragraph said a bad value throws a `RangeError`: a caller catching
  // that never saw the CacheConfigError thrown (the RangeError only as its cause).
  it('every "a bad value/option throws `X`" in the Options section names the class a bad value throws', () => {
    const named = [...options.matchAll(/bad (?:value|option) throws(?: an?)?\s+`(\w+)`/g)].map((m) => m[1]!)
    expect(named).toHaveLength(2)
    for (const name of named) {
      const documented =
        (core as Record<string, unknown>)[name] ?? (globalThis as Record<string, unknown>)[name]
      for (const bad of [
        { inlineThreshold: 0 },
        { maxSize: '1XB' },
        { busyTimeout: -1 },
        { lockTimeout: 'soon' },
      ])
        expect(() => resolved(bad as DiskBackendOptions), name).toThrow(documented as never)
    }
  })
})
