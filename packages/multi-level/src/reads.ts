import type { CacheEntry } from '@cache/core'
import { assertKey, type CacheObserver } from '@cache/core/backend'
import type { LevelHealth } from './health.js'
import type { Level } from './level.js'
import type { ReadGuard, ReadGuards } from './read-guard.js'

/** The slow path of a chain's reads: level by level, backfilling the faster levels on a hit. */
export class LevelReader {
  constructor(
    private readonly levels: readonly Level[],
    private readonly guards: ReadGuards,
    private readonly health: LevelHealth,
    private readonly observer: CacheObserver,
    private readonly now: () => number,
  ) {}

  /**
   * Reads from level `start` on; a hit backfills the faster levels. `answered` says whether a
   * faster level already answered (a miss), so "every level is down" is only reported when true.
   * `count: false` leaves the chain's hit or miss to the caller (a batch counts once it resolves).
   */
  async read<T>(
    key: string,
    start: number,
    answered: boolean,
    count = true,
  ): Promise<CacheEntry<T> | undefined> {
    if (typeof key !== 'string') assertKey(key)
    const levels = this.levels
    const guard = start < levels.length ? this.guards.enter(key) : undefined
    let lastError: unknown
    try {
      for (let i = start; i < levels.length; i++) {
        const level = levels[i]!
        if (!this.health.usable(level)) continue
        // A write of this key failed on this level: what it holds may be outdated.
        if (level.hasRepairs && level.isPending(key)) {
          answered = true
          continue
        }
        let entry: CacheEntry<T> | undefined
        try {
          entry = await level.backend.getEntry<T>(key)
        } catch (error) {
          this.health.failed(level, 'get', error, key)
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
        if (count) this.observer.hit(key)
        return entry
      }
    } finally {
      if (guard) this.guards.leave(key, guard)
    }
    if (!answered) throw this.health.allDown('get', lastError)
    if (count) this.observer.miss(key)
    return undefined
  }

  /** Whether any level holds `key`, level by level; a level whose copy may be outdated is passed over. */
  async has(key: string): Promise<boolean> {
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
   * Copies an entry found at level `from` into the faster levels of this process alone (see
   * `Level.backfilled`) with what remains of its TTL: never the full TTL, never past the source's
   * expiry. Skipped if the key was written meanwhile.
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
      if (!level.backfilled || !level.closed || (level.hasRepairs && level.isPending(key))) continue
      tasks.push(
        level.backend.set(key, entry.value, ttl).then(
          () => {
            level.stats.backfills++
          },
          (error) => this.health.failed(level, 'backfill', error, key, false),
        ),
      )
    }
    await Promise.all(tasks)
  }
}
