import { configErrorOf } from '@cache/testing'
import { describe, expect, it } from 'vitest'
import { type MemoryBackendOptions, memoryBackend } from '../src/index.js'

describe('memoryBackend option names', () => {
  it('refuses a misspelt namespace instead of sharing keys with every other namespace-less cache', () => {
    const error = configErrorOf(() => memoryBackend({ namspace: 'shop' } as MemoryBackendOptions))
    expect(error.setting).toBe('namspace')
    expect(error.message).toBe('namspace: not an option of memoryBackend(); did you mean `namespace`?')
  })

  it('refuses a misspelt limit instead of keeping 10000 entries', () => {
    const error = configErrorOf(() => memoryBackend({ maxkeys: 5 } as MemoryBackendOptions))
    expect(error.setting).toBe('maxkeys')
    expect(error.message).toMatch(/did you mean `maxKeys`\?/)
  })

  it('refuses a settings class with a misspelt getter (defaultTTL) instead of keeping entries forever', () => {
    class TypoSettings {
      get namspace() {
        return 'shop'
      }
      get defaultTTL() {
        return 60
      }
    }
    const error = configErrorOf(() => memoryBackend(new TypoSettings() as never))
    expect(error.message).toMatch(/not an option of memoryBackend\(\); did you mean/)
  })

  it('reads a settings class whose getters are all options', async () => {
    class Settings {
      get defaultTtl() {
        return 60
      }
    }
    const cache = memoryBackend(new Settings())
    await cache.set('x', 1)
    expect((await cache.getEntry('x'))?.expiresAt).toBeGreaterThan(Date.now())
  })

  it('refuses null, a Map and an array: "expected an options object"', () => {
    for (const given of [null, new Map([['defaultTtl', 60]]), [60]])
      expect(configErrorOf(() => memoryBackend(given as never)).message).toMatch(
        /^memoryBackend\(\): expected an options object, got /,
      )
  })

  it('accepts every documented option at once', async () => {
    const all: Required<MemoryBackendOptions> = {
      namespace: 'all',
      defaultTtl: 60,
      logger: false,
      maxKeys: 10,
      maxSize: '1MB',
      sizeOf: () => 1,
      clone: true,
      checkValues: true,
      now: Date.now,
    }
    const cache = memoryBackend(all)
    await cache.set('k', { v: 1 })
    expect(await cache.get('k')).toEqual({ v: 1 })
    await cache.close()
  })
})
