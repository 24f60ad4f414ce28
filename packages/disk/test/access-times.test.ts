import { mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type DiskBackend, type DiskBackendOptions, diskBackend } from '../src/index.js'

let dir: string | undefined
const open: DiskBackend[] = []

function cache(options: DiskBackendOptions = {}): DiskBackend {
  dir ??= mkdtempSync(join(tmpdir(), 'cache-disk-lru-'))
  const backend = diskBackend({ path: dir, pruneInterval: false, ...options })
  open.push(backend)
  return backend
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((backend) => backend.close()))
  if (dir !== undefined)
    for (const path of [dir, `${dir}-link`]) rmSync(path, { recursive: true, force: true })
  dir = undefined
})

/** A clock the test moves by hand (the access batch's own one-second timer never fires in these tests). */
function clock(start = 1_700_000_000_000) {
  const state = { now: start }
  return { now: () => state.now, advance: (ms: number) => (state.now += ms) }
}

/** 998 characters: 1 000 bytes of JSON, 1 001 with a one-letter key. */
const VALUE = 'x'.repeat(998)
const KEYS = ['a', 'b', 'c', 'd', 'e']

/** Which of `keys` the cache no longer holds. */
async function evicted(c: DiskBackend, keys: string[]): Promise<string[]> {
  const values = await c.getMany(keys)
  return keys.filter((_, i) => values[i] === undefined)
}

/** Stores a..e (1 001 bytes each, 5 005 in all), one per millisecond-apart tick, then moves past them. */
async function fiveEntries(c: DiskBackend, time: ReturnType<typeof clock>): Promise<void> {
  for (const key of KEYS) {
    await c.set(key, VALUE)
    time.advance(10)
  }
  time.advance(5_000)
}

describe('LRU order of accesses not yet written', () => {
  it('a read again after other reads makes the entry the most recently used (accessResolution 0)', async () => {
    const time = clock()
    const c = cache({ now: time.now, maxSize: 6_000, accessResolution: 0 })
    await fiveEntries(c, time)
    for (const key of KEYS) {
      await c.get(key)
      time.advance(10)
    }
    await c.get('a') // a: the most recently used; b: the least
    time.advance(10)
    await c.set('f', VALUE) // 6 006 bytes: one entry goes
    expect(await evicted(c, [...KEYS, 'f'])).toEqual(['b'])
  })

  it('a read after accessResolution has passed moves the entry again while its earlier read is still pending', async () => {
    const time = clock()
    const c = cache({ now: time.now, maxSize: 6_000, accessResolution: '1s' })
    await fiveEntries(c, time)
    for (const key of KEYS) {
      await c.get(key)
      time.advance(10)
    }
    time.advance(2_000)
    await c.getMany(['a']) // past the resolution since a's read above: a counts as used now
    time.advance(10)
    await c.set('f', VALUE)
    expect(await evicted(c, [...KEYS, 'f'])).toEqual(['b'])
  })

  it('a rewrite after the reads makes the entry the most recently used', async () => {
    const time = clock()
    const c = cache({ now: time.now, maxSize: 6_000, accessResolution: 0 })
    await fiveEntries(c, time)
    for (const key of KEYS) {
      await c.get(key)
      time.advance(10)
    }
    await c.set('a', VALUE) // same size: nothing evicted yet
    time.advance(10)
    await c.set('f', VALUE)
    expect(await evicted(c, [...KEYS, 'f'])).toEqual(['b'])
  })

  it('an incr after the reads makes the counter the most recently used', async () => {
    const time = clock()
    const c = cache({ now: time.now, maxSize: 5_000, accessResolution: 0 })
    await c.incr('n') // 2 bytes
    time.advance(10)
    for (const key of ['b', 'c', 'd', 'e']) {
      await c.set(key, VALUE)
      time.advance(10)
    }
    time.advance(5_000)
    for (const key of ['n', 'b', 'c', 'd', 'e']) {
      await c.get(key)
      time.advance(10)
    }
    expect(await c.incr('n')).toBe(2)
    time.advance(10)
    await c.set('f', VALUE) // 5 007 bytes: b alone brings it under 5 000
    expect(await evicted(c, ['n', 'b', 'c', 'd', 'e', 'f'])).toEqual(['b'])
  })

  it('a read just before a write that passes maxSize spares the entry read', async () => {
    const time = clock()
    const c = cache({ now: time.now, maxSize: 5_500, accessResolution: 0 })
    await fiveEntries(c, time)
    const read = c.get('a') // issued in the same tick as the write below, before it
    const write = c.set('f', VALUE)
    await Promise.all([read, write])
    expect(await evicted(c, [...KEYS, 'f'])).toEqual(['b'])
  })

  it('a read by another backend of this process on the same directory counts before that directory evicts', async () => {
    const time = clock()
    const writer = cache({ now: time.now, namespace: 'api', maxSize: 4_000, accessResolution: 0 })
    // The same directory through another spelling of its path.
    const link = `${dir}-link`
    symlinkSync(dir!, link)
    const reader = cache({ path: link, now: time.now, namespace: 'pages', accessResolution: 0 })
    await reader.set('a', VALUE)
    time.advance(10)
    await writer.set('b', VALUE)
    time.advance(10)
    await writer.set('c', VALUE)
    time.advance(5_000)
    expect(await reader.get('a')).toBe(VALUE) // not yet written: the batch waits about a second
    time.advance(10)
    await writer.set('d', VALUE) // 4 004 bytes: the least recently used entry goes
    expect(await evicted(reader, ['a'])).toEqual([])
    expect(await evicted(writer, ['b', 'c', 'd'])).toEqual(['b'])
  })

  it('orders accesses of two backends of this process by when they happened', async () => {
    const time = clock()
    const one = cache({ now: time.now, namespace: 'one', maxSize: 4_000, accessResolution: 0 })
    const two = cache({ now: time.now, namespace: 'two', maxSize: 4_000, accessResolution: 0 })
    await one.set('a', VALUE)
    await two.set('b', VALUE)
    await one.set('c', VALUE)
    time.advance(5_000)
    await one.get('a')
    time.advance(10)
    await two.get('b')
    time.advance(10)
    await one.get('c')
    time.advance(10)
    await one.get('a') // order of use: b, c, a
    time.advance(10)
    await two.set('d', VALUE)
    expect(await evicted(one, ['a', 'c'])).toEqual([])
    expect(await evicted(two, ['b', 'd'])).toEqual(['b'])
  })

  it('has() is not an access: it leaves the entry where it was in the LRU order', async () => {
    const time = clock()
    const c = cache({ now: time.now, maxSize: 6_000, accessResolution: 0 })
    await fiveEntries(c, time)
    expect(await c.has('a')).toBe(true)
    time.advance(10)
    await c.set('f', VALUE)
    expect(await evicted(c, [...KEYS, 'f'])).toEqual(['a'])
  })

  it('writes pending reads when the backend closes, so another backend sees them', async () => {
    const time = clock()
    const writer = cache({ now: time.now, maxSize: 6_000, accessResolution: 0 })
    await fiveEntries(writer, time)
    const reader = diskBackend({ path: dir!, now: time.now, accessResolution: 0, pruneInterval: false })
    for (const key of ['a', 'c', 'b']) {
      await reader.get(key)
      time.advance(10)
    }
    await reader.close()
    await writer.set('f', VALUE)
    await writer.set('g', VALUE) // two over: d and e, never read, go first
    expect(await evicted(writer, [...KEYS, 'f', 'g'])).toEqual(['d', 'e'])
  })
})
