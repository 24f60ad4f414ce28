import { type CacheEntry, CacheUnavailableError, type Duration } from '@cache/core'
import type { LevelHealth } from './health.js'
import type { ChainInvalidation } from './invalidation.js'
import type { Level } from './level.js'
import type { ReadGuard, ReadGuards } from './read-guard.js'
import type { LevelWriter } from './writes.js'

/**
 * Invalidation state: the generation keys (`__v:…`) behind memoize's `clear()`, `invalidate()`,
 * `invalidateTags()` and the HTTP cache's `clear()`. A copy of them in a process's own level is
 * exactly what must never outlive a change made by another process, so they are not cached like
 * values:
 *
 * - reads go to the shared (slowest) level; a faster level keeps a copy for at most `stateTtl`
 *   (default 0: none), used only while the shared level is in use, and the bus evicts copies
 *   when the state changes;
 * - writes go to the shared level and evict the copies; a write the shared level did not take is
 *   remembered for its repair (reads fail meanwhile) and rejected; one it failed is published all
 *   the same (it may have been applied), one it skipped (breaker open) is not;
 * - while the shared level cannot answer for a key (its breaker is open, a repair of that key is
 *   pending, or the read fails), reading that key fails with `CacheUnavailableError`: memoize
 *   then calls the function without caching. No process ever decides state on its own, so
 *   nothing decided during an outage can outlive it.
 */
export class StateKeys {
  private readonly shared: Level
  private readonly faster: readonly Level[]

  constructor(
    levels: readonly Level[],
    private readonly guards: ReadGuards,
    private readonly health: LevelHealth,
    private readonly writer: LevelWriter,
    /** Tells the other processes (their faster levels drop their copies). */
    private readonly bus: Pick<ChainInvalidation, 'publish' | 'publishHanded'>,
    private readonly ttlMs: number,
    private readonly now: () => number,
  ) {
    this.shared = levels[levels.length - 1]!
    // Copies live only in levels of this process alone: one other processes share (a disk behind
    // memory) would get state a read of this process answered before another's invalidation, and
    // serve it to the processes of the machine that were already told (see Level.backfilled).
    this.faster = levels.slice(0, -1).filter((level) => level.backfilled)
  }

  /**
   * The state under `key`. Not counted as a hit or miss, in the chain's stats or a level's: these
   * reads come with the lookups they serve, and counting them would make the hit ratios those
   * of @cache's bookkeeping rather than of the application's lookups.
   */
  async read<T>(key: string): Promise<CacheEntry<T> | undefined> {
    return this.lookup<T>(key)
  }

  async set(key: string, value: unknown, ttl: Duration | undefined): Promise<void> {
    await this.write(key, 'set', (backend) => backend.set(key, value, ttl))
  }

  async delete(key: string): Promise<boolean> {
    return this.write(key, 'delete', (backend) => backend.delete(key))
  }

  async incr(key: string, by: number, ttl: Duration | undefined): Promise<number> {
    return this.write(key, 'incr', (backend) => backend.incr(key, by, ttl))
  }

  /** Creates the state if absent: the shared level decides for every process, or the call fails. */
  async add(key: string, value: unknown, ttl: Duration | undefined): Promise<boolean> {
    const shared = this.shared
    if (!this.usable(key)) throw this.unavailable('add', undefined)
    let added: boolean
    try {
      added = await shared.backend.add(key, value, ttl)
      shared.breaker.success()
    } catch (error) {
      this.health.failed(shared, 'add', error, key)
      // Maybe applied (a timeout does not say): told before the caller hears of the failure.
      this.guards.invalidate(key)
      await this.evictCopies(key)
      await this.bus.publishHanded({ keys: [key] })
      throw this.unavailable('add', error)
    }
    if (added) {
      shared.stats.sets++
      this.guards.invalidate(key)
      await this.evictCopies(key)
      this.bus.publish({ keys: [key] })
    }
    return added
  }

  private usable(key: string): boolean {
    const shared = this.shared
    return this.health.usable(shared) && !(shared.hasRepairs && shared.isPending(key))
  }

  private async lookup<T>(key: string): Promise<CacheEntry<T> | undefined> {
    const shared = this.shared
    if (!this.usable(key)) throw this.unavailable('get', undefined)
    if (this.ttlMs > 0) {
      for (const level of this.faster) {
        if (!this.health.usable(level) || (level.hasRepairs && level.isPending(key))) continue
        try {
          const entry = await level.backend.getEntry<T>(key)
          level.breaker.success()
          if (entry !== undefined) return entry
        } catch (error) {
          this.health.failed(level, 'get', error, key, false)
        }
      }
    }
    const guard = this.guards.enter(key)
    try {
      const entry = await shared.backend.getEntry<T>(key)
      shared.breaker.success()
      if (entry !== undefined && this.ttlMs > 0) await this.copy(key, entry, guard)
      return entry
    } catch (error) {
      this.health.failed(shared, 'get', error, key, false)
      throw this.unavailable('get', error)
    } finally {
      this.guards.leave(key, guard)
    }
  }

  /** Copies state read from the shared level into the faster levels, for at most `stateTtl`. */
  private async copy(key: string, entry: CacheEntry, guard: ReadGuard): Promise<void> {
    if (guard.dirty) return
    let ms = this.ttlMs
    if (entry.expiresAt !== undefined) ms = Math.min(ms, Math.floor(entry.expiresAt - this.now()))
    if (ms < 1) return
    await Promise.all(
      this.faster.map(async (level) => {
        if (!level.closed || (level.hasRepairs && level.isPending(key))) return
        try {
          await level.backend.set(key, entry.value, `${ms}ms`)
          level.stats.backfills++
        } catch (error) {
          this.health.failed(level, 'backfill', error, key, false)
        }
      }),
    )
  }

  /**
   * A change of state: on the shared level, then the faster levels' copies are evicted and the
   * bus tells other processes. If the shared level did not take it, the key is remembered for
   * its repair (until then, reading it fails) and the call rejects.
   */
  private async write<R>(
    key: string,
    operation: string,
    run: (backend: Level['backend']) => Promise<R>,
  ): Promise<R> {
    const shared = this.shared
    this.guards.invalidate(key)
    let taken: { result: R } | undefined
    let failure: unknown
    if (this.health.usable(shared)) {
      try {
        taken = { result: await run(shared.backend) }
        shared.breaker.success()
        shared.written(key)
        if (operation === 'delete') shared.stats.deletes++
        else shared.stats.sets++
      } catch (error) {
        this.health.failed(shared, operation, error, key)
        failure = error
      }
    }
    await this.evictCopies(key)
    if (taken !== undefined) {
      this.bus.publish({ keys: [key] })
      return taken.result
    }
    shared.missed(key)
    // Sent: the shared level may have applied it (a timeout does not say): the others drop their
    // copies, told before the caller hears of the failure (a process may exit on it). Skipped
    // (breaker open): nothing changed there, nothing to tell; its repair is published.
    if (failure !== undefined) await this.bus.publishHanded({ keys: [key] })
    throw this.health.notTaken(shared, operation, failure)
  }

  private async evictCopies(key: string): Promise<void> {
    await Promise.all(this.faster.map((level) => this.writer.evict(level, key)))
  }

  private unavailable(operation: string, cause: unknown): CacheUnavailableError {
    return new CacheUnavailableError(
      'multi-level',
      `multi-level: ${operation} of invalidation state needs the shared level (${this.shared.name}), which cannot answer now`,
      cause === undefined ? undefined : { cause },
    )
  }
}
