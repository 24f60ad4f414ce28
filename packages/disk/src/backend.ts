import {
  assertIncrement,
  assertKey,
  type CacheBackend,
  CacheClosedError,
  CacheConfigError,
  CacheConflictError,
  type CacheEntry,
  CacheError,
  CacheNotANumberError,
  ObservedBackend,
  CacheUnavailableError,
  CacheValueTooLargeError,
  checkLogger,
  type Codec,
  createCodec,
  type Duration,
  IncidentLog,
  isListedKey,
  KeyedQueue,
  type ListKeysOptions,
  listPrefix,
  type SetManyItem,
  ttlToMs,
} from '@cache/core'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ValueFiles } from './files.js'
import { StoreLock } from './lock.js'
import { type DiskBackendOptions, resolveOptions } from './options.js'
import {
  type BatchOp,
  type BatchOutcome,
  type Condition,
  EntryStore,
  isBusy,
  type LiveRow,
  type WriteRow,
} from './store.js'
import { keyFromBytes, prefixUpperBound } from './stored-keys.js'

/** Orphan files (from crashed writers) are swept at most this often, and only when at least this old. */
const SWEEP_EVERY_MS = 3_600_000
const ORPHAN_AGE_MS = 600_000
const BATCH = 500
/** getMany reads at most this many keys with one statement. */
const MANY_CHUNK = 100

/**
 * What waits its turn behind writes not yet committed: a write for the next group commit, or an
 * operation that must see the writes issued before it (and none issued after), run alone.
 */
type Queued =
  | { kind: 'write'; op: BatchOp; resolve: (outcome: BatchOutcome) => void; reject: (error: unknown) => void }
  | {
      kind: 'task'
      /** Set when the task writes this key: later reads of the key queue behind it. */
      key: string | undefined
      run: () => unknown
      resolve: (result: never) => void
      reject: (error: unknown) => void
    }

/**
 * A persistent cache in a directory: SQLite (WAL) as the index and store of small values, one
 * file per large value. Safe for several processes at once; see the README for the guarantees.
 */
export class DiskBackend extends ObservedBackend implements CacheBackend {
  readonly name = 'disk'
  readonly namespace: string | undefined
  /** The cache directory. */
  readonly path: string
  private readonly ns: string
  private readonly queue = new KeyedQueue()
  private readonly codec: Codec
  private readonly store: EntryStore
  private readonly lock: StoreLock
  private readonly files: ValueFiles
  private readonly defaultTtlMs: number | undefined
  private readonly maxSize: number
  private readonly inlineThreshold: number
  private readonly accessResolutionMs: number
  private readonly maxAttempts: number
  private readonly now: () => number
  private readonly touched = new Set<string>()
  private touchTimer: NodeJS.Timeout | undefined
  private pruneTimer: NodeJS.Timeout | undefined
  private lastSweep = 0
  private evicting = false
  private closed = false
  private closing: Promise<void> | undefined
  /** Writes not yet committed and the operations issued after them, in order (see `commit`). */
  private ordered: Queued[] = []
  /** How many queued or committing writes each key has: an operation on such a key queues behind them. */
  private readonly writing = new Map<string, number>()
  /** Set while the queue is being worked through; settles when it is empty. */
  private draining: Promise<void> | undefined

  constructor(options: DiskBackendOptions = {}) {
    super('disk')
    const settings = resolveOptions(options)
    this.namespace = options.namespace
    this.ns = options.namespace ?? ''
    this.defaultTtlMs = settings.defaultTtlMs
    this.maxSize = settings.maxSize
    this.inlineThreshold = settings.inlineThreshold
    this.accessResolutionMs = settings.accessResolutionMs
    this.maxAttempts = settings.maxAttempts
    this.now = settings.now
    this.codec = createCodec(options)
    this.path = settings.path
    try {
      mkdirSync(this.path, { recursive: true, mode: 0o700 })
      this.files = new ValueFiles(this.path)
      this.store = new EntryStore(
        join(this.path, 'cache.db'),
        settings.busyTimeoutMs,
        settings.accessResolutionMs,
      )
      this.lock = new StoreLock(
        this.store,
        this.observer,
        settings.lockTimeoutMs,
        () => this.closed,
        new IncidentLog(checkLogger(options.logger)),
      )
      const recovery = this.store.open()
      // Reported on the next turn, so listeners attached right after construction hear it.
      if (recovery !== undefined) setImmediate(() => this.lock.report(recovery, 'open'))
    } catch (cause) {
      if (isUnbuiltNativeModule(cause)) throw unbuiltNativeModule(cause)
      const message = `cannot open a disk cache in ${this.path}: ${(cause as Error).message}`
      throw new CacheConfigError('path', message, { cause })
    }
    if (settings.pruneIntervalMs !== false) {
      this.pruneTimer = setInterval(() => void this.backgroundPrune(), settings.pruneIntervalMs).unref()
    }
  }

  /** Where a damaged database was moved, if this backend had to rebuild one. */
  get recovered(): string | undefined {
    return this.lock.recovered
  }

  async get<T = unknown>(key: string): Promise<T | undefined> {
    const entry = this.read<T>(key)
    return entry instanceof Promise ? (await entry)?.value : entry?.value
  }

  async getEntry<T = unknown>(key: string): Promise<CacheEntry<T> | undefined> {
    return this.read<T>(key)
  }

  async set(key: string, value: unknown, ttl?: Duration): Promise<void> {
    await this.write(key, value, ttl, ALWAYS)
  }

  async add(key: string, value: unknown, ttl?: Duration): Promise<boolean> {
    return this.write(key, value, ttl, ABSENT)
  }

  async delete(key: string): Promise<boolean> {
    if (typeof key !== 'string') assertKey(key)
    const outcome = await this.commit({ kind: 'delete', key })
    if (!outcome.done) return false
    if (outcome.file !== null) await this.discard([outcome.file])
    if (outcome.live) this.observer.delete(key)
    return outcome.live
  }

  /**
   * Deletes the key only if it holds the string `expected`: reads the row and its version, then
   * deletes it only if the version is unchanged (one SQLite statement), atomic across processes.
   */
  async compareAndDelete(key: string, expected: string): Promise<boolean> {
    if (typeof key !== 'string') assertKey(key)
    const row = await this.inOrder(key, false, () =>
      this.locked('compareAndDelete', key, () => this.store.getForWrite(this.ns, key)),
    )
    if (row === undefined) return false
    const current = await this.currentValue<unknown>(key, row)
    if (current !== expected) return false
    const removed = await this.locked('compareAndDelete', key, () =>
      this.store.deleteIfVersion(this.ns, key, row[3]),
    )
    if (removed === undefined) return false
    await this.discard([removed[0]])
    this.observer.delete(key)
    return true
  }

  async has(key: string): Promise<boolean> {
    if (typeof key !== 'string') assertKey(key)
    const row = await this.inOrder(key, false, () =>
      this.locked('has', key, () => this.store.get(this.ns, key)),
    )
    return row !== undefined && (row[2] === null || row[2] > this.now())
  }

  /** Removes this namespace's entries (in batches, so other processes are never locked out for long). */
  async clear(): Promise<void> {
    await this.inOrder(undefined, false, async () => {
      for (;;) {
        const files = await this.locked('clear', undefined, () => this.store.clearSome(this.ns, BATCH))
        await this.discard(files)
        if (files.length < BATCH) return
      }
    })
  }

  /**
   * The live keys of this namespace, each once (internal `__` keys left out); with `prefix`, only
   * those that start with it. Reads pages of 500 keys in key order along the primary key
   * (`WHERE ns = ? AND key >= ? ORDER BY key LIMIT 500`, a prefix as a key range, never `LIKE`),
   * each page a short read of its own, so writers are never held up. Keys written or deleted
   * during the iteration may or may not be listed.
   */
  async *keys(options?: ListKeysOptions): AsyncIterableIterator<string> {
    const prefix = listPrefix(options)
    const below = prefixUpperBound(prefix)
    // A prefix with a surrogate code unit has no exact key range: read the namespace, filter here.
    let from = below === undefined ? '' : prefix
    await this.inOrder(undefined, false, () => undefined)
    for (;;) {
      if (this.closed) throw new CacheClosedError('disk')
      const start = from
      const page = await this.locked('keys', undefined, () =>
        this.store.keyPage(this.ns, start, below, BATCH),
      )
      const now = this.now()
      for (const [bytes, expiresAt] of page) {
        const key = keyFromBytes(bytes)
        if ((expiresAt === null || expiresAt > now) && isListedKey(key, prefix)) yield key
      }
      if (page.length < BATCH) return
      // The next key after the last one read, in SQLite's byte order, is that key followed by NUL.
      from = `${keyFromBytes(page[page.length - 1]![0])}\u0000`
    }
  }

  async incr(key: string, by = 1, ttl?: Duration): Promise<number> {
    if (typeof key !== 'string') assertKey(key)
    assertIncrement(by)
    const ttlMs = this.ttl(ttl)
    const readInteger = (value: Buffer | null, file: string | null): number => {
      const current = file === null && value !== null ? this.codec.decode(value) : undefined
      if (!Number.isSafeInteger(current)) throw new CacheNotANumberError(key)
      return current as number
    }
    const result = await this.inOrder(key, true, () =>
      this.locked('incr', key, () => {
        const now = this.now()
        const expiresAt = ttlMs === undefined ? null : now + ttlMs
        const row = { ns: this.ns, key, value: null, file: null, size: 0, expiresAt, now }
        return this.store.incr(row, by, readInteger)
      }),
    )
    await this.discard([result.oldFile])
    this.observer.set(key)
    if (result.total > this.maxSize) await this.evict()
    return result.value
  }

  /**
   * Read-modify-write, exact across processes: reads the entry and its version, runs `fn`
   * (outside any transaction, so it may be async), then writes only if the version is unchanged,
   * else retries with the newer value. Calls in this process are queued per key, so retries only
   * happen against other processes. `fn` may run more than once: keep it free of side effects.
   */
  async atomicUpdate<T>(
    key: string,
    fn: (current: T | undefined) => T | Promise<T>,
    ttl?: Duration,
  ): Promise<T> {
    if (typeof key !== 'string') assertKey(key)
    const ttlMs = this.ttl(ttl)
    return this.queue.run(key, async () => {
      for (let attempt = 1; ; attempt++) {
        const row = await this.inOrder(key, false, () =>
          this.locked('atomicUpdate', key, () => this.store.getForWrite(this.ns, key)),
        )
        const current = await this.currentValue<T>(key, row)
        if (current !== CONFLICT) {
          const next = await fn(current)
          const condition: Condition = { kind: 'version', version: row === undefined ? 0 : row[3] }
          if (await this.put(key, this.codec.encode(next), ttlMs, condition)) return next
        }
        if (attempt >= this.maxAttempts) throw new CacheConflictError(key, attempt)
        await sleep(Math.random() * Math.min(attempt, 10))
      }
    })
  }

  /** Reads up to 100 keys with one SQLite statement (a primary-key lookup a key), then decodes each hit. */
  async getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    for (const key of keys) if (typeof key !== 'string') assertKey(key)
    if (this.closed) throw new CacheClosedError('disk')
    if (this.writing.size > 0 && keys.some((key) => this.writing.has(key)))
      return this.inOrder(undefined, false, () => this.readMany<T>(keys))
    return this.readMany<T>(keys)
  }

  private async readMany<T>(keys: readonly string[]): Promise<(T | undefined)[]> {
    const out = new Array<T | undefined>(keys.length)
    for (let start = 0; start < keys.length; start += MANY_CHUNK) {
      const chunk = keys.length <= MANY_CHUNK ? keys : keys.slice(start, start + MANY_CHUNK)
      const lookup = () => this.store.getMany(this.ns, chunk)
      let rows: (LiveRow | undefined)[]
      try {
        rows = lookup()
      } catch (error) {
        rows = await this.lock.retry('get', undefined, error, lookup)
      }
      for (let i = 0; i < chunk.length; i++) {
        const entry = this.found<T>(chunk[i]!, rows[i], false)
        out[start + i] = entry instanceof Promise ? (await entry)?.value : entry?.value
      }
    }
    return out
  }

  async setMany(items: readonly SetManyItem[]): Promise<void> {
    // Check every key, TTL and value first so a bad item stores nothing.
    const prepared = items.map((item) => {
      assertKey(item.key)
      return { key: item.key, ttlMs: this.ttl(item.ttl), bytes: this.codec.encode(item.value) }
    })
    for (const item of prepared) await this.put(item.key, item.bytes, item.ttlMs, ALWAYS)
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    let removed = 0
    for (const key of keys) if (await this.delete(key)) removed++
    return removed
  }

  /**
   * Deletes expired entries (every namespace) and, when `orphanAgeMs` is given or an hour has
   * passed, value files no entry references that are at least that old. Runs in the background
   * every `pruneInterval`; call it yourself to prune now.
   */
  async prune(options: { orphanAgeMs?: number } = {}): Promise<{ expired: number; orphans: number }> {
    await this.inOrder(undefined, false, () => undefined)
    let expired = 0
    for (;;) {
      const files = await this.locked('prune', undefined, () => this.store.pruneSome(this.now(), BATCH))
      expired += files.length
      await this.discard(files)
      if (files.length < BATCH) break
    }
    let orphans = 0
    if (options.orphanAgeMs !== undefined || Date.now() - this.lastSweep >= SWEEP_EVERY_MS) {
      this.lastSweep = Date.now()
      orphans = await this.files.sweep((name) => this.referenced(name), options.orphanAgeMs ?? ORPHAN_AGE_MS)
    }
    return { expired, orphans }
  }

  /** Bytes (values plus key lengths) and entries in the whole directory, every namespace included. */
  async usage(): Promise<{ bytes: number; entries: number }> {
    return this.inOrder(undefined, false, () => this.locked('usage', undefined, () => this.store.totals()))
  }

  /** Idempotent. Writes not yet committed and pending access times are written first; background timers stop. */
  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async shutdown(): Promise<void> {
    await this.afterWrites()
    this.flushTouches()
    this.closed = true
    clearInterval(this.pruneTimer)
    clearTimeout(this.touchTimer)
    this.store.close()
  }

  /** The live entry, read with one prepared statement; sync unless the value is in a file. */
  private read<T>(key: string): CacheEntry<T> | undefined | Promise<CacheEntry<T> | undefined> {
    if (typeof key !== 'string') assertKey(key)
    if (this.closed) throw new CacheClosedError('disk')
    if (this.writing.size > 0 && this.writing.has(key))
      return this.inOrder(key, false, () => this.lookup<T>(key))
    return this.lookup<T>(key)
  }

  private lookup<T>(key: string): CacheEntry<T> | undefined | Promise<CacheEntry<T> | undefined> {
    let row: LiveRow | undefined
    try {
      row = this.store.get(this.ns, key)
    } catch (error) {
      const lookup = () => this.store.get(this.ns, key)
      return this.lock.retry('get', key, error, lookup).then((again) => this.found<T>(key, again, false))
    }
    return this.found<T>(key, row, false)
  }

  private found<T>(
    key: string,
    row: LiveRow | undefined,
    retried: boolean,
  ): CacheEntry<T> | undefined | Promise<CacheEntry<T> | undefined> {
    const now = this.now()
    const expiresAt = row?.[2]
    if (row === undefined || (expiresAt !== null && expiresAt! <= now)) {
      this.observer.miss(key)
      return undefined
    }
    if (row[1] !== null) return this.foundInFile<T>(key, row, retried)
    const value = this.codec.decode(row[0]!) as T
    if (now - row[3] >= this.accessResolutionMs) this.touch(key)
    this.observer.hit(key)
    return expiresAt === null ? { value } : { value, expiresAt: expiresAt! }
  }

  private async foundInFile<T>(
    key: string,
    row: LiveRow,
    retried: boolean,
  ): Promise<CacheEntry<T> | undefined> {
    const file = row[1]!
    const bytes = await this.fileIo('get', key, this.files.read(file, row[4] - key.length))
    if (bytes === undefined) {
      // The file went away: most likely another process replaced the entry meanwhile.
      const again = await this.locked('get', key, () => this.store.get(this.ns, key))
      if (!retried && again !== undefined && again[1] !== file) return this.found<T>(key, again, true)
      if (again?.[1] === file) await this.locked('get', key, () => this.store.dropIfFile(this.ns, key, file))
      this.observer.miss(key)
      return undefined
    }
    const value = this.codec.decode(bytes) as T
    if (this.now() - row[3] >= this.accessResolutionMs) this.touch(key)
    this.observer.hit(key)
    return row[2] === null ? { value } : { value, expiresAt: row[2] }
  }

  /** The value `atomicUpdate` passes to `fn`, or CONFLICT if its file vanished under us. */
  private async currentValue<T>(
    key: string,
    row: WriteRow | undefined,
  ): Promise<T | undefined | typeof CONFLICT> {
    if (row === undefined || (row[2] !== null && row[2] <= this.now())) return undefined
    if (row[1] === null) return this.codec.decode(row[0]!) as T
    const bytes = await this.fileIo('atomicUpdate', key, this.files.read(row[1], row[4] - key.length))
    return bytes === undefined ? CONFLICT : (this.codec.decode(bytes) as T)
  }

  private async write(
    key: string,
    value: unknown,
    ttl: Duration | undefined,
    condition: Condition,
  ): Promise<boolean> {
    if (typeof key !== 'string') assertKey(key)
    if (this.closed) throw new CacheClosedError('disk')
    const ttlMs = this.ttl(ttl)
    return this.put(key, this.codec.encode(value), ttlMs, condition)
  }

  /** Stores encoded bytes (a large value goes to a file first) if `condition` holds. */
  private async put(
    key: string,
    bytes: Buffer,
    ttlMs: number | undefined,
    condition: Condition,
  ): Promise<boolean> {
    const size = bytes.length + key.length
    if (size > this.maxSize) throw new CacheValueTooLargeError(key, size, this.maxSize)
    const file =
      bytes.length > this.inlineThreshold ? await this.fileIo('set', key, this.files.write(bytes)) : null
    const value = file === null ? bytes : null
    let outcome: BatchOutcome
    try {
      outcome = await this.commit({ kind: 'put', key, value, file, size, ttlMs, condition })
    } catch (error) {
      await this.discard([file])
      throw error
    }
    const unused = outcome.done ? outcome.file : file
    if (unused !== null) await this.discard([unused])
    if (!outcome.done) return false
    this.observer.set(key)
    return true
  }

  /**
   * Group commit: a write joins the writes issued in the same tick (and those issued while a
   * commit is in progress), and consecutive writes are applied in order in one transaction. The
   * promise settles once that transaction has committed (or failed: then every write in it fails
   * with the error), and after any eviction the new total calls for.
   */
  private commit(op: BatchOp): Promise<BatchOutcome> {
    if (this.closed) return Promise.reject(new CacheClosedError('disk'))
    this.writing.set(op.key, (this.writing.get(op.key) ?? 0) + 1)
    const done = new Promise<BatchOutcome>((resolve, reject) =>
      this.ordered.push({ kind: 'write', op, resolve, reject }),
    )
    this.draining ??= this.drain()
    return done
  }

  /**
   * Runs `task` now, unless writes issued before it are not committed yet (writes of `key`, or
   * any write when no key is given): then it waits its turn behind them, ahead of any write
   * issued after it. `writes`: the task writes `key`, so what comes after it waits for it too.
   */
  private inOrder<R>(key: string | undefined, writes: boolean, task: () => R): R | Promise<Awaited<R>> {
    if (this.draining === undefined || (key !== undefined && !this.writing.has(key))) return task()
    if (writes) this.writing.set(key!, (this.writing.get(key!) ?? 0) + 1)
    return new Promise<Awaited<R>>((resolve, reject) =>
      this.ordered.push({ kind: 'task', key: writes ? key : undefined, run: task, resolve, reject }),
    )
  }

  private async drain(): Promise<void> {
    try {
      // Yield once, so every write issued in this tick joins the first batch.
      await undefined
      while (this.ordered.length > 0) {
        const head = this.ordered[0]!
        if (head.kind === 'task') {
          this.ordered.shift()
          try {
            head.resolve((await head.run()) as never)
          } catch (error) {
            head.reject(error)
          } finally {
            if (head.key !== undefined) this.settled(head.key)
          }
          continue
        }
        let end = 1
        while (end < this.ordered.length && this.ordered[end]!.kind === 'write') end++
        await this.commitBatch(this.ordered.splice(0, end) as (Queued & { kind: 'write' })[])
      }
    } finally {
      this.draining = undefined
    }
  }

  private async commitBatch(batch: (Queued & { kind: 'write' })[]): Promise<void> {
    const ops = batch.map((write) => write.op)
    const operation = ops.some((op) => op.kind === 'put') ? 'set' : 'delete'
    let total = 0
    let outcomes: BatchOutcome[] | undefined
    let failure: unknown
    try {
      ;({ outcomes, total } = await this.locked(operation, ops.length === 1 ? ops[0]!.key : undefined, () =>
        this.store.writeBatch(this.ns, ops, this.now()),
      ))
      if (total > this.maxSize) await this.evict()
    } catch (error) {
      failure = error
    }
    for (let i = 0; i < batch.length; i++) {
      const { op, resolve, reject } = batch[i]!
      this.settled(op.key)
      if (outcomes === undefined) reject(failure)
      else resolve(outcomes[i]!)
    }
  }

  private settled(key: string): void {
    const left = this.writing.get(key)! - 1
    if (left === 0) this.writing.delete(key)
    else this.writing.set(key, left)
  }

  /** Waits until every write issued so far has committed or failed. */
  private async afterWrites(): Promise<void> {
    while (this.draining !== undefined) await this.draining
  }

  /** Runs a short synchronous SQLite step; on a busy lock, waits without blocking and retries. */
  private locked<R>(operation: string, key: string | undefined, step: () => R): Promise<R> {
    return this.lock.run(operation, key, step)
  }

  /** Awaits a value-file read or write; an I/O failure (disk full, permissions) becomes a counted `CacheUnavailableError`. */
  private async fileIo<R>(operation: string, key: string, task: Promise<R>): Promise<R> {
    try {
      return await task
    } catch (cause) {
      const message = `disk: ${operation} failed on a value file: ${(cause as Error).message}`
      const error = new CacheUnavailableError('disk', message, { cause })
      this.observer.error(operation, error, key)
      throw error
    }
  }

  /** Removes value files after their entries are gone; a failure is reported, and the sweep retries later. */
  private async discard(files: Iterable<string | null>): Promise<void> {
    try {
      await this.files.remove(files)
    } catch (error) {
      this.observer.error('unlink', error)
    }
  }

  /** Evicts until the directory is under `maxSize`; one in-process run at a time. */
  private async evict(): Promise<void> {
    if (this.evicting) return
    this.evicting = true
    try {
      this.flushTouches()
      for (;;) {
        const { files, total } = await this.locked('evict', undefined, () =>
          this.store.evictSome(this.now(), this.maxSize),
        )
        await this.discard(files)
        if (total <= this.maxSize || files.length === 0) return
      }
    } catch (error) {
      // The write that triggered eviction succeeded; the next write over the limit tries again.
      if (!(error instanceof CacheError)) this.observer.error('evict', error)
    } finally {
      this.evicting = false
    }
  }

  /** Queues an access-time update; they are written in one batch, off the read path. */
  private touch(key: string): void {
    this.touched.add(key)
    this.touchTimer ??= setTimeout(() => this.flushTouches(), 1000).unref()
  }

  private flushTouches(): void {
    clearTimeout(this.touchTimer)
    this.touchTimer = undefined
    if (this.touched.size === 0 || this.closed) return
    const keys = [...this.touched]
    this.touched.clear()
    try {
      this.store.touch(this.ns, keys, this.now())
    } catch (error) {
      // Access times only steer eviction: a busy database skips this batch rather than wait.
      if (!isBusy(error)) this.observer.error('touch', error)
    }
  }

  private async backgroundPrune(): Promise<void> {
    try {
      this.store.followReplacement()
      await this.prune()
    } catch (error) {
      if (!this.closed && !(error instanceof CacheError)) this.observer.error('prune', error)
    }
  }

  private referenced(file: string): boolean {
    try {
      return this.store.isReferenced(file)
    } catch {
      return true // when in doubt, keep the file
    }
  }

  private ttl(ttl: Duration | undefined): number | undefined {
    return ttl === undefined ? this.defaultTtlMs : ttlToMs(ttl)
  }
}

const ALWAYS: Condition = { kind: 'always' }
const ABSENT: Condition = { kind: 'absent' }
const CONFLICT = Symbol('conflict')

/** A persistent, multi-process disk cache. See {@link DiskBackendOptions}. */
export function diskBackend(options: DiskBackendOptions = {}): DiskBackend {
  return new DiskBackend(options)
}

/** better-sqlite3 is installed but its native module was never built (pnpm 10 skips install scripts). */
function isUnbuiltNativeModule(error: unknown): boolean {
  return (
    error instanceof Error && /Could not locate the bindings file|better_sqlite3\.node/.test(error.message)
  )
}

function unbuiltNativeModule(cause: unknown): CacheConfigError {
  const message =
    'its native module is not built, so the disk cache cannot open. pnpm 10 skips install scripts unless ' +
    'allowed: run `pnpm approve-builds` (select better-sqlite3), then `pnpm rebuild better-sqlite3`; or list ' +
    'better-sqlite3 under `onlyBuiltDependencies` in pnpm-workspace.yaml. With npm, reinstall without --ignore-scripts.'
  return new CacheConfigError('better-sqlite3', message, { cause }, 'CACHE_MISSING_PACKAGE')
}
