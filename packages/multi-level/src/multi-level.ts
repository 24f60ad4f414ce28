import {
  assertIncrement,
  assertKey,
  type CacheBackend,
  type CacheEntry,
  type CacheEvent,
  type CacheEventName,
  CacheConfigError,
  CacheObserver,
  type CacheStats,
  CacheUnavailableError,
  type Duration,
  type MinimalBackend,
  type SetManyItem,
  toBackend,
  ttlToMs,
} from '@cache/core'
import type { BreakerOptions } from './breaker.js'
import { type InvalidationBus, type InvalidationMessage, newOrigin } from './bus.js'
import { Level, type LevelReport } from './level.js'

/** Options of {@link multiLevel}. */
export interface MultiLevelOptions {
  /** The backends, fastest first (L1, L2, …). The last is the shared level. At least one. */
  levels: readonly (CacheBackend | MinimalBackend)[]
  /** When a failing level is skipped, and for how long. Defaults: 3 failures, `'1s'`. */
  breaker?: BreakerOptions
  /**
   * Keys remembered per level while it is skipped, to delete from it before it is used again.
   * Past this the level is cleared instead (its namespace only). Default: 10000.
   */
  maxPendingKeys?: number
  /** Evicts keys from the faster levels of other processes. Default: none. */
  bus?: InvalidationBus
  /**
   * Scope of bus messages: only chains with the same namespace evict for each other. Default:
   * the last level's `namespace` property, else `''`.
   */
  namespace?: string
  /** `close()` closes the levels too. Default: true. */
  closeLevels?: boolean
  /** Clock in epoch ms, for tests. Default: `Date.now`. */
  now?: () => number
}

/** Events of a chain: the backend events, plus a level's breaker opening and closing. */
export type MultiLevelEventName = CacheEventName | 'level-down' | 'level-up'

/** What a listener receives. `level` is set for events about one level. */
export interface MultiLevelEvent extends CacheEvent {
  level?: number
}

/** Readers of a key with a slow-path read in flight; `dirty` once a write to it started. */
interface ReadGuard {
  readers: number
  dirty: boolean
}

/**
 * A chain of backends used as one. Reads go level by level and backfill the faster levels with
 * the entry's remaining TTL; writes go to the slowest level first (so a value it refuses is stored
 * nowhere), then to the faster ones; `incr`/`atomicUpdate` run on the slowest level and evict the
 * key from the faster ones. A failing level is skipped by a circuit breaker and repaired before it
 * is used again. See the README for what is and is not guaranteed.
 */
export class MultiLevelBackend implements CacheBackend {
  readonly name = 'multi-level'
  readonly namespace: string
  /** The levels, fastest first, each with its own stats and breaker. */
  readonly levels: readonly Level[]
  private readonly first: Level
  private readonly observer = new CacheObserver('multi-level')
  private readonly reads = new Map<string, ReadGuard>()
  private readonly bus: InvalidationBus | undefined
  private readonly origin = newOrigin()
  private readonly unsubscribe: (() => void) | undefined
  private readonly closeLevels: boolean
  private readonly now: () => number
  private closed: Promise<void> | undefined

  constructor(options: MultiLevelOptions) {
    const backends = options.levels?.map((level) => toBackend(level)) ?? []
    if (backends.length === 0) throw new CacheConfigError('levels', 'multiLevel needs at least one backend')
    const maxPending = options.maxPendingKeys ?? 10_000
    if (!Number.isSafeInteger(maxPending) || maxPending < 0) {
      throw new RangeError(`maxPendingKeys: ${String(maxPending)} is not a whole number`)
    }
    this.levels = backends.map((backend, i) => new Level(backend, i, options.breaker ?? {}, maxPending))
    this.first = this.levels[0]!
    this.closeLevels = options.closeLevels ?? true
    this.now = options.now ?? Date.now
    this.namespace =
      options.namespace ??
      (backends[backends.length - 1] as { namespace?: unknown }).namespace?.toString() ??
      ''
    this.bus = options.bus
    this.unsubscribe = this.bus?.subscribe(
      (message) => this.onBusMessage(message),
      () => this.onBusResync(),
    )
  }

  /** Chain-level counters: one hit or miss per read, level failures as `errors`. */
  get stats(): CacheStats {
    return this.observer.stats
  }

  /** A snapshot of every level: breaker state, counters, repairs waiting. */
  levelStats(): LevelReport[] {
    return this.levels.map((level) => level.report())
  }

  on(event: MultiLevelEventName, listener: (event: MultiLevelEvent) => void): this {
    this.observer.on(event, listener)
    return this
  }

  off(event: MultiLevelEventName, listener: (event: MultiLevelEvent) => void): this {
    this.observer.off(event, listener)
    return this
  }

  async get<T = unknown>(key: string): Promise<T | undefined> {
    // Hot path: an L1 hit is one synchronous L1 read, nothing else awaited or allocated.
    const first = this.first
    const sync = first.sync
    if (sync !== undefined && first.breaker.state === 'closed') {
      let entry: CacheEntry<T> | undefined
      try {
        entry = sync.getEntry<T>(key)
      } catch (error) {
        this.failed(first, 'get', error, key)
        return (await this.read<T>(key, 1, false))?.value
      }
      first.breaker.failures = 0
      if (entry !== undefined) {
        first.stats.hits++
        this.observer.hit(key)
        return entry.value
      }
      first.stats.misses++
      return (await this.read<T>(key, 1, true))?.value
    }
    return (await this.read<T>(key, 0, false))?.value
  }

  async getEntry<T = unknown>(key: string): Promise<CacheEntry<T> | undefined> {
    const first = this.first
    const sync = first.sync
    if (sync !== undefined && first.breaker.state === 'closed') {
      let entry: CacheEntry<T> | undefined
      try {
        entry = sync.getEntry<T>(key)
      } catch (error) {
        this.failed(first, 'getEntry', error, key)
        return this.read<T>(key, 1, false)
      }
      first.breaker.failures = 0
      if (entry !== undefined) {
        first.stats.hits++
        this.observer.hit(key)
        return entry
      }
      first.stats.misses++
      return this.read<T>(key, 1, true)
    }
    return this.read<T>(key, 0, false)
  }

  async set(key: string, value: unknown, ttl?: Duration): Promise<void> {
    assertKey(key)
    ttlToMs(ttl)
    this.invalidateRead(key)
    await this.writeAll('set', key, (backend) => backend.set(key, value, ttl))
    this.observer.set(key)
    await this.publish({ keys: [key] })
  }

  async add(key: string, value: unknown, ttl?: Duration): Promise<boolean> {
    assertKey(key)
    ttlToMs(ttl)
    // The slowest level that answers decides, atomically; the faster ones follow.
    const { result: added, index } = await this.onSlowest('add', key, (backend) =>
      backend.add(key, value, ttl),
    )
    if (!added) return false
    this.invalidateRead(key)
    await this.writeFaster(index, 'add', key, (backend) => backend.set(key, value, ttl))
    this.observer.set(key)
    await this.publish({ keys: [key] })
    return true
  }

  async delete(key: string): Promise<boolean> {
    assertKey(key)
    this.invalidateRead(key)
    const results = await this.writeAll('delete', key, (backend) => backend.delete(key))
    const removed = results.some(Boolean)
    if (removed) this.observer.delete(key)
    await this.publish({ keys: [key] })
    return removed
  }

  async has(key: string): Promise<boolean> {
    assertKey(key)
    let answered = false
    let lastError: unknown
    for (const level of this.levels) {
      if (!this.usable(level)) continue
      try {
        const found = await level.backend.has(key)
        level.breaker.success()
        if (found) return true
        answered = true
      } catch (error) {
        this.failed(level, 'has', error, key)
        lastError = error
      }
    }
    if (!answered) throw this.allDown('has', lastError)
    return false
  }

  async clear(): Promise<void> {
    for (const guard of this.reads.values()) guard.dirty = true
    this.reads.clear()
    let answered = false
    let lastError: unknown
    await Promise.all(
      this.levels.map(async (level) => {
        if (!this.usable(level)) return level.missedClear()
        try {
          await level.backend.clear()
          level.breaker.success()
          answered = true
        } catch (error) {
          level.missedClear()
          this.failed(level, 'clear', error)
          lastError = error
        }
      }),
    )
    if (!answered) throw this.allDown('clear', lastError)
    await this.publish({ clear: true })
  }

  async incr(key: string, by = 1, ttl?: Duration): Promise<number> {
    assertKey(key)
    assertIncrement(by)
    ttlToMs(ttl)
    return this.onShared('incr', key, (backend) => backend.incr(key, by, ttl))
  }

  async atomicUpdate<T>(
    key: string,
    fn: (current: T | undefined) => T | Promise<T>,
    ttl?: Duration,
  ): Promise<T> {
    assertKey(key)
    ttlToMs(ttl)
    // An error thrown by fn is the caller's, not a failure of the level.
    let thrown: { error: unknown } | undefined
    const guarded = async (current: T | undefined) => {
      try {
        return await fn(current)
      } catch (error) {
        thrown = { error }
        throw error
      }
    }
    try {
      return await this.onShared(
        'atomicUpdate',
        key,
        (backend) => backend.atomicUpdate<T>(key, guarded, ttl),
        () => thrown !== undefined,
      )
    } catch (error) {
      throw thrown ? thrown.error : error
    }
  }

  async getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    for (const key of keys) assertKey(key)
    const out = new Array<T | undefined>(keys.length)
    let start = 0
    let firstAnswered = false
    if (this.usable(this.first)) {
      try {
        const values = await this.first.backend.getMany<T>(keys)
        this.first.breaker.success()
        for (let i = 0; i < keys.length; i++) out[i] = values[i]
        start = 1
        firstAnswered = true
      } catch (error) {
        this.failed(this.first, 'getMany', error)
        start = 1
      }
    } else {
      start = 1
    }
    const missing: number[] = []
    for (let i = 0; i < keys.length; i++) {
      if (firstAnswered && out[i] !== undefined) {
        this.first.stats.hits++
        this.observer.hit(keys[i]!)
      } else {
        if (firstAnswered) this.first.stats.misses++
        missing.push(i)
      }
    }
    // Deeper levels are read key by key: backfill needs each entry's expiry.
    await Promise.all(
      missing.map(async (i) => {
        out[i] = (await this.read<T>(keys[i]!, start, firstAnswered))?.value
      }),
    )
    return out
  }

  async setMany(items: readonly SetManyItem[]): Promise<void> {
    for (const item of items) {
      assertKey(item.key)
      ttlToMs(item.ttl)
    }
    const keys = items.map((item) => item.key)
    for (const key of keys) this.invalidateRead(key)
    await this.writeAll('setMany', keys, (backend) => backend.setMany(items))
    for (const key of keys) this.observer.set(key)
    await this.publish({ keys })
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    for (const key of keys) assertKey(key)
    for (const key of keys) this.invalidateRead(key)
    const counts = await this.writeAll('deleteMany', keys, (backend) => backend.deleteMany(keys))
    await this.publish({ keys: [...keys] })
    // Each level reports a count, not which keys: the level that held the most is the best answer.
    return Math.max(0, ...counts)
  }

  /** Idempotent. Closes the levels too unless `closeLevels: false`; never closes the bus. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      this.unsubscribe?.()
      if (!this.closeLevels) return
      const results = await Promise.allSettled(this.levels.map((level) => level.backend.close()))
      const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
      if (failure) throw failure.reason
    })()
    return this.closed
  }

  /**
   * Reads from level `start` on; a hit backfills the faster levels. `answered` says whether a
   * faster level already answered (a miss), so "every level is down" is only reported when true.
   */
  private async read<T>(key: string, start: number, answered: boolean): Promise<CacheEntry<T> | undefined> {
    if (typeof key !== 'string') assertKey(key)
    const levels = this.levels
    const guard = start < levels.length ? this.guard(key) : undefined
    let lastError: unknown
    try {
      for (let i = start; i < levels.length; i++) {
        const level = levels[i]!
        if (!this.usable(level)) continue
        let entry: CacheEntry<T> | undefined
        try {
          entry = await level.backend.getEntry<T>(key)
        } catch (error) {
          this.failed(level, 'get', error, key)
          lastError = error
          continue
        }
        level.breaker.success()
        answered = true
        if (entry === undefined) {
          level.stats.misses++
          continue
        }
        level.stats.hits++
        if (i > 0) await this.backfill(i, key, entry, guard!)
        this.observer.hit(key)
        return entry
      }
    } finally {
      if (guard) this.release(key, guard)
    }
    if (!answered) throw this.allDown('get', lastError)
    this.observer.miss(key)
    return undefined
  }

  /**
   * Copies an entry found at level `from` into the faster levels with what remains of its TTL:
   * never the full TTL, never past the source's expiry. Skipped if the key was written meanwhile.
   */
  private async backfill(from: number, key: string, entry: CacheEntry, guard: ReadGuard): Promise<void> {
    if (guard.dirty) return
    let ttl: string | undefined
    if (entry.expiresAt !== undefined) {
      const remaining = Math.floor(entry.expiresAt - this.now())
      if (remaining < 1) return
      ttl = `${remaining}ms`
    }
    const tasks: Promise<void>[] = []
    for (let j = 0; j < from; j++) {
      const level = this.levels[j]!
      if (!level.closed) continue
      tasks.push(
        level.backend.set(key, entry.value, ttl).then(
          () => {
            level.stats.backfills++
          },
          (error) => this.failed(level, 'backfill', error, key, false),
        ),
      )
    }
    await Promise.all(tasks)
  }

  /**
   * Writes to the slowest level that answers first, then to the faster ones in parallel. Levels
   * skipped or failing remember the keys, to be repaired before they are used again.
   */
  private async writeAll<R>(
    operation: string,
    keys: string | readonly string[],
    run: (backend: CacheBackend) => Promise<R>,
  ): Promise<R[]> {
    const { result, index } = await this.onSlowest(operation, keys, run)
    const rest = await this.writeFaster(index, operation, keys, run)
    rest.push(result)
    return rest
  }

  /** Runs `run` on the slowest level that answers; slower levels it passed remember the keys. */
  private async onSlowest<R>(
    operation: string,
    keys: string | readonly string[],
    run: (backend: CacheBackend) => Promise<R>,
    callerFailed?: () => boolean,
  ): Promise<{ result: R; index: number }> {
    let lastError: unknown
    for (let i = this.levels.length - 1; i >= 0; i--) {
      const level = this.levels[i]!
      if (!this.usable(level)) {
        missed(level, keys)
        continue
      }
      try {
        const result = await run(level.backend)
        level.breaker.success()
        count(level, operation, keys)
        return { result, index: i }
      } catch (error) {
        if (callerFailed?.()) throw error
        this.failed(level, operation, error, typeof keys === 'string' ? keys : undefined)
        missed(level, keys)
        lastError = error
      }
    }
    throw this.allDown(operation, lastError)
  }

  /** Runs `run` on the levels faster than `index`, in parallel; failures are counted, not thrown. */
  private async writeFaster<R>(
    index: number,
    operation: string,
    keys: string | readonly string[],
    run: (backend: CacheBackend) => Promise<R>,
  ): Promise<R[]> {
    const results: R[] = []
    const tasks: Promise<void>[] = []
    for (let i = 0; i < index; i++) {
      const level = this.levels[i]!
      if (!this.usable(level)) {
        missed(level, keys)
        continue
      }
      tasks.push(
        run(level.backend).then(
          (result) => {
            level.breaker.success()
            count(level, operation, keys)
            results.push(result)
          },
          (error) => {
            missed(level, keys)
            // A faster level refusing what the shared level took (say, too large for L1) must
            // not fail the write; it must not keep an older value either.
            this.failed(level, operation, error, typeof keys === 'string' ? keys : undefined, false)
            if (isCallerError(error)) this.evict(level, keys)
          },
        ),
      )
    }
    await Promise.all(tasks)
    return results
  }

  /** `incr`/`atomicUpdate`: run on the slowest level that answers, then evict the faster ones. */
  private async onShared<R>(
    operation: string,
    key: string,
    run: (backend: CacheBackend) => Promise<R>,
    callerFailed?: () => boolean,
  ) {
    this.invalidateRead(key)
    const { result, index } = await this.onSlowest(operation, key, run, callerFailed)
    this.invalidateRead(key)
    await Promise.all(this.levels.slice(0, index).map((level) => this.evict(level, key)))
    await this.publish({ keys: [key] })
    return result
  }

  private async evict(level: Level, keys: string | readonly string[]): Promise<void> {
    if (!level.closed) return missed(level, keys)
    try {
      if (typeof keys === 'string') await level.backend.delete(keys)
      else await level.backend.deleteMany(keys)
    } catch (error) {
      missed(level, keys)
      this.failed(level, 'evict', error, typeof keys === 'string' ? keys : undefined, false)
    }
  }

  /** True if the level may be used now; starts its probe once its open period is over. */
  private usable(level: Level): boolean {
    if (level.breaker.state === 'closed') return true
    level.stats.skipped++
    if (level.breaker.probeDue(this.now())) {
      level.recover(
        () => this.emit('level-up', { backend: level.name, level: level.index }),
        (error) => this.failed(level, 'probe', error, undefined, false),
      )
    }
    return false
  }

  /**
   * A level threw. Caller errors (bad TTL, unserializable value…) are rethrown unless `rethrow`
   * is false; anything else counts towards the level's breaker and is reported as an event.
   */
  private failed(level: Level, operation: string, error: unknown, key?: string, rethrow = true): void {
    if (isCallerError(error)) {
      if (rethrow) throw error
      return
    }
    level.stats.errors++
    if ((error as { code?: string })?.code === 'CACHE_TIMEOUT') level.stats.timeouts++
    this.observer.stats.errors++
    this.emit('error', { backend: level.name, level: level.index, operation, key, error })
    if (level.breaker.failure(this.now())) {
      level.stats.opened++
      this.emit('level-down', { backend: level.name, level: level.index, operation, error })
    }
  }

  private emit(name: MultiLevelEventName, event: MultiLevelEvent): void {
    if (this.observer.listenerCount(name) > 0) this.observer.emit(name, event)
  }

  private allDown(operation: string, cause: unknown): CacheUnavailableError {
    return new CacheUnavailableError(
      'multi-level',
      `multi-level: ${operation} failed, no level is available`,
      cause === undefined ? undefined : { cause },
    )
  }

  private guard(key: string): ReadGuard {
    let guard = this.reads.get(key)
    if (guard === undefined) {
      guard = { readers: 0, dirty: false }
      this.reads.set(key, guard)
    }
    guard.readers++
    return guard
  }

  private release(key: string, guard: ReadGuard): void {
    if (--guard.readers === 0 && this.reads.get(key) === guard) this.reads.delete(key)
  }

  /** A write to `key` started: reads in flight must not backfill what they read before it. */
  private invalidateRead(key: string): void {
    const guard = this.reads.get(key)
    if (guard === undefined) return
    guard.dirty = true
    this.reads.delete(key)
  }

  private async publish(message: Omit<InvalidationMessage, 'origin' | 'namespace'>): Promise<void> {
    if (this.bus === undefined || this.levels.length < 2) return
    try {
      await this.bus.publish({ origin: this.origin, namespace: this.namespace, ...message })
    } catch (error) {
      this.observer.stats.errors++
      this.emit('error', { backend: 'bus', operation: 'publish', error })
    }
  }

  /** Another process wrote: drop the keys (or everything) from every level but the shared one. */
  private onBusMessage(message: InvalidationMessage): void {
    if (message.origin === this.origin || message.namespace !== this.namespace) return
    const faster = this.levels.slice(0, -1)
    if (message.clear) {
      this.onBusResync()
      return
    }
    const keys = message.keys ?? []
    for (const key of keys) this.invalidateRead(key)
    for (const level of faster) void this.evict(level, keys.length === 1 ? keys[0]! : keys)
  }

  /** Messages may have been lost: nothing in the faster levels can be trusted any more. */
  private onBusResync(): void {
    for (const guard of this.reads.values()) guard.dirty = true
    this.reads.clear()
    for (const level of this.levels.slice(0, -1)) {
      if (!level.closed) {
        level.missedClear()
        continue
      }
      level.backend.clear().catch((error) => {
        level.missedClear()
        this.failed(level, 'clear', error, undefined, false)
      })
    }
  }
}

function missed(level: Level, keys: string | readonly string[]): void {
  if (typeof keys === 'string') level.missed(keys)
  else level.missedMany(keys)
}

function count(level: Level, operation: string, keys: string | readonly string[]): void {
  const n = typeof keys === 'string' ? 1 : keys.length
  if (operation === 'delete' || operation === 'deleteMany') level.stats.deletes += n
  else if (operation === 'set' || operation === 'setMany' || operation === 'add') level.stats.sets += n
}

const CALLER_ERRORS = new Set([
  'CACHE_KEY',
  'CACHE_NOT_A_NUMBER',
  'CACHE_VALUE_TOO_LARGE',
  'CACHE_CONFLICT',
  'CACHE_CONFIG',
  'CACHE_SERIALIZATION',
])

/** Errors that are about the call (bad TTL, value, key), not about a level being unavailable. */
function isCallerError(error: unknown): boolean {
  if (error instanceof RangeError) return true
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && CALLER_ERRORS.has(code)
}

/**
 * Chains backends, fastest first: `multiLevel(memoryBackend(), redisBackend(url))`, or with
 * options: `multiLevel({ levels: [l1, l2], breaker: { failureThreshold: 5 }, bus })`.
 */
export function multiLevel(options: MultiLevelOptions): MultiLevelBackend
export function multiLevel(...levels: (CacheBackend | MinimalBackend)[]): MultiLevelBackend
export function multiLevel(...args: unknown[]): MultiLevelBackend {
  const only = args[0] as { levels?: unknown; get?: unknown } | undefined
  if (args.length === 1 && only && Array.isArray(only.levels) && typeof only.get !== 'function') {
    return new MultiLevelBackend(only as MultiLevelOptions)
  }
  return new MultiLevelBackend({ levels: args as (CacheBackend | MinimalBackend)[] })
}
