import type { CacheBackend } from '@cache/core'
import { isCallerError } from './caller-error.js'
import { isPartialFailure, isUnsent, type LevelHealth, markSkipped } from './health.js'
import type { Level } from './level.js'
import type { ReadGuards } from './read-guard.js'
import type { WriteOrder, WriteTicket } from './write-order.js'

/**
 * Routes writes through a chain: the slowest level that answers first (so a value it refuses is
 * stored nowhere), then the faster ones. Levels skipped or failing remember the keys, to be
 * repaired before they are used again.
 */
export class LevelWriter {
  constructor(
    private readonly levels: readonly Level[],
    private readonly health: LevelHealth,
    private readonly order: WriteOrder,
    private readonly reads: ReadGuards,
  ) {}

  /**
   * A write (set, delete and their batches): the shared (slowest) level first, so a value it
   * refuses is stored nowhere, then the faster levels in parallel. Resolves only if the shared
   * level took it. If it was skipped (its breaker is open), the write still reaches the faster
   * levels, so this process never serves what it replaced; the shared level remembers the keys,
   * skips them on reads and deletes them when its probe finds it answering (so does a failure
   * that opens the breaker). If it failed the write while in use (maybe applied), nothing is
   * repaired there unless it turns out to be down: the faster levels drop the keys and this
   * process reads what it holds, as the others do. Either way the call rejects with
   * `CacheUnavailableError`, since other processes may still read the old value.
   * A write that stores a value passes its `ticket`: overlapped by another write of its keys, it
   * deletes them from the faster levels instead (see {@link WriteOrder}).
   */
  async all<R>(
    operation: string,
    keys: string | readonly string[],
    run: (backend: CacheBackend) => Promise<R>,
    ticket?: WriteTicket,
  ): Promise<R[]> {
    const last = this.levels.length - 1
    const shared = this.levels[last]!
    let taken: { result: R } | undefined
    let failure: unknown
    if (this.health.usable(shared)) {
      try {
        taken = { result: await run(shared.backend) }
        shared.breaker.success()
        shared.written(keys)
        count(shared, operation, keys)
      } catch (error) {
        if (isCallerError(error)) {
          // The level answered and refused the call, or part of a batch (a key it forbids, a
          // value over its limit) after applying the rest: what it holds for these keys is not
          // known here. The faster levels' copies go, so that this process reads what it holds,
          // as the others do (told by the bus: the write was sent, see toldEvenIfFailed).
          await this.dropFaster(last, typeof keys === 'string' ? [keys] : keys)
          throw error
        }
        this.health.failed(shared, operation, error, typeof keys === 'string' ? keys : undefined)
        // Never sent (it waited behind this process's own call on the key): nothing changed
        // anywhere, so nothing is to be repaired, and the faster levels keep what they hold.
        if (isUnsent(error)) throw error
        const list = typeof keys === 'string' ? [keys] : keys
        if (shared.closed) {
          // Sent, and maybe applied (a lost reply, a timeout) by a level still in use: other
          // processes go on writing the keys, and nothing tells their writes from this one's, so
          // nothing is repaired there unless the level turns out to be down (see Level.suspect).
          // The faster levels' copies go: this process reads what the level holds, as the others
          // do, and the caller, told that the write may not have been applied, writes again.
          if (!isPartialFailure(error)) shared.suspect(list)
          await this.dropFaster(last, list)
          throw this.health.notTaken(shared, operation, error)
        }
        // This failure opened the breaker (or it opened meanwhile): the level is down, and the
        // write is repaired as those it skips from now on.
        missed(shared, keys)
        failure = error
      }
    } else {
      missed(shared, keys)
    }
    const results = await this.faster(last, operation, keys, run, ticket)
    if (taken === undefined) throw this.health.notTaken(shared, operation, failure)
    results.push(taken.result)
    return results
  }

  /**
   * Runs `run` (`incr`, `atomicUpdate`, `add`, `compareAndDelete`: calls whose answer the level
   * computes) on the slowest level in use: the shared one, or, while its breaker is open, the
   * next one. Levels skipped on the way remember the keys as diverged: what the faster levels
   * answered without them is dropped before they are used again, and nothing is deleted from
   * them (their value is the one other processes kept using).
   *
   * If that level fails, the call rejects with its error and no faster level answers instead: the
   * level was not known to be down, and it may have applied the call (a timeout does not say), so
   * an answer from a private level could repeat one given to another process, and a repair would
   * erase what other processes stored. Nothing is remembered for its repair; the faster levels
   * drop their copies of the keys, which may be outdated either way.
   */
  async slowest<R>(
    operation: string,
    keys: string | readonly string[],
    run: (backend: CacheBackend) => Promise<R>,
    callerFailed?: () => boolean,
  ): Promise<{ result: R; index: number; dropped: boolean }> {
    const skipped: Level[] = []
    for (let i = this.levels.length - 1; i >= 0; i--) {
      const level = this.levels[i]!
      if (!this.health.usable(level)) {
        skipped.push(level)
        continue
      }
      let result: R
      try {
        result = await run(level.backend)
      } catch (error) {
        if (callerFailed?.()) throw error
        // A refusal of the level (a value over its limit, a conflict) drops the faster copies
        // too: what the level holds of the keys is not known here (memcached drops an item
        // whose new value it refuses as too large).
        if (!isCallerError(error))
          this.health.failed(level, operation, error, typeof keys === 'string' ? keys : undefined)
        // A faster level answering while the shared one is skipped, refusal or failure: nothing
        // was sent there, nothing is told to the other processes.
        if (i < this.levels.length - 1) markSkipped(error)
        this.invalidate(keys)
        await Promise.all(this.levels.slice(0, i).map((faster) => this.evict(faster, keys)))
        throw error
      }
      level.breaker.success()
      // An add or compareAndDelete that answered false changed nothing: a repair the level was
      // waiting for is still due. One that answered true wrote the key's newest state there: a
      // repair would now delete what it decided (another process could then take the lock too).
      if ((operation !== 'add' && operation !== 'compareAndDelete') || result === true) level.written(keys)
      count(level, operation, keys)
      // A skipped level that its probe closed while this call ran has dropped what it knew of
      // then: the private result is dropped here instead, before it can be served in its stead.
      let reopened = false
      for (const slower of skipped) {
        if (slower.breaker.state === 'closed') reopened = true
        else slower.diverged(keys)
      }
      if (reopened) await Promise.all(this.levels.slice(0, i + 1).map((level) => this.evict(level, keys)))
      return { result, index: i, dropped: reopened }
    }
    throw this.health.allDown(operation, undefined)
  }

  /**
   * Runs `run` on the levels faster than `index`, in parallel; failures are counted, not thrown.
   * With a `ticket` that another write overlapped, deletes the keys from them instead: the shared
   * level's order of the two is unknown here, and a copy must not outlive what replaced it there.
   */
  async faster<R>(
    index: number,
    operation: string,
    keys: string | readonly string[],
    run: (backend: CacheBackend) => Promise<R>,
    ticket?: WriteTicket,
  ): Promise<R[]> {
    const results: R[] = []
    const tasks: Promise<void>[] = []
    if (ticket !== undefined && !this.order.alone(ticket)) {
      for (let i = 0; i < index; i++) tasks.push(this.evict(this.levels[i]!, keys))
      await Promise.all(tasks)
      return results
    }
    for (let i = 0; i < index; i++) {
      const level = this.levels[i]!
      if (!this.health.usable(level)) {
        missed(level, keys)
        continue
      }
      tasks.push(
        run(level.backend).then(
          (result) => {
            level.breaker.success()
            level.written(keys)
            count(level, operation, keys)
            results.push(result)
          },
          (error) => {
            missed(level, keys)
            // A faster level refusing what the shared level took (say, too large for L1) must
            // not fail the write; it must not keep an older value either.
            this.health.failed(level, operation, error, typeof keys === 'string' ? keys : undefined, false)
            if (isCallerError(error)) this.evict(level, keys)
          },
        ),
      )
    }
    await Promise.all(tasks)
    return results
  }

  /** Drops what the levels faster than `index` hold of `keys` (`'all'`: everything they hold). */
  async dropFaster(index: number, keys: readonly string[] | 'all'): Promise<void> {
    const faster = this.levels.slice(0, index)
    if (keys !== 'all') {
      this.invalidate(keys)
      await Promise.all(faster.map((level) => this.evict(level, keys)))
      return
    }
    this.reads.invalidateAll()
    this.order.clearedElsewhere()
    await Promise.all(
      faster.map(async (level) => {
        if (!level.closed) return level.missedClear()
        try {
          await level.backend.clear()
        } catch (error) {
          level.missedClear()
          this.health.failed(level, 'clear', error, undefined, false)
        }
      }),
    )
  }

  /** Reads and writes of the keys in flight must not copy what they saw into the faster levels. */
  private invalidate(keys: string | readonly string[]): void {
    for (const key of typeof keys === 'string' ? [keys] : keys) {
      this.reads.invalidate(key)
      this.order.changedElsewhere(key)
    }
  }

  /** Deletes the keys from one level now, or remembers them if it is skipped or fails. */
  async evict(level: Level, keys: string | readonly string[]): Promise<void> {
    if (!level.closed) return missed(level, keys)
    try {
      if (typeof keys === 'string') await level.backend.delete(keys)
      else await level.backend.deleteMany(keys)
      level.written(keys)
    } catch (error) {
      missed(level, keys)
      this.health.failed(level, 'evict', error, typeof keys === 'string' ? keys : undefined, false)
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
