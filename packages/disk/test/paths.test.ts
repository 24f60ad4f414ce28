import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { defaultCachePath } from '../src/index.js'

const root = mkdtempSync(join(tmpdir(), 'cache-disk-paths-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))

describe('defaultCachePath', () => {
  it('uses CACHE_DISK_PATH when set', () => {
    expect(defaultCachePath({ CACHE_DISK_PATH: '/var/cache/app' }, root)).toBe('/var/cache/app')
  })

  it('names the directory after the nearest package.json, scoped names made safe', () => {
    const app = join(root, 'app')
    mkdirSync(join(app, 'src', 'deep'), { recursive: true })
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: '@acme/api' }))
    expect(defaultCachePath({}, join(app, 'src', 'deep'))).toBe(join(homedir(), '.cache', 'acme-api'))
    expect(defaultCachePath({ XDG_CACHE_HOME: '/x/cache' }, app)).toBe('/x/cache/acme-api')
  })

  it('skips a package.json without a usable name and falls back to "cache"', () => {
    const bare = join(root, 'bare')
    mkdirSync(bare, { recursive: true })
    writeFileSync(join(bare, 'package.json'), '{ not json')
    const result = defaultCachePath({ XDG_CACHE_HOME: '/x' }, bare)
    // The tmp directory has no package.json above it on this machine, so the fallback applies.
    expect(result === '/x/cache' || !result.endsWith('/bare')).toBe(true)
    expect(defaultCachePath({ XDG_CACHE_HOME: '/x' }, '/')).toBe('/x/cache')
  })
})
