import { CacheConfigError, setCacheLogger } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { recorder } from '@cache/test-servers'
import { afterEach, describe, expect, it } from 'vitest'
import { multiLevel, type RedisBus, redisBus } from '../src/index.js'

/**
 * The option vocabulary shared by every @cache package: a duration is a Duration (1 is one second,
 * `'250ms'` works), a bad option throws CacheConfigError naming it, and the bus's old
 * `publishTimeoutMs` still works for one minor version, with one warning naming `publishTimeout`.
 * The bus points at a port nothing listens on; it is closed at once.
 */

const URL = 'redis://127.0.0.1:1'
const buses: RedisBus[] = []
function bus(options: Parameters<typeof redisBus>[1]): RedisBus {
  const b = redisBus(URL, { logger: false, ...options })
  buses.push(b)
  return b
}
const inside = (b: RedisBus) => b as unknown as { publishTimeoutMs: number; heartbeatMs: number }
afterEach(async () => {
  setCacheLogger(undefined)
  await Promise.all(buses.splice(0).map((b) => b.close()))
})

describe('multi-level options speak the one vocabulary', () => {
  it.each(['publishTimeout', 'heartbeat'] as const)(
    'bus %s: 1 is one second and "250ms" is 250 ms',
    (option) => {
      const field = option === 'heartbeat' ? 'heartbeatMs' : 'publishTimeoutMs'
      expect(inside(bus({ [option]: 1 }))[field]).toBe(1000)
      expect(inside(bus({ [option]: '250ms' }))[field]).toBe(250)
    },
  )

  it('breaker.openFor: 1 is one second and "250ms" is 250 ms', () => {
    const openFor = (value: number | string) =>
      (
        multiLevel({ levels: [memoryBackend()], breaker: { openFor: value } }) as unknown as {
          levels: { breaker: { openMs: number } }[]
        }
      ).levels[0]!.breaker.openMs
    expect(openFor(1)).toBe(1000)
    expect(openFor('250ms')).toBe(250)
  })

  it.each([
    ['publishTimeout', () => bus({ publishTimeout: 'soon' })],
    ['heartbeat', () => bus({ heartbeat: -1 })],
    ['breaker.openFor', () => multiLevel({ levels: [memoryBackend()], breaker: { openFor: 'soon' } })],
    [
      'breaker.failureThreshold',
      () => multiLevel({ levels: [memoryBackend()], breaker: { failureThreshold: 0 } }),
    ],
    ['stateTtl', () => multiLevel({ levels: [memoryBackend()], stateTtl: 'soon' })],
    ['maxPendingKeys', () => multiLevel({ levels: [memoryBackend()], maxPendingKeys: -1 })],
  ])('%s: a bad value throws CacheConfigError naming it', (option, build) => {
    expect(build).toThrow(CacheConfigError)
    expect(build).toThrow(expect.objectContaining({ setting: option }) as never)
  })

  it('publishTimeoutMs still works (ms), with one warning naming publishTimeout', () => {
    const logger = recorder({ levels: false })
    setCacheLogger(logger)
    expect(inside(bus({ publishTimeoutMs: 250 })).publishTimeoutMs).toBe(250)
    expect(inside(bus({ publishTimeoutMs: 250 })).publishTimeoutMs).toBe(250)
    expect(logger.lines).toHaveLength(1)
    expect(logger.lines[0]).toContain('publishTimeoutMs is deprecated: use publishTimeout')
  })
})
