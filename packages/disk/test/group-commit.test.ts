import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CacheSerializationError } from '@cache/core'
import Database from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import { type DiskBackend, type DiskBackendOptions, diskBackend } from '../src/index.js'

let dir: string
const open: DiskBackend[] = []

function cache(options: DiskBackendOptions = {}): DiskBackend {
  dir ??= mkdtempSync(join(tmpdir(), 'cache-disk-batch-'))
  const backend = diskBackend({ path: dir, pruneInterval: false, ...options })
  open.push(backend)
  return backend
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((backend) => backend.close()))
  if (dir) rmSync(dir, { recursive: true, force: true })
  dir = undefined as unknown as string
})

/** Bytes in the write-ahead log; it only grows until a checkpoint (every 1000 pages by default). */
function walBytes(): number {
  return statSync(join(dir, 'cache.db-wal'), { throwIfNoEntry: false })?.size ?? 0
}

describe('writes issued together (group commit)', () => {
  it('a get issued right after a set, before it resolves, sees the set', async () => {
    const c = cache()
    await c.set('k', 'old')
    const set = c.set('k', 'new')
    const read = c.get('k')
    const entry = c.getEntry('k')
    const has = c.has('k2')
    const many = c.getMany(['k', 'missing'])
    await set
    expect(await read).toBe('new')
    expect((await entry)?.value).toBe('new')
    expect(await has).toBe(false)
    expect(await many).toEqual(['new', undefined])
  })

  it('keeps the order of set, get, delete, get, add issued in one tick', async () => {
    const c = cache()
    const results = await Promise.all([
      c.set('k', 1),
      c.get('k'),
      c.delete('k'),
      c.get('k'),
      c.add('k', 2),
      c.add('k', 3),
      c.get('k'),
      c.set('k', 4),
      c.incr('n'),
      c.delete('missing'),
    ])
    expect(results).toEqual([undefined, 1, true, undefined, true, false, 2, undefined, 1, false])
    expect(await c.get('k')).toBe(4)
  })

  it('a value that cannot be serialized fails its own set only, not the ones issued with it', async () => {
    const c = cache()
    const outcomes = await Promise.allSettled([
      c.set('a', 'A'),
      c.set('bad', { fn: () => 1 }),
      c.set('c', 'C'),
      c.set('bad ttl', 'x', -1),
      c.delete('a'),
      c.set('a', 'A again'),
    ])
    expect(outcomes.map((o) => o.status)).toEqual([
      'fulfilled',
      'rejected',
      'fulfilled',
      'rejected',
      'fulfilled',
      'fulfilled',
    ])
    expect((outcomes[1] as PromiseRejectedResult).reason).toBeInstanceOf(CacheSerializationError)
    expect((outcomes[3] as PromiseRejectedResult).reason).toBeInstanceOf(RangeError)
    expect(await c.getMany(['a', 'bad', 'c', 'bad ttl'])).toEqual(['A again', undefined, 'C', undefined])
  })

  it('a set has committed when it resolves: another connection reads it', async () => {
    const c = cache()
    await Promise.all(Array.from({ length: 50 }, (_, i) => c.set(`k${i}`, i)))
    const other = new Database(join(dir, 'cache.db'), { readonly: true })
    try {
      const count = other.prepare("SELECT count(*) AS n FROM entries WHERE key LIKE 'k%'").get() as {
        n: number
      }
      expect(count.n).toBe(50)
    } finally {
      other.close()
    }
  })

  it('close() with writes pending commits them first', async () => {
    const c = cache()
    const sets = [c.set('a', 1), c.set('b', 2), c.delete('a'), c.set('c', 3)]
    await c.close()
    await Promise.all(sets)
    const reopened = cache()
    expect(await reopened.getMany(['a', 'b', 'c'])).toEqual([undefined, 2, 3])
  })

  it('writes waiting for another connection’s lock all commit, in order, once it commits', async () => {
    const c = cache({ lockTimeout: '2s' })
    const other = new Database(join(dir, 'cache.db'))
    other.prepare('BEGIN IMMEDIATE').run()
    const first = Array.from({ length: 20 }, (_, i) => c.set(`k${i}`, 'first'))
    await new Promise((resolve) => setTimeout(resolve, 20))
    const second = Array.from({ length: 20 }, (_, i) => c.set(`k${i}`, 'second'))
    setTimeout(() => {
      other.prepare('COMMIT').run()
      other.close()
    }, 50)
    await Promise.all([...first, ...second])
    const values = await c.getMany(Array.from({ length: 20 }, (_, i) => `k${i}`))
    expect(values).toEqual(Array(20).fill('second'))
  })

  it('evicts to maxSize once a batch commits', async () => {
    const c = cache({ maxSize: 5_000 })
    await Promise.all(Array.from({ length: 100 }, (_, i) => c.set(`k${i}`, 'x'.repeat(200))))
    expect((await c.usage()).bytes).toBeLessThanOrEqual(5_000)
    expect(await c.get('k99')).toBe('x'.repeat(200))
  })

  it('sets issued together share one commit: half the log bytes of the same sets awaited one by one', async () => {
    const c = cache()
    await c.set('warm-up', 0)
    const value = 'v'.repeat(300)
    const before = walBytes()
    for (let i = 0; i < 40; i++) await c.set(`one:${i}`, value)
    const oneByOne = walBytes() - before
    const start = walBytes()
    await Promise.all(Array.from({ length: 40 }, (_, i) => c.set(`together:${i}`, value)))
    const together = walBytes() - start
    expect(oneByOne).toBeGreaterThan(0)
    expect(together).toBeLessThan(oneByOne / 2)
  })
})

describe('access times of rewritten entries', () => {
  it('a rewrite records the access time once the stored one is older than accessResolution: LRU eviction still spares it', async () => {
    let now = 1_700_000_000_000
    const c = cache({ now: () => now, maxSize: 4_500, accessResolution: '1m' })
    for (const key of ['a', 'b', 'c', 'd']) {
      await c.set(key, 'x'.repeat(998))
      now += 120_000
    }
    await c.set('a', 'y'.repeat(998)) // a's access time is 8 minutes old: recorded again
    now += 120_000
    await c.set('e', 'x'.repeat(998)) // over 4 500 bytes: the least recently used goes
    expect(await c.getMany(['a', 'b', 'c', 'd', 'e'])).toEqual([
      'y'.repeat(998),
      undefined,
      'x'.repeat(998),
      'x'.repeat(998),
      'x'.repeat(998),
    ])
  })

  it('a rewrite within accessResolution leaves the access-time index alone: fewer log bytes', async () => {
    const bytesOfRewrites = async (accessResolution: number) => {
      const c = cache({ accessResolution, path: mkdtempSync(join(tmpdir(), 'cache-disk-rewrite-')) })
      const keys = Array.from({ length: 300 }, (_, i) => `k${i}`)
      await Promise.all(keys.map((key) => c.set(key, 'v'.repeat(100))))
      const wal = join(c.path, 'cache.db-wal')
      const before = statSync(wal).size
      for (let i = 0; i < 30; i++) await c.set(keys[(i * 97) % keys.length]!, 'w'.repeat(100))
      const written = statSync(wal).size - before
      await c.close()
      rmSync(c.path, { recursive: true, force: true })
      return written
    }
    const everyWrite = await bytesOfRewrites(0)
    const withinResolution = await bytesOfRewrites(60)
    expect(withinResolution).toBeLessThan(everyWrite * 0.8)
  })
})

describe('getMany', () => {
  it('returns each key’s value in order: hits, misses, expired, duplicates, values in files, odd keys', async () => {
    let now = 1_700_000_000_000
    const c = cache({ inlineThreshold: 64, now: () => now })
    const odd = ['k\ud800', 'k\ud801', 'k\u0000z', '', 'ü']
    await c.set('inline', { a: 1 })
    await c.set('file', 'f'.repeat(500))
    await c.set('short', 'gone soon', 1)
    await c.set('nothing', null)
    for (const key of odd) await c.set(key, `value of ${JSON.stringify(key)}`)
    now += 2_000
    const keys = ['inline', 'missing', 'file', 'short', 'inline', 'nothing', ...odd]
    const before = { ...c.stats }
    expect(await c.getMany(keys)).toEqual([
      { a: 1 },
      undefined,
      'f'.repeat(500),
      undefined,
      { a: 1 },
      null,
      ...odd.map((key) => `value of ${JSON.stringify(key)}`),
    ])
    expect(c.stats.hits - before.hits).toBe(9)
    expect(c.stats.misses - before.misses).toBe(2)
    const many = Array.from({ length: 1_200 }, (_, i) => `m${i}`)
    await Promise.all(many.map((key, i) => (i % 3 === 0 ? c.set(key, i) : undefined)))
    expect(await c.getMany(many)).toEqual(many.map((_, i) => (i % 3 === 0 ? i : undefined)))
    expect(await c.getMany([])).toEqual([])
  })

  it('rejects a key that is not a string, naming the problem', async () => {
    const c = cache()
    await expect(c.getMany(['ok', 42 as unknown as string])).rejects.toThrow(/cache keys are strings/)
  })
})
