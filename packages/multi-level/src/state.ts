import { type CacheEntry, type CacheObserver, type Duration, newGeneration } from '@cache/core'
import type { LevelHealth } from './health.js'
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
 *   (default 0: none), and the bus evicts copies when the state changes;
 * - writes go to the shared level and evict the copies; a write the shared level did not take is
 *   remembered for its repair (reads skip it meanwhile) and rejected;
 * - while the shared level cannot answer, this process keeps its own state in memory (never in a
 *   level, where it could outlive the outage); each key's is dropped once the shared level
 *   answers for it again.
 */
export class StateKeys {
  /** This process's state for keys the shared level could not answer for. */
  private readonly fallback = new Map<string, unknown>()
  private readonly shared: Level
  private readonly faster: readonly Level[]

  constructor(
    levels: readonly Level[],
    private readonly guards: ReadGuards,
    private readonly health: LevelHealth,
    private readonly writer: LevelWriter,
    private readonly observer: CacheObserver,
    private readonly publish: (keys: string[]) => Promise<void>,
    private readonly ttlMs: number,
    private readonly now: () => number,
  ) {
    this.shared = levels[levels.length - 1]!
    this.faster = levels.slice(0, -1)
  }

  async read<T>(key: string): Promise<CacheEntry<T> | undefined> {
    const entry = await this.lookup<T>(key)
    if (entry === undefined) this.observer.miss(key)
    else this.observer.hit(key)
    return entry
  }

  async set(key: string, value: unknown, ttl: Duration | undefined): Promise<void> {
    await this.write(key, 'set', (backend) => backend.set(key, value, ttl), value)
  }

  async delete(key: string): Promise<boolean> {
    return this.write(key, 'delete', (backend) => backend.delete(key), undefined)
  }

  async incr(key: string, by: number, ttl: Duration | undefined): Promise<number> {
    // Not taken: any new value is a new generation for this process.
    return this.write(key, 'incr', (backend) => backend.incr(key, by, ttl), newGeneration)
  }

  /**
   * Creates the state if absent. The shared level decides for every process; while it cannot,
   * this process decides for itself (it must keep working, and nothing else can see the change).
   */
  async add(key: string, value: unknown, ttl: Duration | undefined): Promise<boolean> {
    const shared = this.shared
    if (this.usable(key)) {
      try {
        const added = await shared.backend.add(key, value, ttl)
        shared.breaker.success()
        this.fallback.delete(key)
        if (added) {
          shared.stats.sets++
          this.guards.invalidate(key)
          await this.evictCopies(key)
          await this.publish([key])
        }
        return added
      } catch (error) {
        this.health.failed(shared, 'add', error, key)
      }
    }
    if (this.fallback.has(key)) return false
    this.fallback.set(key, value)
    return true
  }

  /** The chain was cleared: this process's own state goes too. */
  cleared(): void {
    this.fallback.clear()
  }

  private usable(key: string): boolean {
    const shared = this.shared
    return this.health.usable(shared) && !(shared.hasRepairs && shared.isPending(key))
  }

  private async lookup<T>(key: string): Promise<CacheEntry<T> | undefined> {
    if (this.ttlMs > 0) {
      for (const level of this.faster) {
        if (!this.health.usable(level) || (level.hasRepairs && level.isPending(key))) continue
        try {
          const entry = await level.backend.getEntry<T>(key)
          level.breaker.success()
          if (entry !== undefined) {
            level.stats.hits++
            return entry
          }
          level.stats.misses++
        } catch (error) {
          this.health.failed(level, 'get', error, key, false)
        }
      }
    }
    const shared = this.shared
    if (this.usable(key)) {
      const guard = this.guards.enter(key)
      try {
        const entry = await shared.backend.getEntry<T>(key)
        shared.breaker.success()
        this.fallback.delete(key)
        if (entry === undefined) shared.stats.misses++
        else {
          shared.stats.hits++
          if (this.ttlMs > 0) await this.copy(key, entry, guard)
        }
        return entry
      } catch (error) {
        this.health.failed(shared, 'get', error, key, false)
      } finally {
        this.guards.leave(key, guard)
      }
    }
    return this.fallback.has(key) ? { value: this.fallback.get(key) as T } : undefined
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
   * bus tells other processes. If the shared level did not take it, this process keeps the new
   * state (`local`) until the shared level is repaired, and the call rejects.
   */
  private async write<R>(
    key: string,
    operation: string,
    run: (backend: Level['backend']) => Promise<R>,
    local: unknown,
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
      this.fallback.delete(key)
      await this.publish([key])
      return taken.result
    }
    shared.missed(key)
    if (operation === 'delete') this.fallback.delete(key)
    else this.fallback.set(key, typeof local === 'function' ? local() : local)
    throw this.health.notTaken(shared, operation, failure)
  }

  private async evictCopies(key: string): Promise<void> {
    await Promise.all(this.faster.map((level) => this.writer.evict(level, key)))
  }
}
