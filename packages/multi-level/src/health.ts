import {
  type CacheEvent,
  type CacheEventName,
  CacheError,
  CacheUnavailableError,
  formatDuration,
} from '@cache/core'
import type { CacheObserver, IncidentLog } from '@cache/core/backend'
import { isCallerError } from './caller-error.js'
import type { Level } from './level.js'

/** Events of a chain: the backend events, plus a level's breaker opening and closing. */
export type MultiLevelEventName = CacheEventName | 'level-down' | 'level-up'

/** What a listener receives. `level` is set for events about one level. */
export interface MultiLevelEvent extends CacheEvent {
  level?: number
}

/**
 * Decides whether a level may be used and accounts for its failures: counters, events, and the
 * level's circuit breaker. Shared by the read, write and bus paths of a chain.
 */
export class LevelHealth {
  /**
   * Set by the chain's close(): the levels close under the calls still in flight, and what they
   * answer then is the shutdown, not an outage (see {@link failed}).
   */
  closing = false

  constructor(
    private readonly observer: CacheObserver,
    private readonly now: () => number,
    /** Logs each level's breaker opening once, and its closing once. */
    private readonly incidents: IncidentLog,
  ) {}

  /** True if the level may be used now; starts its probe once its open period is over. */
  usable(level: Level): boolean {
    if (level.breaker.state === 'closed') return true
    level.stats.skipped++
    this.probeIfDue(level)
    return false
  }

  /**
   * Starts the level's probe (and repair) if its breaker's open period is over; an open level
   * whose period is not over yet (a failure in flight pushed it back) is looked at again later,
   * so that its probe never waits for a call.
   */
  probeIfDue(level: Level): void {
    if (level.breaker.state === 'open' && !level.breaker.probeDue(this.now())) {
      level.repairSoon()
      return
    }
    if (level.breaker.probeDue(this.now())) {
      level.recover(
        () => {
          this.incidents.resolve(
            `level ${level.index}`,
            `multi-level: level ${level.index + 1} (${level.name}) answers again and is back in use.`,
          )
          this.emit('level-up', { backend: level.name, level: level.index })
        },
        (error) => this.failed(level, 'probe', error, undefined, false),
      )
    }
  }

  /**
   * A level threw. Caller errors (bad TTL, unserializable value…) are rethrown unless `rethrow`
   * is false; anything else is counted and reported as an event, and counts towards the level's
   * breaker unless it is a partial failure (one server of a pool whose others answer).
   */
  failed(level: Level, operation: string, error: unknown, key?: string, rethrow = true): void {
    // A probe's or repair's call is the chain's own: whatever refused it (Redis's MISCONF while
    // its saves fail reads as a plain refusal) leaves the level unusable, opened again, probed later.
    if (isCallerError(error) && operation !== 'probe' && operation !== 'repair') {
      if (rethrow) throw error
      return
    }
    if (this.closing) {
      // A level closed with the chain refuses the rest of a call in flight: the call rejects
      // with that CacheClosedError, as any call after close() does. Nothing is counted, no
      // breaker opens: the chain is shutting down, not losing a level.
      if ((error as { code?: unknown } | null)?.code === 'CACHE_CLOSED') {
        if (rethrow) throw error
        return
      }
      level.stats.errors++
      this.observer.stats.errors++
      this.emit('error', { backend: level.name, level: level.index, operation, key, error })
      return
    }
    level.stats.errors++
    if ((error as { code?: string })?.code === 'CACHE_TIMEOUT') level.stats.timeouts++
    this.observer.stats.errors++
    this.emit('error', { backend: level.name, level: level.index, operation, key, error })
    // One server of a pool, or a call the level never sent (it waited behind this process's own
    // call on the key): the level as a whole answers.
    if (isPartialFailure(error) || isUnsent(error) || partlyUnsent.has(error as object)) return
    const opened = level.breaker.failure(this.now())
    // The writes it failed in the run of failures that opened it were not taken by a level that
    // was down: they are repaired as the writes it skips from now on.
    if (opened) level.wentDown()
    // An open level is probed when the period ends, whether or not calls come (a breaker opens
    // only here, so this is where the level learns how to start its probe).
    level.probe ??= () => this.probeIfDue(level)
    level.repairSoon()
    if (opened) {
      level.stats.opened++
      this.incidents.report(
        `level ${level.index}`,
        `multi-level: level ${level.index + 1} (${level.name}) is skipped after ${level.breaker.failures} failures in a row (${describeError(error)}): the other levels serve meanwhile; it is probed every ${formatDuration(level.breaker.openMs)} and repaired before it is used again.`,
      )
      this.emit('level-down', { backend: level.name, level: level.index, operation, error })
    }
  }

  emit(name: MultiLevelEventName, event: MultiLevelEvent): void {
    // Told where a failure is being handled: a listener that throws is logged, and goes no further.
    if (this.observer.listenerCount(name) > 0) this.observer.emitEach(name, event)
  }

  /**
   * The shared level failed the read that proves a write of `key` it failed is settled there (or
   * keys were published again without that proof, see UncertainWrites): counted
   * (`stats.errors`), emitted as an `error` event of operation `republish`, logged once until its
   * reads answer again ({@link proven}). Not a failure of the level: its breaker does not count it.
   * `count`: the keys it stands for (keys published without proof count one each).
   */
  unproven(level: Level, key: string, error: unknown, count = 1): void {
    level.stats.errors += count
    this.observer.stats.errors += count
    this.emit('error', { backend: level.name, level: level.index, operation: 'republish', key, error })
    this.incidents.report(
      `republish ${level.index}`,
      `multi-level: level ${level.index + 1} (${level.name}) does not answer the reads that prove writes it failed are settled there (${describeError(error)}): their keys are published again once it does, or without proof after a few seconds.`,
    )
  }

  /** The shared level answered every read of a round of {@link unproven} keys. */
  proven(level: Level): void {
    this.incidents.resolve(
      `republish ${level.index}`,
      `multi-level: level ${level.index + 1} (${level.name}) answers the reads that prove writes it failed are settled there again.`,
    )
  }

  /** The shared level did not take a write: other processes may not see it. */
  /**
   * What the repair of `level` leaves undone (keys past `maxPendingKeys`, a clear it refuses):
   * counted (`stats.errors`) and emitted as an `error` event of operation `repair`, once per
   * occurrence. Not a failure of the level: its breaker does not count it.
   */
  unrepaired(level: Level, message: string): void {
    level.stats.errors++
    this.observer.stats.errors++
    const error = new CacheError(`multi-level: level ${level.index + 1} (${level.name}): ${message}`)
    this.emit('error', { backend: level.name, level: level.index, operation: 'repair', error })
  }

  /**
   * The shared level did not take a write. Without a `cause` it was skipped (its breaker open):
   * known never sent, so nothing changed there (see {@link isSkipped}).
   */
  notTaken(shared: Level, operation: string, cause: unknown): CacheUnavailableError {
    const closed = shared.breaker.state === 'closed'
    const error = new CacheUnavailableError(
      'multi-level',
      operation === 'clear'
        ? clearNotTaken(shared.name, closed, cause !== undefined)
        : cause === undefined
          ? `multi-level: ${operation} did not reach the shared level (${shared.name}, skipped while its breaker is open): applied to the faster levels only, and repaired on ${shared.name} as soon as it answers`
          : closed
            ? `multi-level: ${operation} failed on the shared level (${shared.name}), which may have applied it: the faster levels dropped the keys, and this process reads what ${shared.name} holds; write again if it must be applied`
            : `multi-level: ${operation} was sent to the shared level (${shared.name}), which may have applied it, and failed there; its breaker is now open: applied to the faster levels meanwhile, and the keys are deleted on ${shared.name} as soon as it answers; write again if it must be applied`,
      cause === undefined ? undefined : { cause },
    )
    if (cause === undefined) skipped.add(error)
    return error
  }

  allDown(operation: string, cause: unknown): CacheUnavailableError {
    const error = new CacheUnavailableError(
      'multi-level',
      `multi-level: ${operation} failed, no level is available`,
      cause === undefined ? undefined : { cause },
    )
    if (cause === undefined) skipped.add(error)
    return error
  }
}

/**
 * True for a failure limited to one server of a pool whose other servers answer
 * (`CacheUnavailableError.partial`, e.g. one memcached server down): only the keys on that server
 * fail, and the backend repairs that server itself before using it again. Such failures are
 * counted but do not open the level's breaker; when every server is down they are not partial.
 */
export function isPartialFailure(error: unknown): boolean {
  return (error as { partial?: unknown } | null)?.partial === true
}

/** Errors of batches of which some keys were never sent, the others answered: see {@link markPartlyUnsent}. */
const partlyUnsent = new WeakSet<object>()

/**
 * Marks the error of a batch of which some keys were never sent (`unsent`) while the level
 * answered the others: sent all the same (published, dropped from the faster levels), but no
 * failure of the level (not counted towards its breaker).
 */
export function markPartlyUnsent<E extends object>(error: E): E {
  partlyUnsent.add(error)
  return error
}

/** Errors of writes the shared level skipped (breaker open): see {@link isSkipped}. */
const skipped = new WeakSet<object>()

/**
 * True for the error of a write the shared level skipped (its breaker open) or never sent: nothing
 * changed there, so the other processes' faster levels still match it and nothing is published
 * for them (a process running on its own meanwhile keeps its private locks and counters).
 */
export function isSkipped(error: unknown): boolean {
  return (typeof error === 'object' && error !== null && skipped.has(error)) || isUnsent(error)
}

/** Marks `error` as that of a call the shared level never got (see {@link isSkipped}). */
export function markSkipped(error: unknown): void {
  if (typeof error === 'object' && error !== null) skipped.add(error)
}

/** A call the level never sent: it gave up waiting behind this process's own call on the key. */
export function isUnsent(error: unknown): boolean {
  return (error as { unsent?: unknown } | null)?.unsent === true
}

/**
 * A `clear()` the shared level did not take is never replayed there (other processes wrote in the
 * namespace since): only the keys this process changes are repaired, one by one.
 */
function clearNotTaken(name: string, closed: boolean, failed: boolean): string {
  return closed
    ? `multi-level: clear failed on the shared level (${name}), which may have applied it, in full or in part: the faster levels were cleared, and this process reads what ${name} holds; the clear is never replayed on ${name}: clear again if it must be applied`
    : `multi-level: clear did not reach the shared level (${name}, ${failed ? 'down: the failure opened its breaker' : 'skipped while its breaker is open'}): applied to the faster levels only; the clear is never replayed on ${name} (other processes may write in the namespace meanwhile): only the keys this process changes until it answers are repaired there, one by one, the others keep their values; clear again once it answers if it must be applied`
}

function describeError(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\.+$/, '')
}
