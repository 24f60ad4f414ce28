import {
  type CacheBackend,
  CacheConfigError,
  CacheConflictError,
  type CacheEntry,
  CacheError,
  CacheNotANumberError,
  CacheValueTooLargeError,
  type Duration,
  type ListKeysOptions,
  type SetManyItem,
  ttlToMs,
} from '@cache/core'
import {
  assertIncrement,
  assertKey,
  ObservedBackend,
  checkLogger,
  type Codec,
  createCodec,
  IncidentLog,
  isListedKey,
  listPrefix,
} from '@cache/core/backend'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { CallOrder } from './call-order.js'
import type { DiskContext } from './context.js'
import { ValueFiles } from './files.js'
import { GroupCommit } from './group-commit.js'
import { StoreLock } from './lock.js'
import { type DiskBackendOptions, resolveOptions } from './options.js'
import { type Condition, EntryStore, isBusy, type LiveRow, type WriteRow } from './store.js'
import { keyFromBytes, prefixUpperBound } from './stored-keys.js'

/** Orphan files (from crashed writers) are swept at most this often, and only when at least this old. */
const SWEEP_EVERY_MS = 3_600_000
const ORPHAN_AGE_MS = 600_000
const BATCH = 500
/** getMany reads at most this many keys with one statement. */
const MANY_CHUNK = 100

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
  private readonly codec: Codec
  private readonly store: EntryStore
  private readonly lock: StoreLock
  private readonly files: ValueFiles
  private readonly order = new CallOrder()
  private readonly writes: GroupCommit
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
  private closing: Promise<void> | undefined

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
      this.files = new ValueFiles(this.path, this.observer)
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
    const context: DiskContext = {
      ns: this.ns,
      store: this.store,
      lock: this.lock,
      files: this.files,
      order: this.order,
      observer: this.observer,
      codec: this.codec,
      settings,
      isClosed: () => this.closed,
    }
    this.writes = new GroupCommit(context, () => this.evict())
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
    return this.writes.delete(key)
  }

  /**
   * Deletes the key only if it holds the string `expected`: reads the row and its version, then
   * deletes it only if the version is unchanged (one SQLite statement), atomic across processes.
   * Takes its turn on the key as a whole: it sees the writes issued before it, and those issued
   * after it wait until it has deleted (or not).
   */
  async compareAndDelete(key: string, expected: string): Promise<boolean> {
    if (typeof key !== 'string') assertKey(key)
    return this.order.inOrder([key], true, async () => {
      const row = await this.locked('compareAndDelete', key, () => this.store.getForWrite(this.ns, key))
      if (row === undefined) return false
      const current = await this.currentValue<unknown>(key, row)
      if (current !== expected) return false
      const removed = await this.locked('compareAndDelete', key, () =>
        this.store.deleteIfVersion(this.ns, key, row[3]),
      )
      if (removed === undefined) return false
      await this.files.discard([removed[0]])
      this.observer.delete(key)
      return true
    })
  }

  async has(key: string): Promise<boolean> {
    if (typeof key !== 'string') assertKey(key)
    const lookup = () => this.locked('has', key, () => this.store.get(this.ns, key))
    const row = await (this.order.idle() ? lookup() : this.order.inOrder([key], false, lookup))
    return row !== undefined && (row[2] === null || row[2] > this.now())
  }

  /** Removes this namespace's entries (in batches, so other processes are never locked out for long). */
  async clear(): Promise<void> {
    await this.order.inOrder(undefined, true, async () => {
      for (;;) {
        const files = await this.locked('clear', undefined, () => this.store.clearSome(this.ns, BATCH))
        await this.files.discard(files)
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
    for (let first = true; ; first = false) {
      this.assertOpen()
      const start = from
      const read = () =>
        this.locked('keys', undefined, () => this.store.keyPage(this.ns, start, below, BATCH))
      // The first page waits for the writes issued before the call, and is read before those issued after it.
      const page = await (first ? this.order.inOrder(undefined, false, read) : read())
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
    const result = await this.order.inOrder([key], true, () =>
      this.locked('incr', key, () => {
        const now = this.now()
        const expiresAt = ttlMs === undefined ? null : now + ttlMs
        const row = { ns: this.ns, key, value: null, file: null, size: 0, expiresAt, now }
        return this.store.incr(row, by, readInteger)
      }),
    )
    await this.files.discard([result.oldFile])
    this.observer.set(key)
    if (result.total > this.maxSize) await this.evict()
    return result.value
  }

  /**
   * Read-modify-write, exact across processes: reads the entry and its version, runs `fn`
   * (outside any transaction, so it may be async), then writes only if the version is unchanged,
   * else retries with the newer value. It takes its turn on the key as a whole (calls in this
   * process queue per key, so retries only happen against other processes), and operations
   * issued after it wait for its commit. Operations `fn` itself calls are not queued. `fn` may
   * run more than once: keep it free of side effects.
   */
  async atomicUpdate<T>(
    key: string,
    fn: (current: T | undefined) => T | Promise<T>,
    ttl?: Duration,
  ): Promise<T> {
    if (typeof key !== 'string') assertKey(key)
    const ttlMs = this.ttl(ttl)
    return this.order.inOrder([key], true, async () => {
      for (let attempt = 1; ; attempt++) {
        const row = await this.locked('atomicUpdate', key, () => this.store.getForWrite(this.ns, key))
        const current = await this.currentValue<T>(key, row)
        if (current !== CONFLICT) {
          const next = await this.order.runUpdate(() => fn(current))
          const condition: Condition = { kind: 'version', version: row === undefined ? 0 : row[3] }
          if (await this.writes.put(key, this.codec.encode(next), ttlMs, condition, true)) return next
        }
        if (attempt >= this.maxAttempts) throw new CacheConflictError(key, attempt)
        await sleep(Math.random() * Math.min(attempt, 10))
      }
    })
  }

  /** Reads up to 100 keys with one SQLite statement (a primary-key lookup a key), then decodes each hit. */
  async getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    for (const key of keys) if (typeof key !== 'string') assertKey(key)
    this.assertOpen()
    if (this.order.idle()) return this.readMany<T>(keys)
    return this.order.inOrder(keys, false, () => this.readMany<T>(keys))
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

  /**
   * Every item joins the group commit at once, in order (usually one transaction for all), so an
   * operation issued after the call sees every item.
   */
  async setMany(items: readonly SetManyItem[]): Promise<void> {
    this.assertOpen()
    // Check every key, TTL, value and size first so a bad item stores nothing.
    const prepared = items.map((item) => {
      assertKey(item.key)
      const bytes = this.codec.encode(item.value)
      const size = bytes.length + item.key.length
      if (size > this.maxSize) throw new CacheValueTooLargeError(item.key, size, this.maxSize)
      return { key: item.key, ttlMs: this.ttl(item.ttl), bytes }
    })
    await settledAll(prepared.map((item) => this.writes.put(item.key, item.bytes, item.ttlMs, ALWAYS)))
  }

  /** Every delete joins the group commit at once, in order, so an operation issued after the call sees them all. */
  async deleteMany(keys: readonly string[]): Promise<number> {
    for (const key of keys) if (typeof key !== 'string') assertKey(key)
    this.assertOpen()
    const removed = await settledAll(keys.map((key) => this.delete(key)))
    return removed.filter(Boolean).length
  }

  /**
   * Deletes expired entries (every namespace) and, when `orphanAgeMs` is given or an hour has
   * passed, value files no entry references that are at least that old. Runs in the background
   * every `pruneInterval`; call it yourself to prune now.
   */
  async prune(options: { orphanAgeMs?: number } = {}): Promise<{ expired: number; orphans: number }> {
    await this.order.inOrder(undefined, false, () => undefined)
    let expired = 0
    for (;;) {
      const files = await this.locked('prune', undefined, () => this.store.pruneSome(this.now(), BATCH))
      expired += files.length
      await this.files.discard(files)
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
    return this.order.inOrder(undefined, false, () =>
      this.locked('usage', undefined, () => this.store.totals()),
    )
  }

  /** Idempotent. Writes not yet committed and pending access times are written first; background timers stop. */
  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async shutdown(): Promise<void> {
    await this.writes.settled()
    this.flushTouches()
    this.markClosed()
    clearInterval(this.pruneTimer)
    clearTimeout(this.touchTimer)
    this.store.close()
  }

  /** The live entry, read with one prepared statement; sync unless the value is in a file. */
  private read<T>(key: string): CacheEntry<T> | undefined | Promise<CacheEntry<T> | undefined> {
    if (typeof key !== 'string') assertKey(key)
    this.assertOpen()
    if (this.order.idle()) return this.lookup<T>(key)
    return this.order.inOrder([key], false, () => this.lookup<T>(key))
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
    const bytes = await this.files.load('get', key, file, row[4] - key.length)
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
    const bytes = await this.files.load('atomicUpdate', key, row[1], row[4] - key.length)
    return bytes === undefined ? CONFLICT : (this.codec.decode(bytes) as T)
  }

  private async write(
    key: string,
    value: unknown,
    ttl: Duration | undefined,
    condition: Condition,
  ): Promise<boolean> {
    if (typeof key !== 'string') assertKey(key)
    this.assertOpen()
    const ttlMs = this.ttl(ttl)
    return this.writes.put(key, this.codec.encode(value), ttlMs, condition)
  }

  /** Runs a short synchronous SQLite step; on a busy lock, waits without blocking and retries. */
  private locked<R>(operation: string, key: string | undefined, step: () => R): Promise<R> {
    return this.lock.run(operation, key, step)
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
        await this.files.discard(files)
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

/** Waits for every promise; then rejects with the first failure, or resolves with every value. */
async function settledAll<T>(promises: readonly Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(promises)
  const failed = results.find((result) => result.status === 'rejected')
  if (failed !== undefined) throw (failed as PromiseRejectedResult).reason
  return results.map((result) => (result as PromiseFulfilledResult<T>).value)
}

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
