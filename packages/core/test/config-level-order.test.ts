import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import {
  CacheConfigError,
  configFromEnv,
  configureCache,
  createBackendFromConfig,
  getBackend,
  resetCache,
} from '../src/index.js'
import { installedPackages as loader } from './installed-backends.js'

/*
 * In a list of levels the last one is the shared level: invalidation state and counters live
 * there. A per-process memory level in that place shares nothing between processes, so a list
 * that puts it there is refused where it is read, never built.
 */
const diskPath = mkdtempSync(join(tmpdir(), 'core-level-order-'))
afterEach(() => resetCache())
afterAll(() => rmSync(diskPath, { recursive: true, force: true }))

const inProcessLast = [
  'redis,memory',
  'disk,memory',
  'memcached,memory-size',
  'memory,memory-size',
  'redis,memory,disk',
]
const emptyNames = ['memory,,redis', 'memory,', ',memory', 'memory, ,disk']

describe('a backend list whose shared level is in-process', () => {
  it.each(inProcessLast)('CACHE_BACKEND=%s is refused, naming the order that works', (list) => {
    expect(() => configFromEnv({ CACHE_BACKEND: list })).toThrow(CacheConfigError)
    expect(() => configFromEnv({ CACHE_BACKEND: list })).toThrow(/^CACHE_BACKEND: .*memory.*first/)
  })

  it('configureCache("disk,memory") with the real packages builds nothing and says to write memory,disk', () => {
    const attempt = () => configureCache({ backend: 'disk,memory', diskPath, loader })
    expect(attempt).toThrow(CacheConfigError)
    expect(attempt).toThrow('write "memory,disk"')
    expect(() => configureCache('redis,memory')).toThrow(/^configureCache: .*memory.*first/)
  })

  it('createBackendFromConfig refuses a list given as an array alike', () => {
    const config = { ...configFromEnv({}), backends: ['disk', 'memory'] as ('disk' | 'memory')[], diskPath }
    expect(() => createBackendFromConfig(config, loader)).toThrow(/^CACHE_BACKEND: .*memory.*first/)
  })

  it('memory first, shared last, is built: memory,disk on the real packages', async () => {
    const chain = configureCache({ backend: 'memory,disk', diskPath, loader })
    expect(getBackend()).toBe(chain)
    await chain.set('k', 'v', 60)
    expect(await chain.get('k')).toBe('v')
  })
})

describe("a backend list whose shared level is this machine's disk behind a server", () => {
  // Disk is seen by this machine's processes only: last behind redis or memcached, which other
  // machines share, two machines would count and invalidate apart. Before: accepted.
  it.each(['redis,disk', 'memory,redis,disk', 'memcached,disk', 'memory,memcached,disk'])(
    'CACHE_BACKEND=%s is refused, naming the order that works',
    (list) => {
      expect(() => configFromEnv({ CACHE_BACKEND: list })).toThrow(CacheConfigError)
      expect(() => configFromEnv({ CACHE_BACKEND: list })).toThrow(
        /^CACHE_BACKEND: .*"disk" is seen by this machine's processes only.*Write "(memory,)?disk,(redis|memcached)"/,
      )
    },
  )

  it.each([
    ['redis,memory,disk', 'memory,disk,redis'],
    ['redis,disk,memory', 'memory,disk,redis'],
    ['memcached,memory,disk', 'memory,disk,memcached'],
  ])('CACHE_BACKEND=%s names an order that is read: %s', (list, working) => {
    // Before: "memory,redis,disk", itself refused.
    expect(() => configFromEnv({ CACHE_BACKEND: list })).toThrow(`write "${working}"`)
    expect(configFromEnv({ CACHE_BACKEND: working }).backends).toEqual(working.split(','))
  })

  it.each(['memory,disk,redis', 'disk,redis', 'disk,memcached', 'memory,disk'])(
    'CACHE_BACKEND=%s is read',
    (list) => {
      expect(configFromEnv({ CACHE_BACKEND: list }).backends).toEqual(list.split(','))
    },
  )
})

describe('an empty name in a backend list', () => {
  it.each(emptyNames)('CACHE_BACKEND=%j is refused, not read as the names around it', (list) => {
    expect(() => configFromEnv({ CACHE_BACKEND: list })).toThrow(CacheConfigError)
    expect(() => configFromEnv({ CACHE_BACKEND: list })).toThrow(/^CACHE_BACKEND: .*empty/)
    expect(() => configureCache({ backend: list, diskPath, loader })).toThrow(/^backend: .*empty/)
  })
})
