import {
  type CacheBackend,
  CacheConfigError,
  type CacheEntry,
  CacheValueTooLargeError,
  type Duration,
  jsonSerializer,
  type ListKeysOptions,
  type SetManyItem,
  ttlToMs,
} from '@cache/core'
import {
  assertIncrement,
  assertKey,
  assertKeyList,
  copyItemList,
  copyKeyList,
  ObservedBackend,
  checkLogger,
  createCodec,
  IncidentLog,
} from '@cache/core/backend'
import { join } from 'node:path'
import { AccessTimes } from './access-times.js'
import { CallOrder } from './call-order.js'
import { BATCH, type DiskContext } from './context.js'
import { ValueFiles } from './files.js'
import { GroupCommit } from './group-commit.js'
import { Housekeeping } from './housekeeping.js'
import { InFlight } from './in-flight.js'
import { listKeys } from './listing.js'
import { StoreLock } from './lock.js'
import { type DiskBackendOptions, resolveOptions } from './options.js'
import { makeDirectory } from './paths.js'
import { Reads } from './reads.js'
import { type Condition, EntryStore } from './store.js'
import { Updates } from './updates.js'

/**
 * A persistent cache in a directory: SQLite (WAL) as the index and store of small values, one
 * file per large value. Safe for several processes at once; see the README for the guarantees.
 */
export class DiskBackend extends ObservedBackend implements CacheBackend {
  readonly name = 'disk'
  /** Every process that opens the directory sees its entries. */
  readonly shared = true
  /** Shared by the processes of this machine only. */
  readonly hostOnly = true
  readonly namespace: string | undefined
  /** The cache directory. */
  readonly path: string
  private readonly context: DiskContext
  private readonly accessTimes: AccessTimes
  private readonly housekeeping: Housekeeping
  private readonly reads: Reads
  private readonly writes: GroupCommit
  private readonly updates: Updates
  private closing: Promise<void> | undefined
  /** Set once close() has let the calls issued before it finish: the database is closed. */
  private storeClosed = false

  /** The TTL in ms a write that names none gets; `null` for no expiry. */
  get defaultTtlMs(): number | null {
    return this.context.settings.defaultTtlMs ?? null
  }

  constructor(options: DiskBackendOptions = {}) {
    super('disk')
    const settings = resolveOptions(options)
    this.namespace = options.namespace
    const codec = createCodec(options)
    this.path = settings.path
    let files: ValueFiles
    let store: EntryStore
    let lock: StoreLock
    try {
      makeDirectory(this.path)
      files = new ValueFiles(this.path, this.observer)
      store = new EntryStore(
        join(this.path, 'cache.db'),
        settings.busyTimeoutMs,
        settings.accessResolutionMs,
        codec.serializer === jsonSerializer,
      )
      const log = new IncidentLog(checkLogger(options.logger))
      lock = new StoreLock(store, this.observer, settings.lockTimeoutMs, () => this.storeClosed, log)
      const recovery = store.open()
      // Reported on the next turn, so listeners attached right after construction hear it.
      if (recovery !== undefined) setImmediate(() => lock.report(recovery, 'open'))
    } catch (cause) {
      if (isUnbuiltNativeModule(cause)) throw unbuiltNativeModule(cause)
      const message = `cannot open a disk cache in ${this.path}: ${(cause as Error).message}`
      throw new CacheConfigError('path', message, { cause })
    }
    const context: DiskContext = {
      ns: options.namespace ?? '',
      store,
      lock,
      files,
      order: new CallOrder(),
      inFlight: new InFlight(),
      observer: this.observer,
      codec,
      settings,
      isClosed: () => this.storeClosed,
    }
    this.context = context
    this.accessTimes = new AccessTimes(context)
    this.housekeeping = new Housekeeping(context, this.accessTimes)
    const evict = () => this.housekeeping.evict()
    this.reads = new Reads(context, this.accessTimes)
    this.writes = new GroupCommit(context, this.accessTimes, evict)
    this.updates = new Updates(context, this.writes, this.accessTimes, evict)
  }

  /** Where a damaged database was moved, if this backend had to rebuild one. */
  get recovered(): string | undefined {
    return this.context.lock.recovered
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
    this.assertOpen()
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
    this.assertOpen()
    return this.updates.compareAndDelete(key, expected)
  }

  async has(key: string): Promise<boolean> {
    if (typeof key !== 'string') assertKey(key)
    this.assertOpen()
    return this.reads.has(key)
  }

  /** Removes this namespace's entries (in batches, so other processes are never locked out for long). */
  async clear(): Promise<void> {
    this.assertOpen()
    const { ns, order, files, lock, store } = this.context
    await order.inOrder(undefined, true, async () => {
      for (;;) {
        const removed = await lock.run('clear', undefined, () => store.clearSome(ns, BATCH), true)
        await files.discard(removed)
        if (removed.length < BATCH) return
      }
    })
  }

  /** The live keys of this namespace, each once; with `prefix`, those that start with it (see `listKeys`). */
  keys(options?: ListKeysOptions): AsyncIterableIterator<string> {
    return listKeys(this.context, options, () => this.assertOpen())
  }

  async incr(key: string, by = 1, ttl?: Duration): Promise<number> {
    if (typeof key !== 'string') assertKey(key)
    assertIncrement(by)
    const ttlMs = this.ttl(ttl)
    this.assertOpen()
    return this.updates.incr(key, by, ttlMs)
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
    this.assertOpen()
    return this.updates.atomicUpdate(key, fn, ttlMs)
  }

  /** Reads up to 100 keys with one SQLite statement (a primary-key lookup a key), then decodes each hit. */
  async getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    // A copy: behind a pending write of one of the keys, the read runs later.
    const list = copyKeyList(keys, 'getMany')
    this.assertOpen()
    return this.reads.many<T>(list)
  }

  /**
   * Every item joins the group commit at once, in order (usually one transaction for all), so an
   * operation issued after the call sees every item.
   */
  async setMany(items: readonly SetManyItem[]): Promise<void> {
    const list = copyItemList(items)
    this.assertOpen()
    const { codec, settings } = this.context
    // Check every item, key, TTL, value and size first so a bad item stores nothing.
    const prepared = list.map((item) => {
      const bytes = codec.encode(item.value)
      const size = bytes.length + item.key.length
      if (size > settings.maxSize) throw new CacheValueTooLargeError(item.key, size, settings.maxSize)
      return { key: item.key, ttlMs: this.ttl(item.ttl), bytes }
    })
    await this.wholly(
      settledAll(prepared.map((item) => this.writes.put(item.key, item.bytes, item.ttlMs, ALWAYS))),
    )
  }

  /** Every delete joins the group commit at once, in order, so an operation issued after the call sees them all. */
  async deleteMany(keys: readonly string[]): Promise<number> {
    assertKeyList(keys, 'deleteMany')
    this.assertOpen()
    const removed = await this.wholly(settledAll(keys.map((key) => this.delete(key))))
    return removed.filter(Boolean).length
  }

  /**
   * Deletes expired entries (every namespace) and, when `orphanAgeMs` is given or an hour has
   * passed, value files no entry references that are at least that old. Runs in the background
   * every `pruneInterval`; call it yourself to prune now.
   */
  async prune(options: { orphanAgeMs?: number } = {}): Promise<{ expired: number; orphans: number }> {
    this.assertOpen()
    return this.housekeeping.prune(options)
  }

  /** Bytes (values plus key lengths) and entries in the whole directory, every namespace included. */
  async usage(): Promise<{ bytes: number; entries: number }> {
    this.assertOpen()
    const { order, lock, store } = this.context
    return order.inOrder(undefined, false, () => lock.run('usage', undefined, () => store.totals()))
  }

  /** Idempotent. Writes not yet committed and pending access times are written first; background timers stop. */
  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async shutdown(): Promise<void> {
    // Calls from now on are refused; those issued before finish first: those in the call order and
    // every write, then those that run outside it (a getMany, a read of a file, prune, a listing).
    this.markClosed()
    await this.writes.settled()
    await this.context.inFlight.settled()
    await this.writes.settled()
    this.accessTimes.close()
    this.storeClosed = true
    this.housekeeping.stop()
    this.context.store.close()
  }

  /**
   * Awaits a batch call's items with the call in flight: `close()` waits for the call itself, not
   * only for its items (it resolved before a setMany or deleteMany issued before it had settled).
   */
  private async wholly<T>(items: Promise<T>): Promise<T> {
    this.context.inFlight.start()
    try {
      return await items
    } finally {
      this.context.inFlight.end()
    }
  }

  /** The live entry, read with one prepared statement; sync unless the value is in a file. */
  private read<T>(key: string): CacheEntry<T> | undefined | Promise<CacheEntry<T> | undefined> {
    if (typeof key !== 'string') assertKey(key)
    this.assertOpen()
    return this.reads.entry<T>(key)
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
    return this.writes.put(key, this.context.codec.encode(value), ttlMs, condition)
  }

  private ttl(ttl: Duration | undefined): number | undefined {
    return ttl === undefined ? this.context.settings.defaultTtlMs : ttlToMs(ttl)
  }
}

const ALWAYS: Condition = { kind: 'always' }
const ABSENT: Condition = { kind: 'absent' }

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
