import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import { type DiskBackend, type DiskBackendOptions, diskBackend } from '../src/index.js'

let dir: string
const open: DiskBackend[] = []

function cache(options: DiskBackendOptions = {}): DiskBackend {
  dir ??= mkdtempSync(join(tmpdir(), 'cache-disk-schema-'))
  const backend = diskBackend({ path: dir, pruneInterval: false, ...options })
  open.push(backend)
  return backend
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((backend) => backend.close()))
  if (dir) rmSync(dir, { recursive: true, force: true })
  dir = undefined as unknown as string
})

/** The layout the first release wrote (schema 1), verbatim. */
const SCHEMA_1 = `
CREATE TABLE IF NOT EXISTS entries (
  ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB, file TEXT, size INTEGER NOT NULL,
  expires_at INTEGER, accessed_at INTEGER NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (ns, key)
);
CREATE INDEX IF NOT EXISTS entries_accessed ON entries (accessed_at);
CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS entries_file ON entries (file) WHERE file IS NOT NULL;
CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY CHECK (id = 0), size INTEGER NOT NULL, count INTEGER NOT NULL);
INSERT OR IGNORE INTO totals VALUES (0, 0, 0);
CREATE TRIGGER IF NOT EXISTS entries_insert AFTER INSERT ON entries BEGIN
  UPDATE totals SET size = size + NEW.size, count = count + 1 WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS entries_delete AFTER DELETE ON entries BEGIN
  UPDATE totals SET size = size - OLD.size, count = count - 1 WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS entries_resize AFTER UPDATE OF size ON entries WHEN NEW.size <> OLD.size BEGIN
  UPDATE totals SET size = size + NEW.size - OLD.size WHERE id = 0;
END;
`

describe('a cache file written by the first release (schema 1)', () => {
  it('opens with its entries readable, expiring and prunable, and takes new writes', async () => {
    dir = mkdtempSync(join(tmpdir(), 'cache-disk-schema-'))
    mkdirSync(join(dir, 'values'))
    const now = 1_700_000_000_000
    const old = new Database(join(dir, 'cache.db'))
    old.pragma('journal_mode = WAL')
    old.exec(SCHEMA_1)
    old.pragma('user_version = 1')
    const insert = old.prepare('INSERT INTO entries VALUES (?, ?, ?, NULL, ?, ?, ?, ?)')
    const row = (key: string, text: string, expiresAt: number | null) =>
      insert.run('', key, Buffer.from(JSON.stringify(text)), text.length + 2 + key.length, expiresAt, now, 7)
    row('forever', 'kept', null)
    row('gone', 'expired', now - 1_000)
    row('later', 'expires in an hour', now + 3_600_000)
    old.close()

    let clock = now
    const c = cache({ now: () => clock })
    expect(await c.getMany(['forever', 'gone', 'later'])).toEqual(['kept', undefined, 'expires in an hour'])
    expect(await c.usage()).toMatchObject({ entries: 3 })
    expect(await c.prune()).toMatchObject({ expired: 1 })
    expect(await c.usage()).toMatchObject({ entries: 2 })
    clock += 3_600_000
    expect(await c.get('later')).toBeUndefined()
    expect(await c.prune()).toMatchObject({ expired: 1 })
    await c.set('new', 'written after the upgrade', 60)
    expect(await c.atomicUpdate<string>('forever', (v) => `${v}!`)).toBe('kept!')
    expect(await c.getMany(['forever', 'new'])).toEqual(['kept!', 'written after the upgrade'])
    await c.close()
    const check = new Database(join(dir, 'cache.db'), { readonly: true })
    try {
      expect(check.pragma('user_version', { simple: true })).toBe(3)
      expect(check.pragma('integrity_check', { simple: true })).toBe('ok')
    } finally {
      check.close()
    }
  })
})

/**
 * `fixtures/schema-2.db` was written by the previous release (schema 2, with an access-time
 * index) under a clock starting at 1 700 000 000 000: `a`, `b`, `c`, `d` (1 001 bytes each, one
 * second apart), `expiring` (TTL 90 s), the counter `hits` (5), `a` in the namespace `other`,
 * then `a` read last (recorded at 1 700 000 008 000). 4 041 bytes in 7 entries.
 */
const SCHEMA_2_FILE = new URL('./fixtures/schema-2.db', import.meta.url)

describe('a cache file written by the previous release (schema 2)', () => {
  it('keeps its entries and totals; entries used since the upgrade outlive those untouched since', async () => {
    dir = mkdtempSync(join(tmpdir(), 'cache-disk-schema-'))
    copyFileSync(SCHEMA_2_FILE, join(dir, 'cache.db'))
    // Every stored access time is now older than accessResolution (1 minute); `expiring` still lives.
    let clock = 1_700_000_070_000
    // One more 1 001-byte entry is one byte too many: exactly one entry must go.
    const c = cache({ now: () => clock, maxSize: 4_041 + 1_001 - 1 })
    const other = cache({ now: () => clock, namespace: 'other' })
    const x = 'x'.repeat(998)
    expect(await c.usage()).toEqual({ bytes: 4_041, entries: 7 })
    expect(await other.get('a')).toBe('other namespace')
    expect(await c.get('d')).toBe(x) // used after the upgrade

    await c.set('e', x)
    await c.set('f', x)
    expect(await c.usage()).toEqual({ bytes: 4_041, entries: 7 })
    const left = await c.getMany(['a', 'b', 'c', 'd', 'e', 'f', 'expiring', 'hits'])
    // Two of the three entries untouched since the upgrade went, oldest insert first.
    expect(left).toEqual([undefined, undefined, x, x, x, x, 'soon', 5])
    expect(await other.get('a')).toBe('other namespace')

    expect(await c.incr('hits')).toBe(6)
    clock += 90_000
    expect(await c.get('expiring')).toBeUndefined()
    expect(await c.prune()).toMatchObject({ expired: 1 })
    await Promise.all(open.splice(0).map((backend) => backend.close()))
    const check = new Database(join(dir, 'cache.db'), { readonly: true })
    try {
      expect(check.pragma('user_version', { simple: true })).toBe(3)
      expect(check.pragma('integrity_check', { simple: true })).toBe('ok')
      const indexes = check.prepare("SELECT name FROM sqlite_master WHERE type = 'index'").pluck().all()
      expect(indexes).not.toContain('entries_accessed')
    } finally {
      check.close()
    }
  })
})

describe('expiry', () => {
  it('prune() deletes exactly the entries that have expired, whatever minute they expire in', async () => {
    let now = 1_700_000_000_000 + 59_000 // one second before a whole minute
    const c = cache({ now: () => now })
    await c.set('a', 1, 0.5)
    await c.set('b', 2, 2)
    await c.set('c', 3, 30)
    await c.set('d', 4, 90)
    await c.set('e', 5)
    now += 1_000
    expect(await c.prune()).toMatchObject({ expired: 1 })
    expect(await c.getMany(['a', 'b', 'c', 'd', 'e'])).toEqual([undefined, 2, 3, 4, 5])
    now += 1_000
    expect(await c.prune()).toMatchObject({ expired: 1 })
    await c.set('c', 33, 120) // moves c's expiry two minutes on
    now += 60_000
    expect(await c.prune()).toMatchObject({ expired: 0 })
    now += 30_000
    expect(await c.prune()).toMatchObject({ expired: 1 })
    expect(await c.getMany(['c', 'd', 'e'])).toEqual([33, undefined, 5])
    now += 60_000
    expect(await c.prune()).toMatchObject({ expired: 1 })
    expect(await c.usage()).toMatchObject({ entries: 1 })
  })

  it('rewriting live entries with a TTL costs about what rewriting them without one does (log bytes)', async () => {
    const bytesOfRewrites = async (ttl: number | undefined) => {
      const c = cache({ path: mkdtempSync(join(tmpdir(), 'cache-disk-ttl-')) })
      const keys = Array.from({ length: 300 }, (_, i) => `k${i}`)
      await Promise.all(keys.map((key) => c.set(key, 'v'.repeat(100), ttl)))
      const wal = join(c.path, 'cache.db-wal')
      const before = statSync(wal).size
      for (let i = 0; i < 30; i++) await c.set(keys[(i * 97) % keys.length]!, 'w'.repeat(100), ttl)
      const written = statSync(wal).size - before
      await c.close()
      rmSync(c.path, { recursive: true, force: true })
      return written
    }
    const withoutTtl = await bytesOfRewrites(undefined)
    const withTtl = await bytesOfRewrites(3600)
    expect(withTtl).toBeLessThan(withoutTtl * 1.3)
  })
})
