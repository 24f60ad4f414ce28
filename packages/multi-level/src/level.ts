import type { CacheBackend } from '@cache/core'
import { isGenerationKey, type SyncAccess } from '@cache/core/backend'
import { type BreakerOptions, type BreakerState, CircuitBreaker } from './breaker.js'
import { isCallerError } from './caller-error.js'
import { isPartialFailure } from './health.js'

/** What multi-level counted for one level. */
export interface LevelStats {
  hits: number
  misses: number
  sets: number
  deletes: number
  /** Entries copied into this level from a slower one. */
  backfills: number
  /** Failed operations (the level threw or timed out); caller errors such as a bad TTL excluded. */
  errors: number
  timeouts: number
  /** Operations that skipped this level because its breaker was open. */
  skipped: number
  /** Times the breaker opened. */
  opened: number
}

/** A snapshot of one level: its name, breaker state, counters and repairs waiting. */
export interface LevelReport extends LevelStats {
  index: number
  name: string
  state: BreakerState
  /** Keys to delete from this level before it is used again (or, while it is in use, before it serves them). */
  pendingKeys: number
  /** The level will be cleared before it is used again (a faster level only: the shared level never is). */
  pendingClear: boolean
  /**
   * Keys a faster level answered `incr`/`atomicUpdate`/`add`/`compareAndDelete` for while this
   * level was skipped: the faster levels drop them before this level is used again.
   */
  divergedKeys: number
}

/** First pause before a level that is in use retries the repairs a failed write left; doubles up to the max. */
const REPAIR_DELAY_MS = 50
/** Rounds of replay a probe makes while writes keep adding keys to repair, before it closes the level with those left. */
const MAX_REPLAYS = 5
const MAX_REPAIR_DELAY_MS = 2000

/** A key name no application uses, for the probe of a level that has nothing to repair. */
const PROBE_KEY = '\u0000@cache/multi-level:probe'

/**
 * One level of a chain: the backend, its breaker, and the writes it missed while it was skipped
 * or failing. Those are replayed as deletes (or, on a faster level, one `clear`) before the level is used again, so a
 * value changed or deleted while the level was down never reappears from it. A write that fails
 * while the breaker stays closed is repaired the same way, in the background, soon; until then
 * reads of that key skip this level.
 */
export class Level {
  readonly name: string
  readonly sync: SyncAccess | undefined
  readonly stats: LevelStats = {
    hits: 0,
    misses: 0,
    sets: 0,
    deletes: 0,
    backfills: 0,
    errors: 0,
    timeouts: 0,
    skipped: 0,
    opened: 0,
  }
  readonly breaker: CircuitBreaker
  private readonly pending = new Set<string>()
  /** The shared level's repair list overflowed since it was last in use (and that was told). */
  private overflowTold = false
  /** Told once per overflow of the shared level's repair list, with what is not repaired. */
  onUnrepaired: (message: string) => void = () => {}
  /** Keys of writes this level failed while in use (see {@link suspect}), since its last success. */
  private readonly suspects = new Set<string>()
  /** Suspect keys past `maxPendingKeys`. */
  private suspectsPast = 0
  /** A `clear()` this level failed while in use, since its last success (see {@link suspectClear}). */
  private suspectedClear = false
  /** A faster level: cleared before it is used again. Never set for the shared level. */
  private pendingClear = false
  /**
   * The shared level missed a `clear()` in this outage: never replayed there (see
   * {@link missedClear}), told once when the level answers again.
   */
  private clearMissed = false
  /** The shared level's repair list overflowed in this outage. */
  private overflowed = false
  /** Keys the shared level's repair deleted since it missed a clear (for what is told), each once. */
  private readonly repairedSinceClear = new Set<string>()
  /**
   * Why this level refused `clear()` by its configuration (Redis without a namespace, a backend
   * without `clear`): every later clear of the chain is refused the same way, breaker open or not.
   */
  clearRefusal: unknown
  /** Keys a faster level changed on its own while this one was skipped (see {@link diverged}). */
  private readonly divergent = new Set<string>()
  private divergentAll = false
  private recovering = false
  private stopped = false
  private repairTimer: NodeJS.Timeout | undefined
  private repairDelayMs = REPAIR_DELAY_MS
  /**
   * Told what a repair deleted, once the level took it; awaited before the level is used again.
   * Set by the chain for the shared level: this process's faster levels drop the keys (a write
   * they took while it was skipped must not outlive its repair), and another process may have
   * read the old value back from it before the repair, and must drop it, as after any write.
   */
  onRepaired: (keys: string[]) => void | Promise<void> = () => {}
  /** Told when a background repair of a level in use fails (counted like any failure). */
  onRepairFailure: (error: unknown) => void = () => {}
  /**
   * Set by the chain: drops what the levels faster than this one hold of `keys` (`'all'`:
   * everything they hold). Never rejects: a faster level that fails remembers the keys itself.
   */
  dropFaster: (keys: readonly string[] | 'all') => Promise<void> = async () => {}
  /** Whether reads copy what they find deeper into this level: only into one of this process alone (set by the chain). */
  backfilled = true

  constructor(
    readonly backend: CacheBackend,
    readonly index: number,
    breaker: BreakerOptions,
    private readonly maxPending: number,
    /** The slowest level: the one other processes share, whose keys are never cleared in bulk by a repair. */
    private readonly shared = false,
  ) {
    this.name = backend.name
    this.sync = backend.sync
    this.breaker = new CircuitBreaker(breaker)
    this.breaker.onRecovered = () => {
      // A later overflow is told again.
      this.overflowTold = false
      this.overflowed = false
      if (this.suspects.size > 0) this.suspects.clear()
      this.suspectsPast = 0
      this.suspectedClear = false
    }
  }

  /** Starts this level's probe (set by the chain's {@link LevelHealth}). */
  probe: (() => void) | undefined

  /** True when the breaker is closed; `false` is the hot-path answer for "skip this level". */
  get closed(): boolean {
    return this.breaker.state === 'closed'
  }

  /** True while this level has repairs waiting: the hot path checks this before {@link isPending}. */
  get hasRepairs(): boolean {
    return this.pendingClear || this.pending.size > 0
  }

  /** True if this level may hold an outdated value for `key`: reads must not use it for that key. */
  isPending(key: string): boolean {
    return this.pendingClear || this.pending.has(key)
  }

  /** Remembers that `key` changed while this level could not be written. */
  missed(key: string): void {
    this.remember(key)
    this.repairSoon()
  }

  missedMany(keys: readonly string[]): void {
    for (const key of keys) this.remember(key)
    this.repairSoon()
  }

  /**
   * While this level was skipped, a faster one answered an `incr`, `atomicUpdate`, `add` or
   * `compareAndDelete` of these keys on its own. This level's value is not outdated (it is the one
   * the other processes kept using), so nothing is deleted from it: the faster levels' private
   * results are, before this level is used again.
   */
  diverged(keys: string | readonly string[]): void {
    if (this.divergentAll) return
    for (const key of typeof keys === 'string' ? [keys] : keys) {
      if (this.divergent.size >= this.maxPending) {
        this.divergent.clear()
        this.divergentAll = true
        return
      }
      this.divergent.add(key)
    }
  }

  /**
   * A write of `keys` was sent to this level while it was in use, and failed: it may have been
   * applied (a lost reply), and other processes go on writing the keys (a lock taken after this
   * release, increments after this reset, maybe with the very value replaced), so nothing tells
   * their writes from this one's and no repair may delete the keys. Unless the level turns out to
   * be down: if the run of failures this one belongs to opens the breaker before any success, the
   * keys are repaired as those of the writes it skips ({@link wentDown}).
   */
  suspect(keys: readonly string[]): void {
    for (const key of keys) {
      if (this.suspects.size < this.maxPending) this.suspects.add(key)
      else this.suspectsPast++
    }
  }

  /**
   * A `clear()` this level failed while in use: as {@link suspect}, never cleared again; if the
   * level turns out to be down, it is a clear it missed ({@link missedClear}).
   */
  suspectClear(): void {
    this.suspectedClear = true
  }

  /** The breaker opened: the writes failed since the last success are repaired as skipped ones. */
  wentDown(): void {
    const { suspectsPast, suspectedClear } = this
    this.suspectsPast = 0
    this.suspectedClear = false
    // First: the one report of the clear then covers the keys past the list too.
    if (suspectedClear) this.missedClear()
    for (const key of this.suspects) this.remember(key)
    this.suspects.clear()
    if (suspectsPast > 0) this.overflow()
  }

  /**
   * Remembers that a `clear()` did not reach this level. A faster level (this process's copy) is
   * cleared before it is used again. The shared level never is: the clear was rejected to its
   * caller, and other processes took locks, counted and wrote in the namespace since; clearing it
   * again would destroy that. The keys this process changed before and after the clear stay
   * pending there and are deleted one by one (a tag invalidation among them must not be lost),
   * the faster levels drop everything before it is used again (this process then reads what it
   * holds, as the others do), and that the clear was not repaired is told once.
   */
  missedClear(): void {
    if (this.shared) {
      this.clearMissed = true
      this.divergent.clear()
      this.divergentAll = true
    } else this.pendingClear = true
    this.repairSoon()
  }

  /**
   * The level refused a `clear()`: remembered if the refusal is its configuration (then nothing
   * was sent, and `true` is returned), not the call's (a step refused midway).
   */
  refusedClear(error: unknown): boolean {
    const code = (error as { code?: unknown } | null)?.code
    if (code !== 'CACHE_CONFIG' && code !== 'CACHE_UNSUPPORTED') return false
    this.clearRefusal = error
    return true
  }

  /** A write of these keys reached this level: it holds their newest state, nothing to repair. */
  written(keys: string | readonly string[]): void {
    if (this.pending.size === 0) return
    if (typeof keys === 'string') this.pending.delete(keys)
    else for (const key of keys) this.pending.delete(key)
  }

  /** Stops the background repair timer (the chain is closing). */
  stop(): void {
    this.stopped = true
    clearTimeout(this.repairTimer)
    this.repairTimer = undefined
  }

  /**
   * Runs the probe once the open period is over: replays the missed deletes (or the clear) and
   * closes the breaker when the level answers; reopens it when it fails again. Never awaited by
   * the operation that triggers it, so callers never wait for a level that is down.
   */
  recover(onUp: () => void, onFailure: (error: unknown) => void): void {
    if (this.recovering || this.stopped) return
    this.recovering = true
    this.breaker.state = 'half-open'
    void this.repair().then(
      () => {
        this.recovering = false
        onUp()
      },
      (error) => {
        // Still half-open: the failure reopens the breaker for another period.
        this.recovering = false
        onFailure(error)
      },
    )
  }

  report(): LevelReport {
    return {
      index: this.index,
      name: this.name,
      state: this.breaker.state,
      ...this.stats,
      pendingKeys: this.pending.size,
      pendingClear: this.pendingClear,
      divergedKeys: this.divergentAll ? this.maxPending : this.divergent.size,
    }
  }

  private remember(key: string): void {
    // Invalidation state is kept past the limit: an invalidation left unrepaired on the shared
    // level would have other processes serve results from before it.
    if (this.pending.size < this.maxPending || isGenerationKey(key)) this.pending.add(key)
    else if (!this.pending.has(key)) this.overflow()
  }

  /**
   * Lost track of what changed. A faster level is cleared (it only caches the shared one). The
   * shared level is not: clearing its namespace would delete every other process's locks and
   * counters; the keys past the list stay as they are there (other processes, and this one once
   * its faster levels dropped everything before the level is used again, read what it holds).
   */
  private overflow(): void {
    if (!this.shared) {
      this.pending.clear()
      this.pendingClear = true
      return
    }
    this.overflowed = true
    // After a missed clear in this outage, the one report of the clear says it too.
    if (!this.overflowTold && !this.clearMissed) {
      this.overflowTold = true
      this.onUnrepaired(
        `more keys changed than maxPendingKeys (${this.maxPending}) while ${this.name} could not take them: those past it are not repaired there (other processes may read their old values until they expire or are written again)`,
      )
    }
    this.divergent.clear()
    this.divergentAll = true
  }

  /**
   * A level in use (breaker closed) that failed a write repairs it in the background, soon, so
   * other processes stop reading the outdated value from it. Once its breaker opens, it is probed
   * (and repaired) when the open period ends ({@link probe}) rather than by the next call: a
   * repair that waited for a process to make a call, minutes later, would delete what other
   * processes wrote since (a counter they kept incrementing), and a level left open would have
   * that call's `incr` or `add` answered by the faster levels long after the level came back.
   */
  repairSoon(): void {
    if (this.repairTimer !== undefined || this.recovering || this.stopped) return
    if (this.breaker.state === 'open') {
      this.repairTimer = setTimeout(() => {
        this.repairTimer = undefined
        if (this.breaker.state === 'open') this.probe?.()
      }, this.breaker.openMs)
      this.repairTimer.unref?.()
      return
    }
    if (this.breaker.state !== 'closed') return
    this.repairTimer = setTimeout(() => {
      this.repairTimer = undefined
      // The breaker opened meanwhile: the probe repairs, when the open period ends.
      if (this.breaker.state === 'open') return this.repairSoon()
      if (this.breaker.state !== 'closed' || this.recovering || !this.hasRepairs) return
      this.recovering = true
      void this.replay().then(
        () => {
          this.recovering = false
          this.repairDelayMs = REPAIR_DELAY_MS
          // The breaker may have opened while this repair ran (its own timer was not set then):
          // its probe is due when the open period ends.
          if (this.hasRepairs || this.breaker.state === 'open') this.repairSoon()
        },
        (error) => {
          this.recovering = false
          this.repairDelayMs = Math.min(this.repairDelayMs * 2, MAX_REPAIR_DELAY_MS)
          this.onRepairFailure(error)
          this.repairSoon()
        },
      )
    }, this.repairDelayMs)
    this.repairTimer.unref?.()
  }

  /** Replays the missed writes as one clear (a faster level) or one batch of deletes. */
  private async replay(): Promise<void> {
    if (this.pendingClear) {
      this.pendingClear = false
      // Keys changed before or after the missed clear: deleted by the clear, or one by one if it
      // is refused.
      const changed = [...this.pending]
      this.pending.clear()
      try {
        await this.backend.clear()
      } catch (error) {
        // Partial: the failed server is repaired by the backend before it serves again.
        if (isPartialFailure(error)) return
        for (const key of changed) this.pending.add(key)
        // A clear this level refuses: the clear it missed would have been refused too. Retrying
        // would keep it out of use for good; the keys this process changed are deleted instead.
        if (!isCallerError(error)) {
          this.pendingClear = true
          throw error
        }
        this.onUnrepaired(
          `a clear() it missed is not repaired: it refuses clear() (${String((error as Error).message ?? error)}); the ${changed.length} keys this process changed while it could not take them are deleted there, the others keep their values`,
        )
      }
    }
    if (this.pending.size > 0) {
      const keys = [...this.pending]
      this.pending.clear()
      try {
        await this.backend.deleteMany(keys)
      } catch (error) {
        if (!isPartialFailure(error)) {
          for (const key of keys) this.remember(key)
          throw error
        }
      }
      if (this.clearMissed) for (const key of keys) this.repairedSinceClear.add(key)
      await this.onRepaired(keys)
    }
  }

  /** Once per outage in which the shared level missed a clear: what was done instead. */
  private tellClearMissed(): void {
    const repaired = this.repairedSinceClear.size
    this.onUnrepaired(
      `a clear() it missed is not repaired there (the call was rejected to its caller; clearing the namespace now would delete what other processes wrote since: their locks, counters and values): the keys this process did not change keep their values there, and this process reads them as the others do; the ${repaired} key${repaired === 1 ? '' : 's'} this process changed then ${repaired === 1 ? 'is' : 'are'} repaired one by one${this.overflowed ? `, except those past maxPendingKeys (${this.maxPending}), which keep their old values too` : ''}`,
    )
    this.clearMissed = false
    this.repairedSinceClear.clear()
  }

  private async repair(): Promise<void> {
    let answered = false
    let replays = 0
    // Writes keep arriving (and being recorded) while the repair runs: loop until none is left,
    // and close the breaker in the same tick as the last check so none slips through. Under a
    // steady stream of writes there is always one more: after a few rounds the level closes with
    // those left, as a level in use that failed a write does (reads skip them, a background
    // repair deletes them), rather than stay half-open for good.
    for (;;) {
      if (this.hasRepairs && replays++ < MAX_REPLAYS) await this.replay()
      else if (!answered) {
        // The probe key lives on one server of a pool: that server being down is not the level.
        await this.backend.has(PROBE_KEY).catch((error) => {
          if (!isPartialFailure(error)) throw error
        })
      } else if (this.clearMissed) {
        this.tellClearMissed()
      } else if (this.divergentAll || this.divergent.size > 0) {
        // Once it answers: the private results the faster levels computed without it must go.
        const keys = this.divergentAll ? 'all' : [...this.divergent]
        this.divergentAll = false
        this.divergent.clear()
        await this.dropFaster(keys)
      } else {
        this.breaker.close()
        if (this.hasRepairs) this.repairSoon()
        return
      }
      answered = true
    }
  }
}
