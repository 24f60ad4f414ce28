import { existsSync, realpathSync, renameSync, rmSync, type Stats, statSync, unlinkSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import Database from 'better-sqlite3'
import { type DatabaseFile, type OpenFile, openDatabaseFiles, openedBetween } from './open-files.js'
import { makeDirectory } from './paths.js'
import { createDatabaseFile, RUNNING_LOCK_WAIT_MS } from './set-up-lock.js'

/** Bumped when the table layout changes; a database with a newer layout is never touched. */
const SCHEMA_VERSION = 3

/**
 * Log pages after which a commit copies the log into the database (SQLite's default is 1 000).
 * A checkpoint costs two fsyncs and one copy of each page the log holds, however often that page
 * was rewritten: a longer log makes both rarer per write (measured at the SQLite level: about a
 * third less time per rewrite committed on its own). The log file grows to about this many pages
 * (16 MB with 4 KB pages).
 */
const CHECKPOINT_PAGES = 4000

/** Width of the expiry index's buckets: a rewrite whose expiry stays in its minute leaves the index alone. */
const EXPIRY_BUCKET_MS = 60_000
/**
 * How old the directory's last change must be before its time is trusted to tell that no file
 * was removed or replaced since: a change in the same tick of the file system's clock as the one
 * seen shows the same time. A file system with whole-second times (seen as a time with no
 * fraction of a second) shows two changes in one second alike; one with finer times (ext4, xfs,
 * btrfs, tmpfs, APFS) stamps changes from a clock that ticks every 1–10 ms (Linux's coarse clock;
 * exFAT's 10 ms).
 */
function settledAfterMs(dir: Stats): number {
  return dir.mtimeMs % 1000 === 0 && dir.ctimeMs % 1000 === 0 ? 2000 : 50
}

/**
 * `file` with its directory's symbolic links resolved, as the process's open files name it; as
 * given when the directory is gone (removed while the process runs).
 */
export function realPathOf(file: string): string {
  try {
    return join(realpathSync(dirname(file)), basename(file))
  } catch {
    return file
  }
}

/**
 * This process's connections, by database path. SQLite gives all connections of a process to one
 * database file (one inode) one shared index of the log (the `-shm` mapping): a connection opened
 * while another of the process still holds that file takes up the other's index, even one removed
 * from the path (two backends of one process, namespaces 'api' and 'sessions', after a tmp cleaner
 * deleted the log and its index). It would then no longer see the writes of the processes that
 * use the index at the path, nor they its own, and both would append to one log at different
 * places, damaging it: see {@link EntryStore.reopen}.
 */
const connections = new Map<string, Set<EntryStore>>()

/** The inode of a file, 0 when it does not exist. */
function inodeOf(path: string): number {
  return statSync(path, { throwIfNoEntry: false })?.ino ?? 0
}

/**
 * False when, among `open` (the database's files this process holds), the descriptor of its
 * `which` file (inode `inode`) is of a removed file (the file at the path with that inode number
 * is another one: the number reused), or when this process holds no such file. True otherwise,
 * also where open files cannot be listed (not Linux: `open` undefined).
 */
function heldAtPath(open: Map<number, OpenFile> | undefined, which: DatabaseFile, inode: number): boolean {
  if (open === undefined) return true
  for (const file of open.values()) if (file.which === which && file.ino === inode) return file.nlink > 0
  // Not held (the connection never opened it: another process made it): not this connection's to remove.
  return false
}

/** Removes `path` if it is still the file `inode` (0: nothing to remove). */
function removeIfSame(path: string, inode: number): void {
  if (inode !== 0 && inodeOf(path) === inode) rmSync(path, { force: true })
}

/*
 * One row per entry. `size` counts the value's bytes plus the key's length; `totals` keeps the
 * sum, maintained by triggers in the same transaction as every insert, update and delete.
 * `version` is a random number replaced on every write: `atomicUpdate` compares it to detect
 * a writer in between (random rather than a counter, so delete-then-recreate cannot fake it).
 * `expiry_bucket` is the minute `expires_at` falls in; pruning finds expired rows through its
 * index. Indexing the exact expiry instead would rewrite two index pages on every write with a TTL.
 *
 * The rowid is the LRU order: a new row takes the next rowid, and recording an access
 * (`accessed_at`) moves the row to the next rowid, so eviction reads the table from its first
 * rowid. An index on `accessed_at` would cost every insert one more page written (schema 2 had one).
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS entries (
  ns TEXT NOT NULL,
  key TEXT NOT NULL,
  value BLOB,
  file TEXT,
  size INTEGER NOT NULL,
  expires_at INTEGER,
  accessed_at INTEGER NOT NULL,
  version INTEGER NOT NULL,
  expiry_bucket INTEGER,
  PRIMARY KEY (ns, key)
);
CREATE INDEX IF NOT EXISTS entries_expiry ON entries (expiry_bucket) WHERE expiry_bucket IS NOT NULL;
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

/** Schema 1 (the first release) to 2: the exact-expiry index becomes the bucketed one. */
const MIGRATE_1_TO_2 = `
ALTER TABLE entries ADD COLUMN expiry_bucket INTEGER;
UPDATE entries SET expiry_bucket = expires_at / ${EXPIRY_BUCKET_MS} WHERE expires_at IS NOT NULL;
DROP INDEX IF EXISTS entries_expires;
CREATE INDEX IF NOT EXISTS entries_expiry ON entries (expiry_bucket) WHERE expiry_bucket IS NOT NULL;
`

/**
 * Schema 2 to 3: the access-time index goes, and no row is rewritten (renumbering the rows in
 * access order took about 8 s per 100 000 rows, all of it under the write lock at open). Rows
 * keep their rowids, in insertion order: an entry read or rewritten after the upgrade moves
 * behind all of them, so those untouched since the upgrade are evicted first, oldest insert first.
 */
const MIGRATE_2_TO_3 = 'DROP INDEX IF EXISTS entries_accessed;'

/** The expiry index's bucket of an expiry time. */
function expiryBucket(expiresAt: number | null): number | null {
  return expiresAt === null ? null : Math.floor(expiresAt / EXPIRY_BUCKET_MS)
}

/**
 * A row as read by the get path: `[value, file, expiresAt, accessedAt, size]`. The value is text
 * when the store reads values as text (see `EntryStore`), except a compressed one.
 */
export type LiveRow = [
  value: Buffer | string | null,
  file: string | null,
  expiresAt: number | null,
  accessedAt: number,
  size: number,
]
/** A row as read before a write: `[value, file, expiresAt, version, size]`. */
export type WriteRow = [
  value: Buffer | null,
  file: string | null,
  expiresAt: number | null,
  version: number,
  size: number,
]

/** A row as read by a put: `[rowid, file, expiresAt, version, accessedAt, expiryBucket, size]` (and `value` for incr). */
type PutRow = [
  rowid: number,
  file: string | null,
  expiresAt: number | null,
  version: number,
  accessedAt: number,
  expiryBucket: number | null,
  size: number,
  value?: Buffer | null,
]

/** A read recorded for the LRU order and not yet written: `at` is when it happened. */
export interface Access {
  ns: string
  key: string
  at: number
}

/** What a conditional write requires: any state, no live entry, or this exact version (0: no row). */
export type Condition = { kind: 'always' } | { kind: 'absent' } | { kind: 'version'; version: number }

/** One write of a group commit: a conditional put of an encoded value, or a delete. */
export type BatchOp =
  | {
      kind: 'put'
      key: string
      value: Buffer | null
      file: string | null
      size: number
      /** When it expires (epoch ms, from the clock when the write was called), or `null`: never. */
      expiresAt: number | null
      condition: Condition
    }
  | { kind: 'delete'; key: string }

/**
 * What one write of a batch did: `done` (the put stored / the delete found a row), the value
 * file the replaced or deleted row used, whether a deleted row was live, and whether the write
 * added bytes to the total (a new row, or a larger value).
 */
export interface BatchOutcome {
  done: boolean
  file: string | null
  live: boolean
  grew: boolean
}

const UNDONE: BatchOutcome = { done: false, file: null, live: false, grew: false }

export interface NewRow {
  ns: string
  key: string
  value: Buffer | null
  file: string | null
  size: number
  expiresAt: number | null
  now: number
}

/**
 * The count after an increment, from a live row's inline `value` or its `file` of `size` bytes
 * (key included); throws if that is no exact counter.
 */
export type CounterStep = (value: Buffer | null, file: string | null, size: number) => number

export interface IncrResult {
  value: number
  oldFile: string | null
  total: number
}

/** What happened when the database file was unreadable and moved aside. */
export interface Recovery {
  movedTo: string
  cause: unknown
}

/** True for errors that mean the database file is damaged. */
export function isCorruption(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code
  return typeof code === 'string' && (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB')
}

/** True for errors that mean another connection holds the lock. */
export function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'))
}

/**
 * The SQLite index: the connection, its prepared statements, and the transactions the backend
 * runs. Every statement is prepared once per connection.
 */
export class EntryStore {
  db!: Database.Database
  /** Device and inode of the file the connection opened (0: not opened yet). */
  private inode = 0
  private device = 0
  /** Inodes of the log (`-wal`) and its index (`-shm`) once the connection opened them (0: none). */
  private walInode = 0
  private shmInode = 0
  /** The directory as it was when its files were last found to be the connection's own. */
  private dirSeen: Stats | undefined
  /**
   * Closed by another connection of this process to the same file (see `connections`): reopen the
   * path before the next step, leaving its files alone (that connection already saw to them).
   */
  closedBySibling = false
  private select!: Database.Statement<[string, string], LiveRow>
  private selectForWrite!: Database.Statement<[string, string], WriteRow>
  private selectForPut!: Database.Statement<[string, string], PutRow>
  private selectForIncr!: Database.Statement<[string, string], PutRow>
  private insertRow!: Database.Statement
  private rewriteRow!: Database.Statement[][]
  private removeRow!: Database.Statement<[string, string], [string | null, number | null]>
  private removeIfVersion!: Database.Statement<[string, string, number], [string | null, number | null]>
  private touchRow!: Database.Statement
  private clearBatch!: Database.Statement<[string, number], [string | null]>
  private pruneBatch!: Database.Statement<[number | null, number, number], [string | null]>
  private lruBatch!: Database.Statement<[number], [number, number, string | null]>
  private deleteRowid!: Database.Statement<[number], [string | null]>
  private readTotals!: Database.Statement<[], [number, number]>
  private fileReferenced!: Database.Statement<[string], [number]>
  private dropBroken!: Database.Statement
  private keysFrom!: Database.Statement<[string, string, number], [Buffer, number | null]>
  private keysBetween!: Database.Statement<[string, string, string, number], [Buffer, number | null]>
  private batchTx!: (
    ns: string,
    ops: readonly BatchOp[],
    now: number,
    accesses: readonly Access[] | undefined,
  ) => { outcomes: BatchOutcome[]; total: number | undefined }
  /** `getMany` statements, one per key count (a chunk holds at most `MANY_CHUNK` keys). */
  private selectMany = new Map<number, Database.Statement<unknown[], [...LiveRow, number]>>()
  private touchTx!: (accesses: readonly Access[]) => void
  private evictTx!: (
    now: number,
    limit: number,
    accesses: readonly Access[] | undefined,
  ) => { files: (string | null)[]; total: number }
  private incrTx!: (
    row: NewRow,
    by: number,
    addTo: CounterStep,
    accesses: readonly Access[] | undefined,
  ) => IncrResult

  /**
   * @param accessResolutionMs a rewrite records its access time only when the stored one is at
   *   least this old, as a read does: the access-time index is then left alone.
   * @param readsText the get path reads values as text (the JSON serializer's bytes are UTF-8
   *   text: SQLite hands them over as a string, one copy fewer than bytes then text). A value
   *   starting with a NUL byte (compressed) is still read as bytes.
   */
  constructor(
    readonly file: string,
    private readonly busyTimeoutMs: number,
    private readonly accessResolutionMs: number,
    private readonly readsText = false,
  ) {}

  /**
   * Opens the database, creating it private (0600) if missing. A file that is not a database,
   * or is damaged so the schema cannot be read, is moved aside and replaced by an empty one.
   */
  open(): Recovery | undefined {
    try {
      this.connect()
      return undefined
    } catch (error) {
      if (!isCorruption(error)) throw error
      // Read while another process made the file again (the directory removed under running
      // processes): damage only if a second look still finds it.
      try {
        this.connect()
        return undefined
      } catch (again) {
        if (!isCorruption(again)) throw again
        return this.rebuild(again)
      }
    }
  }

  /** Moves the damaged database aside (unless another process already did) and starts an empty one. */
  rebuild(cause: unknown): Recovery {
    try {
      this.db?.close()
    } catch {
      // Closing a damaged connection may fail; the file is replaced either way.
    }
    const movedTo = `${this.file}.corrupt-${Date.now()}`
    const current = statSync(this.file, { throwIfNoEntry: false })
    // Another process may have rebuilt first: only move the file we found damaged.
    if (current !== undefined && (this.inode === 0 || current.ino === this.inode)) {
      renameSync(this.file, movedTo)
      if (existsSync(`${this.file}-wal`)) renameSync(`${this.file}-wal`, `${movedTo}-wal`)
      if (existsSync(`${this.file}-shm`)) unlinkSync(`${this.file}-shm`)
    }
    this.connect()
    return { movedTo, cause }
  }

  /**
   * True if a file at the path is no longer the one this connection opened: the database
   * removed (the directory deleted under the process) or replaced, or its log or the log's
   * index removed or replaced (a tmp cleaner deleting `cache.db-shm`: a process opening the path
   * then builds an index of its own, and the two no longer see each other's writes). One `stat`
   * of the directory while its entries stay as they were; the three files' otherwise.
   */
  isStale(): boolean {
    if (this.closedBySibling) return true
    const dir = statSync(dirname(this.file), { throwIfNoEntry: false })
    if (dir === undefined) return true
    const seen = this.dirSeen
    // Recorded only once the directory's time had settled, so a later change shows another time.
    if (
      seen !== undefined &&
      dir.ino === seen.ino &&
      dir.dev === seen.dev &&
      dir.mtimeMs === seen.mtimeMs &&
      dir.ctimeMs === seen.ctimeMs
    )
      return false
    const settled = Date.now() - Math.max(dir.mtimeMs, dir.ctimeMs) > settledAfterMs(dir)
    const db = statSync(this.file, { throwIfNoEntry: false })
    if (db === undefined || db.ino !== this.inode || db.dev !== this.device) return true
    // A log or index that appeared is SQLite's own doing; one removed or replaced is not.
    const wal = inodeOf(`${this.file}-wal`)
    const shm = inodeOf(`${this.file}-shm`)
    if ((this.walInode !== 0 && wal !== this.walInode) || (this.shmInode !== 0 && shm !== this.shmInode))
      return true
    this.walInode = wal
    this.shmInode = shm
    this.dirSeen = settled ? dir : undefined
    return false
  }

  /**
   * Closes the connection to a removed or replaced file and opens the path, recreating the
   * directory and an empty database if they are gone (another process may already have). SQLite
   * neither checkpoints nor deletes the log files of a database file that has moved, so closing
   * the old connection leaves the new files alone. When the database file is not the one this
   * connection had, the log and index it left at the path are removed first (unless another
   * process replaced them already): SQLite would replay the old database's log onto the new file,
   * answering keys with rows of the old one. A file at the path that is not a database (another
   * file renamed onto it) is moved aside and replaced by an empty one as at open: returned then.
   */
  reopen(): Recovery | undefined {
    const db = statSync(this.file, { throwIfNoEntry: false })
    const replaced = db === undefined || db.ino !== this.inode || db.dev !== this.device
    // The log removed or replaced alone: the index this connection shared still points into the
    // old log, and every connection opening it would fail (a short read) until all had closed.
    const logChanged = inodeOf(`${this.file}-wal`) !== this.walInode
    // Whether the log and index at the path are still the files this connection holds, asked
    // while it holds them: after the directory was removed and made again by another process,
    // its new log may have the inode number of the removed one. A connection closed by another
    // of this process holds nothing now: that one already removed what was to be removed.
    const ownFiles = !this.closedBySibling && (replaced || logChanged)
    const open = ownFiles ? openDatabaseFiles(realPathOf(this.file)) : undefined
    const walOurs = ownFiles && replaced && heldAtPath(open, 'wal', this.walInode)
    const shmOurs = ownFiles && heldAtPath(open, 'shm', this.shmInode)
    // Still the same file: the others of this process on it share its old index (see `connections`).
    if (!replaced) this.closeSiblings()
    this.closedBySibling = false
    try {
      this.db.close()
    } catch {
      // Already closed (a reopen that failed before): open again regardless.
    }
    try {
      if (walOurs) removeIfSame(`${this.file}-wal`, this.walInode)
      if (shmOurs) removeIfSame(`${this.file}-shm`, this.shmInode)
      makeDirectory(dirname(this.file))
      return this.open()
    } catch (error) {
      this.inode = 0 // still stale: the next check tries again
      this.dirSeen = undefined
      throw error
    }
  }

  /**
   * Closes the connection to a file that reads as damaged, and this process's others to that
   * file (they share its view of the log), and opens the path again: a file made again by another
   * process, or read through a stale index of its log, reads as damaged through the old
   * connection alone. The caller retries on the new connection and rebuilds if it still fails.
   */
  reconnect(): void {
    this.closeSiblings()
    try {
      this.db.close()
    } catch {
      // Closing a damaged connection may fail; it is opened again either way.
    }
    this.connect()
  }

  close(): void {
    this.db.close()
    this.forget()
  }

  /**
   * Closes this process's other connections on the database file this one has open (same device
   * and inode), to be opened again by their next step (see `connections`).
   */
  private closeSiblings(): void {
    const all = connections.get(resolve(this.file))
    if (all === undefined || this.inode === 0) return
    for (const other of all) {
      if (
        other === this ||
        other.closedBySibling ||
        other.inode !== this.inode ||
        other.device !== this.device
      )
        continue
      try {
        other.db.close()
      } catch {
        // Already closed: it opens the path again regardless.
      }
      other.closedBySibling = true
    }
  }

  private remember(): void {
    const key = resolve(this.file)
    let all = connections.get(key)
    if (all === undefined) connections.set(key, (all = new Set()))
    all.add(this)
  }

  private forget(): void {
    const key = resolve(this.file)
    const all = connections.get(key)
    if (all?.delete(this) && all.size === 0) connections.delete(key)
  }

  /**
   * Opens the path, again (within the set-up budget) when the open failed while the directory or
   * the database's files were removed or replaced (`rm -rf` of the directory, a cleaner's
   * `rm cache.db`): SQLite then fails to read files that are gone ("disk I/O error").
   */
  private connect(): void {
    const deadline = Date.now() + SET_UP_WAIT_MS
    let replacedTries = 0
    let goneTries = 0
    for (let attempt = 0; ; attempt++) {
      const before = this.filesNow()
      try {
        if (attempt > 0) makeDirectory(dirname(this.file))
        this.connectOnce(deadline)
        return
      } catch (error) {
        // A change can hide from the look (an inode number reused, the directory changed twice in
        // one tick of the file system's clock): a few tries even then, more while things change.
        const after = this.filesNow()
        const changed = after === undefined || after !== before
        // Replaced again and again while opened (the directory removed and made again without
        // pause): failed after a few tries rather than blocking for the whole budget.
        if (
          (error as { code?: unknown }).code === REPLACED_WHILE_OPENED &&
          ++replacedTries > UNSEEN_RACE_TRIES
        )
          throw error
        // The directory gone again and again as it was opened (something removing it without
        // pause): failed after as many tries, not tried for the whole budget; one removal now and
        // then (a cleaner's) is a race tried again.
        if (after === undefined && isOpenRace(error) && ++goneTries > UNSEEN_RACE_TRIES)
          throw new Error(
            `${dirname(this.file)} was removed ${goneTries} times while ${this.file} was opened: something keeps removing it`,
            { cause: error },
          )
        if (!isOpenRace(error) || Date.now() >= deadline || (!changed && attempt >= UNSEEN_RACE_TRIES))
          throw error
        Atomics.wait(pause, 0, 0, Math.min(2 ** attempt, 20))
      }
    }
  }

  /**
   * The directory (device, inode, last change) and the inodes of the database, its log and
   * index, as one string: another string later means an entry was added, removed or replaced.
   * Undefined when the directory is gone.
   */
  private filesNow(): string | undefined {
    const dir = statSync(dirname(this.file), { throwIfNoEntry: false })
    if (dir === undefined) return undefined
    const { file } = this
    return `${dir.dev}:${dir.ino}:${dir.mtimeMs}:${dir.ctimeMs}:${inodeOf(file)}:${inodeOf(`${file}-wal`)}:${inodeOf(`${file}-shm`)}`
  }

  private connectOnce(deadline: number): void {
    this.inode = 0
    // A running backend (connected before: reopening) waits for the set-up lock briefly only, with
    // its event loop blocked; the operation then fails and the next one tries again.
    const lockDeadline =
      this.db === undefined ? deadline : Math.min(deadline, Date.now() + RUNNING_LOCK_WAIT_MS)
    if (!existsSync(this.file)) createDatabaseFile(this.file, lockDeadline)
    const opened = statSync(this.file)
    this.inode = opened.ino
    this.device = opened.dev
    this.dirSeen = undefined
    // What this connection opens is read from the process's open files where it can be: the path
    // may name other files by the time it is read (a directory removed again and made again by
    // another process while this one opened it), and a connection left on the removed log would
    // never see the others' writes, nor they its own.
    const real = realPathOf(this.file)
    const before = openDatabaseFiles(real)
    // Never created by SQLite: a file removed since the look above would be made outside the
    // set-up lock, beside the removed database's log and index (SQLITE_CANTOPEN: tried again).
    const db = openFile(this.file)
    this.db = db
    try {
      setUpWhenFree(() => this.setUp(db), deadline)
    } catch (error) {
      // A connection that failed to set up holds the files open: it must not outlive the attempt.
      db.close()
      throw error
    }
    const after = before === undefined ? undefined : openDatabaseFiles(real)
    const mine = after === undefined ? {} : openedBetween(before!, after)
    this.inode = mine.db ?? this.inode
    this.walInode = mine.wal ?? inodeOf(`${this.file}-wal`)
    this.shmInode = mine.shm ?? inodeOf(`${this.file}-shm`)
    const now = inodeOf(this.file)
    // (Gone from the path, it pairs with no other database's log: the next write reopens.)
    if (now !== 0 && now !== this.inode) {
      // The database was removed and made again while this connection opened its files: the
      // log and index it opened after may be the new database's, paired with the removed file
      // (its writes would go to the new log; reopening would take that log for the removed
      // database's and remove it, with the writes the others had made). Opened again.
      db.close()
      this.inode = 0
      throw Object.assign(new Error(`${this.file} was replaced while it was opened`), {
        code: REPLACED_WHILE_OPENED,
      })
    }
    this.remember()
  }

  private setUp(db: Database.Database): void {
    const mode = db.pragma('journal_mode = WAL', { simple: true })
    if (mode !== 'wal') throw new Error(`cannot use WAL journal mode (got ${String(mode)})`)
    db.pragma('synchronous = NORMAL')
    db.pragma(`wal_autocheckpoint = ${CHECKPOINT_PAGES}`)
    const version = db.pragma('user_version', { simple: true }) as number
    if (version > SCHEMA_VERSION) {
      throw new Error(`${this.file} was written by a newer @cache/disk (schema ${version})`)
    }
    if (version < SCHEMA_VERSION) {
      db.transaction(() => {
        // Read again under the write lock: another process may have created or migrated it meanwhile.
        const current = db.pragma('user_version', { simple: true }) as number
        if (current === 0) db.exec(SCHEMA)
        if (current === 1) db.exec(MIGRATE_1_TO_2)
        if (current === 1 || current === 2) db.exec(MIGRATE_2_TO_3)
        db.pragma(`user_version = ${SCHEMA_VERSION}`)
      }).immediate()
    }
    db.pragma(`busy_timeout = ${this.busyTimeoutMs}`)
    this.prepare(db)
  }

  private prepare(db: Database.Database): void {
    this.selectMany = new Map()
    const raw = <P extends unknown[], R>(sql: string) => db.prepare<P, R>(sql).raw(true)
    this.select = raw(
      `SELECT ${this.liveValue()}, file, expires_at, accessed_at, size FROM entries WHERE ns = ? AND key = ?`,
    )
    this.selectForWrite = raw(
      'SELECT value, file, expires_at, version, size FROM entries WHERE ns = ? AND key = ?',
    )
    this.selectForPut = raw(
      'SELECT rowid, file, expires_at, version, accessed_at, expiry_bucket, size FROM entries WHERE ns = ? AND key = ?',
    )
    this.selectForIncr = raw(
      'SELECT rowid, file, expires_at, version, accessed_at, expiry_bucket, size, value FROM entries WHERE ns = ? AND key = ?',
    )
    this.insertRow = db.prepare(
      `INSERT INTO entries (ns, key, value, file, size, expires_at, accessed_at, version, expiry_bucket)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    // A rewrite names expiry_bucket only when it changes (an UPDATE that does not name an index's
    // column leaves that index untouched), and moves the row to the next rowid (the LRU order)
    // only when it records an access: a new rowid rewrites the row's entry in every index, so
    // that costs more than a rewrite in place. Index: [access recorded][bucket changes].
    const rewrite = (accessed: boolean, bucket: boolean) =>
      db.prepare(
        `UPDATE entries SET value = ?, file = ?, size = ?, expires_at = ?, version = ?${
          accessed ? `, accessed_at = ?, ${NEXT_ROWID}` : ''
        }${bucket ? ', expiry_bucket = ?' : ''} WHERE rowid = ?`,
      )
    this.rewriteRow = [
      [rewrite(false, false), rewrite(false, true)],
      [rewrite(true, false), rewrite(true, true)],
    ]
    this.removeRow = raw('DELETE FROM entries WHERE ns = ? AND key = ? RETURNING file, expires_at')
    this.removeIfVersion = raw(
      'DELETE FROM entries WHERE ns = ? AND key = ? AND version = ? RETURNING file, expires_at',
    )
    // A row whose stored access is newer than this one (a rewrite, another process) stays where it is.
    this.touchRow = db.prepare(
      `UPDATE entries SET accessed_at = ?, ${NEXT_ROWID} WHERE ns = ? AND key = ? AND accessed_at <= ?`,
    )
    this.clearBatch = raw(
      'DELETE FROM entries WHERE rowid IN (SELECT rowid FROM entries WHERE ns = ? LIMIT ?) RETURNING file',
    )
    this.pruneBatch = raw(
      `DELETE FROM entries WHERE rowid IN
         (SELECT rowid FROM entries WHERE expiry_bucket <= ? AND expires_at <= ? LIMIT ?) RETURNING file`,
    )
    this.lruBatch = raw('SELECT rowid, size, file FROM entries ORDER BY rowid LIMIT ?')
    this.deleteRowid = raw('DELETE FROM entries WHERE rowid = ? RETURNING file')
    this.readTotals = raw('SELECT size, count FROM totals WHERE id = 0')
    this.fileReferenced = raw('SELECT 1 FROM entries WHERE file = ? LIMIT 1')
    this.dropBroken = db.prepare('DELETE FROM entries WHERE ns = ? AND key = ? AND file = ?')
    // Keys as bytes (see stored-keys.ts), in key order along the primary key.
    this.keysFrom = raw(
      'SELECT CAST(key AS BLOB), expires_at FROM entries WHERE ns = ? AND key >= ? ORDER BY key LIMIT ?',
    )
    this.keysBetween = raw(
      'SELECT CAST(key AS BLOB), expires_at FROM entries WHERE ns = ? AND key >= ? AND key < ? ORDER BY key LIMIT ?',
    )

    this.batchTx = db.transaction(
      (ns: string, ops: readonly BatchOp[], now: number, accesses: readonly Access[] | undefined) => {
        if (accesses !== undefined) this.touchRows(accesses)
        const outcomes = new Array<BatchOutcome>(ops.length)
        let grew = false
        for (let i = 0; i < ops.length; i++) {
          const op = ops[i]!
          const outcome = op.kind === 'put' ? this.putOne(ns, op, now) : this.deleteOne(ns, op.key, now)
          grew ||= outcome.grew
          outcomes[i] = outcome
        }
        // A batch that added no bytes cannot have pushed the total over a limit: no read-back.
        return { outcomes, total: grew ? this.readTotals.get()![0] : undefined }
      },
    ).immediate as typeof this.batchTx
    this.incrTx = db.transaction(
      (row: NewRow, by: number, addTo: CounterStep, accesses: readonly Access[] | undefined): IncrResult => {
        if (accesses !== undefined) this.touchRows(accesses)
        const old = this.selectForIncr.get(row.ns, row.key)
        const live = old !== undefined && (old[2] === null || old[2] > row.now)
        // A live counter keeps its expiry; an absent or expired one starts at 0 with the new TTL.
        const value = live ? addTo(old[7] ?? null, old[1], old[6]) : by
        const bytes = Buffer.from(String(value))
        const expiresAt = live ? old[2] : row.expiresAt
        const size = bytes.length + row.key.length
        this.writeRow(row.ns, row.key, bytes, null, size, expiresAt, row.now, old, live)
        return { value, oldFile: old?.[1] ?? null, total: this.readTotals.get()![0] }
      },
    ).immediate as typeof this.incrTx
    this.touchTx = db.transaction((accesses: readonly Access[]) => this.touchRows(accesses))
      .immediate as typeof this.touchTx
    this.evictTx = db.transaction((now: number, limit: number, accesses: readonly Access[] | undefined) => {
      if (accesses !== undefined) this.touchRows(accesses)
      let total = this.readTotals.get()![0]
      const files: (string | null)[] = []
      if (total <= limit) return { files, total }
      // Expired entries go first, then the least recently used, a batch per transaction.
      for (const [file] of this.pruneBatch.all(expiryBucket(now), now, 256)) files.push(file)
      total = this.readTotals.get()![0]
      if (files.length > 0) return { files, total }
      for (const [rowid, size] of this.lruBatch.all(256)) {
        if (total <= limit) break
        files.push(this.deleteRowid.get(rowid)?.[0] ?? null)
        total -= size
      }
      return { files, total: this.readTotals.get()![0] }
    }).immediate as typeof this.evictTx
  }

  /** The get path's value column: as text if the store reads text, unless it starts with a NUL byte. */
  private liveValue(column = 'value'): string {
    return this.readsText
      ? `CASE WHEN substr(${column}, 1, 1) = x'00' THEN ${column} ELSE CAST(${column} AS TEXT) END`
      : column
  }

  /** Moves each row read to the end of the LRU order, oldest access first. */
  private touchRows(accesses: readonly Access[]): void {
    for (const { ns, key, at } of accesses) this.touchRow.run(at, ns, key, at)
  }

  private putOne(ns: string, op: BatchOp & { kind: 'put' }, now: number): BatchOutcome {
    const old = this.selectForPut.get(ns, op.key)
    const live = old !== undefined && (old[2] === null || old[2] > now)
    const { condition } = op
    if (
      (condition.kind === 'absent' && live) ||
      (condition.kind === 'version' && (old === undefined ? 0 : old[3]) !== condition.version)
    ) {
      return UNDONE
    }
    const grew = this.writeRow(ns, op.key, op.value, op.file, op.size, op.expiresAt, now, old, live)
    return { done: true, file: old === undefined ? null : old[1], live, grew }
  }

  /**
   * Inserts the row, or rewrites `old` in place. A rewrite records its access time (and so moves
   * to the end of the LRU order, a new rowid: every index's entry for the row is rewritten) only
   * when the stored one is `accessResolution` old, and names the expiry bucket only when it
   * changes, so most rewrites within `accessResolution` write the row's page alone. True if it
   * added bytes to the total (a new row, or a larger value).
   */
  private writeRow(
    ns: string,
    key: string,
    value: Buffer | null,
    file: string | null,
    size: number,
    expiresAt: number | null,
    now: number,
    old: PutRow | undefined,
    live: boolean,
  ): boolean {
    const bucket = expiryBucket(expiresAt)
    if (old === undefined) {
      this.insertRow.run(ns, key, value, file, size, expiresAt, now, randomVersion(), bucket)
      return true
    }
    // An expired entry being replaced is a new entry: its access time starts now.
    const accessed = !live || now - old[4] >= this.accessResolutionMs
    const moved = bucket !== old[5]
    const params: unknown[] = [value, file, size, expiresAt, randomVersion()]
    if (accessed) params.push(now)
    if (moved) params.push(bucket)
    params.push(old[0])
    this.rewriteRow[accessed ? 1 : 0]![moved ? 1 : 0]!.run(...params)
    return size > old[6]
  }

  private deleteOne(ns: string, key: string, now: number): BatchOutcome {
    const row = this.removeRow.get(ns, key)
    if (row === undefined) return UNDONE
    return { done: true, file: row[0], live: row[1] === null || row[1] > now, grew: false }
  }

  /** The row for a key, expired or not. */
  get(ns: string, key: string): LiveRow | undefined {
    return this.select.get(ns, key)
  }

  /** The row for a key with its version, for a read-modify-write. */
  getForWrite(ns: string, key: string): WriteRow | undefined {
    return this.selectForWrite.get(ns, key)
  }

  /**
   * Applies writes in order in one IMMEDIATE transaction (one commit for all of them), each put
   * only if its condition holds against the state the writes before it left; returns what each
   * did and the new byte total (undefined when no write of the batch added bytes). `accesses`,
   * reads that happened before these writes, are recorded first.
   */
  writeBatch(
    ns: string,
    ops: readonly BatchOp[],
    now: number,
    accesses?: readonly Access[],
  ): { outcomes: BatchOutcome[]; total: number | undefined } {
    return this.batchTx(ns, ops, now, accesses)
  }

  /** The rows of several keys (expired or not), in the order of `keys`, with one statement. */
  getMany(ns: string, keys: readonly string[]): (LiveRow | undefined)[] {
    let statement = this.selectMany.get(keys.length)
    if (statement === undefined) {
      // A numbered list of the keys joined to the primary key: one index lookup a key, and each
      // row comes back with its position, so keys are never decoded from SQLite's text. The
      // position comes last: the row read is a LiveRow as it is, with no copy.
      const wanted = keys.map((_, i) => `(${i}, ?)`).join(', ')
      statement = this.db
        .prepare<unknown[], [...LiveRow, number]>(
          `WITH wanted (i, key) AS (VALUES ${wanted})
           SELECT ${this.liveValue('e.value')}, e.file, e.expires_at, e.accessed_at, e.size, wanted.i
           FROM wanted JOIN entries AS e ON e.ns = ? AND e.key = wanted.key`,
        )
        .raw(true)
      this.selectMany.set(keys.length, statement)
    }
    const rows = new Array<LiveRow | undefined>(keys.length)
    for (const row of statement.all(...keys, ns)) rows[row[5]] = row as unknown as LiveRow
    return rows
  }

  /** Adds `by` to the counter at `row.key` in one IMMEDIATE transaction, after recording `accesses`. */
  incr(row: NewRow, by: number, addTo: CounterStep, accesses?: readonly Access[]): IncrResult {
    return this.incrTx(row, by, addTo, accesses)
  }

  /** Deletes a key only if its row is still at `version` (nothing wrote it since it was read). */
  deleteIfVersion(ns: string, key: string, version: number): [string | null, number | null] | undefined {
    return this.removeIfVersion.get(ns, key, version)
  }

  /** Removes a row whose value file has vanished. */
  dropIfFile(ns: string, key: string, file: string): void {
    this.dropBroken.run(ns, key, file)
  }

  /** Records reads (for LRU eviction) in one transaction, oldest first. */
  touch(accesses: readonly Access[]): void {
    this.touchTx(accesses)
  }

  /**
   * Up to `limit` keys of a namespace from `from` on (inclusive), before `below` if given, in
   * key order: `[key as bytes, expiresAt]`, expired rows included.
   */
  keyPage(ns: string, from: string, below: string | undefined, limit: number): [Buffer, number | null][] {
    return below === undefined
      ? this.keysFrom.all(ns, from, limit)
      : this.keysBetween.all(ns, from, below, limit)
  }

  /** Deletes up to `limit` rows of a namespace; returns their files (null for inline ones). */
  clearSome(ns: string, limit: number): (string | null)[] {
    return this.clearBatch.all(ns, limit).map((row) => row[0])
  }

  /** Deletes up to `limit` expired rows; returns their files. */
  pruneSome(now: number, limit: number): (string | null)[] {
    return this.pruneBatch.all(expiryBucket(now), now, limit).map((row) => row[0])
  }

  /** One eviction step towards `limit` bytes, after recording `accesses` (so recent reads are spared). */
  evictSome(
    now: number,
    limit: number,
    accesses?: readonly Access[],
  ): { files: (string | null)[]; total: number } {
    return this.evictTx(now, limit, accesses)
  }

  /** Bytes and entries in the whole directory, every namespace included. */
  totals(): { bytes: number; entries: number } {
    const [bytes, entries] = this.readTotals.get()!
    return { bytes, entries }
  }

  isReferenced(file: string): boolean {
    return this.fileReferenced.get(file) !== undefined
  }
}

/** Moves the updated row to the end of the LRU order (`max(rowid)` is one seek to the last row). */
const NEXT_ROWID = 'rowid = (SELECT max(rowid) + 1 FROM entries)'

function randomVersion(): number {
  return Math.floor(Math.random() * 2 ** 52) + 1
}

/** How long opening waits, at most, for processes that set up the same file at once. */
const SET_UP_WAIT_MS = 5000
const pause = new Int32Array(new SharedArrayBuffer(4))

/** The code of the error a connection throws when the database file was replaced while it opened. */
const REPLACED_WHILE_OPENED = 'DATABASE_REPLACED_WHILE_OPENED'

/** Tries of an open that met a race's error with no change to its files seen (see `connect`). */
const UNSEEN_RACE_TRIES = 8

/**
 * True for the errors an open meets when the directory or database file is removed under it: a
 * file gone before SQLite opened it, or read short or unstatable once open (disk I/O error), or
 * a directory gone before a file in it was made.
 */
function isOpenRace(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return (
    typeof code === 'string' &&
    (code.startsWith('SQLITE_IOERR') ||
      code === 'SQLITE_CANTOPEN' ||
      code === 'ENOENT' ||
      code === REPLACED_WHILE_OPENED)
  )
}

/** better-sqlite3's refusal when the file's directory is missing. */
const DIRECTORY_GONE = /directory does not exist/

/**
 * Opens an existing database file with a long busy timeout (schema creation and WAL setup happen
 * once, at start-up). better-sqlite3 checks that the directory exists before SQLite opens the file
 * and throws a TypeError with no code: a directory removed since the look is a race like a file
 * removed since (coded `ENOENT`, so the open is tried again). Told by its message, not by looking
 * again: a cleaner's `mv` and another process's open may have made the directory anew meanwhile.
 */
function openFile(file: string): Database.Database {
  try {
    return new Database(file, { timeout: 5000, fileMustExist: true })
  } catch (error) {
    if (error instanceof TypeError && (DIRECTORY_GONE.test(error.message) || !existsSync(dirname(file))))
      throw Object.assign(new Error(`${dirname(file)} was removed while ${file} was opened`), {
        code: 'ENOENT',
        cause: error,
      })
    throw error
  }
}

/**
 * Runs `setUp`, again after a pause while SQLite answers busy, until `deadline`. Switching a new
 * file to WAL takes an exclusive lock, and SQLite refuses at once, without its busy handler, a
 * lock that could deadlock with another connection's (two processes setting up one new directory
 * at once: 3 of 100 opens failed "database is locked", 4 processes × 25 new directories). Opening
 * is synchronous, so the pause blocks, as the busy handler does.
 */
function setUpWhenFree(setUp: () => void, deadline: number): void {
  for (let wait = 2; ; wait = Math.min(wait * 2, 50)) {
    try {
      setUp()
      return
    } catch (error) {
      const code = (error as { code?: unknown } | null)?.code
      if (typeof code !== 'string' || !code.startsWith('SQLITE_BUSY') || Date.now() >= deadline) throw error
      Atomics.wait(pause, 0, 0, wait)
    }
  }
}
