import { configErrorOf } from '@cache/testing'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type DiskBackendOptions, diskBackend } from '../src/index.js'

const dirs: string[] = []
/** A fresh directory that does not exist yet: the backend would create it. */
function unmade(): string {
  const parent = mkdtempSync(join(tmpdir(), 'cache-disk-names-'))
  dirs.push(parent)
  return join(parent, 'cache')
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

describe('diskBackend option names', () => {
  it('refuses a misspelt namespace before the directory or database is made', () => {
    const path = unmade()
    const error = configErrorOf(() => diskBackend({ path, namspace: 'shop' } as DiskBackendOptions))
    expect(error.setting).toBe('namspace')
    expect(error.message).toBe('namspace: not an option of diskBackend(); did you mean `namespace`?')
    expect(existsSync(path)).toBe(false)
  })

  it('refuses a misspelt size limit instead of filling the disk up to 10 GB', () => {
    const path = unmade()
    const error = configErrorOf(() => diskBackend({ path, maxsize: '1MB' } as DiskBackendOptions))
    expect(error.setting).toBe('maxsize')
    expect(error.message).toMatch(/did you mean `maxSize`\?/)
    expect(existsSync(path)).toBe(false)
  })

  it('accepts every documented option at once (the deprecated names included)', async () => {
    const path = unmade()
    const all: Required<DiskBackendOptions> = {
      namespace: 'all',
      defaultTtl: 60,
      logger: false,
      serializer: 'json',
      compressThreshold: false,
      path,
      maxSize: '10MB',
      inlineThreshold: '32KB',
      // The current names given as undefined and the deprecated ones with values: both kinds of
      // name are there, and the backend takes the deprecated values (giving both is refused).
      busyTimeout: undefined as never,
      lockTimeout: undefined as never,
      accessResolution: undefined as never,
      pruneInterval: undefined as never,
      busyTimeoutMs: 10,
      lockTimeoutMs: 2000,
      accessResolutionMs: 60_000,
      pruneIntervalMs: false,
      maxAttempts: 5,
      now: Date.now,
    }
    const cache = diskBackend(all)
    await cache.set('k', { v: 1 })
    expect(await cache.get('k')).toEqual({ v: 1 })
    await cache.close()
    expect(readdirSync(path).length).toBeGreaterThan(0)
  })
})
