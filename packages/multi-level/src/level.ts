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
  /** The level will be cleared before it is used again. */
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
 * or failing. Those are replayed as deletes (or one `clear`) before the level is used again, so a
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
  /**
   * Keys of writes this level failed while in use (see {@link suspect}), since its last success;
   * `'all'` after a failed `clear()`.
   */
  private suspects: Set<string> | 'all' = new Set()
  /** Suspect keys past `maxPendingKeys`. */
  private suspectsPast = 0
  private pendingClear = false
  /**
   * Keys of the shared level past `maxPendingKeys` while a clear of it was pending: covered if
   * the clear is replayed, told as not repaired if it is refused.
   */
  private pastClear = false
  /** Keys a faster level changed on its own while this one was skipped (see {@link diverged}). */
  private readonly divergent = new Set<string>()
  private divergentAll = false
  private recovering = false
  private stopped = false
  private repairTimer: NodeJS.Timeout | undefined
  private repairDelayMs = REPAIR_DELAY_MS
  /**
   * Told what a repair deleted (`'all'`: it cleared the level), once the level took it. Set by the
   * chain for the shared level: another process may have read the old value back from it before
   * the repair, and must drop it, as after any write.
   */
  onRepaired: (keys: string[] | 'all') => void = () => {}
  /** Told when a background repair of a level in use fails (counted like any failure). */
  onRepairFailure: (error: unknown) => void = () => {}
  /**
   * Set by the chain: drops what the levels faster than this one hold of `keys` (`'all'`:
   * everything they hold). Never rejects: a faster level that fails remembers the keys itself.
   */
  dropFaster: (keys: readonly string[] | 'all') => Promise<void> = async () => {}

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
      if (this.suspects === 'all' || this.suspects.size > 0) this.suspects = new Set()
      this.suspectsPast = 0
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
    if (this.suspects === 'all') return
    for (const key of keys) {
      if (this.suspects.size < this.maxPending) this.suspects.add(key)
      else this.suspectsPast++
    }
  }

  /** A `clear()` this level failed while in use: as {@link suspect}, for every key. */
  suspectClear(): void {
    this.suspects = 'all'
  }

  /** The breaker opened: the writes failed since the last success are repaired as skipped ones. */
  wentDown(): void {
    const { suspects, suspectsPast } = this
    this.suspects = new Set()
    this.suspectsPast = 0
    if (suspects === 'all') {
      // The keys already pending stay: the clear may be refused when it is replayed.
      this.pendingClear = true
      return
    }
    for (const key of suspects) this.remember(key)
    if (suspectsPast > 0) this.overflow()
  }

  /**
   * Remembers that a `clear()` did not reach this level. The keys already pending stay: a clear
   * replayed covers them, but one the level refuses (Redis without a namespace) does not, and
   * they are then repaired one by one (a tag invalidation among them must not be lost).
   */
  missedClear(): void {
    this.pendingClear = true
    this.repairSoon()
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
    else if (this.pending.has(key)) return
    else if (this.shared && this.pendingClear) this.pastClear = true
    else this.overflow()
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
    if (!this.overflowTold) {
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

  /** Replays the missed writes as one clear or one batch of deletes. */
  private async replay(): Promise<void> {
    if (this.pendingClear) {
      this.pendingClear = false
      // Keys changed before or after the missed clear: deleted by the clear, or one by one if it
      // is refused.
      const changed = [...this.pending]
      const past = this.pastClear
      this.pending.clear()
      this.pastClear = false
      try {
        await this.backend.clear()
        this.onRepaired('all')
      } catch (error) {
        // Partial: the failed server is repaired by the backend before it serves again.
        if (isPartialFailure(error)) return this.onRepaired('all')
        // A clear this level refuses (Redis without a namespace): the clear it missed would have
        // been refused too. Retrying would keep it out of use for good; it is used again, the
        // keys this process did not change as they are, once the faster levels dropped everything.
        if (isCallerError(error)) {
          this.onUnrepaired(
            `a clear() it missed is not repaired: it refuses clear() (${String((error as Error).message ?? error)}); the keys this process did not change while ${this.name} could not take them keep their values there (other processes may read them until they expire or are written again); the ${changed.length} keys this process changed then are repaired${past ? `, except those past maxPendingKeys (${this.maxPending}), which keep their old values too` : ''}`,
          )
          this.divergent.clear()
          this.divergentAll = true
          for (const key of changed) this.pending.add(key)
        } else {
          for (const key of changed) this.pending.add(key)
          this.pendingClear = true
          this.pastClear ||= past
          throw error
        }
      }
    }
    if (this.pending.size > 0) {
      const keys = [...this.pending]
      this.pending.clear()
      try {
        await this.backend.deleteMany(keys)
        this.onRepaired(keys)
      } catch (error) {
        if (isPartialFailure(error)) return this.onRepaired(keys)
        for (const key of keys) this.remember(key)
        throw error
      }
    }
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
