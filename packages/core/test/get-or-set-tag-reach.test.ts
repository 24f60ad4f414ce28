import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { type CacheBackend, configureCache, getOrSet, invalidateTags, resetCache } from '../src/index.js'
import { diskBackend, memoryBackend } from './installed-backends.js'

/*
 * `invalidateTags(tags)` without `{ backend }` reaches the default cache and every backend this
 * process stored tagged entries in: a backend used only through `getOrSet(backend, key, fn, { tags })`
 * is one of them, as one given to `cached()` is.
 */
const dirs: string[] = []
afterEach(() => resetCache())
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

function disk(): CacheBackend {
  const path = mkdtempSync(join(tmpdir(), 'core-getorset-tags-'))
  dirs.push(path)
  return diskBackend({ path })
}

const ownBackends: [string, () => CacheBackend | Parameters<typeof getOrSet>[0]][] = [
  ['memory', () => memoryBackend()],
  ['disk', disk],
  [
    'a plain object with get/set/delete',
    () => {
      const rows = new Map<string, unknown>()
      return {
        get: async (key: string) => rows.get(key),
        set: async (key: string, value: unknown) => void rows.set(key, value),
        delete: async (key: string) => rows.delete(key),
      }
    },
  ],
]

describe.each(ownBackends)('getOrSet on a backend of its own (%s)', (_, make) => {
  it("serves no value tagged user:42 once invalidateTags(['user:42']) resolved, without { backend }", async () => {
    configureCache(memoryBackend())
    const users = make()
    let plan = 'plan-v1'
    const load = () =>
      getOrSet(users, 'user:42', async () => ({ id: 42, plan }), { ttl: '10m', tags: ['user:42'] })
    expect((await load()).plan).toBe('plan-v1')
    plan = 'plan-v2'
    expect((await load()).plan).toBe('plan-v1') // a hit until invalidated
    await invalidateTags(['user:42'])
    expect((await load()).plan).toBe('plan-v2')
    if ('close' in users && typeof users.close === 'function') await users.close()
  })
})
