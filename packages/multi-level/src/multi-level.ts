import {
  CacheClosedError,
  type CacheBackend,
  type CacheEntry,
  CacheConfigError,
  type CacheLogger,
  type CacheStats,
  type Duration,
  type ListKeysOptions,
  type MinimalBackend,
  type SetManyItem,
  ttlToMs,
} from '@cache/core'
import {
  assertIncrement,
  assertKey,
  checkLogger,
  IncidentLog,
  CacheObserver,
  compareAndDelete,
  isGenerationKey,
  toBackend,
  durationOption,
} from '@cache/core/backend'
import type { BreakerOptions } from './breaker.js'
import type { InvalidationBus } from './bus.js'
import { LevelHealth, type MultiLevelEvent, type MultiLevelEventName } from './health.js'
import { ChainInvalidation } from './invalidation.js'
import { Level, type LevelReport } from './level.js'
import { ReadGuards } from './read-guard.js'
import { LevelReader } from './reads.js'
import { StateKeys } from './state.js'
import { WriteOrder } from './write-order.js'
import { LevelWriter } from './writes.js'

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
   * How long a faster level may keep a copy of invalidation state (the `__v:` keys behind
   * memoize's `clear()`, `invalidate()`, `invalidateTags()` and the HTTP cache's `clear()`) read
   * from the shared level. `0`: no copy, every lookup reads the shared level, and an invalidation
   * made by any process is seen at once. A longer time saves that read on hits, at the price of
   * seeing another process's invalidation up to that late (the bus evicts copies sooner). A copy
   * is used only while the shared level is in use; while it cannot answer, reading invalidation
   * state fails (memoize then runs the function uncached).
   * Seconds or a duration string. Default: `0` without a bus, `'1s'` with one.
   */
  stateTtl?: Duration | 0
  /**
   * Scope of bus messages: only chains with the same namespace evict for each other. Default:
   * the last level's `namespace` property, else `''`.
   */
  namespace?: string
  /** `close()` closes the levels too. Default: true. */
  closeLevels?: boolean
  /**
   * Where the chain reports a level's breaker opening (the level is skipped) and closing (it is
   * back), once each: any object with `warn` and `error` (pino, winston), or `false`. Default:
   * the process-wide logger (`console` unless `setCacheLogger` or `configureCache({ logger })`
   * changed it).
   */
  logger?: CacheLogger | false
  /** Clock in epoch ms, for tests. Default: `Date.now`. */
  now?: () => number
}

/** What an L1 read answers for a miss (a stored `undefined` is a hit). */
const MISS: unique symbol = Symbol('miss')

function entryValue<T>(entry: CacheEntry<T> | undefined): T | typeof MISS {
  return entry === undefined ? MISS : entry.value
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
  private readonly reads = new ReadGuards()
  private readonly order = new WriteOrder()
  private readonly health: LevelHealth
  private readonly reader: LevelReader
  private readonly writer: LevelWriter
  private readonly invalidation: ChainInvalidation
  private readonly state: StateKeys
  private readonly closeLevels: boolean
  private closed: Promise<void> | undefined
  /**
   * The keys of the chain, as its last level lists them (the shared, slowest one: writes reach
   * every level, so it holds every key). Absent when the last level cannot list (memcached).
   */
  readonly keys?: (options?: ListKeysOptions) => AsyncIterableIterator<string>

  constructor(options: MultiLevelOptions) {
    const backends = options.levels?.map((level) => toBackend(level)) ?? []
    if (backends.length === 0) throw new CacheConfigError('levels', 'multiLevel needs at least one backend')
    const maxPending = options.maxPendingKeys ?? 10_000
    if (!Number.isSafeInteger(maxPending) || maxPending < 0)
      throw new CacheConfigError('maxPendingKeys', `${String(maxPending)} is not a whole number`)
    this.levels = backends.map((backend, i) => new Level(backend, i, options.breaker ?? {}, maxPending))
    this.first = this.levels[0]!
    this.closeLevels = options.closeLevels ?? true
    this.namespace =
      options.namespace ??
      (backends[backends.length - 1] as { namespace?: unknown }).namespace?.toString() ??
      ''
    const now = options.now ?? Date.now
    this.health = new LevelHealth(this.observer, now, new IncidentLog(checkLogger(options.logger)))
    this.reader = new LevelReader(this.levels, this.reads, this.health, this.observer, now)
    this.writer = new LevelWriter(this.levels, this.health, this.order)
    this.invalidation = new ChainInvalidation(
      options.bus,
      this.namespace,
      this.levels,
      this.reads,
      this.order,
      this.writer,
      this.health,
      this.observer,
    )
    const stateTtlMs = durationOption(options.stateTtl, 'stateTtl', options.bus === undefined ? 0 : '1s', {
      zero: true,
    })
    this.state = new StateKeys(
      this.levels,
      this.reads,
      this.health,
      this.writer,
      async (keys) => this.invalidation.publish({ keys }),
      stateTtlMs,
      now,
    )
    for (const level of this.levels)
      level.onRepairFailure = (error) => this.health.failed(level, 'repair', error, undefined, false)
    // Only the last level holds every key (writes reach every level; faster ones keep a subset):
    // when it cannot list, a faster level's list would pass a partial view off as the whole.
    const last = backends[backends.length - 1]!
    if (typeof last.keys === 'function') this.keys = (options) => last.keys!(options)
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
    this.assertOpen()
    // Hot path: an L1 hit is one synchronous L1 read, nothing else awaited or allocated.
    const first = this.first
    const sync = first.sync
    if (isGenerationKey(key)) return (await this.state.read<T>(key))?.value
    if (sync !== undefined && first.breaker.state === 'closed' && !first.hasRepairs) {
      let found: T | typeof MISS
      try {
        found =
          sync.getOr === undefined ? entryValue(sync.getEntry<T>(key)) : sync.getOr<T, typeof MISS>(key, MISS)
      } catch (error) {
        this.health.failed(first, 'get', error, key)
        return (await this.reader.read<T>(key, 1, false))?.value
      }
      first.breaker.failures = 0
      if (found !== MISS) {
        first.stats.hits++
        this.observer.hit(key)
        return found
      }
      first.stats.misses++
      return (await this.reader.read<T>(key, 1, true))?.value
    }
    return (await this.reader.read<T>(key, 0, false))?.value
  }

  async getEntry<T = unknown>(key: string): Promise<CacheEntry<T> | undefined> {
    this.assertOpen()
    const first = this.first
    const sync = first.sync
    if (isGenerationKey(key)) return this.state.read<T>(key)
    if (sync !== undefined && first.breaker.state === 'closed' && !first.hasRepairs) {
      let entry: CacheEntry<T> | undefined
      try {
        entry = sync.getEntry<T>(key)
      } catch (error) {
        this.health.failed(first, 'getEntry', error, key)
        return this.reader.read<T>(key, 1, false)
      }
      first.breaker.failures = 0
      if (entry !== undefined) {
        first.stats.hits++
        this.observer.hit(key)
        return entry
      }
      first.stats.misses++
      return this.reader.read<T>(key, 1, true)
    }
    return this.reader.read<T>(key, 0, false)
  }

  async set(key: string, value: unknown, ttl?: Duration): Promise<void> {
    this.assertOpen()
    assertKey(key)
    ttlToMs(ttl)
    if (isGenerationKey(key)) return this.order.track(this.state.set(key, value, ttl))
    this.reads.invalidate(key)
    const ticket = this.order.begin(key)
    try {
      await this.writer.all('set', key, (backend) => backend.set(key, value, ttl), ticket)
    } finally {
      this.order.end(ticket)
    }
    this.observer.set(key)
    await this.invalidation.publish({ keys: [key] })
  }

  async add(key: string, value: unknown, ttl?: Duration): Promise<boolean> {
    this.assertOpen()
    assertKey(key)
    ttlToMs(ttl)
    if (isGenerationKey(key)) return this.order.track(this.state.add(key, value, ttl))
    // The slowest level that answers decides, atomically; the faster ones follow.
    const ticket = this.order.begin(key)
    try {
      const { result: added, index } = await this.writer.slowest('add', key, (backend) =>
        backend.add(key, value, ttl),
      )
      if (!added) return false
      this.reads.invalidate(key)
      await this.writer.faster(index, 'add', key, (backend) => backend.set(key, value, ttl), ticket)
    } finally {
      this.order.end(ticket)
    }
    this.observer.set(key)
    await this.invalidation.publish({ keys: [key] })
    return true
  }

  async delete(key: string): Promise<boolean> {
    this.assertOpen()
    assertKey(key)
    if (isGenerationKey(key)) return this.order.track(this.state.delete(key))
    this.reads.invalidate(key)
    const ticket = this.order.begin(key)
    let results: boolean[]
    try {
      results = await this.writer.all('delete', key, (backend) => backend.delete(key))
    } finally {
      this.order.end(ticket)
    }
    const removed = results.some(Boolean)
    if (removed) this.observer.delete(key)
    await this.invalidation.publish({ keys: [key] })
    return removed
  }

  async has(key: string): Promise<boolean> {
    this.assertOpen()
    assertKey(key)
    if (isGenerationKey(key)) return (await this.state.read(key)) !== undefined
    let answered = false
    let lastError: unknown
    for (const level of this.levels) {
      if (!this.health.usable(level)) continue
      if (level.hasRepairs && level.isPending(key)) {
        answered = true
        continue
      }
      try {
        const found = await level.backend.has(key)
        level.breaker.success()
        if (found) return true
        answered = true
      } catch (error) {
        this.health.failed(level, 'has', error, key)
        lastError = error
      }
    }
    if (!answered) throw this.health.allDown('has', lastError)
    return false
  }

  /**
   * Clears every level. Resolves only if the shared level was cleared; otherwise the levels that
   * answered are cleared, the others are cleared before they are used again, and the call
   * rejects with `CacheUnavailableError`.
   */
  async clear(): Promise<void> {
    this.assertOpen()
    this.reads.invalidateAll()
    const shared = this.levels[this.levels.length - 1]!
    let sharedCleared = false
    let sharedError: unknown
    this.order.beginClear()
    try {
      await Promise.all(
        this.levels.map(async (level) => {
          if (!this.health.usable(level)) return level.missedClear()
          try {
            await level.backend.clear()
            level.breaker.success()
            if (level === shared) sharedCleared = true
          } catch (error) {
            level.missedClear()
            this.health.failed(level, 'clear', error)
            if (level === shared) sharedError = error
          }
        }),
      )
    } finally {
      this.order.endClear()
    }
    if (sharedCleared) await this.invalidation.publish({ clear: true })
    else throw this.health.notTaken(shared, 'clear', sharedError)
  }

  async incr(key: string, by = 1, ttl?: Duration): Promise<number> {
    this.assertOpen()
    assertKey(key)
    assertIncrement(by)
    ttlToMs(ttl)
    if (isGenerationKey(key)) return this.order.track(this.state.incr(key, by, ttl))
    const value = await this.onShared('incr', key, (backend) => backend.incr(key, by, ttl))
    this.observer.set(key)
    return value
  }

  /** Decided by the slowest level that answers, atomically; the faster ones drop their copies. */
  async compareAndDelete(key: string, expected: string): Promise<boolean> {
    this.assertOpen()
    assertKey(key)
    const removed = await this.onShared('compareAndDelete', key, (backend) =>
      compareAndDelete(backend, key, expected),
    )
    if (removed) this.observer.delete(key)
    return removed
  }

  async atomicUpdate<T>(
    key: string,
    fn: (current: T | undefined) => T | Promise<T>,
    ttl?: Duration,
  ): Promise<T> {
    this.assertOpen()
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
      const value = await this.onShared(
        'atomicUpdate',
        key,
        (backend) => backend.atomicUpdate<T>(key, guarded, ttl),
        () => thrown !== undefined,
      )
      this.observer.set(key)
      return value
    } catch (error) {
      throw thrown ? thrown.error : error
    }
  }

  async getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    this.assertOpen()
    for (const key of keys) assertKey(key)
    let state: number[] | undefined
    for (let i = 0; i < keys.length; i++) if (isGenerationKey(keys[i]!)) (state ??= []).push(i)
    if (state === undefined) return this.readMany<T>(keys)
    // Memoize reads an entry and its generations at once: the generations take the state path.
    const plain = keys.filter((key) => !isGenerationKey(key))
    const [values, states] = await Promise.all([
      plain.length === 0 ? [] : this.readMany<T>(plain),
      Promise.all(state.map((i) => this.state.read<T>(keys[i]!))),
    ])
    const out = new Array<T | undefined>(keys.length)
    let p = 0
    let q = 0
    for (let i = 0; i < keys.length; i++)
      out[i] = state[q] === i ? states[q++]?.value : (values as (T | undefined)[])[p++]
    return out
  }

  private async readMany<T>(keys: readonly string[]): Promise<(T | undefined)[]> {
    const out = new Array<T | undefined>(keys.length)
    let start = 0
    let firstAnswered = false
    if (this.health.usable(this.first)) {
      try {
        const values = await this.first.backend.getMany<T>(keys)
        this.first.breaker.success()
        for (let i = 0; i < keys.length; i++) out[i] = values[i]
        start = 1
        firstAnswered = true
      } catch (error) {
        this.health.failed(this.first, 'getMany', error)
        start = 1
      }
    } else {
      start = 1
    }
    const missing: number[] = []
    const first = this.first
    for (let i = 0; i < keys.length; i++) {
      // A write of this key failed on L1: its copy may be outdated.
      if (first.hasRepairs && first.isPending(keys[i]!)) out[i] = undefined
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
        out[i] = (await this.reader.read<T>(keys[i]!, start, firstAnswered))?.value
      }),
    )
    return out
  }

  async setMany(items: readonly SetManyItem[]): Promise<void> {
    this.assertOpen()
    for (const item of items) {
      assertKey(item.key)
      ttlToMs(item.ttl)
    }
    if (items.some((item) => isGenerationKey(item.key))) {
      const plain = items.filter((item) => !isGenerationKey(item.key))
      const writes = items
        .filter((item) => isGenerationKey(item.key))
        .map((item) => this.order.track(this.state.set(item.key, item.value, item.ttl)))
      if (plain.length > 0) writes.push(this.setMany(plain))
      const failure = (await Promise.allSettled(writes)).find((r) => r.status === 'rejected')
      if (failure !== undefined) throw (failure as PromiseRejectedResult).reason
      return
    }
    const keys = items.map((item) => item.key)
    for (const key of keys) this.reads.invalidate(key)
    const ticket = this.order.begin(keys)
    try {
      await this.writer.all('setMany', keys, (backend) => backend.setMany(items), ticket)
    } finally {
      this.order.end(ticket)
    }
    for (const key of keys) this.observer.set(key)
    await this.invalidation.publish({ keys })
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    this.assertOpen()
    for (const key of keys) assertKey(key)
    if (keys.some(isGenerationKey)) {
      const plain = keys.filter((key) => !isGenerationKey(key))
      const results = await Promise.allSettled([
        ...keys
          .filter(isGenerationKey)
          .map(async (key) => ((await this.order.track(this.state.delete(key))) ? 1 : 0)),
        plain.length === 0 ? Promise.resolve(0) : this.deleteMany(plain),
      ])
      const failure = results.find((r) => r.status === 'rejected')
      if (failure !== undefined) throw (failure as PromiseRejectedResult).reason
      return results.reduce((sum, r) => sum + (r as PromiseFulfilledResult<number>).value, 0)
    }
    for (const key of keys) this.reads.invalidate(key)
    const ticket = this.order.begin(keys)
    let results: boolean[][]
    try {
      // Key by key on each level, so that the chain knows which keys it removed: as for delete,
      // a key any level held, counted and evented once. That is one call per key where a level's
      // own deleteMany would batch them (redis pipelines one batch per node).
      results = await this.writer.all('deleteMany', keys, (backend) =>
        Promise.all(keys.map((key) => backend.delete(key))),
      )
    } finally {
      this.order.end(ticket)
    }
    let removed = 0
    for (let i = 0; i < keys.length; i++) {
      if (!results.some((levelResults) => levelResults[i])) continue
      removed++
      this.observer.delete(keys[i]!)
    }
    await this.invalidation.publish({ keys: [...keys] })
    return removed
  }

  /** After close(): every operation throws CacheClosedError, as on every backend. */
  private assertOpen(): void {
    if (this.closed !== undefined) throw new CacheClosedError(this.name)
  }

  /**
   * Idempotent. Closes the levels too unless `closeLevels: false`; never closes the bus. From then
   * on every operation rejects with `CacheClosedError`; the writes already in flight are let
   * finish first (on every level: a persistent faster level, such as disk, must not keep a value
   * the shared level replaced), so they settle with their real result.
   */
  close(): Promise<void> {
    this.closed ??= (async () => {
      await this.order.idle()
      this.health.closing = true
      this.invalidation.close()
      for (const level of this.levels) level.stop()
      if (!this.closeLevels) return
      const results = await Promise.allSettled(this.levels.map((level) => level.backend.close()))
      const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
      if (failure) throw failure.reason
    })()
    return this.closed
  }

  /** `incr`/`atomicUpdate`: run on the slowest level that answers, then evict the faster ones. */
  private async onShared<R>(
    operation: string,
    key: string,
    run: (backend: CacheBackend) => Promise<R>,
    callerFailed?: () => boolean,
  ) {
    this.reads.invalidate(key)
    // Marks the key as written meanwhile, so a value write overlapping this one is not copied.
    const ticket = this.order.begin(key)
    let result: R
    try {
      const slowest = await this.writer.slowest(operation, key, run, callerFailed)
      result = slowest.result
      this.reads.invalidate(key)
      await Promise.all(this.levels.slice(0, slowest.index).map((level) => this.writer.evict(level, key)))
    } finally {
      this.order.end(ticket)
    }
    await this.invalidation.publish({ keys: [key] })
    return result
  }
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
