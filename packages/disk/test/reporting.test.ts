import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CacheLogger } from '@cache/core'
import { afterEach, describe, expect, it } from 'vitest'
import { diskBackend } from '../src/index.js'

let dir: string
afterEach(() => rmSync(dir, { recursive: true, force: true }))

describe('a damaged database', () => {
  it('is rebuilt with a warning in the log that says where the damaged file went', async () => {
    dir = mkdtempSync(join(tmpdir(), 'cache-disk-log-'))
    writeFileSync(join(dir, 'cache.db'), Buffer.alloc(8192, 'garbage! '))
    const lines: string[] = []
    const logger: CacheLogger = {
      warn: (message) => void lines.push(`warn ${message}`),
      error: (message) => void lines.push(`error ${message}`),
    }
    const cache = diskBackend({ path: dir, logger })
    try {
      await cache.set('k', 'works')
      expect(await cache.get('k')).toBe('works')
      await new Promise((resolve) => setImmediate(resolve)) // reported on the turn after opening
      expect(lines).toEqual([
        `warn [@cache] disk: ${join(dir, 'cache.db')} was damaged (SQLITE_NOTADB); moved it to ${cache.recovered} and started an empty cache`,
      ])
    } finally {
      await cache.close()
    }
  })
})
