import {
  closeSync,
  openSync,
  writeSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import {
  CacheClosedError,
  configFromEnv,
  createBackendFromConfig,
  CacheConfigError,
  type CacheEvent,
  CacheTimeoutError,
  CacheUnavailableError,
  CacheValueTooLargeError,
} from '@cache/core'
import Database from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import * as disk from '../src/index.js'
import { DiskBackend, type DiskBackendOptions, diskBackend } from '../src/index.js'

let dir: string
const open: DiskBackend[] = []

function cache(options: DiskBackendOptions = {}): DiskBackend {
  dir ??= mkdtempSync(join(tmpdir(), 'cache-disk-'))
  const backend = diskBackend({ path: dir, pruneInterval: false, ...options })
  open.push(backend)
  return backend
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((backend) => backend.close()))
  if (dir) rmSync(dir, { recursive: true, force: true })
  dir = undefined as unknown as string
})

/** Every file under `root`, as paths relative to it. */
function walk(root: string): string[] {
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(root, join(entry.parentPath, entry.name)))
    .sort()
}

/** A clock the test moves by hand. */
function clock(start = 1_700_000_000_000) {
  const state = { now: start }
  return { now: () => state.now, advance: (ms: number) => (state.now += ms) }
}

describe('keys never become paths', () => {
  it('stores hostile keys, inline and in files, without writing outside the directory', async () => {
    const outside = mkdtempSync(join(tmpdir(), 'cache-disk-outside-'))
    try {
      const c = cache({ inlineThreshold: 4, path: join(outside, 'cache') })
      const keys = [
        '../../etc/passwd',
        '../outside',
        '/abs/path',
        'a/b',
        'con',
        'NUL',
        'x'.repeat(1024),
        'a',
        'a:b',
      ]
      for (const key of keys) await c.set(key, `value of ${key}`)
      for (const key of keys) expect(await c.get(key)).toBe(`value of ${key}`)
      expect(readdirSync(outside)).toEqual(['cache'])
      for (const file of walk(join(outside, 'cache'))) {
        expect(file).toMatch(/^(cache\.db(-wal|-shm)?|values\/[0-9a-f]{2}\/[0-9a-f]{30}\.val)$/)
      }
      expect(walk(join(outside, 'cache')).filter((f) => f.startsWith('values/'))).toHaveLength(keys.length)
    } finally {
      rmSync(outside, { recursive: true, force: true })
    }
  })
})

describe('privacy', () => {
  it('creates the directory 0700 and the database, WAL and value files 0600', async () => {
    const root = mkdtempSync(join(tmpdir(), 'cache-disk-modes-'))
    try {
      const path = join(root, 'nested', 'cache')
      const c = cache({ path, inlineThreshold: 16 })
      await c.set('small', 1)
      await c.set('large', 'x'.repeat(100))
      const mode = (file: string) => statSync(join(path, file)).mode & 0o777
      expect(mode('.')).toBe(0o700)
      expect(mode('values')).toBe(0o700)
      expect(mode('tmp')).toBe(0o700)
      expect(mode('cache.db')).toBe(0o600)
      expect(mode('cache.db-wal')).toBe(0o600)
      const [valueFile] = walk(path).filter((f) => f.startsWith('values/'))
      expect(mode(valueFile!)).toBe(0o600)
      expect(mode(join(valueFile!, '..'))).toBe(0o700)
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })
})

describe('a damaged database', () => {
  it('is moved aside and rebuilt empty when the file is garbage, with an error event', async () => {
    dir = mkdtempSync(join(tmpdir(), 'cache-disk-corrupt-'))
    writeFileSync(join(dir, 'cache.db'), Buffer.alloc(8192, 'garbage! '))
    const events: CacheEvent[] = []
    const c = cache()
    c.on('error', (event) => events.push(event))
    await new Promise((resolve) => setImmediate(resolve))
    expect(events).toHaveLength(1)
    expect(String((events[0]!.error as Error).message)).toMatch(
      /damaged \(SQLITE_NOTADB\); moved it to .*corrupt/,
    )
    expect(c.stats.errors).toBe(1)
    expect(c.recovered).toMatch(/cache\.db\.corrupt-\d+$/)
    expect(readdirSync(dir)).toContain(c.recovered!.split('/').pop())
    expect(await c.get('anything')).toBeUndefined()
    await c.set('k', 'works')
    expect(await c.get('k')).toBe('works')
  })

  it('is rebuilt when the file was truncated', async () => {
    const first = cache()
    for (let i = 0; i < 1000; i++) await first.set(`k${i}`, 'v'.repeat(300))
    await first.close()
    const file = join(dir, 'cache.db')
    truncateSync(file, Math.floor(statSync(file).size / 3))
    const c = cache()
    // Either SQLite still reads what survived, or the file was moved aside: never a crash.
    const value = await c.get('k1')
    expect(value === undefined || value === 'v'.repeat(300)).toBe(true)
    await c.set('after', 1)
    expect(await c.get('after')).toBe(1)
  })
})

describe('a database damaged while in use', () => {
  // Before: every later operation failed "was removed or replaced, and reopening it failed: file
  // is not a database" for as long as the process ran; the file was never moved aside.
  it('replaced (renamed onto) by a file that is not SQLite: moved aside, and the next write succeeds', async () => {
    const c = cache({ logger: false })
    const events: CacheEvent[] = []
    c.on('error', (event) => events.push(event))
    await c.set('before', 1)
    writeFileSync(join(dir, 'junk'), 'this is not a database\n'.repeat(400))
    renameSync(join(dir, 'junk'), join(dir, 'cache.db'))
    await c.set('after', 2)
    expect(await c.get('after')).toBe(2)
    expect(c.recovered).toMatch(/cache\.db\.corrupt-\d+$/)
    expect(readFileSync(c.recovered!, 'utf8')).toMatch(/^this is not a database/)
    expect(events.map((e) => String((e.error as Error).message))).toContainEqual(
      expect.stringMatching(/damaged \(SQLITE_NOTADB\); moved it to .*corrupt/),
    )
    const other = cache({ logger: false })
    expect(await other.get('after')).toBe(2)
  })

  it('is rebuilt when an operation meets a corrupt page, and the operation still answers', async () => {
    const first = cache()
    for (let i = 0; i < 2000; i++) await first.set(`k${i}`, 'v'.repeat(200))
    await first.close()
    const file = join(dir, 'cache.db')
    const fd = openSync(file, 'r+')
    const size = statSync(file).size
    // Garbage over every other page past the schema: opening still works, lookups meet the damage.
    for (let offset = 4096 * 3; offset < size; offset += 4096 * 2)
      writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, offset)
    closeSync(fd)
    const c = cache()
    const events: CacheEvent[] = []
    c.on('error', (event) => events.push(event))
    const values = await c.getMany(Array.from({ length: 20 }, (_, i) => `k${i * 100}`))
    expect(values.some((v) => v === undefined)).toBe(true)
    expect(events.map((e) => e.operation)).toEqual(['get'])
    expect(c.recovered).toMatch(/cache\.db\.corrupt-\d+$/)
    await c.set('after', 1)
    expect(await c.get('after')).toBe(1)
  })
})

describe('values read back', () => {
  it('reads what another backend on the directory compressed, inline values, counters and any text, through get, getEntry and getMany', async () => {
    const writer = cache({ compressThreshold: 64 })
    const reader = cache()
    const long = { text: 'abc'.repeat(1000), at: new Date(0) }
    const odd = ['ü', '😀', 'lone \ud800', '\u0000', 'x\u0000y', -0, 10n]
    await writer.set('long', long)
    await writer.set('odd', odd)
    await writer.incr('count', 7)
    await writer.set('nul', '\u0000 first')
    expect(await reader.get('long')).toStrictEqual(long)
    expect((await reader.getEntry('long'))?.value).toStrictEqual(long)
    expect(await reader.get('odd')).toStrictEqual(odd)
    expect(await reader.get('count')).toBe(7)
    expect(await reader.get('nul')).toBe('\u0000 first')
    expect(await reader.getMany(['long', 'odd', 'missing', 'count', 'nul'])).toStrictEqual([
      long,
      odd,
      undefined,
      7,
      '\u0000 first',
    ])
  })
})

describe('TTL', () => {
  it('hides expired entries, reports expiresAt, and prune() deletes them', async () => {
    const time = clock()
    const c = cache({ now: time.now, inlineThreshold: 64 })
    await c.set('short', 'a', 10)
    await c.set('short-large', 'b'.repeat(200), 10)
    await c.set('long', 'c', '1h')
    expect(await c.getEntry('short')).toEqual({ value: 'a', expiresAt: time.now() + 10_000 })
    time.advance(10_000)
    expect(await c.get('short')).toBeUndefined()
    expect(await c.get('short-large')).toBeUndefined()
    expect(await c.has('short')).toBe(false)
    expect(await c.get('long')).toBe('c')
    expect((await c.usage()).entries).toBe(3)
    expect(await c.prune()).toMatchObject({ expired: 2 })
    expect((await c.usage()).entries).toBe(1)
    expect(walk(join(dir, 'values'))).toEqual([])
  })

  it('uses defaultTtl when set() has none', async () => {
    const time = clock()
    const c = cache({ now: time.now, defaultTtl: '1m' })
    await c.set('k', 1)
    expect((await c.getEntry('k'))!.expiresAt).toBe(time.now() + 60_000)
    time.advance(60_000)
    expect(await c.get('k')).toBeUndefined()
  })

  it('incr() keeps the expiry of a live counter and restarts an expired one', async () => {
    const time = clock()
    const c = cache({ now: time.now })
    expect(await c.incr('n', 1, 10)).toBe(1)
    time.advance(5_000)
    expect(await c.incr('n', 1, 3600)).toBe(2)
    expect((await c.getEntry('n'))!.expiresAt).toBe(time.now() + 5_000)
    time.advance(5_000)
    expect(await c.incr('n', 1, 3600)).toBe(1)
  })
})

describe('size limit', () => {
  it('evicts the least recently used entries to stay under maxSize, keeping recently read ones', async () => {
    const time = clock()
    const c = cache({ now: time.now, maxSize: 10_000, accessResolution: 0, inlineThreshold: 1500 })
    // Each entry is 1002 or 2002 bytes (JSON text plus key): six of them fit in 10 000.
    for (let i = 0; i < 6; i++) {
      await c.set(`k${i}`, 'x'.repeat(998 + (i % 2) * 1000)) // alternately inline and in a file
      time.advance(1000)
    }
    expect((await c.usage()).entries).toBe(6)
    expect(await c.get('k0')).toBeDefined() // read: now the most recently used
    time.advance(1000)
    for (let i = 6; i < 12; i++) {
      await c.set(`k${i}`, 'x'.repeat(998))
      time.advance(1000)
    }
    const { bytes } = await c.usage()
    expect(bytes).toBeLessThanOrEqual(10_000)
    expect(await c.get('k0')).toBeDefined()
    expect(await c.get('k1')).toBeUndefined()
    expect(await c.get('k11')).toBeDefined()
    // Evicted values' files are gone too.
    const live = await c.getMany(['k1', 'k3', 'k5'])
    expect(walk(join(dir, 'values'))).toHaveLength(live.filter((v) => v !== undefined).length)
  })

  it('evicts when a rewrite makes an entry larger and the total passes maxSize', async () => {
    const time = clock()
    const c = cache({ now: time.now, maxSize: 5_000 })
    for (const key of ['a', 'b', 'c', 'd']) {
      await c.set(key, 'x'.repeat(998)) // 1 001 bytes each
      time.advance(1000)
    }
    await c.set('d', 'x'.repeat(998)) // same size: nothing to evict
    expect((await c.usage()).entries).toBe(4)
    await c.set('d', 'y'.repeat(1_998)) // 2 001 bytes: 5 004 in all, over the limit
    expect(await c.getMany(['a', 'b', 'c', 'd'])).toEqual([
      undefined,
      'x'.repeat(998),
      'x'.repeat(998),
      'y'.repeat(1_998),
    ])
    expect((await c.usage()).bytes).toBeLessThanOrEqual(5_000)
  })

  it('an incremented counter counts as recently used: eviction takes an older entry', async () => {
    const time = clock()
    const c = cache({ now: time.now, maxSize: 3_000, accessResolution: 0 })
    await c.incr('hits')
    time.advance(1000)
    await c.set('a', 'x'.repeat(998))
    time.advance(1000)
    await c.incr('hits')
    time.advance(1000)
    await c.set('b', 'x'.repeat(998))
    time.advance(1000)
    await c.set('c', 'x'.repeat(998)) // 3 008 bytes, over 3 000: a, the least recently used, goes
    expect(await c.getMany(['hits', 'a', 'b', 'c'])).toEqual([2, undefined, 'x'.repeat(998), 'x'.repeat(998)])
  })

  it('a read recorded by another connection to the directory spares that entry from eviction', async () => {
    const time = clock()
    const writer = cache({ now: time.now, maxSize: 3_100, accessResolution: 0 })
    for (const key of ['a', 'b', 'c']) {
      await writer.set(key, 'x'.repeat(998))
      time.advance(1000)
    }
    const reader = diskBackend({ path: dir, now: time.now, accessResolution: 0, pruneInterval: false })
    expect(await reader.get('a')).toBe('x'.repeat(998))
    await reader.close() // writes the access time
    time.advance(1000)
    await writer.set('d', 'x'.repeat(998))
    expect(await writer.getMany(['a', 'b', 'c', 'd'])).toEqual([
      'x'.repeat(998),
      undefined,
      'x'.repeat(998),
      'x'.repeat(998),
    ])
  })

  it('refuses a value larger than maxSize with CacheValueTooLargeError', async () => {
    const c = cache({ maxSize: '1KB' })
    await expect(c.set('big', 'x'.repeat(2000))).rejects.toBeInstanceOf(CacheValueTooLargeError)
    expect(await c.has('big')).toBe(false)
  })

  it('counts every namespace of the directory in one byte total', async () => {
    const a = cache({ namespace: 'a' })
    const b = cache({ namespace: 'b' })
    await a.set('k', 'x'.repeat(100))
    await b.set('k', 'x'.repeat(100))
    expect(await a.usage()).toEqual(await b.usage())
    expect((await a.usage()).entries).toBe(2)
    await a.clear()
    expect(await b.get('k')).toBe('x'.repeat(100))
    expect((await b.usage()).entries).toBe(1)
  })
})

describe('contention and failures', () => {
  it('atomicUpdate() retries fn on the newer value when another connection wrote in between', async () => {
    const a = cache()
    const b = cache()
    await a.set('n', 1)
    const seen: (number | undefined)[] = []
    const result = await a.atomicUpdate<number>('n', async (current) => {
      seen.push(current)
      if (seen.length === 1) await b.set('n', 10) // a writer in another connection wins the race
      return (current ?? 0) + 1
    })
    expect(seen).toEqual([1, 10])
    expect(result).toBe(11)
    expect(await b.get('n')).toBe(11)
  })

  it('atomicUpdate() gives up with CacheConflictError after maxAttempts lost races', async () => {
    const a = cache({ maxAttempts: 3 })
    const b = cache()
    let calls = 0
    const update = a.atomicUpdate<number>('n', async (current) => {
      await b.set('n', ++calls * 100)
      return (current ?? 0) + 1
    })
    await expect(update).rejects.toMatchObject({ code: 'CACHE_CONFLICT' })
    expect(calls).toBe(3)
    expect(await a.get('n')).toBe(300)
  })

  it('waits for a lock held by another connection without blocking the event loop, then fails with CacheTimeoutError', async () => {
    const c = cache({ lockTimeout: '200ms' })
    await c.set('k', 'before')
    const other = new Database(join(dir, 'cache.db'))
    other.prepare('BEGIN IMMEDIATE').run()
    let ticks = 0
    const ticker = setInterval(() => ticks++, 5)
    const errors: CacheEvent[] = []
    c.on('error', (event) => errors.push(event))
    try {
      const error = await c.set('k', 'during').catch((e: unknown) => e)
      expect(error).toBeInstanceOf(CacheTimeoutError)
      expect((error as Error).message).toMatch(/disk: set timed out after 200 ms/)
      expect(ticks).toBeGreaterThan(0) // timers ran while the write waited
      expect(errors).toHaveLength(1)
      expect(await c.get('k')).toBe('before') // reads are not blocked by a writer (WAL)
    } finally {
      clearInterval(ticker)
      other.prepare('ROLLBACK').run()
      other.close()
    }
    await c.set('k', 'after')
    expect(await c.get('k')).toBe('after')
  })

  it('a write waiting for the lock succeeds once the other connection commits', async () => {
    const c = cache({ lockTimeout: '2s' })
    const other = new Database(join(dir, 'cache.db'))
    other.prepare('BEGIN IMMEDIATE').run()
    const pending = c.incr('n')
    setTimeout(() => {
      other.prepare('COMMIT').run()
      other.close()
    }, 50)
    expect(await pending).toBe(1)
  })

  it("counts a set's TTL from the call, not from the commit that waited for another connection's lock", async () => {
    const c = cache({ lockTimeout: '2s' })
    const other = new Database(join(dir, 'cache.db'))
    other.prepare('BEGIN IMMEDIATE').run()
    const pending = c.set('quote', 'price at 10:00', 1)
    // Read after the call, which reads the clock as it starts (before it, a busy machine's
    // scheduler can pass a few ms between the two lines).
    const latest = Date.now() + 1000
    setTimeout(() => {
      other.prepare('COMMIT').run()
      other.close()
    }, 300)
    await pending
    // Before, the expiry was the commit's clock + 1 s: 300 ms later than the caller asked for.
    const entry = await c.getEntry<string>('quote')
    expect(entry?.value).toBe('price at 10:00')
    expect(entry!.expiresAt).toBeLessThanOrEqual(latest + 1)
  })

  it("counts a new counter's TTL from the incr call, not from the commit that waited for another connection's lock", async () => {
    const c = cache({ lockTimeout: '2s' })
    await c.set('warm', 1)
    const other = new Database(join(dir, 'cache.db'))
    other.prepare('BEGIN IMMEDIATE').run()
    const pending = c.incr('requests:minute', 1, 1)
    const latest = Date.now() + 1000
    setTimeout(() => {
      other.prepare('COMMIT').run()
      other.close()
    }, 300)
    expect(await pending).toBe(1)
    // Before, the window was the commit's clock + 1 s: a rate limit stretched by 300 ms.
    const entry = await c.getEntry<number>('requests:minute')
    expect(entry?.value).toBe(1)
    expect(entry!.expiresAt).toBeLessThanOrEqual(latest + 1)
  })

  it('treats an entry whose value file vanished as a miss', async () => {
    const c = cache({ inlineThreshold: 8 })
    await c.set('k', 'a value in a file')
    for (const file of walk(join(dir, 'values'))) unlinkSync(join(dir, 'values', file))
    expect(await c.get('k')).toBeUndefined()
    expect(await c.has('k')).toBe(false)
  })

  it('turns a value file that cannot be written into a counted CacheUnavailableError', async () => {
    const c = cache({ inlineThreshold: 8 })
    // A file where the temp directory should be: writes fail even for root, who ignores modes.
    rmSync(join(dir, 'tmp'), { recursive: true })
    writeFileSync(join(dir, 'tmp'), '')
    const error = await c.set('k', 'a value in a file').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CacheUnavailableError)
    expect((error as Error).message).toMatch(/disk: set failed on a value file/)
    expect(c.stats.errors).toBe(1)
    expect(await c.has('k')).toBe(false)
  })

  it('recreates the temp and value directories removed under it, so large writes keep working', async () => {
    const c = cache({ inlineThreshold: 8 })
    // Fill every value bucket, so the backend has made (and remembers) each one.
    await Promise.all(Array.from({ length: 600 }, (_, i) => c.set(`warm${i}`, 'a value in a file')))
    rmSync(join(dir, 'tmp'), { recursive: true })
    rmSync(join(dir, 'values'), { recursive: true })
    for (let i = 0; i < 20; i++) await c.set(`k${i}`, `value number ${i} in a file`)
    for (let i = 0; i < 20; i++) expect(await c.get(`k${i}`)).toBe(`value number ${i} in a file`)
    expect(c.stats.errors).toBe(0)
  })

  it('rejects operations after close() with CacheClosedError', async () => {
    const c = cache()
    await c.close()
    await expect(c.get('k')).rejects.toBeInstanceOf(CacheClosedError)
    await expect(c.set('k', 1)).rejects.toBeInstanceOf(CacheClosedError)
    await expect(c.incr('k')).rejects.toBeInstanceOf(CacheClosedError)
    await expect(c.add('k', 1)).rejects.toBeInstanceOf(CacheClosedError)
    await expect(c.delete('k')).rejects.toBeInstanceOf(CacheClosedError)
    await expect(c.atomicUpdate('k', () => 1)).rejects.toBeInstanceOf(CacheClosedError)
    await expect(c.compareAndDelete('k', 'v')).rejects.toBeInstanceOf(CacheClosedError)
    await expect(c.has('k')).rejects.toBeInstanceOf(CacheClosedError)
    await expect(c.getMany(['k'])).rejects.toBeInstanceOf(CacheClosedError)
    await expect(c.setMany([{ key: 'k', value: 1 }])).rejects.toBeInstanceOf(CacheClosedError)
    await expect(c.deleteMany(['k'])).rejects.toBeInstanceOf(CacheClosedError)
    await expect(c.clear()).rejects.toBeInstanceOf(CacheClosedError)
    await expect(c.keys().next()).rejects.toBeInstanceOf(CacheClosedError)
  })

  it('refuses calls made after close() was called, before it resolves, and applies none of them', async () => {
    const c = cache()
    await c.set('before', 1)
    // A write still waiting for its commit: close() waits for it, but refuses what comes after.
    const pending = c.set('pending', 1)
    const closing = c.close()
    const late = [
      ['set', c.set('late-set', 1)],
      ['incr', c.incr('late-incr')],
      ['add', c.add('late-add', 1)],
      ['atomicUpdate', c.atomicUpdate('late-update', () => 1)],
      ['delete', c.delete('before')],
      ['compareAndDelete', c.compareAndDelete('before', '1')],
      ['setMany', c.setMany([{ key: 'late-many', value: 1 }])],
      ['deleteMany', c.deleteMany(['before'])],
      ['clear', c.clear()],
      ['has', c.has('before')],
      ['get', c.get('before')],
    ] as const
    for (const [operation, call] of late)
      await expect(call, `${operation} after close()`).rejects.toBeInstanceOf(CacheClosedError)
    await pending
    await closing
    const again = cache()
    expect(
      await again.getMany([
        'before',
        'pending',
        'late-set',
        'late-incr',
        'late-add',
        'late-update',
        'late-many',
      ]),
    ).toEqual([1, 1, undefined, undefined, undefined, undefined, undefined])
  })

  // Before: a getMany past its first 100 keys read its next chunk from the closed connection and
  // rejected with better-sqlite3's raw TypeError "The database connection is not open", 10 of 10.
  it('a getMany issued just before close() resolves with every value: 150 keys, the first 100 in files', async () => {
    for (let round = 0; round < 3; round++) {
      const c = cache({ path: mkdtempSync(join(tmpdir(), 'cache-disk-close-')) })
      const keys = Array.from({ length: 150 }, (_, i) => `k${i}`)
      const value = (i: number) => (i < 100 ? `${'L'.repeat(40_000)}${i}` : i)
      await c.setMany(keys.map((key, i) => ({ key, value: value(i) })))
      const many = c.getMany(keys)
      const closing = c.close()
      expect(await many).toEqual(keys.map((_, i) => value(i)))
      await closing
      expect(c.stats).toMatchObject({ hits: 150, errors: 0 })
      rmSync(c.path, { recursive: true, force: true })
    }
  })

  it('a get of a value in a file and a has() issued just before close() resolve', async () => {
    const c = cache()
    await c.set('large', 'x'.repeat(100_000))
    const got = c.get('large')
    const has = c.has('large')
    const closing = c.close()
    expect(await got).toBe('x'.repeat(100_000))
    expect(await has).toBe(true)
    await closing
  })

  // Before: close() resolved while the deletes and overwrites of values in files were still
  // removing those files (their promises settled a few ms later), 5 of 5.
  it('close() resolves after the delete, deleteMany and overwriting set of values in files issued before it', async () => {
    const c = cache()
    const large = (i: number) => `${'L'.repeat(40_000)}${i}`
    await c.setMany(Array.from({ length: 30 }, (_, i) => ({ key: `k${i}`, value: large(i) })))
    const settled: string[] = []
    const calls = [
      ...Array.from({ length: 10 }, (_, i) => c.delete(`k${i}`).then(() => settled.push(`delete k${i}`))),
      c.deleteMany(Array.from({ length: 10 }, (_, i) => `k${10 + i}`)).then(() => settled.push('deleteMany')),
      ...Array.from({ length: 10 }, (_, i) =>
        c.set(`k${20 + i}`, i).then(() => settled.push(`set k${20 + i}`)),
      ),
    ]
    await c.close()
    expect(settled).toHaveLength(calls.length)
    await Promise.all(calls)
    const files = readdirSync(c.path, { recursive: true, withFileTypes: true }).filter(
      (entry) => entry.isFile() && !entry.name.startsWith('cache.db'),
    )
    expect(files.map((entry) => entry.name)).toEqual([])
  })

  // Before: a deleteMany or setMany settled after close() had resolved in about half the rounds
  // (their own items were waited for, the call itself was not: its last steps came after).
  it('close() resolves after a deleteMany and a setMany issued before it have settled', async () => {
    const large = (i: number) => `${'L'.repeat(40_000)}${i}`
    const late: string[] = []
    for (let round = 0; round < 10; round++) {
      const c = cache()
      await c.setMany(Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, value: large(i) })))
      const settled: string[] = []
      const deleting = c.deleteMany(Array.from({ length: 10 }, (_, i) => `k${i}`))
      const setting = c.setMany(Array.from({ length: 10 }, (_, i) => ({ key: `k${10 + i}`, value: i })))
      void deleting.then(() => settled.push('deleteMany'))
      void setting.then(() => settled.push('setMany'))
      await c.close()
      for (const call of ['deleteMany', 'setMany']) if (!settled.includes(call)) late.push(`${call} ${round}`)
      expect(await deleting).toBe(10)
      await setting
    }
    expect(late).toEqual([])
  })

  // Before: both rejected with CacheClosedError, only their first step having waited for close().
  it('a prune() issued just before close() finishes: every expired entry deleted', async () => {
    const time = clock()
    const c = cache({ now: time.now })
    for (let i = 0; i < 1200; i++) await c.set(`k${i}`, i, i % 2 ? 1 : undefined)
    time.advance(2000)
    const pruned = c.prune()
    const closing = c.close()
    expect(await pruned).toMatchObject({ expired: 600 })
    await closing
    expect((await cache().usage()).entries).toBe(600)
  })

  it('a keys() listing issued just before close() lists every key, past its first page', async () => {
    const c = cache()
    await c.setMany(Array.from({ length: 1200 }, (_, i) => ({ key: `k${i}`, value: i })))
    const listed = (async () => {
      let n = 0
      for await (const _ of c.keys()) n++
      return n
    })()
    const closing = c.close()
    expect(await listed).toBe(1200)
    await closing
  })

  it('a keys() iterator left unfinished does not hold close() open; its next page is refused', async () => {
    const c = cache()
    await c.setMany(Array.from({ length: 1200 }, (_, i) => ({ key: `k${i}`, value: i })))
    const keys = c.keys()
    await keys.next()
    await c.close()
    // The 499 other keys of the first page were read before close(); the second page is refused.
    for (let i = 0; i < 499; i++) await keys.next()
    await expect(keys.next()).rejects.toBeInstanceOf(CacheClosedError)
  })

  it('fails at construction with CacheConfigError naming the path when the directory cannot be used', () => {
    const root = mkdtempSync(join(tmpdir(), 'cache-disk-file-'))
    try {
      const file = join(root, 'not-a-dir')
      writeFileSync(file, '')
      expect(() => diskBackend({ path: file })).toThrow(CacheConfigError)
      expect(() => diskBackend({ path: file })).toThrow(/path: cannot open a disk cache in .*not-a-dir/)
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })

  it.each([
    [{ maxSize: '10XB' }, /maxSize/],
    [{ maxSize: 0 }, /maxSize/],
    [{ inlineThreshold: -1 }, /inlineThreshold/],
    [{ lockTimeout: -1 }, /lockTimeout/],
    [{ lockTimeoutMs: -1 }, /lockTimeoutMs/],
    [{ defaultTtl: 0 }, /defaultTtl/],
  ] as [DiskBackendOptions, RegExp][])(
    'rejects the option %o with a CacheConfigError',
    (options, message) => {
      expect(() => cache(options)).toThrow(CacheConfigError)
      expect(() => cache(options)).toThrow(message)
    },
  )
})

describe('events and stats', () => {
  it('counts hits, misses, sets and deletes and emits them', async () => {
    const c = cache()
    const seen: string[] = []
    for (const name of ['hit', 'miss', 'set', 'delete'] as const)
      c.on(name, (e) => seen.push(`${name}:${e.key}`))
    await c.set('a', 1)
    await c.get('a')
    await c.get('b')
    await c.delete('a')
    expect(seen).toEqual(['set:a', 'hit:a', 'miss:b', 'delete:a'])
    expect(c.stats).toMatchObject({ hits: 1, misses: 1, sets: 1, deletes: 1, errors: 0 })
  })
})

describe('configuration from the environment', () => {
  it('is built by core from CACHE_BACKEND=disk with CACHE_DISK_PATH and CACHE_DISK_MAX_SIZE', async () => {
    dir = mkdtempSync(join(tmpdir(), 'cache-disk-env-'))
    const config = configFromEnv({
      CACHE_BACKEND: 'disk',
      CACHE_DISK_PATH: dir,
      CACHE_DISK_MAX_SIZE: '1MB',
      CACHE_NAMESPACE: 'app',
    })
    const backend = createBackendFromConfig(config, (name) => (name === '@cache/disk' ? disk : undefined))
    expect(backend).toBeInstanceOf(DiskBackend)
    open.push(backend as DiskBackend)
    expect((backend as DiskBackend).path).toBe(dir)
    await backend.set('k', 'v')
    await expect(backend.set('big', 'x'.repeat(2 * 1024 * 1024))).rejects.toBeInstanceOf(
      CacheValueTooLargeError,
    )
    expect(await cache({ namespace: 'app' }).get('k')).toBe('v')
  })
})
