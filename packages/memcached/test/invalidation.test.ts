/**
 * Two processes in miniature (two backends with their own generation cache) on one memcached:
 * once clear() or a memoize invalidation resolves in one, the other never serves what was there
 * before, even when memcached evicted the namespace's generation counter.
 */
import { cached } from '@cache/core'
import { startMemcached } from '@cache/test-servers'
import { afterAll, describe, expect, it } from 'vitest'
import { memcachedBackend } from '../src/index.js'
import { ascii } from './raw.js'

const server = await startMemcached({ spawn: true })
afterAll(() => server.stop())

let n = 0
function twoProcesses() {
  const namespace = `inv${process.pid}x${++n}`
  const db = { version: 'v0' }
  const make = () => {
    const backend = memcachedBackend(server.server, { namespace })
    const row = cached(async (id: number) => `${db.version} ${id}`, { backend, name: 'row', ttl: 60 })
    return { backend, row }
  }
  const a = make()
  const b = make()
  return { namespace, db, a, b, close: () => Promise.all([a.backend.close(), b.backend.close()]) }
}

describe('memcached with default options: invalidations are seen by other processes at once', () => {
  it('clear() of the backend', async () => {
    const { a, b, close } = twoProcesses()
    try {
      await a.backend.set('k', 'old')
      expect(await b.backend.get('k')).toBe('old')
      await a.backend.clear()
      expect(await b.backend.get('k')).toBeUndefined()
      await b.backend.set('k', 'new')
      expect(await a.backend.get('k')).toBe('new')
    } finally {
      await close()
    }
  })

  it('memoize invalidate() after memcached evicted the namespace generation', async () => {
    const { namespace, db, a, b, close } = twoProcesses()
    try {
      expect(await a.row(1)).toBe('v0 1')
      expect(await b.row(1)).toBe('v0 1')
      // Past the 1 s a process used to trust its copy of the generation: b's copy is old, a's
      // is refreshed just before the eviction.
      await new Promise((resolve) => setTimeout(resolve, 1100))
      expect(await a.row(1)).toBe('v0 1')
      // What an eviction does to the counter (deleting it is the deterministic way to get there).
      expect(await ascii(server.port, `delete ${namespace}#g`)).toBe('DELETED\r\n')
      db.version = 'v1'
      await b.row.invalidate(1)
      expect(await a.row(1)).toBe('v1 1')
      expect(await b.row(1)).toBe('v1 1')
    } finally {
      await close()
    }
  })

  it('memoize invalidate() and clear() after the other process cleared the backend', async () => {
    const { db, a, b, close } = twoProcesses()
    try {
      expect(await a.row(1)).toBe('v0 1')
      expect(await b.row(1)).toBe('v0 1')
      await b.backend.clear()
      db.version = 'v1'
      await b.row.invalidate(1)
      expect(await a.row(1)).toBe('v1 1')
      db.version = 'v2'
      await b.backend.clear()
      await b.row.clear()
      expect(await a.row(1)).toBe('v2 1')
    } finally {
      await close()
    }
  })
})
